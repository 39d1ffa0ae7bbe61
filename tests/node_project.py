"""Cargo's own TypeScript client and zod, installed once from ``tests/node``'s committed lock file.

The wire and zod tests both need ``tests/node/node_modules``. Without Node.js or npm, one test fails
(``tests/integration/test_api_wire.py::test_nodejs_and_npm_are_installed``) and the tests that need
them skip behind it, so a machine without Node still collects and runs the rest. ``npm ci`` deletes
``node_modules`` before installing, so two test processes (pytest-xdist workers) installing at once
would break each other: the install runs under an exclusive file lock, and the second process finds
the work done.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_PROJECT = Path(__file__).resolve().parent / "node"
NODE_TOOLS = ("node", "npm")
INSTALLED_MARKERS = ("@cargo-ai/api", "zod")
"""Packages of ``package-lock.json`` whose presence means ``npm ci`` already ran."""


def missing_node_tools() -> list[str]:
    return [tool for tool in NODE_TOOLS if shutil.which(tool) is None]


def node_project() -> Path:
    """``tests/node`` with its packages installed; skips the calling test when Node.js or npm is missing."""
    missing = missing_node_tools()
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: test_nodejs_and_npm_are_installed fails for it")
    modules = NODE_PROJECT / "node_modules"
    with open(NODE_PROJECT / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not all((modules / name).is_dir() for name in INSTALLED_MARKERS):
            subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=NODE_PROJECT,
                check=True,
                capture_output=True,
                timeout=300,
            )
    return NODE_PROJECT
