"""``cargo-elt sync`` and ``pipelines/cargo_pipeline.py`` as a user runs them: real subprocesses, in
a temporary working directory with a private dlt data directory, against an in-process emulator.

Bad input must end with exit code 2, one clear line on stderr naming the setting to change, and
not a byte changed in the pipeline's working directory or the DuckDB file.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import io
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from tests.e2e.support import serve_handler

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TABLES = ("runs", "batches", "spans", "records")
PIPELINE = "cargo"
DATABASE = "cargo_warehouse.duckdb"
"""What ``cargo-elt sync`` writes by default (pipeline ``cargo``, dataset ``cargo``)."""


def cargo_elt() -> list[str]:
    """The installed console script (``pip install -e .``), else the module it points at."""
    script = BIN / "cargo-elt"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pipelines.cli"]


def dlt_cli() -> list[str]:
    script = BIN / "dlt"
    return [str(script)] if script.exists() else [sys.executable, "-m", "dlt._workspace.cli._dlt"]


def user_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The test process's environment without any dlt or Cargo setting, pipelines under ``data_dir``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SOURCES__", "DESTINATION__", "RUNTIME__", "NORMALIZE__", "LOAD__", "EXTRACT__", "DLT_"))
    }
    env.update(DLT_DATA_DIR=str(data_dir), RUNTIME__DLTHUB_TELEMETRY="false", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@dataclass
class Workdir:
    """A user's working directory: DuckDB file here, dlt's pipelines under ``./dlt/pipelines``."""

    root: Path
    token: str

    @property
    def data_dir(self) -> Path:
        return self.root / "dlt"

    @property
    def pipeline_dir(self) -> Path:
        return self.data_dir / "pipelines" / PIPELINE

    def env(self, **extra: str) -> dict[str, str]:
        return user_env(self.data_dir, SOURCES__CARGO__API_TOKEN=self.token, **extra)

    def run(self, command: Sequence[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(command),
            check=False,
            cwd=self.root,
            env=env or self.env(),
            capture_output=True,
            text=True,
            timeout=180,
        )

    def sync(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self.run([*cargo_elt(), "sync", *args], self.env(**env))

    def counts(self, database: str = DATABASE) -> dict[str, int]:
        """Rows per table of dataset ``cargo`` (only the tables that exist)."""
        con = duckdb.connect(str(self.root / database), read_only=True)
        try:
            names = [
                r[0]
                for r in con.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'cargo' "
                    "AND table_name NOT LIKE '\\_dlt%' ESCAPE '\\'"
                ).fetchall()
            ]
            return {n: int(con.execute(f'SELECT count(*) FROM cargo."{n}"').fetchone()[0]) for n in names}  # type: ignore[index]
        finally:
            con.close()

    def snapshot(self) -> dict[str, str]:
        """Every file under the working directory -> sha256 of its bytes."""
        return {
            str(p.relative_to(self.root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(self.root.rglob("*"))
            if p.is_file()
        }


def summary_rows(stdout: str) -> dict[str, tuple[int, int, int, float]]:
    """``table -> (rows, queries, retries, seconds)`` from the report printed at the end of a sync."""
    lines = stdout.strip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["table", "rows"])
    assert lines[start].split() == ["table", "rows", "loaded", "queries", "retries", "seconds"], stdout
    assert lines[-1].startswith("total ") and lines[-1].endswith(" s"), stdout
    parsed: dict[str, tuple[int, int, int, float]] = {}
    for line in lines[start + 1 : -1]:
        name, rows, queries, retries, seconds = line.split()
        parsed[name] = (int(rows.replace(",", "")), int(queries), int(retries), float(seconds))
    return parsed


def truth_counts(emulator: Any) -> dict[str, int]:
    body = httpx.get(f"{emulator.base_url}/_emulator/truth", timeout=60).json()
    return {t: int(body["tables"][t]["count"]) for t in TABLES}


def output(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_emulator() -> Iterator[Any]:
    """Tiny, one workspace, clock six hours behind real time (inside the default 90-day backfill)."""
    from emulator.server import EmulatorOptions, running_emulator

    with running_emulator(EmulatorOptions(port=0, seed=5, scale="tiny", workspaces=1, admin=True)) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def token(live_emulator: Any) -> str:
    return str(live_emulator.state.workspaces[0].token)


@pytest.fixture(scope="module")
def truth(live_emulator: Any) -> dict[str, int]:
    return truth_counts(live_emulator)


@pytest.fixture(scope="module")
def synced(
    live_emulator: Any, token: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Workdir, subprocess.CompletedProcess[str]]:
    """A working directory after one ``cargo-elt sync`` with the defaults (progress log, DuckDB here)."""
    work = Workdir(tmp_path_factory.mktemp("synced"), token)
    return work, work.sync("--base-url", live_emulator.base_url)


class _NotCargo(http.server.BaseHTTPRequestHandler):
    """A web server that is not Cargo: 404 HTML pages, and 200 HTML under ``/page``."""

    def _answer(self) -> None:
        body = b"<html><head><title>Not Found</title></head><body><h1>Not Found</h1></body></html>"
        self.send_response(200 if self.path.startswith("/page") else 404)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def not_cargo() -> Iterator[str]:
    with serve_handler(_NotCargo) as url:
        yield url


@pytest.fixture(scope="module")
def closed_port() -> str:
    """A local URL nothing listens on (a port the OS just handed out and took back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- the main path ----------------------------------------------------------------------------------


def test_sync_loads_everything_and_prints_the_summary(
    synced: tuple[Workdir, subprocess.CompletedProcess[str]], truth: dict[str, int]
) -> None:
    work, result = synced
    assert result.returncode == 0, output(result)
    assert "error" not in result.stderr.lower() and "Traceback" not in result.stderr, output(result)
    report = summary_rows(result.stdout)
    assert list(report) == list(TABLES), output(result)
    for table, (rows, queries, retries, seconds) in report.items():
        assert rows == truth[table] > 0, f"{table}: reported {rows} rows, emulator has {truth[table]}"
        assert queries >= 1 and retries == 0 and seconds >= 0, output(result)
    assert work.counts() == truth
    assert (work.pipeline_dir / "state.json").is_file()
    assert "Extract cargo" in result.stderr, "progress (--progress log) goes to stderr, the summary to stdout"


def test_dlt_pipeline_info_and_trace_work_on_the_cli_pipeline(
    synced: tuple[Workdir, subprocess.CompletedProcess[str]],
) -> None:
    work, first = synced
    assert first.returncode == 0, output(first)
    info = work.run([*dlt_cli(), "pipeline", PIPELINE, "info"])
    assert info.returncode == 0, output(info)
    assert f"Found pipeline {PIPELINE}" in info.stdout and "dataset_name: cargo" in info.stdout, output(info)
    for table in TABLES:
        assert f"{table} with 1 table(s)" in info.stdout, output(info)
    trace = work.run([*dlt_cli(), "pipeline", PIPELINE, "trace"])
    assert trace.returncode == 0, output(trace)
    for step in ("extract", "normalize", "load"):
        assert f"Step {step} COMPLETED" in trace.stdout, output(trace)
    for table in TABLES:
        assert f"- {table}: " in trace.stdout, output(trace)
    assert "LOADED and contains no failed jobs" in trace.stdout, output(trace)


def test_tables_runs_loads_only_runs_then_full_refresh_reloads_everything(
    live_emulator: Any, token: str, truth: dict[str, int], tmp_path: Path
) -> None:
    work = Workdir(tmp_path, token)
    only_runs = work.sync("--base-url", live_emulator.base_url, "--tables", "runs", "--progress", "none")
    assert only_runs.returncode == 0, output(only_runs)
    assert list(summary_rows(only_runs.stdout)) == ["runs"], output(only_runs)
    assert work.counts() == {"runs": truth["runs"]}

    # A row the source never served: merges keep it; only dropping the tables removes it.
    con = duckdb.connect(str(tmp_path / DATABASE))
    try:
        con.execute("INSERT INTO cargo.runs SELECT * REPLACE ('not-a-cargo-run' AS uuid) FROM cargo.runs LIMIT 1")
    finally:
        con.close()
    assert work.counts() == {"runs": truth["runs"] + 1}

    refreshed = work.sync("--base-url", live_emulator.base_url, "--full-refresh", "--progress", "none")
    assert refreshed.returncode == 0, output(refreshed)
    report = summary_rows(refreshed.stdout)
    assert {t: r[0] for t, r in report.items()} == truth, "a full refresh re-reads every row from the start"
    assert work.counts() == truth


def test_plain_dlt_script_loads_rows(live_emulator: Any, token: str, truth: dict[str, int], tmp_path: Path) -> None:
    env = user_env(tmp_path / "dlt", SOURCES__CARGO__API_TOKEN=token, SOURCES__CARGO__BASE_URL=live_emulator.base_url)
    result = subprocess.run(
        [sys.executable, str(REPO / "pipelines" / "cargo_pipeline.py")],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, output(result)
    assert "LOADED and contains no failed jobs" in result.stdout, output(result)
    assert Workdir(tmp_path, token).counts("cargo_pipeline.duckdb") == truth
    assert (tmp_path / "dlt" / "pipelines" / "cargo_pipeline" / "state.json").is_file()


# -- bad input: exit 2, a message naming the setting, nothing changed -------------------------------


@dataclass(frozen=True)
class BadInput:
    """One wrong setting. ``{url}``, ``{closed}``, ``{not_cargo}`` in args/env are filled in at run time."""

    name: str
    args: tuple[str, ...]
    expect: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    token: str | None = "{token}"
    in_process: bool = False
    """Variations on a subprocess case, run through ``pipelines.cli.main`` to keep the suite fast."""


BAD_INPUTS = (
    BadInput("no token", ("--base-url", "{url}"), ("no Cargo API token", "SOURCES__CARGO__API_TOKEN"), token=None),
    BadInput(
        "blank token",
        ("--base-url", "{url}"),
        ("no Cargo API token", "sources.cargo.api_token"),
        token="  ",
        in_process=True,
    ),
    BadInput(
        "wrong token",
        ("--base-url", "{url}"),
        ("rejected the API token", "sources.cargo.api_token", "SOURCES__CARGO__API_TOKEN"),
        token="crg_not_a_real_token",
    ),
    BadInput("unreachable base URL", ("--base-url", "{closed}"), ("cannot reach Cargo", "--base-url")),
    BadInput(
        "emulator admin path as base URL",
        ("--base-url", "{url}/_emulator"),
        ("does not answer like Cargo's API", "HTTP 404", "--base-url"),
    ),
    BadInput(
        "web server answering 404 HTML",
        ("--base-url", "{not_cargo}"),
        ("does not answer like Cargo's API", "HTTP 404", "sources.cargo.base_url"),
    ),
    BadInput(
        "web server answering 200 HTML",
        ("--base-url", "{not_cargo}/page"),
        ("does not answer like Cargo's API", "--base-url"),
        in_process=True,
    ),
    BadInput(
        "base URL in the environment not http",
        (),
        ("'ftp://example.com' is not an http:// or https:// URL", "sources.cargo.base_url"),
        env={"SOURCES__CARGO__BASE_URL": "ftp://example.com"},
        in_process=True,
    ),
    BadInput("--base-url not http", ("--base-url", "localhost:8787"), ("not an http:// or https:// URL", "--base-url")),
    BadInput("unknown table", ("--base-url", "{url}", "--tables", "runs,jobs"), ("unknown table(s) jobs", "--tables")),
    BadInput(
        "unknown table in config",
        ("--base-url", "{url}"),
        ("unknown table(s) jobs", "sources.cargo.tables"),
        env={"SOURCES__CARGO__TABLES": "jobs"},
        in_process=True,
    ),
    BadInput("bad date", ("--base-url", "{url}", "--since", "last tuesday"), ("--since 'last tuesday'", "YYYY-MM-DD")),
    BadInput(
        "--until before --since",
        ("--base-url", "{url}", "--since", "2026-03-02", "--until", "2026-03-01"),
        ("--until 2026-03-01", "must be after --since"),
    ),
    BadInput("--until without --since", ("--base-url", "{url}", "--until", "2026-03-01"), ("--until needs --since",)),
    BadInput("future --since", ("--base-url", "{url}", "--since", "2999-01-01"), ("--since 2999-01-01", "future")),
    BadInput(
        "future start_date",
        ("--base-url", "{url}"),
        ("sources.cargo.start_date", "not in the past"),
        env={"SOURCES__CARGO__START_DATE": "2999-01-01"},
    ),
    BadInput(
        "unparsable start_date",
        ("--base-url", "{url}"),
        ("sources.cargo.start_date = 'soon'",),
        env={"SOURCES__CARGO__START_DATE": "soon"},
        in_process=True,
    ),
    BadInput(
        "unknown destination",
        ("--base-url", "{url}", "--destination", "duckdbb"),
        ("unknown destination 'duckdbb'", "--destination"),
    ),
    BadInput(
        "missing destination extra",
        ("--base-url", "{url}", "--destination", "bigquery"),
        ("needs its extra", "pip install 'cargo-elt[bigquery]'"),
    ),
    BadInput(
        "zero concurrency",
        ("--base-url", "{url}"),
        ("sources.cargo.concurrency = 0", "from 1 to"),
        env={"SOURCES__CARGO__CONCURRENCY": "0"},
    ),
    BadInput(
        "concurrency not a number",
        ("--base-url", "{url}"),
        ("sources.cargo.concurrency = 'four'", "SOURCES__CARGO__CONCURRENCY"),
        env={"SOURCES__CARGO__CONCURRENCY": "four"},
        in_process=True,
    ),
    BadInput(
        "workspace uuid not a uuid",
        ("--base-url", "{url}"),
        ("sources.cargo.workspace_uuid 'acme'", "not a UUID"),
        env={"SOURCES__CARGO__WORKSPACE_UUID": "acme"},
        in_process=True,
    ),
    BadInput(
        "DuckDB file named like the dataset",
        ("--base-url", "{url}", "--duckdb-path", "cargo.duckdb"),
        ("named like the dataset 'cargo'", "--duckdb-path"),
    ),
)


HIDE_BIGQUERY = """
import importlib.abc
import sys


class _HideBigQuery(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "google.cloud.bigquery" or name.startswith("google.cloud.bigquery."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _HideBigQuery())
"""
"""A ``sitecustomize`` for the "missing destination extra" case: the dev extra installs the BigQuery
client (the DDL tests need it), so the subprocess is made to see an environment without it."""


@dataclass
class BadRun:
    result: subprocess.CompletedProcess[str]
    files_before: dict[str, str]
    files_after: dict[str, str]
    counts_before: dict[str, int]
    counts_after: dict[str, int]


@pytest.fixture(scope="module")
def bad_runs(
    synced: tuple[Workdir, subprocess.CompletedProcess[str]],
    live_emulator: Any,
    not_cargo: str,
    closed_port: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, BadRun]:
    """Every bad input, each in its own copy of the synced working directory.

    Subprocesses run two at a time (the cost is the interpreter importing dlt and pyarrow); the
    in-process variations run afterwards, one by one, since they change the environment and cwd.
    """
    origin, first = synced
    assert first.returncode == 0, output(first)
    places = {"url": live_emulator.base_url, "not_cargo": not_cargo, "closed": closed_port, "token": origin.token}

    def prepare(case: BadInput) -> tuple[Workdir, dict[str, str], list[str]]:
        root = tmp_path_factory.mktemp("bad")
        shutil.copytree(origin.root, root, dirs_exist_ok=True)
        work = Workdir(root, origin.token)
        env = user_env(work.data_dir, **{k: v.format(**places) for k, v in case.env.items()})
        if case.token is not None:
            env["SOURCES__CARGO__API_TOKEN"] = case.token.format(**places)
        if case.name == "missing destination extra":
            hiding = tmp_path_factory.mktemp("hide_bigquery")
            (hiding / "sitecustomize.py").write_text(HIDE_BIGQUERY)
            env["PYTHONPATH"] = str(hiding)
        return work, env, ["sync", *(a.format(**places) for a in case.args)]

    def in_subprocess(case: BadInput) -> BadRun:
        work, env, argv = prepare(case)
        files, counts = work.snapshot(), work.counts()
        result = work.run([*cargo_elt(), *argv], env)
        return BadRun(result, files, work.snapshot(), counts, work.counts())

    def in_process(case: BadInput) -> BadRun:
        from pipelines.cli import main

        work, env, argv = prepare(case)
        files, counts = work.snapshot(), work.counts()
        saved_env, saved_cwd = dict(os.environ), os.getcwd()
        out, err = io.StringIO(), io.StringIO()
        try:
            os.environ.clear()
            os.environ.update(env)
            os.chdir(work.root)
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(argv)
        finally:
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)
        result = subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())
        return BadRun(result, files, work.snapshot(), counts, work.counts())

    cases = list(BAD_INPUTS)
    spawned = [c for c in cases if not c.in_process]
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = dict(zip((c.name for c in spawned), pool.map(in_subprocess, spawned), strict=True))
    runs.update({c.name: in_process(c) for c in cases if c.in_process})
    return runs


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c.name for c in BAD_INPUTS])
def test_bad_input_exits_2_with_a_clear_message_and_changes_nothing(
    case: BadInput, bad_runs: dict[str, BadRun]
) -> None:
    run = bad_runs[case.name]
    result = run.result
    assert result.returncode == 2, output(result)
    assert result.stderr.strip().splitlines()[-1].startswith("error: "), output(result)
    for fragment in case.expect:
        assert fragment in result.stderr, f"{fragment!r} not in the message\n{output(result)}"
    assert "Traceback" not in result.stderr, output(result)
    assert result.stdout == "", output(result)
    state = str(Path("dlt") / "pipelines" / PIPELINE / "state.json")
    assert run.files_after.get(state) == run.files_before[state], "the pipeline state changed"
    changed = sorted(
        k for k in run.files_before.keys() | run.files_after.keys() if run.files_before.get(k) != run.files_after.get(k)
    )
    assert not changed, f"files created, changed or removed: {changed}"
    assert run.counts_after == run.counts_before
