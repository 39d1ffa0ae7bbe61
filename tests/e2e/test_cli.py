"""``cargo-elt sync`` and ``sources/cargo_pipeline.py`` as a user runs them: real subprocesses, in
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

from cargo_elt.source import SEGMENT_TABLES, TABLE_NAMES
from cargo_elt.source.planner import is_histogram_query
from tests.conftest import FIXED_NOW
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
    return [str(script)] if script.exists() else [sys.executable, "-m", "cargo_elt.pipelines.cli"]


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
        # settle 0: read up to Cargo's now, so a sync can be compared with the emulator's truth at once
        # (the emulator has no insert lag; the default settle is checked in tests/e2e/test_clock_skew.py)
        settle = {"SOURCES__CARGO__SETTLE_SECONDS": "0", **extra}
        return user_env(self.data_dir, SOURCES__CARGO__API_TOKEN=self.token, **settle)

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
        """Rows per data table of dataset ``cargo`` (only the tables that exist; not the ``_dlt_*`` and
        ``_cargo_*`` tables that record loads and syncs)."""
        con = duckdb.connect(str(self.root / database), read_only=True)
        try:
            names = [
                r[0]
                for r in con.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'cargo' "
                    "AND table_name NOT LIKE '\\_%' ESCAPE '\\'"
                ).fetchall()
            ]
            return {n: int(con.execute(f'SELECT count(*) FROM cargo."{n}"').fetchone()[0]) for n in names}  # type: ignore[index]
        finally:
            con.close()

    def sync_runs(self, database: str = DATABASE) -> list[tuple[str, str, str, str | None]]:
        """``(sync_id, table_name, status, error)`` of every recorded sync, oldest first (none: [])."""
        path = self.root / database
        if not path.exists():
            return []
        con = duckdb.connect(str(path), read_only=True)
        try:
            found = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'cargo' "
                "AND table_name = '_cargo_sync_runs'"
            ).fetchone()
            if not found or not found[0]:
                return []
            rows = con.execute(
                "SELECT sync_id, table_name, status, error FROM cargo._cargo_sync_runs ORDER BY finished_at, table_name"
            ).fetchall()
            return [(str(a), str(b), str(c), d) for a, b, c, d in rows]
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
    return {
        name: (rows, queries, retries, seconds)
        for name, (rows, _, queries, retries, seconds) in summary(stdout).items()
    }


def summary(stdout: str) -> dict[str, tuple[int, int, int, int, float]]:
    """``table -> (rows, skipped, queries, retries, seconds)`` from the report printed at the end of a sync."""
    lines = stdout.strip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["table", "rows"])
    assert lines[start].split() == ["table", "rows", "loaded", "skipped", "queries", "retries", "seconds"], stdout
    assert lines[-1].startswith("total ") and lines[-1].endswith(" s"), stdout
    parsed: dict[str, tuple[int, int, int, int, float]] = {}
    for line in lines[start + 1 : -1]:
        name, rows, skipped, queries, retries, seconds = line.split()
        parsed[name] = (int(rows.replace(",", "")), int(skipped), int(queries), int(retries), float(seconds))
    return parsed


def facts(counts: dict[str, int]) -> dict[str, int]:
    """The fact tables' part of a per-table count (the exports and catalogue have their own tests)."""
    return {t: n for t, n in counts.items() if t in TABLES}


def truth_counts(emulator: Any) -> dict[str, int]:
    body = httpx.get(f"{emulator.base_url}/_emulator/truth", timeout=60).json()
    return {t: int(body["tables"][t]["count"]) for t in TABLES}


def output(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_emulator() -> Iterator[Any]:
    """Tiny, one workspace, on the fixed test clock (its data within the default 90-day backfill, which is
    measured on the emulator's clock, not this machine's)."""
    from cargo_elt.emulator.server import EmulatorOptions, running_emulator

    options = EmulatorOptions(port=0, seed=5, scale="tiny", workspaces=1, admin=True, now=FIXED_NOW)
    with running_emulator(options) as emulator:
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
    # every table by default; segment exports only when configured
    assert list(report) == [t for t in TABLE_NAMES if t != SEGMENT_TABLES], output(result)
    for table, (rows, queries, retries, seconds) in report.items():
        if table in TABLES:
            assert rows == truth[table] > 0, f"{table}: reported {rows} rows, emulator has {truth[table]}"
        else:
            assert rows > 0, f"{table}: nothing loaded"
        assert queries >= 1 and retries == 0 and seconds >= 0, output(result)
    assert {table: line[1] for table, line in summary(result.stdout).items()} == dict.fromkeys(report, 0), (
        "nothing skipped"
    )
    assert facts(work.counts()) == truth
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
    assert facts({t: r[0] for t, r in report.items()}) == truth, "a full refresh re-reads every row from the start"
    assert facts(work.counts()) == truth


def test_plain_dlt_script_loads_rows(live_emulator: Any, token: str, truth: dict[str, int], tmp_path: Path) -> None:
    env = user_env(
        tmp_path / "dlt",
        SOURCES__CARGO__API_TOKEN=token,
        SOURCES__CARGO__BASE_URL=live_emulator.base_url,
        SOURCES__CARGO__SETTLE_SECONDS="0",  # up to Cargo's now: compared with the truth (see Workdir.env)
    )
    result = subprocess.run(
        [sys.executable, str(REPO / "sources" / "cargo_pipeline.py")],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, output(result)
    assert "LOADED and contains no failed jobs" in result.stdout, output(result)
    assert facts(Workdir(tmp_path, token).counts("cargo_pipeline.duckdb")) == truth
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
    BadInput(
        "bad date",
        ("--base-url", "{url}", "--since", "last tuesday"),
        ("--since = 'last tuesday' is not a date", "YYYY-MM-DD"),
    ),
    BadInput(
        "--until before --since",
        ("--base-url", "{url}", "--since", "2026-03-02", "--until", "2026-03-01"),
        ("--until 2026-03-01", "must be after --since"),
    ),
    BadInput("--until without --since", ("--base-url", "{url}", "--until", "2026-03-01"), ("--until needs --since",)),
    BadInput("future --since", ("--base-url", "{url}", "--since", "2999-01-01"), ("--since 2999-01-01", "future")),
    BadInput(
        "--since after Cargo's clock, before this machine's",
        ("--base-url", "{url}", "--since", "2026-11-15"),
        ("--since 2026-11-15", "is in the future: Cargo's clock reads 2026-11-01T12:00:00"),
        in_process=True,
    ),
    BadInput(
        "start_date after Cargo's clock, before this machine's",
        ("--base-url", "{url}"),
        ("sources.cargo.start_date 2026-11-15", "not in the past: Cargo's clock reads 2026-11-01T12:00:00"),
        env={"SOURCES__CARGO__START_DATE": "2026-11-15"},
        in_process=True,
    ),
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
        ("sources.cargo.workspace_uuid = 'acme' is not a UUID", "SOURCES__CARGO__WORKSPACE_UUID"),
        env={"SOURCES__CARGO__WORKSPACE_UUID": "acme"},
        in_process=True,
    ),
    BadInput(
        "DuckDB file named like the dataset",
        ("--base-url", "{url}", "--duckdb-path", "cargo.duckdb"),
        ("named like the dataset 'cargo'", "--duckdb-path"),
    ),
    BadInput(
        "DuckDB file in a missing directory",
        ("--base-url", "{url}", "--duckdb-path", "no/such/dir/cargo_warehouse.duckdb"),
        ("directory that does not exist", "--duckdb-path"),
        in_process=True,
    ),
    BadInput(
        "pipelines directory under a device file",
        ("--base-url", "{url}"),
        ("cannot write the pipeline's working folder", "/dev/full is not a directory", "DLT_DATA_DIR"),
        env={"DLT_DATA_DIR": "/dev/full/dlt"},
    ),
    BadInput(
        "pipeline name with a path",
        ("--base-url", "{url}", "--pipeline-name", "../../etc/cargo"),
        ("--pipeline-name = '../../etc/cargo' is not usable as a folder name",),
        in_process=True,
    ),
    BadInput(
        "DuckDB memory limit that is not a size",
        ("--base-url", "{url}", "--duckdb-memory-limit", "lots"),
        ("--duckdb-memory-limit = 'lots' is not a size", "256MB"),
        in_process=True,
    ),
    BadInput(
        "step size that is not a number of rows",
        ("--base-url", "{url}"),
        ("sources.cargo.step_rows = 'many' is not a whole number of rows, 1 or more", "SOURCES__CARGO__STEP_ROWS"),
        env={"SOURCES__CARGO__STEP_ROWS": "many"},
    ),
    BadInput(
        "SQL in --tables",
        ("--base-url", "{url}", "--tables", "runs; DROP TABLE runs --"),
        ("unknown table(s) runs; DROP TABLE runs --", "--tables"),
        in_process=True,
    ),
    BadInput(
        "SQL in --since",
        ("--base-url", "{url}", "--since", "2026-01-01' OR 1=1 --"),
        ('--since = "2026-01-01\' OR 1=1 --" is not a date', "YYYY-MM-DD"),
        in_process=True,
    ),
    BadInput(
        "SQL in the workspace uuid",
        ("--base-url", "{url}"),
        ('sources.cargo.workspace_uuid = "\' OR 1=1 --" is not a UUID',),
        env={"SOURCES__CARGO__WORKSPACE_UUID": "' OR 1=1 --"},
        in_process=True,
    ),
    BadInput(
        "look-alike unicode digits in the workspace uuid",
        ("--base-url", "{url}"),
        ("sources.cargo.workspace_uuid", "not a UUID"),
        env={"SOURCES__CARGO__WORKSPACE_UUID": "\uff11" * 8 + "-1111-1111-1111-111111111111"},
        in_process=True,
    ),
    BadInput(
        "negative lock wait",
        ("--base-url", "{url}", "--lock-wait", "-1"),
        ("--lock-wait = '-1' is not a number of seconds", "0 (refuse at once"),
        in_process=True,
    ),
    BadInput(
        "lock wait setting not a number",
        ("--base-url", "{url}"),
        ("sources.cargo.lock_wait_seconds = 'soon' is not a number of seconds",),
        env={"SOURCES__CARGO__LOCK_WAIT_SECONDS": "soon"},
        in_process=True,
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
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(hiding), env.get("PYTHONPATH")) if p)
        return work, env, ["sync", *(a.format(**places) for a in case.args)]

    def in_subprocess(case: BadInput) -> BadRun:
        work, env, argv = prepare(case)
        files, counts = work.snapshot(), work.counts()
        result = work.run([*cargo_elt(), *argv], env)
        return BadRun(result, files, work.snapshot(), counts, work.counts())

    def in_process(case: BadInput) -> BadRun:
        from cargo_elt.pipelines.cli import main

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


# -- bad answers and a hostile environment: exit 1 (or 2), a message, nothing lost ----------------


class _Mangler(http.server.BaseHTTPRequestHandler):
    """A proxy in front of the live emulator that spoils page answers; the first path segment is the mode.

    ``{proxy}/<mode>`` is the base URL the CLI is given, so the client's ``/v1/orchestration/query``
    arrives as ``/<mode>/v1/orchestration/query``. The preflight and the planning queries pass through
    untouched; packed pages are refused the way a ClickHouse without ``formatRow`` would (the source
    then reads row objects), and the first row-object page holding rows is spoilt per mode.
    """

    upstream = ""
    protocol_version = "HTTP/1.1"
    HTML_502 = (
        b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
        b"</center>\r\n<hr><center>nginx/1.25.3</center>\r\n</body>\r\n</html>\r\n"
    )

    def do_POST(self) -> None:
        import orjson

        from cargo_elt.source.specs import TABLE_SPECS

        mode, _, rest = self.path.lstrip("/").partition("/")
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        sql = str(orjson.loads(body)["query"])
        if "formatRow(" in sql:
            return self._send(400, b'{"errorMessage": "Code: 46. DB::Exception: Unknown function formatRow. '
                                   b'(UNKNOWN_FUNCTION)"}')  # fmt: skip
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")}
        answer = httpx.post(f"{self.upstream}/{rest}", content=body, headers=headers, timeout=120)
        rows = answer.json().get("rows") if answer.status_code == 200 else None
        page = " LIMIT " in sql and not is_histogram_query(sql)
        if not page or not rows:
            return self._send(answer.status_code, answer.content)
        table = sql.split(" FROM ", 1)[1].split(maxsplit=1)[0]
        if mode == "html-502":
            return self._send(502, self.HTML_502, "text/html", {"retry-after": "0"})
        if mode == "non-json":
            return self._send(200, b"upstream request timeout", "text/plain")
        if mode == "rows-object":
            return self._send(200, b'{"rows": {}}')
        if mode == "data-list":
            return self._send(200, b'{"data": []}')
        if mode == "null-key":
            rows[0][TABLE_SPECS[table].primary_key[0]] = None
        if mode == "huge-values" and table == "batches":
            rows[0]["error_message"] = HUGE_TEXT
            rows[0]["runs_count"] = BEYOND_INT64  # quoted, as ClickHouse sends 64-bit integers
        return self._send(200, orjson.dumps({"rows": rows}))

    def _send(
        self, status: int, data: bytes, media: str = "application/json", extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("content-type", media)
        self.send_header("content-length", str(len(data)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


HUGE_TEXT = "x" * (50 * 1024 * 1024)
"""A 50 MiB cell, as a runaway error message could be."""
BEYOND_INT64 = "99999999999999999999999"
"""An integer no Int64 column holds (a UInt64 or Int128 on the server side)."""

FAST_RETRIES = """
import cargo_elt.source.client as client

# test only: the client's real retry loop (8 attempts), with millisecond waits instead of 1 s .. 60 s
client.RetryPolicy.__init__.__defaults__ = (8, 300.0, 0.001, 0.002, 0.0)
"""
"""A ``sitecustomize`` for the non-JSON case: a body that is not JSON is retried like a truncated one,
and the default backoff would make the case last two minutes."""


@pytest.fixture(scope="module")
def mangler(live_emulator: Any) -> Iterator[str]:
    handler = type("Mangler", (_Mangler,), {"upstream": live_emulator.base_url})
    with serve_handler(handler) as url:
        yield url


@dataclass(frozen=True)
class FailedRunCase:
    """A sync that starts well and fails while running, or is refused by its environment."""

    name: str
    args: tuple[str, ...]
    code: int
    expect: tuple[str, ...]
    setup: str = ""
    env: dict[str, str] = field(default_factory=dict)
    recorded: bool | None = True
    """The failed sync gets its rows in ``_cargo_sync_runs``; False: the warehouse cannot take them
    (the record's failure is a warning), None: either (a full disk may still take a few KB)."""


REFRESH = ("--full-refresh", "--tables", "runs,batches", "--progress", "none")
"""A full refresh re-reads every row (so every page is spoilt) and is the harshest case: a refresh that
fails must not have dropped anything."""

FAILED_RUNS = (
    FailedRunCase(
        "answer is not JSON",
        ("--base-url", "{proxy}/non-json", *REFRESH),
        1,
        ("reading", "unparsable JSON body", "after 8 attempts", "--base-url", "Nothing was lost"),
        setup="fast-retries",
    ),
    FailedRunCase(
        "answer {rows: {}}",
        ("--base-url", "{proxy}/rows-object", *REFRESH),
        1,
        ("expected a body of the form", "not what Cargo sends", "--base-url", "sync state is unchanged"),
    ),
    FailedRunCase(
        "answer {data: []}",
        ("--base-url", "{proxy}/data-list", *REFRESH),
        1,
        ("got \"{'data': []}\"", "not what Cargo sends", "sync state is unchanged"),
    ),
    FailedRunCase(
        "null in a key column",
        ("--base-url", "{proxy}/null-key", *REFRESH),
        1,
        ("null values in key columns", "not what Cargo sends", "sync state is unchanged"),
    ),
    FailedRunCase(
        "HTML 502 page from a proxy",
        ("--base-url", "{proxy}/html-502", *REFRESH),
        1,
        ("HTTP 502: an HTML page: 502 Bad Gateway", "after 8 attempts", "try again later", "--base-url"),
    ),
    FailedRunCase(
        "read-only working directory",
        ("--base-url", "{url}", "--progress", "none"),
        2,
        ("cannot write the DuckDB file 'cargo_warehouse.duckdb'", "is not writable", "--duckdb-path"),
        setup="read-only-workdir",
    ),
    FailedRunCase(
        "read-only pipeline folder",
        ("--base-url", "{url}", "--progress", "none"),
        2,
        ("cannot write the pipeline's working folder", "is not writable", "DLT_DATA_DIR"),
        setup="read-only-pipeline",
    ),
    FailedRunCase(
        "disk full while extracting",
        ("--base-url", "{url}", *REFRESH),
        1,
        ("out of disk space", "File too large", "DLT_DATA_DIR", "sync state is unchanged"),
        setup="fsize=65536",
        recorded=None,
    ),
    FailedRunCase(
        "destination unreachable (Snowflake, closed port)",
        ("--base-url", "{url}", "--destination", "snowflake", "--pipeline-name", "cargo_sf", "--tables", "runs"),
        1,
        ("connecting to the snowflake destination", "DESTINATION__SNOWFLAKE__CREDENTIALS", "nothing was loaded"),
        env={
            "DESTINATION__SNOWFLAKE__CREDENTIALS": "snowflake://loader:{password}@acct/CARGO_DB?warehouse=WH"
            "&host=127.0.0.1&port={closed_port}&protocol=http&login_timeout=3&network_timeout=3"
        },
        recorded=False,
    ),
)
WAREHOUSE_PASSWORD = "pw_WAREHOUSE_7c1e2a9b44"


@dataclass
class Outcome:
    result: subprocess.CompletedProcess[str]
    state_before: dict[str, Any]
    state_after: dict[str, Any]
    counts_before: dict[str, int]
    counts_after: dict[str, int]
    pending: list[str]
    sync_runs: list[tuple[str, str, str, str | None]]
    """The rows the run added to ``_cargo_sync_runs``."""


def _source_state(work: Workdir) -> dict[str, Any]:
    """The pipeline's state without ``_local`` (where dlt records the run's working directory)."""
    import json

    state = json.loads((work.pipeline_dir / "state.json").read_text())
    state.pop("_local", None)
    assert isinstance(state, dict)
    return state


def _pending_data(work: Workdir) -> list[str]:
    """Data files of the sync's packages not yet loaded (a failed extract must leave none behind; the
    record of the failed sync, in its own pipeline, may wait for a warehouse that can take it)."""
    return sorted(
        str(p.relative_to(work.root))
        for p in work.pipeline_dir.rglob("*")
        if p.suffix in (".parquet", ".jsonl", ".gz", ".csv") and "loaded" not in p.parts
    )


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[None]:
    """``path`` read-only even for root (immutable attribute), or by its mode for anyone else."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("running as root without chattr: a read-only directory cannot be made")
        made = subprocess.run(["chattr", "+i", str(path)], check=False, capture_output=True, text=True)
        if made.returncode != 0:
            pytest.skip(f"this file system has no immutable attribute: {made.stderr.strip()}")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        mode = path.stat().st_mode
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(mode)


LIMIT_FILE_SIZE = """
import os, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
os.execv(sys.argv[2], sys.argv[2:])
"""
"""Runs a command whose files cannot grow past ``argv[1]`` bytes: writes fail as on a full disk (EFBIG,
"File too large"; a small tmpfs would give ENOSPC but needs root to mount)."""


def with_file_size_limit(limit: int, command: Sequence[str]) -> list[str]:
    return [sys.executable, "-c", LIMIT_FILE_SIZE, str(limit), *command]


@pytest.fixture(scope="module")
def failed_runs(
    synced: tuple[Workdir, subprocess.CompletedProcess[str]],
    live_emulator: Any,
    mangler: str,
    closed_port: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Outcome]:
    """Each case in its own copy of the synced working directory, two at a time."""
    origin, first = synced
    assert first.returncode == 0, output(first)
    places = {
        "url": live_emulator.base_url,
        "proxy": mangler,
        "password": WAREHOUSE_PASSWORD,
        "closed_port": closed_port.rsplit(":", 1)[1],
    }

    def run(case: FailedRunCase) -> Outcome:
        root = tmp_path_factory.mktemp("failed")
        shutil.copytree(origin.root, root, dirs_exist_ok=True)
        work = Workdir(root, origin.token)
        env = work.env(**{k: v.format(**places) for k, v in case.env.items()})
        command = [*cargo_elt(), "sync", *(a.format(**places) for a in case.args)]
        guard: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if case.setup == "fast-retries":
            hook = tmp_path_factory.mktemp("fast_retries")
            (hook / "sitecustomize.py").write_text(FAST_RETRIES)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(hook), env.get("PYTHONPATH")) if p)
        elif case.setup.startswith("fsize="):
            command = with_file_size_limit(int(case.setup.split("=")[1]), command)
        elif case.setup == "read-only-workdir":
            guard = _read_only(root)
        elif case.setup == "read-only-pipeline":
            guard = _read_only(work.pipeline_dir)
        state, counts, recorded = _source_state(work), work.counts(), work.sync_runs()
        with guard:
            result = subprocess.run(
                command, check=False, cwd=root, env=env, capture_output=True, text=True, timeout=300
            )
        added = work.sync_runs()[len(recorded) :]
        return Outcome(result, state, _source_state(work), counts, work.counts(), _pending_data(work), added)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip((c.name for c in FAILED_RUNS), pool.map(run, FAILED_RUNS), strict=True))


@pytest.mark.parametrize("case", FAILED_RUNS, ids=[c.name for c in FAILED_RUNS])
def test_failed_run_exits_non_zero_with_a_clear_message_and_loses_nothing(
    case: FailedRunCase, failed_runs: dict[str, Outcome]
) -> None:
    outcome = failed_runs[case.name]
    result = outcome.result
    assert result.returncode == case.code, output(result)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), output(result)
    for fragment in case.expect:
        assert fragment in last, f"{fragment!r} not in the message\n{output(result)}"
    assert "Traceback" not in result.stderr, output(result)
    assert WAREHOUSE_PASSWORD not in result.stderr + result.stdout, output(result)
    assert result.stdout == "", output(result)
    assert outcome.state_after == outcome.state_before, "the sync state changed"
    assert outcome.counts_after == outcome.counts_before, "the warehouse changed"
    assert not outcome.pending, f"data left for a later load: {outcome.pending}"
    recorded = outcome.sync_runs
    if case.code == 2:
        assert not recorded, "bad input is no sync: nothing to record"
    elif recorded or case.recorded:
        # one row per table the failed sync was asked for, with the message the user saw (redacted)
        tables = case.args[case.args.index("--tables") + 1].split(",")
        assert sorted(r[1] for r in recorded) == sorted(tables), recorded
        assert len({r[0] for r in recorded}) == 1, "one sync id"
        assert all(r[2] == "failed" and r[3] == last.removeprefix("error: ") for r in recorded), recorded
    else:
        assert case.recorded is not True
        assert "could not be recorded in _cargo_sync_runs" in result.stderr, output(result)


def test_huge_values_are_loaded_intact(mangler: str, token: str, truth: dict[str, int], tmp_path: Path) -> None:
    """Not errors: a 50 MiB text cell and an integer beyond int64 are data; they must arrive whole (the
    integer as text, in the variant column dlt adds beside ``runs_count``), not truncated or dropped."""
    work = Workdir(tmp_path, token)
    result = work.sync("--base-url", f"{mangler}/huge-values", "--tables", "batches", "--progress", "none")
    assert result.returncode == 0, output(result)
    assert "runs_count" in result.stderr and "int64" in result.stderr, "the type change must be reported"
    assert work.counts() == {"batches": truth["batches"]}
    con = duckdb.connect(str(tmp_path / DATABASE), read_only=True)
    try:
        longest = con.execute("SELECT max(length(error_message)) FROM cargo.batches").fetchone()
        variants = [
            str(r[0])
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'cargo' "
                "AND table_name = 'batches' AND column_name LIKE 'runs_count%' AND data_type = 'VARCHAR'"
            ).fetchall()
        ]
        kept = [
            con.execute(f"SELECT count(*) FROM cargo.batches WHERE {v} = ?", [BEYOND_INT64]).fetchone()
            for v in variants
        ]
    finally:
        con.close()
    assert longest == (len(HUGE_TEXT),)
    assert (1,) in kept, f"{BEYOND_INT64} not kept exactly in any of {variants}"


def test_disk_full_while_loading_keeps_the_data_for_the_next_sync(
    synced: tuple[Workdir, subprocess.CompletedProcess[str]],
    live_emulator: Any,
    truth: dict[str, int],
    tmp_path: Path,
) -> None:
    """A full refresh whose files cannot grow past 1 MB: extraction succeeds, the load fails (DuckDB's
    write-ahead log). The package is kept, and the next sync, with room, loads it and is complete.

    Known gap, not asserted: dlt drops the refreshed tables in a transaction of its own before loading,
    so until that next sync the refreshed tables are empty (docs/RELIABILITY.md, Bad input)."""
    origin, first = synced
    assert first.returncode == 0, output(first)
    shutil.copytree(origin.root, tmp_path, dirs_exist_ok=True)
    work = Workdir(tmp_path, origin.token)
    args = ("sync", "--base-url", live_emulator.base_url, "--progress", "none", "--tables", ",".join(TABLES))
    full = work.run(with_file_size_limit(1_000_000, [*cargo_elt(), *args, "--full-refresh"]))
    assert full.returncode == 1, output(full)
    message = full.stderr.strip().splitlines()[-1]
    for fragment in ("at the load step: out of disk space", "File too large", "--duckdb-path", "loads it first"):
        assert fragment in message, output(full)
    assert _pending_data(work), "the extracted package must be kept for the next sync"

    retried = work.sync(*args[1:])
    assert retried.returncode == 0, output(retried)
    assert {t: n for t, n in work.counts().items() if t in truth} == truth
    assert not _pending_data(work)
