"""Helpers of the end-to-end tests: sync into a real DuckDB file and compare with the emulator's truth."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import dlt
import duckdb
import httpx

from cargo_elt.pipelines.duckdb_load import duckdb_destination
from cargo_elt.source import FACT_TABLES, SyncStats, cargo_source

PRIMARY_KEYS = {
    "runs": ("uuid",),
    "batches": ("uuid",),
    "spans": ("run_uuid", "node_uuid", "execution_index"),
    "records": ("workflow_uuid", "id"),
}
UPDATE_COLUMNS = {
    "runs": "updated_at",
    "batches": "updated_at",
    "spans": "execution_updated_at",
    "records": "updated_at",
}
STATUS_COLUMNS = {"runs": "status", "batches": "status", "spans": "execution_status", "records": "status"}


class Sandbox:
    """One pipeline writing one DuckDB file under a test's temporary directory."""

    def __init__(
        self, root: Path, emulator: Any, name: str = "cargo_test", workspace: int = 0, plain_dlt: bool = False
    ) -> None:
        self.root = root
        self.plain_dlt = plain_dlt
        """Load through dlt's own DuckDB destination (a library user's pipeline) instead of the sync's."""
        self.emulator = emulator
        self.name = name
        self.database = str(root / f"{name}.duckdb")
        self.pipelines_dir = str(root / "pipelines")
        self.token: str = emulator.state.workspaces[workspace].token
        self.workspace_uuid: str = emulator.state.workspaces[workspace].uuid

    def pipeline(self) -> dlt.Pipeline:
        """The sandbox's pipeline, loading like ``cargo-elt sync`` (``pipelines/duckdb_load.py``)."""
        return dlt.pipeline(
            pipeline_name=self.name,
            destination=dlt.destinations.duckdb(self.database) if self.plain_dlt else duckdb_destination(self.database),
            dataset_name="cargo",
            pipelines_dir=self.pipelines_dir,
        )

    def sync(self, **source_args: Any) -> SyncStats:
        """One sync of the facts (unless a test names other tables), ending at the emulator's ``now``.

        ``settle_seconds`` is 0: the emulator has no insert lag, so a sync can read up to Cargo's
        clock and be compared with the truth right away (the default settle leaves the rows of the
        last two minutes for the next sync; ``test_clock_skew.py`` checks that too).
        """
        stats = SyncStats()
        # the fact tables unless a test names others: the catalogue and exports have tests of their own
        args: dict[str, Any] = {
            "start_date": "2026-01-01",
            "concurrency": 4,
            "tables": list(FACT_TABLES),
            "settle_seconds": 0,
            **source_args,
        }
        source = cargo_source(api_token=self.token, base_url=self.emulator.base_url, stats=stats, **args)
        self.pipeline().run(source).raise_on_failed_jobs()
        return stats

    @contextmanager
    def db(self) -> Iterator[duckdb.DuckDBPyConnection]:
        con = duckdb.connect(self.database, read_only=True)
        try:
            yield con
        finally:
            con.close()

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(method, f"{self.emulator.base_url}{path}", timeout=300, **kwargs)
        response.raise_for_status()
        return response.json()

    def truth_rows(self, table: str) -> dict[tuple[str, ...], tuple[str | None, str, str | None]]:
        """Every key of the emulator's table -> (update ISO, status, deleted_at ISO or None)."""
        body = self.admin("GET", "/_emulator/truth", params={"workspace": self.workspace_uuid, "rows": table})
        keys = PRIMARY_KEYS[table]
        update = UPDATE_COLUMNS[table]
        status = STATUS_COLUMNS[table]
        return {
            tuple(str(row[k]) for k in keys): (_iso(row[update]), str(row[status]), _iso(row.get("deleted_at")))
            for row in body["rows"]
        }

    def loaded_rows(self, table: str) -> dict[tuple[str, ...], tuple[str | None, str, str | None]]:
        """The same view of the DuckDB table; raises if a key appears twice."""
        keys = PRIMARY_KEYS[table]
        deleted = "deleted_at" if table == "runs" else "NULL"
        sql = (
            f"SELECT {', '.join(keys)}, {UPDATE_COLUMNS[table]}, {STATUS_COLUMNS[table]}, {deleted} FROM cargo.{table}"
        )
        with self.db() as con:
            rows = con.execute(sql).fetchall()
        result: dict[tuple[str, ...], tuple[str | None, str, str | None]] = {}
        for row in rows:
            key = tuple(str(v) for v in row[: len(keys)])
            assert key not in result, f"{table}: key {key} loaded twice"
            result[key] = (_iso(row[len(keys)]), str(row[len(keys) + 1]), _iso(row[len(keys) + 2]))
        return result

    def assert_equals_truth(self, tables: tuple[str, ...] = tuple(PRIMARY_KEYS)) -> None:
        for table in tables:
            truth = self.truth_rows(table)
            loaded = self.loaded_rows(table)
            missing = truth.keys() - loaded.keys()
            extra = loaded.keys() - truth.keys()
            assert not missing and not extra, f"{table}: {len(missing)} missing, {len(extra)} extra"
            stale = [k for k in truth if truth[k] != loaded[k]]
            assert not stale, (
                f"{table}: {len(stale)} rows differ, e.g. {stale[0]}: {truth[stale[0]]} vs {loaded[stale[0]]}"
            )


def _iso(value: Any) -> str | None:
    """Timestamps from either side as ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    text = str(value).replace(" ", "T")
    if not text.endswith("Z"):
        text = text.removesuffix("+00:00") + "Z"
    if "." not in text:
        text = text[:-1] + ".000Z"
    return text


@contextmanager
def serve_handler(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """A throwaway local HTTP server (for servers that are not Cargo); yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
