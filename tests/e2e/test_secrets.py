"""The API token must appear nowhere: not in logs at DEBUG, not in dlt's state, traces, schemas or load
packages, not in the warehouse, not in the text of any error, even when the server echoes it back.

Each artifact is read as bytes and, recursively, through what could hide a string: gzip, zlib,
zstd, base64 (dlt's compressed state), parquet pages, pickles (dlt's trace).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gzip
import http.server
import io
import logging
import os
import pickle
import re
import subprocess
import sys
import traceback
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
import zstandard  # a dev dependency: a zstd artifact is opened, never skipped

from tests.e2e.support import serve_handler

REPO = Path(__file__).resolve().parents[2]
TOKEN = "crg_secret_TOKEN_5f1c0a7e9d2b48c3a6e1"
NEEDLE = TOKEN.encode()
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
BASE64_RUN = re.compile(rb"[A-Za-z0-9+/]{24,}={0,2}")

DEBUG_MAIN = """
import logging, os, runpy, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
for name in ("httpx", "httpcore", "cargo_elt", "cargo", "dlt"):  # "cargo": the source as the script imports it
    logging.getLogger(name).setLevel(logging.DEBUG)
if sys.argv[1] == "cli":
    from cargo_elt.pipelines.cli import main
    sys.exit(main(sys.argv[2:]))
sys.path.insert(0, os.path.dirname(sys.argv[2]))  # as ``python script.py`` puts the script's folder first
runpy.run_path(sys.argv[2], run_name="__main__")
"""
"""Runs the CLI (``cli ARGS``) or a script (``script PATH``) with every logger at DEBUG on stderr."""


# -- finding the token in anything ------------------------------------------------------------------


def expand(blob: bytes, depth: int = 3) -> Iterator[tuple[str, bytes]]:
    """``blob`` and every layer that can be decoded out of it, labelled by how."""
    yield "bytes", blob
    if depth == 0 or not blob:
        return
    layers: list[tuple[str, bytes]] = []
    if blob[:2] == b"\x1f\x8b":
        layers.append(("gzip", gzip.decompress(blob)))
    if blob[:4] == ZSTD_MAGIC:
        layers.append(("zstd", zstandard.ZstdDecompressor().decompressobj().decompress(blob)))
    if blob[:1] == b"\x78":
        with contextlib.suppress(zlib.error):
            layers.append(("zlib", zlib.decompress(blob)))
    if blob[:4] == b"PAR1":
        table = pq.read_table(io.BytesIO(blob))
        layers.append(("parquet", repr(table.to_pylist()).encode()))
    if blob[:1] == b"\x80":
        with contextlib.suppress(Exception):
            obj = pickle.loads(blob)  # our own pipeline's trace
            layers.append(("pickle", repr(obj).encode()))
            if hasattr(obj, "asstr"):
                layers.append(("pickle.asstr", str(obj.asstr(verbosity=2)).encode()))
    for run in BASE64_RUN.findall(blob):
        with contextlib.suppress(binascii.Error, ValueError):
            layers.append(("base64", base64.b64decode(run + b"=" * (-len(run) % 4), validate=True)))
    for label, layer in layers:
        for inner, data in expand(layer, depth - 1):
            yield f"{label}>{inner}", data


def hits(label: str, blob: bytes | str, needles: tuple[bytes, ...] = (NEEDLE,)) -> list[str]:
    """Where the token (or another secret) is in ``blob`` (through any decodable layer)."""
    data = blob.encode("utf-8", "replace") if isinstance(blob, str) else blob
    return [f"{label} ({how})" for how, layer in expand(data) for needle in needles if needle in layer]


def file_hits(root: Path, skip: tuple[Path, ...] = (), needles: tuple[bytes, ...] = (NEEDLE,)) -> list[str]:
    found: list[str] = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and path not in skip:
            found += hits(str(path.relative_to(root)), path.read_bytes(), needles)
    return found


def warehouse_hits(database: Path) -> list[str]:
    """Every value of every table of the DuckDB file (dlt's own tables included)."""
    found: list[str] = []
    con = duckdb.connect(str(database), read_only=True)
    try:
        tables = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_catalog = current_database()"
        ).fetchall()
        assert tables, f"no tables in {database}"
        for schema, table in tables:
            for row in con.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall():
                for value in row:
                    found += hits(f"{schema}.{table}", value if isinstance(value, bytes | str) else repr(value))
    finally:
        con.close()
    return found


def exception_hits(label: str, exc: BaseException, needles: tuple[bytes, ...] = (NEEDLE,)) -> list[str]:
    """The printed traceback of ``exc`` (causes and contexts included), and each exception's repr and attributes."""
    found = hits(f"{label} traceback", "".join(traceback.format_exception(exc)), needles)
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        found += hits(f"{label} {type(current).__name__}", f"{current!s} {current!r} {vars(current)!r}", needles)
        pending += [e for e in (current.__cause__, current.__context__, getattr(current, "exception", None)) if e]
    return found


# -- fixtures ---------------------------------------------------------------------------------------


def user_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SOURCES__", "DESTINATION__", "RUNTIME__", "NORMALIZE__", "LOAD__", "EXTRACT__", "DLT_"))
    }
    env.update(DLT_DATA_DIR=str(data_dir), RUNTIME__DLTHUB_TELEMETRY="false", RUNTIME__LOG_LEVEL="DEBUG")
    env.update(extra)
    return env


def run_debug(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", DEBUG_MAIN, *args],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def secret_emulator() -> Iterator[Any]:
    from cargo_elt.emulator.server import EmulatorOptions, running_emulator

    options = EmulatorOptions(port=0, seed=9, scale="tiny", workspaces=1, admin=True, tokens=(TOKEN,))
    with running_emulator(options) as emulator:
        assert emulator.state.workspaces[0].token == TOKEN
        yield emulator


class _Echo(http.server.BaseHTTPRequestHandler):
    """A careless server (or proxy) that repeats the request's Authorization header in its answers."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        echoed = self.headers.get("authorization", "")
        status, body = {
            "/401": (401, f'{{"errorMessage": "token {echoed} is not valid"}}'),
            "/403": (403, f"<html>forbidden for {echoed}</html>"),
            "/404": (404, f"<html>no page here for {echoed}</html>"),
            "/400": (400, f'{{"errorMessage": "Code: 62. DB::Exception: Syntax error near {echoed}"}}'),
            "/500": (500, f"upstream failed for {echoed}"),
            "/200": (200, f"<html>welcome {echoed}</html>"),
            "/json": (200, f'{{"message": "hello {echoed}"}}'),
        }[self.path.split("/v1/")[0]]
        data = body.encode()
        self.send_response(status)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def echo_server() -> Iterator[str]:
    with serve_handler(_Echo) as url:
        yield url


# -- tests ------------------------------------------------------------------------------------------


def test_the_scanner_finds_a_hidden_token(tmp_path: Path) -> None:
    state_like = base64.b64encode(zlib.compress(b'{"token": "' + NEEDLE + b'"}'))
    assert hits("plain", TOKEN)
    assert hits("gzip of base64 of zlib", gzip.compress(b"INSERT VALUES ('" + state_like + b"')"))
    assert hits("pickle", pickle.dumps({"nested": [TOKEN]}))
    assert not hits("other", "crg_secret_TOKEN_" + "0" * 20)


def test_debug_sync_leaves_no_token_anywhere(secret_emulator: Any, tmp_path: Path) -> None:
    """A full sync at DEBUG, the token in .dlt/secrets.toml (the usual place), then a look at everything."""
    settings = tmp_path / ".dlt"
    settings.mkdir()
    secrets = settings / "secrets.toml"
    secrets.write_text(f'[sources.cargo]\napi_token = "{TOKEN}"\n')
    (settings / "config.toml").write_text(f'[sources.cargo]\nbase_url = "{secret_emulator.base_url}"\n')
    # loaded files kept (the sync deletes them by default), so the scan reads the data files too
    env = user_env(tmp_path / "dlt", LOAD__DELETE_COMPLETED_JOBS="false")
    result = run_debug(tmp_path, env, "cli", "sync", "--tables", "runs,records", "--progress", "log")
    transcript = f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, transcript
    for marker in ("httpcore.http11 DEBUG send_request_headers", "HTTP Request: POST", "|[DEBUG]|"):
        assert marker in result.stderr, f"DEBUG logging was not on: no {marker!r}"

    found = hits("stdout", result.stdout) + hits("stderr", result.stderr)
    assert hits(".dlt/secrets.toml", secrets.read_bytes()), "the scanner must see the token where it was put"
    found += file_hits(tmp_path, skip=(secrets,))
    found += warehouse_hits(tmp_path / "cargo_warehouse.duckdb")
    pipeline_files = {p.name for p in (tmp_path / "dlt" / "pipelines" / "cargo").rglob("*")}
    assert {"state.json", "trace.pickle", "cargo.schema.json"} <= pipeline_files
    assert any(name.endswith(".parquet") for name in pipeline_files)
    assert not found, f"the token leaked into: {found}"


def test_failing_script_run_leaves_no_token_in_output_or_artifacts(secret_emulator: Any, tmp_path: Path) -> None:
    """The plain dlt script against a wrong URL path: it fails mid-extract; its traceback, logs, trace, state."""
    env = user_env(
        tmp_path / "dlt",
        SOURCES__CARGO__API_TOKEN=TOKEN,
        SOURCES__CARGO__BASE_URL=f"{secret_emulator.base_url}/not/the/api",
        SOURCES__CARGO__TABLES='["runs"]',
    )
    result = run_debug(tmp_path, env, "script", str(REPO / "sources" / "cargo_pipeline.py"))
    transcript = f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert result.returncode != 0, transcript
    assert "PipelineStepFailed" in result.stderr and "HTTP 404" in result.stderr, transcript
    assert "HTTP Request: POST" in result.stderr, "DEBUG logging was not on"
    trace = tmp_path / "dlt" / "pipelines" / "cargo_pipeline" / "trace.pickle"
    assert trace.is_file(), "dlt saves the trace of a failed run; it must be scanned"
    found = hits("stdout", result.stdout) + hits("stderr", result.stderr) + file_hits(tmp_path)
    assert not found, f"the token leaked into: {found}"


@pytest.mark.parametrize("answer", ["401", "403", "404", "400", "500", "200", "json"])
def test_errors_never_repeat_an_echoed_token(
    echo_server: str, answer: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that puts the Authorization header in its error answers: the sync's error must not repeat it."""
    from cargo_elt.pipelines.sync import SyncRequest, UserInputError, run_sync

    request = SyncRequest(
        base_url=f"{echo_server}/{answer}",
        api_token=TOKEN,
        pipelines_dir=str(tmp_path / "pipelines"),
        duckdb_path=str(tmp_path / "never.duckdb"),
        progress="none",
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(UserInputError) as failure:
        run_sync(request)
    found = exception_hits(f"HTTP {answer}", failure.value) + hits("log records", caplog.text)
    assert not found, f"the token leaked into: {found}"
    assert not (tmp_path / "pipelines").exists() and not (tmp_path / "never.duckdb").exists()


def test_extraction_failure_exception_has_no_token(secret_emulator: Any, tmp_path: Path) -> None:
    """The exception dlt raises in-process when extraction fails (wrong URL path), with its whole chain."""
    import dlt
    from dlt.pipeline.exceptions import PipelineStepFailed

    from cargo_elt.source import cargo_source

    pipeline = dlt.pipeline(
        pipeline_name="secret_failure",
        destination=dlt.destinations.duckdb(str(tmp_path / "failure.duckdb")),
        dataset_name="cargo",
        pipelines_dir=str(tmp_path / "pipelines"),
    )
    source = cargo_source(
        api_token=TOKEN, base_url=f"{secret_emulator.base_url}/wrong", tables=["runs"], start_date="2026-01-01"
    )
    with pytest.raises(PipelineStepFailed) as failure:
        pipeline.run(source)
    assert "HTTP 404" in str(failure.value)
    found = exception_hits("PipelineStepFailed", failure.value) + file_hits(tmp_path)
    assert pipeline.last_trace is not None
    found += hits("last_trace", pipeline.last_trace.asstr(verbosity=2) + repr(pipeline.last_trace))
    assert not found, f"the token leaked into: {found}"


def test_client_protocol_error_redacts_an_echoed_token(echo_server: str) -> None:
    from cargo_elt.source.client import CargoClient, RetryPolicy
    from cargo_elt.source.errors import CargoProtocolError

    with (
        CargoClient(TOKEN, base_url=f"{echo_server}/json", retry=RetryPolicy(max_attempts=1)) as client,
        pytest.raises(CargoProtocolError) as failure,
    ):
        client.query("SELECT 1")
    found = exception_hits("CargoProtocolError", failure.value)
    assert not found, f"the token leaked into: {found}"


WAREHOUSE_PASSWORD = "wh_PASSWORD_0d9f3b7a5c1e"
WAREHOUSE_NEEDLES = (NEEDLE, WAREHOUSE_PASSWORD.encode())


def _closed_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _snowflake_secrets(port: int) -> str:
    """A Snowflake destination (the dev extra installs its driver) on a local port nothing listens on."""
    return (
        "[destination.snowflake.credentials]\n"
        'database = "CARGO_DB"\nusername = "loader"\n'
        f'password = "{WAREHOUSE_PASSWORD}"\nhost = "acct"\nwarehouse = "WH"\n'
        f'query = {{ host = "127.0.0.1", port = "{port}", protocol = "http", login_timeout = "3", '
        'network_timeout = "3" }\n'
    )


def test_failing_warehouse_leaves_no_password_or_token_anywhere(secret_emulator: Any, tmp_path: Path) -> None:
    """The warehouse password and the token in .dlt/secrets.toml, a sync at DEBUG whose destination refuses
    to connect: neither appears in the output, the pipeline's files (state, trace, schemas) or the message."""
    settings = tmp_path / ".dlt"
    settings.mkdir()
    secrets = settings / "secrets.toml"
    secrets.write_text(f'[sources.cargo]\napi_token = "{TOKEN}"\n\n' + _snowflake_secrets(_closed_port()))
    (settings / "config.toml").write_text(f'[sources.cargo]\nbase_url = "{secret_emulator.base_url}"\n')
    env = user_env(tmp_path / "dlt")
    result = run_debug(tmp_path, env, "cli", "sync", "--destination", "snowflake", "--tables", "runs")
    transcript = f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert result.returncode == 1, transcript
    assert "connecting to the snowflake destination" in result.stderr.splitlines()[-1], transcript
    assert "|[DEBUG]|" in result.stderr, "DEBUG logging was not on"
    assert hits(".dlt/secrets.toml", secrets.read_bytes(), (WAREHOUSE_PASSWORD.encode(),))
    found = hits("stdout", result.stdout, WAREHOUSE_NEEDLES) + hits("stderr", result.stderr, WAREHOUSE_NEEDLES)
    found += file_hits(tmp_path, skip=(secrets,), needles=WAREHOUSE_NEEDLES)
    assert (tmp_path / "dlt" / "pipelines" / "cargo" / "trace.pickle").is_file(), "the failed run's trace is scanned"
    assert not found, f"a secret leaked into: {found}"


def test_failing_warehouse_exception_has_no_password(secret_emulator: Any, tmp_path: Path) -> None:
    """In process, with the credentials as one connection string in the environment: the SyncFailed the
    caller gets (and anything chained to it) and the log records never repeat the password."""
    from cargo_elt.pipelines.sync import SyncFailed, SyncRequest, run_sync

    port = _closed_port()
    credentials = (
        f"snowflake://loader:{WAREHOUSE_PASSWORD}@acct/CARGO_DB?warehouse=WH&host=127.0.0.1&port={port}"
        "&protocol=http&login_timeout=3&network_timeout=3"
    )
    request = SyncRequest(
        base_url=secret_emulator.base_url,
        destination="snowflake",
        api_token=TOKEN,
        tables=["runs"],
        pipeline_name="secret_wh",
        pipelines_dir=str(tmp_path / "pipelines"),
        progress="none",
    )
    saved = os.environ.get("DESTINATION__SNOWFLAKE__CREDENTIALS")
    os.environ["DESTINATION__SNOWFLAKE__CREDENTIALS"] = credentials
    try:
        with pytest.raises(SyncFailed) as failure:
            run_sync(request)
    finally:
        if saved is None:
            del os.environ["DESTINATION__SNOWFLAKE__CREDENTIALS"]
        else:
            os.environ["DESTINATION__SNOWFLAKE__CREDENTIALS"] = saved
    assert "DESTINATION__SNOWFLAKE__CREDENTIALS" in str(failure.value)
    assert failure.value.__cause__ is None and failure.value.__context__ is None
    found = exception_hits("SyncFailed", failure.value, WAREHOUSE_NEEDLES)
    found += file_hits(tmp_path, needles=WAREHOUSE_NEEDLES)
    assert not found, f"a secret leaked into: {found}"
