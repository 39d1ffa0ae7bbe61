"""The warehouse a sync loaded, opened again for what comes after it: the models and the report.

``cargo-elt models`` and ``cargo-elt report`` take ``sync``'s ``--destination``, ``--dataset``,
``--pipeline-name`` and ``--duckdb-path`` and reach the same tables with the same credentials: a dlt
pipeline of that name, destination and dataset, configured from the same ``.dlt`` files.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any

from .sync import (
    DEFAULT_DATASET,
    DEFAULT_DESTINATION,
    PIPELINE_NAME,
    UserInputError,
    check_destination,
    pipeline_settings,
)

MODEL_DESTINATIONS: dict[str, str] = {
    "duckdb": "dbt.adapters.duckdb",
    "bigquery": "dbt.adapters.bigquery",
    "snowflake": "dbt.adapters.snowflake",
}
"""Warehouses the dbt project is written for -> the dbt adapter module each needs."""

MODEL_EXTRAS: dict[str, str] = {"duckdb": "models", "bigquery": "models,bigquery", "snowflake": "models,snowflake"}
"""The pip extras that bring dbt and a warehouse's adapter."""


@dataclass
class WarehouseRequest:
    """Where the synced tables are: the options ``sync`` was given."""

    destination: str = DEFAULT_DESTINATION
    dataset: str = DEFAULT_DATASET
    pipeline_name: str = PIPELINE_NAME
    duckdb_path: str | None = None
    pipelines_dir: str | None = None


def check_synced_duckdb(path: str) -> None:
    """A DuckDB warehouse must exist before anything is built on it (DuckDB would create an empty one)."""
    if not os.path.isfile(path):
        raise UserInputError(
            f"no DuckDB warehouse at {path}: run `cargo-elt sync` first, or point --duckdb-path "
            "(and --pipeline-name) at the file the sync wrote"
        )


def open_pipeline(request: WarehouseRequest) -> Any:
    """The dlt pipeline the sync used, bound to its destination and dataset (nothing is loaded).

    DuckDB: the file is checked to exist, and given as an absolute path as the sync gives it.
    """
    import dlt

    pipeline = pipeline_settings(request.pipeline_name, request.dataset, request.duckdb_path)
    check_destination(request.destination)
    destination: Any = request.destination
    if request.destination == "duckdb":
        path = os.path.abspath(pipeline.duckdb_file)
        check_synced_duckdb(path)
        destination = dlt.destinations.duckdb(path)

    pipeline_args: dict[str, Any] = {"pipelines_dir": request.pipelines_dir} if request.pipelines_dir else {}
    return dlt.pipeline(
        pipeline_name=request.pipeline_name,
        destination=destination,
        dataset_name=request.dataset,
        **pipeline_args,
    )


def check_models_supported(destination: str) -> None:
    """The dbt project runs on DuckDB, BigQuery and Snowflake, each with its dbt adapter installed."""
    module = MODEL_DESTINATIONS.get(destination)
    if module is None:
        raise UserInputError(
            f"the models are written for {', '.join(MODEL_DESTINATIONS)}; --destination {destination!r} "
            "is not one of them"
        )
    try:
        found = importlib.util.find_spec("dbt.cli.main") is not None and importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        extras = MODEL_EXTRAS[destination]
        raise UserInputError(f"the models on {destination} need dbt and its adapter: pip install 'cargo-elt[{extras}]'")
