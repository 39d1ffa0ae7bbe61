"""``cargo-elt emulator serve`` as a user starts it: a child process, its printout, ``--data-dir``.

Each start runs in its own process because chDB holds one embedded server per process (a second
data path in the test process itself is refused).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

SERVE = (sys.executable, "-m", "cargo_elt.pipelines.cli", "emulator", "serve")


@contextmanager
def serve(*args: str) -> Iterator[tuple[str, list[str]]]:
    """Start the emulator's command; yields its base URL and the lines it printed up to readiness."""
    command = [*SERVE, "--port", "0", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    lines: list[str] = []
    base_url = ""
    try:
        for line in process.stdout:
            lines.append(line.rstrip())
            found = re.search(r"listening on (http://\S+)", line)
            if found:
                base_url = found.group(1)
            if base_url and sum(1 for x in lines if x.startswith("workspace ")) == 2:
                break
        assert base_url, "\n".join(lines)
        yield base_url, lines
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stdout.close()


def test_serve_prints_workspaces_and_keeps_data_between_starts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    args = ("--scale", "tiny", "--seed", "4", "--admin", "--data-dir", str(data), "--token", "crg_fixed_one")
    with serve(*args) as (base_url, lines):
        printed = [line for line in lines if line.startswith("workspace ")]
        assert "token crg_fixed_one" in printed[0]
        uuid = re.search(r"uuid (\S+)", printed[0])
        assert uuid is not None
        first = httpx.get(f"{base_url}/_emulator/truth", timeout=60).json()
        advanced = httpx.post(f"{base_url}/_emulator/advance", json={"seconds": 600}, timeout=60).json()
        assert advanced["new_rows"]
        after_advance = httpx.get(f"{base_url}/_emulator/truth", timeout=60).json()
        assert after_advance != first
        response = httpx.post(
            f"{base_url}/v1/orchestration/query",
            json={"query": "SELECT count() AS n FROM runs"},
            headers={"authorization": "Bearer crg_fixed_one"},
        )
        assert response.json()["rows"][0]["n"] == after_advance["tables"]["runs"]["count"]
    with serve(*args) as (base_url, lines):
        reopened = httpx.get(f"{base_url}/_emulator/truth", timeout=60).json()
        assert reopened == after_advance, "a restart on the same --data-dir must serve the same data"
        assert uuid.group(1) in "\n".join(lines)


def test_serve_refuses_a_data_dir_made_with_other_options(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with serve("--scale", "tiny", "--seed", "4", "--data-dir", str(data)):
        pass
    result = subprocess.run(
        [*SERVE, "--port", "0", "--scale", "tiny", "--seed", "5", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "seed=4" in result.stderr and "--data-dir" in result.stderr


def test_serve_refuses_a_bad_fault_spec() -> None:
    result = subprocess.run(
        [*SERVE, "--port", "0", "--faults", "429=lots"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "bad rate 'lots' for 429 in --faults" in result.stderr


def test_terminate_exits_cleanly_and_leaves_no_chdb_directory(tmp_path: Path) -> None:
    """SIGTERM (what ``docker stop``, systemd and the benchmarks send) must not leave chDB's scratch.

    Before the fix, uvicorn re-raised SIGTERM after its graceful shutdown and the process died
    without chDB removing its ``clickhouse-embedded-*`` directory: 6 GB per stop at the ``big`` scale.
    """
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    command = [*SERVE, "--port", "0", "--scale", "tiny"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert process.stdout is not None
    try:
        for line in process.stdout:
            if line.startswith("workspace 2:"):
                break
        running = [p.name for p in scratch.iterdir()]
        assert any(name.startswith("clickhouse-embedded-") for name in running), running
        process.terminate()
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()
    assert [p.name for p in scratch.iterdir()] == []


def test_serve_with_another_export_layout_and_a_renamed_column() -> None:
    args = (
        "--scale",
        "tiny",
        "--seed",
        "4",
        "--admin",
        "--token",
        "crg_layout",
        "--rename-column",
        "records.id=record_id",
    )
    layout = ("--export-layout", "runOutputsFormat=ndjson,runOutputsKeys=camel,gzipExports=true,malformedExports=batch")
    with serve(*args, *layout) as (base_url, _):
        settings = httpx.post(f"{base_url}/_emulator/settings", json={}, timeout=60).json()
        assert settings["runOutputsFormat"] == "ndjson" and settings["runOutputsKeys"] == "camel"
        assert settings["gzipExports"] is True and settings["malformedExports"] == ["batch"]
        auth = {"authorization": "Bearer crg_layout"}
        renamed = httpx.post(
            f"{base_url}/v1/orchestration/query", json={"query": "SELECT record_id FROM records LIMIT 1"}, headers=auth
        )
        assert renamed.status_code == 200 and renamed.json()["rows"], renamed.text
        old = httpx.post(f"{base_url}/v1/orchestration/query", json={"query": "SELECT id FROM records"}, headers=auth)
        assert old.status_code == 400 and "Code: 47" in old.json()["errorMessage"]


def test_serve_refuses_a_bad_layout_or_rename() -> None:
    for bad, said in (
        (("--export-layout", "runOutputsFormat=xml"), "runOutputsFormat must be one of array, ndjson, csv"),
        (("--export-layout", "gzip=true"), "is not NAME=VALUE with NAME among"),
        (("--rename-column", "records:id=record_id"), "is not TABLE.COLUMN=NEW_NAME"),
    ):
        result = subprocess.run([*SERVE, "--port", "0", *bad], capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 2, result.stderr
        assert said in result.stderr.strip().splitlines()[-1], result.stderr
