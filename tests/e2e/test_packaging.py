"""The distribution as users get it: a wheel in a clean virtual environment, and ``dlt init``.

* ``python -m build`` makes a wheel whose files all sit under one import name, ``cargo_elt``
  (the dbt project inside it); installed without extras, the demo refuses with the extras to
  install (the emulator's dependencies come with ``[emulator]``, dbt with ``[models]``); with them,
  ``cargo-elt demo`` runs from the installed wheel, from a folder that is not this checkout, and
  ends with its report.
* ``dlt init cargo duckdb --location <checkout>`` (dlt's own CLI) copies the source and its pipeline
  script into an empty project, and that script loads the emulator's rows.

Both need packages from PyPI's cache (the virtual environment) and take a minute or two.
"""

from __future__ import annotations

import ast
import csv
import io
import os
import subprocess
import sys
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli import (  # the module-scoped emulator fixtures come with them
    REPO,
    Workdir,
    dlt_cli,
    facts,
    live_emulator,
    output,
    token,
    truth_counts,
    user_env,
)

__all__ = ["live_emulator", "token"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, output(built)
    wheels = list(out.glob("cargo_elt-*.whl"))
    assert len(wheels) == 1, [p.name for p in out.iterdir()]
    return wheels[0]


def top_level_names(wheel: Path) -> set[str]:
    """Importable top-level names a wheel installs: its files' first path parts, metadata aside."""
    with zipfile.ZipFile(wheel) as archive:
        record = next(n for n in archive.namelist() if n.endswith(".dist-info/RECORD"))
        rows = csv.reader(io.StringIO(archive.read(record).decode()))
        paths = [row[0] for row in rows if row]
    return {p.split("/")[0].removesuffix(".py") for p in paths if ".dist-info/" not in p and ".data/" not in p}


def imports_of_cargo_elt(folder: Path) -> list[str]:
    """``file: module`` for every import statement in ``folder`` that names the cargo_elt package."""
    found = []
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            found += [f"{path.name}: {m}" for m in modules if m.split(".")[0] == "cargo_elt"]
    return found


def test_the_source_folder_is_self_contained() -> None:
    assert imports_of_cargo_elt(REPO / "sources" / "cargo") == []


def test_the_wheel_installs_one_import_name(wheel: Path) -> None:
    assert top_level_names(wheel) == {"cargo_elt"}
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "cargo_elt/source/__init__.py" in names and "cargo_elt/emulator/server.py" in names
    assert not [n for n in names if n.startswith(("cargo_elt/tests", "cargo_elt/bench"))]


@pytest.fixture(scope="module")
def clean_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("venv") / "env"
    venv.create(root, with_pip=True)
    yield root


def run_in(venv_root: Path, args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = user_env(cwd / "dlt", **env)
    environment.pop("PYTHONPATH", None)
    environment["PATH"] = f"{venv_root / 'bin'}{os.pathsep}{environment.get('PATH', '')}"
    environment["VIRTUAL_ENV"] = str(venv_root)
    return subprocess.run(args, check=False, cwd=cwd, env=environment, capture_output=True, text=True, timeout=900)


def test_demo_runs_from_the_installed_wheel(wheel: Path, clean_venv: Path, tmp_path: Path) -> None:
    python = str(clean_venv / "bin" / "python")
    installed = run_in(clean_venv, [python, "-m", "pip", "install", "--quiet", str(wheel)], tmp_path)
    assert installed.returncode == 0, output(installed)
    where = run_in(clean_venv, [python, "-c", "import cargo_elt.source as s; print(s.__file__)"], tmp_path)
    assert where.returncode == 0 and str(clean_venv) in where.stdout, output(where)
    for generic in ("sources", "pipelines", "emulator"):
        absent = run_in(clean_venv, [python, "-c", f"import {generic}"], tmp_path)
        assert absent.returncode != 0 and "ModuleNotFoundError" in absent.stderr, (generic, output(absent))

    without_extra = run_in(clean_venv, [str(clean_venv / "bin" / "cargo-elt"), "demo", "--scale", "tiny"], tmp_path)
    assert without_extra.returncode == 2, output(without_extra)
    assert "pip install 'cargo-elt[emulator,models]'" in without_extra.stderr

    extra = run_in(clean_venv, [python, "-m", "pip", "install", "--quiet", f"{wheel}[emulator,models]"], tmp_path)
    assert extra.returncode == 0, output(extra)
    database = tmp_path / "demo.duckdb"
    demo = run_in(
        clean_venv,
        [str(clean_venv / "bin" / "cargo-elt"), "demo", "--scale", "tiny", "--database", str(database)],
        tmp_path,
    )
    assert demo.returncode == 0, output(demo)
    assert database.is_file()
    report = Path(demo.stdout.strip().splitlines()[-1])
    assert report.is_file() and report.suffix == ".html", output(demo)


def test_dlt_init_copies_a_source_whose_script_loads_the_emulator(
    live_emulator: Any, token: str, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    env = user_env(tmp_path / "dlt")
    created = subprocess.run(
        [*dlt_cli(), "--non-interactive", "init", "cargo", "duckdb", "--location", str(REPO)],
        check=False,
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert created.returncode == 0, output(created)
    copied = project / "cargo"
    assert (copied / "__init__.py").is_file() and (project / "cargo_pipeline.py").is_file()
    assert "dlt[duckdb,parquet]" in (project / "requirements.txt").read_text()
    assert "[sources.cargo]" in (project / ".dlt" / "secrets.toml").read_text()
    assert not imports_of_cargo_elt(copied), "the copied source must be self-contained"

    loaded = subprocess.run(
        [sys.executable, "cargo_pipeline.py"],
        check=False,
        cwd=project,
        env=user_env(
            tmp_path / "dlt",
            SOURCES__CARGO__API_TOKEN=token,
            SOURCES__CARGO__BASE_URL=live_emulator.base_url,
            SOURCES__CARGO__SETTLE_SECONDS="0",  # up to Cargo's now: compared with the truth (see Workdir.env)
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert loaded.returncode == 0, output(loaded)
    assert facts(Workdir(project, token).counts("cargo_pipeline.duckdb")) == facts(truth_counts(live_emulator))
