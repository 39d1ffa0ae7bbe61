"""Warehouse table layouts for the Cargo source: BigQuery partitioning/clustering, Snowflake cluster keys.

The four orchestration tables are fact tables that grow by time and are queried by time range and by
workflow (see ``pipelines/demo.py``: error rates and credits per ``workflow_uuid``, the slowest
``node_slug``). A warehouse engineer expects them laid out for that:

* **BigQuery** (through dlt's ``bigquery_adapter``): partitioned by day on the table's time column
  (``PARTITION BY DATE(created_at)``), so a time filter prunes partitions, and clustered by
  ``workflow_uuid`` then the column the demo groups or filters by. The partition column is never also a
  cluster column: dlt#3471 drops the partition when one column is both. dlt#3377 (an ``ALTER ...
  PARTITION BY`` on schema evolution) does not hit dlt 1.31, which emits partition and cluster
  clauses only in ``CREATE TABLE``; ``tests/unit/test_warehouse_hints.py`` checks both.
* **Snowflake** (through dlt's ``cluster`` column hint): a clustering key of ``workflow_uuid`` and the
  time column. dlt builds ``CLUSTER BY (...)`` from the hinted columns *in table column order*, which
  is ``workflow_uuid`` (lower cardinality) before the time column for all four tables, the order
  Snowflake recommends.

Applying a layout only adds hints to the resources; it never changes what is read or loaded, and
``bigquery_adapter`` itself needs no Google libraries (only loading into BigQuery does).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from dlt.common.schema.typing import TTableSchemaColumns
from dlt.extract.source import DltSource

from .specs import TABLE_SPECS

__all__ = [
    "BIGQUERY_LAYOUTS",
    "SNOWFLAKE_CLUSTER_KEYS",
    "WAREHOUSE_DESTINATIONS",
    "BigQueryLayout",
    "apply_bigquery_layout",
    "apply_snowflake_layout",
    "apply_warehouse_layout",
]


@dataclass(frozen=True)
class BigQueryLayout:
    """How one table is laid out in BigQuery: a DAY partition column and ordered cluster columns."""

    partition: str
    cluster: tuple[str, ...]

    def __post_init__(self) -> None:
        # dlt#3471: bigquery_adapter loses the partition when its column is also clustered.
        if self.partition in self.cluster:
            raise ValueError(f"{self.partition!r} cannot be both the partition and a cluster column (dlt#3471)")
        if not 1 <= len(self.cluster) <= 4:
            raise ValueError("BigQuery clusters by one to four columns")


BIGQUERY_LAYOUTS: Final[Mapping[str, BigQueryLayout]] = {
    "runs": BigQueryLayout(TABLE_SPECS["runs"].time_column, ("workflow_uuid", "status")),
    "batches": BigQueryLayout(TABLE_SPECS["batches"].time_column, ("workflow_uuid", "status")),
    "spans": BigQueryLayout(TABLE_SPECS["spans"].time_column, ("workflow_uuid", "node_slug", "execution_status")),
    "records": BigQueryLayout(TABLE_SPECS["records"].time_column, ("workflow_uuid", "status")),
}
"""Per table: partition by day on its time column, cluster by workflow then what the demo filters on."""

SNOWFLAKE_CLUSTER_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    name: ("workflow_uuid", spec.time_column) for name, spec in TABLE_SPECS.items()
}
"""Per table: the columns of its Snowflake clustering key (dlt emits them in table column order)."""

WAREHOUSE_DESTINATIONS: Final = frozenset({"bigquery", "snowflake"})
"""Destinations ``apply_warehouse_layout`` knows a layout for; any other is left untouched."""


def apply_bigquery_layout(source: DltSource) -> DltSource:
    """Partition and cluster the source's fact tables for BigQuery (in place; returns the source).

    Only the resources present in the source (``tables=...``) are touched.
    """
    from dlt.destinations.adapters import bigquery_adapter

    for name, resource in source.resources.items():
        layout = BIGQUERY_LAYOUTS.get(name)
        if layout is not None:
            bigquery_adapter(resource, partition=layout.partition, cluster=list(layout.cluster))
    return source


def apply_snowflake_layout(source: DltSource) -> DltSource:
    """Give the source's fact tables a Snowflake clustering key via dlt's ``cluster`` hints (in place)."""
    for name, resource in source.resources.items():
        keys = SNOWFLAKE_CLUSTER_KEYS.get(name)
        if keys is None:
            continue
        # apply_hints merges these into the resource's existing column hints (types, dedup_sort, ...)
        columns: TTableSchemaColumns = {key: {"name": key, "cluster": True} for key in keys}
        resource.apply_hints(columns=columns)
    return source


def apply_warehouse_layout(source: DltSource, destination: str) -> DltSource:
    """The layout for ``destination`` (a dlt destination type such as ``bigquery``); others are untouched."""
    if destination == "bigquery":
        return apply_bigquery_layout(source)
    if destination == "snowflake":
        return apply_snowflake_layout(source)
    return source
