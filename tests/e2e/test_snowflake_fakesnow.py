"""The source against the emulator, loaded through dlt's real Snowflake destination into fakesnow.

Backfill, a ``merge`` after the emulator's clock moves (new rows, finished and soft-deleted runs),
and a column added between syncs, compared row by row with the emulator's ground truth as the
DuckDB end-to-end tests do. The fakesnow differences dlt trips on are bridged in
``tests/snowflake_shim.py`` (and only there).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
import pytest

from cargo_elt.source import FACT_TABLES, SyncStats, cargo_source
from cargo_elt.source.warehouse import apply_snowflake_layout
from tests.conftest import FIXED_NOW
from tests.e2e.support import PRIMARY_KEYS, STATUS_COLUMNS, UPDATE_COLUMNS, Sandbox, _iso

pytest.importorskip("fakesnow", reason="fakesnow comes with the `dev` extra")

pytestmark = [
    # fakesnow's cursor fetches DB-API results through arrow and warns about the copy it makes;
    # it is fakesnow's own implementation detail (fakesnow/cursor.py), not something we can change.
    pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result makes an extra copy:UserWarning"),
]

ADDED_COLUMN = "status_label"
"""A column the source starts sending between two syncs (schema evolution)."""


@pytest.fixture(scope="module")
def live_emulator() -> Iterator[Any]:
    """A tiny emulator on the fixed test clock; incremental syncs see what its advances add."""
    from cargo_elt.emulator.server import EmulatorOptions, running_emulator

    with running_emulator(
        EmulatorOptions(port=0, seed=11, scale="tiny", workspaces=1, admin=True, now=FIXED_NOW)
    ) as emulator:
        yield emulator


class SnowflakeSandbox(Sandbox):
    """``Sandbox`` writing to (fake) Snowflake with the Snowflake layout; reads back through dlt's client."""

    def __init__(self, root: Path, emulator: Any, destination: Any) -> None:
        super().__init__(root, emulator, name="cargo_snowflake")
        self.destination = destination

    def pipeline(self) -> dlt.Pipeline:
        return dlt.pipeline(
            pipeline_name=self.name,
            destination=self.destination,
            dataset_name="cargo",
            pipelines_dir=self.pipelines_dir,
        )

    def sync(self, *, add_column: bool = False, **source_args: Any) -> SyncStats:
        stats = SyncStats()
        args: dict[str, Any] = {
            "start_date": "2026-01-01",
            "concurrency": 4,
            "tables": list(FACT_TABLES),
            "settle_seconds": 0,  # as Sandbox.sync: up to Cargo's now, compared with the truth at once
            **source_args,
        }
        source = apply_snowflake_layout(
            cargo_source(api_token=self.token, base_url=self.emulator.base_url, stats=stats, **args)
        )
        if add_column:
            source.resources["runs"].add_map(_with_label)
        self.pipeline().run(source).raise_on_failed_jobs()
        return stats

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with self.pipeline().sql_client() as client:
            return [tuple(row) for row in client.execute_sql(sql) or []]

    def loaded_rows(self, table: str) -> dict[tuple[str, ...], tuple[str, str, str | None]]:
        keys = PRIMARY_KEYS[table]
        deleted = "deleted_at" if table == "runs" else "NULL"
        columns = ", ".join((*keys, UPDATE_COLUMNS[table], STATUS_COLUMNS[table], deleted))
        result: dict[tuple[str, ...], tuple[str, str, str | None]] = {}
        for row in self.query(f"SELECT {columns} FROM cargo.{table}"):
            key = tuple(str(v) for v in row[: len(keys)])
            assert key not in result, f"{table}: key {key} loaded twice"
            result[key] = (_iso_or_fail(row[len(keys)]), str(row[len(keys) + 1]), _iso(row[len(keys) + 2]))
        return result


def _iso_or_fail(value: Any) -> str:
    text = _iso(value)
    assert text is not None
    return text


def _with_label(table: pa.Table) -> pa.Table:
    """Runs pages with one more column, as if the API started sending it."""
    labels = pa.compute.utf8_upper(table.column("status"))
    return table.append_column(pa.field(ADDED_COLUMN, pa.string()), labels)


def test_snowflake_backfill_merge_and_schema_evolution(live_emulator: Any, tmp_path: Path) -> None:
    from tests.snowflake_shim import fakesnow_destination

    with fakesnow_destination(tmp_path / "fakesnow") as destination:
        box = SnowflakeSandbox(tmp_path, live_emulator, destination)

        first = box.sync()
        assert all(s.rows > 0 for s in first.values())
        box.assert_equals_truth()

        quiet = box.sync()
        assert all(s.rows == 0 for s in quiet.values()), "a sync with nothing new loaded rows"

        report = box.admin("POST", "/_emulator/advance", json={"seconds": 3600})
        assert sum(report["new_rows"].values()) > 0 and sum(report["changed_rows"].values()) > 0
        third = box.sync(add_column=True)
        assert third["runs"].rows > 0
        box.assert_equals_truth()  # merge: changed rows replaced, never duplicated

        deleted = box.query("SELECT count(*) FROM cargo.runs WHERE deleted_at IS NOT NULL")[0][0]
        assert deleted == sum(1 for v in box.truth_rows("runs").values() if v[2] is not None) > 0
        labelled = box.query(f"SELECT count({ADDED_COLUMN}), count(*) FROM cargo.runs")[0]
        assert labelled[0] == third["runs"].rows, "the new column is filled for the rows of the sync that added it"
        assert labelled[1] > labelled[0], "older rows keep NULL in the added column"
        mismatched = box.query(f"SELECT count(*) FROM cargo.runs WHERE {ADDED_COLUMN} <> upper(status)")[0][0]
        assert mismatched == 0

        schema = box.pipeline().default_schema
        clustered = [c for c, h in schema.get_table_columns("spans").items() if h.get("cluster")]
        assert clustered == ["workflow_uuid", "execution_started_at"]


def test_snowflake_takes_the_catalogue_and_exports(live_emulator: Any, tmp_path: Path) -> None:
    """The REST-fed tables (arrow with JSON and timestamp columns) load into Snowflake like the facts."""
    from cargo_elt.source import DIMENSION_NAMES
    from tests.snowflake_shim import fakesnow_destination

    tables = [*DIMENSION_NAMES, "run_outputs", "run_metrics", "run_metrics_daily", "batch_failures"]
    with fakesnow_destination(tmp_path / "fakesnow") as destination:
        box = SnowflakeSandbox(tmp_path, live_emulator, destination)
        stats = box.sync(tables=tables)
        for table in tables:
            loaded = box.query(f"SELECT count(*) FROM cargo.{table}")[0][0]
            assert loaded == stats[table].rows > 0, table
        named = box.query("SELECT count(*) FROM cargo.workflows WHERE name IS NULL")[0][0]
        assert named == 0
        outputs = box.query("SELECT count(*) FROM cargo.run_outputs WHERE created_at IS NULL")[0][0]
        assert outputs == 0
