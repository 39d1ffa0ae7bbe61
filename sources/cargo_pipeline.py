"""Cargo -> DuckDB as a plain dlt script: the way dlt users start (dlt's verified-source layout).

``dlt init cargo duckdb --location <a checkout of cargo-elt>`` copies this script and the source
(``sources/cargo/``, imported here as ``cargo``) into a dlt project; in a checkout it runs as is.

Put the token in ``.dlt/secrets.toml`` (``[sources.cargo] api_token = "..."``) or the environment
(``SOURCES__CARGO__API_TOKEN``); every other setting of ``[sources.cargo]`` in ``.dlt/config.toml``
(``base_url``, ``start_date``, ``tables``, ``concurrency``, ...) can also come from the environment,
e.g. ``SOURCES__CARGO__BASE_URL=http://127.0.0.1:8787`` for the local emulator. Then::

    python sources/cargo_pipeline.py      # or, in a dlt init project: python cargo_pipeline.py

loads runs, batches, spans and records into ``cargo_pipeline.duckdb`` (dataset ``cargo``) in the
working directory; run it again for an incremental sync. ``dlt pipeline cargo_pipeline info``
shows what it did. For another warehouse, change ``destination`` (and configure its credentials
the dlt way). ``cargo-elt sync`` runs the same source with input checks and a per-table report.
"""

from __future__ import annotations

import dlt
from dlt.common.pipeline import LoadInfo

from cargo import cargo_source


def load_cargo() -> LoadInfo:
    """One sync of every configured Cargo table into DuckDB; incremental after the first run.

    The pipeline's name is also the DuckDB file's: keep it different from the dataset's (DuckDB's
    catalog vs schema). ``dlt init`` rewrites ``destination`` for the warehouse you chose.
    """
    pipeline = dlt.pipeline(pipeline_name="cargo_pipeline", destination="duckdb", dataset_name="cargo")
    load_info = pipeline.run(cargo_source())
    load_info.raise_on_failed_jobs()
    return load_info


if __name__ == "__main__":
    print(load_cargo())
