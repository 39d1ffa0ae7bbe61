"""Cargo -> DuckDB as a plain dlt script: the way dlt users start.

Put the token in ``.dlt/secrets.toml`` (``[sources.cargo] api_token = "..."``) or the environment
(``SOURCES__CARGO__API_TOKEN``); every other setting of ``[sources.cargo]`` in ``.dlt/config.toml``
(``base_url``, ``start_date``, ``tables``, ``concurrency``, ...) can also come from the environment,
e.g. ``SOURCES__CARGO__BASE_URL=http://127.0.0.1:8787`` for the local emulator. Then::

    python pipelines/cargo_pipeline.py

loads runs, batches, spans and records into ``cargo_pipeline.duckdb`` (dataset ``cargo``) in the
working directory; run it again for an incremental sync. ``dlt pipeline cargo_pipeline info``
shows what it did. For another warehouse, change ``destination`` (and configure its credentials
the dlt way). ``cargo-elt sync`` runs the same source with input checks and a per-table report.
"""

from __future__ import annotations

import dlt
from dlt.common.pipeline import LoadInfo

from cargo_elt.source import cargo_source

PIPELINE_NAME = "cargo_pipeline"
"""Also the DuckDB file's name: keep it different from the dataset's (DuckDB's catalog vs schema)."""

DATASET_NAME = "cargo"


def load_cargo(destination: str = "duckdb", dataset_name: str = DATASET_NAME) -> LoadInfo:
    """One sync of every configured Cargo table; incremental after the first run."""
    pipeline = dlt.pipeline(pipeline_name=PIPELINE_NAME, destination=destination, dataset_name=dataset_name)
    load_info = pipeline.run(cargo_source())
    load_info.raise_on_failed_jobs()
    return load_info


if __name__ == "__main__":
    print(load_cargo())
