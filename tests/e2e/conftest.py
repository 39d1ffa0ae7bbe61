"""Fixtures of the end-to-end tests of the models and the report."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest


@dataclass
class ModelledWarehouse:
    """A DuckDB warehouse synced from an emulator, with the dbt models built on it."""

    emulator: Any
    root: Path
    database: Path
    data_dir: Path
    pipeline_name: str
    models: Any

    @property
    def pipelines_dir(self) -> Path:
        return self.data_dir / "pipelines"

    def pipeline(self) -> Any:
        import dlt

        return dlt.pipeline(
            pipeline_name=self.pipeline_name,
            destination=dlt.destinations.duckdb(str(self.database)),
            dataset_name="cargo",
            pipelines_dir=str(self.pipelines_dir),
        )

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        import duckdb

        with duckdb.connect(str(self.database), read_only=True) as con:
            con.execute("SET schema = 'cargo'")
            return con.execute(sql).fetchall()


@pytest.fixture(scope="session")
def modelled_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelledWarehouse]:
    """The demo's tables synced from a tiny emulator into DuckDB, then ``run_models`` (run, test, freshness).

    The emulator's clock starts an hour before the current hour, so the newest change is under two
    hours old when dbt checks freshness (which compares with the warehouse's clock).
    """
    from cargo_elt.emulator.server import EmulatorOptions, running_emulator
    from cargo_elt.pipelines.demo import DEMO_TABLES
    from cargo_elt.pipelines.models import ModelsRequest, run_models
    from cargo_elt.pipelines.sync import SyncRequest, run_sync

    root = tmp_path_factory.mktemp("modelled")
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    options = EmulatorOptions(port=0, seed=5, scale="tiny", workspaces=1, admin=True, now=now)
    with running_emulator(options) as emulator:
        box = ModelledWarehouse(emulator, root, root / "warehouse.duckdb", root / "dlt", "cargo_models_test", None)
        run_sync(
            SyncRequest(
                base_url=emulator.base_url,
                api_token=emulator.state.workspaces[0].token,
                pipeline_name=box.pipeline_name,
                pipelines_dir=str(box.pipelines_dir),
                duckdb_path=str(box.database),
                tables=list(DEMO_TABLES),
                progress="none",
            )
        )
        box.models = run_models(
            ModelsRequest(
                pipeline_name=box.pipeline_name,
                pipelines_dir=str(box.pipelines_dir),
                duckdb_path=str(box.database),
                quiet=True,
            )
        )
        yield box
