"""Warehouse layouts offline: the hints in dlt's schema and the DDL dlt would send to BigQuery and Snowflake.

The DDL is rendered by dlt's own job clients (``_get_table_update_sql``, as dlt's
``tests/load/bigquery/test_bigquery_table_builder.py`` does) with placeholder credentials: building
the SQL opens no connection. A live BigQuery load runs only when BigQuery credentials are configured.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from typing import Any, cast

import pytest
from dlt.common.libs.pyarrow import py_arrow_to_table_schema_columns
from dlt.common.schema import Schema
from dlt.common.schema.utils import merge_columns

from cargo_elt.source import FACT_TABLES, cargo_source
from cargo_elt.source.descriptions import describe
from cargo_elt.source.specs import TABLE_SPECS
from cargo_elt.source.warehouse import (
    BIGQUERY_LAYOUTS,
    SNOWFLAKE_CLUSTER_KEYS,
    BigQueryLayout,
    apply_bigquery_layout,
    apply_snowflake_layout,
    apply_warehouse_layout,
)

UNREACHABLE = "http://127.0.0.1:9"
"""The source is only built, never read: no request is made to this URL."""


def _source() -> Any:
    return cargo_source(api_token="offline-token", base_url=UNREACHABLE, tables=list(FACT_TABLES))


def _schema(source: Any) -> Schema:
    """A dlt schema holding the source's tables as a load would create them: arrow types plus hints.

    The column order is the arrow schema's, as after a real extract (dlt re-adds a hinted column when
    the data completes it), which is the order dlt emits Snowflake cluster keys in.
    """
    schema = Schema("cargo")
    for name, resource in source.resources.items():
        table = resource.compute_table_schema()
        columns = py_arrow_to_table_schema_columns(TABLE_SPECS[name].arrow_schema())
        table["columns"] = merge_columns(columns, table["columns"])
        schema.update_table(table)
    return schema


# -- hints in the dlt schema ----------------------------------------------------------------------


def test_bigquery_hints_partition_by_time_and_cluster_by_workflow() -> None:
    source = apply_bigquery_layout(_source())
    expected_time = {"runs": "created_at", "batches": "created_at", "spans": "execution_started_at"}
    expected_time["records"] = "created_at"
    for name in FACT_TABLES:
        table = source.resources[name].compute_table_schema()
        partitioned = [c for c, h in table["columns"].items() if h.get("x-bigquery-partition")]
        assert partitioned == [expected_time[name]], name
        cluster = cast(list[str] | None, table.get("x-bigquery-cluster-columns"))
        assert cluster is not None and cluster[0] == "workflow_uuid", name
        assert expected_time[name] not in cluster, f"{name}: partition column clustered too (dlt#3471)"
        # the layout adds hints only: merge keys and dedup_sort are still there
        assert table["write_disposition"] == "merge"
        assert table["columns"][TABLE_SPECS[name].update_column].get("dedup_sort") == "desc"
    spans = source.resources["spans"].compute_table_schema()
    assert spans.get("x-bigquery-cluster-columns") == ["workflow_uuid", "node_slug", "execution_status"]


def test_snowflake_hints_cluster_on_workflow_and_time() -> None:
    source = apply_snowflake_layout(_source())
    schema = _schema(source)
    for name in FACT_TABLES:
        table = source.resources[name].compute_table_schema()
        clustered = {c for c, h in table["columns"].items() if h.get("cluster")}
        assert clustered == set(SNOWFLAKE_CLUSTER_KEYS[name])
        assert table["columns"][TABLE_SPECS[name].time_column]["nullable"] is False  # kept from the spec
        in_order = [c for c, h in schema.get_table_columns(name).items() if h.get("cluster")]
        assert in_order == ["workflow_uuid", TABLE_SPECS[name].time_column], name


def test_layout_only_for_known_warehouses_and_only_selected_tables() -> None:
    duck = apply_warehouse_layout(_source(), "duckdb")
    for resource in duck.resources.values():
        table = resource.compute_table_schema()
        assert not any(h.get("cluster") or h.get("x-bigquery-partition") for h in table["columns"].values())
    only_runs = apply_warehouse_layout(cargo_source(api_token="t", base_url=UNREACHABLE, tables=["runs"]), "bigquery")
    assert list(only_runs.resources) == ["runs"]
    with pytest.raises(ValueError, match="dlt#3471"):
        BigQueryLayout("created_at", ("workflow_uuid", "created_at"))
    assert set(BIGQUERY_LAYOUTS) == set(FACT_TABLES) == set(SNOWFLAKE_CLUSTER_KEYS)


# -- DDL dlt would issue --------------------------------------------------------------------------


@pytest.fixture()
def bigquery_client() -> Iterator[Any]:
    pytest.importorskip("google.cloud.bigquery", reason="the `bigquery` extra is not installed")
    import dlt
    from dlt.destinations.impl.bigquery.configuration import BigQueryClientConfiguration

    schema = _schema(apply_bigquery_layout(_source()))
    credentials: Any = {"project_id": "offline-project", "client_email": "dlt@offline.test", "private_key": "none"}
    factory = dlt.destinations.bigquery(credentials=credentials, location="EU")
    yield factory.client(schema, BigQueryClientConfiguration()._bind_dataset_name(dataset_name="cargo"))


def test_bigquery_create_table_ddl(bigquery_client: Any) -> None:
    for name in FACT_TABLES:
        columns = list(bigquery_client.schema.get_table_columns(name).values())
        (create,) = bigquery_client._get_table_update_sql(name, columns, generate_alter=False)
        layout = BIGQUERY_LAYOUTS[name]
        assert create.startswith(f"CREATE TABLE `offline-project`.`cargo`.`{name}`")
        assert f"PARTITION BY DATE(`{layout.partition}`)" in create, create
        assert create.rstrip().endswith("CLUSTER BY " + ", ".join(f"`{c}`" for c in layout.cluster)), create
        assert re.search(rf"`{layout.partition}` TIMESTAMP\s+NOT NULL", create)


def test_bigquery_columns_carry_the_data_dictionary(bigquery_client: Any) -> None:
    columns = list(bigquery_client.schema.get_table_columns("spans").values())
    (create,) = bigquery_client._get_table_update_sql("spans", columns, generate_alter=False)
    for column in ("execution_credits_used_count", "record_title"):  # the second holds an apostrophe
        meaning = (describe("spans", column) or "").replace("'", "\\'")
        assert meaning and f"OPTIONS (description='{meaning}')" in create.split(f"`{column}`")[1].split("\n")[0]


def test_bigquery_schema_evolution_ddl_never_touches_partition(bigquery_client: Any) -> None:
    """dlt#3377: an ALTER on a partitioned table must not repeat PARTITION BY / CLUSTER BY."""
    new_column = {"name": "added_later", "data_type": "text", "nullable": True}
    statements = bigquery_client._get_table_update_sql("runs", [new_column], generate_alter=True)
    assert not any("PARTITION" in s or "CLUSTER" in s for s in statements)
    assert [s.rstrip() for s in statements] == [
        "ALTER TABLE `offline-project`.`cargo`.`runs`\nADD COLUMN `added_later` STRING"
    ]


def test_snowflake_create_and_alter_ddl() -> None:
    pytest.importorskip("snowflake.connector", reason="the `snowflake` extra is not installed")
    import dlt
    from dlt.destinations.impl.snowflake.configuration import SnowflakeClientConfiguration

    schema = _schema(apply_snowflake_layout(_source()))
    factory = dlt.destinations.snowflake(credentials="snowflake://user:password@offline-account/CARGO_DB")
    client = factory.client(schema, SnowflakeClientConfiguration()._bind_dataset_name(dataset_name="cargo"))
    for name in FACT_TABLES:
        columns = list(schema.get_table_columns(name).values())
        create = client._get_table_update_sql(name, columns, generate_alter=False)[0]
        time_column = TABLE_SPECS[name].time_column.upper()
        assert create.startswith(f'CREATE TABLE "CARGO"."{name.upper()}"'), create
        assert create.rstrip().endswith(f'CLUSTER BY ("WORKFLOW_UUID","{time_column}")'), create
        meaning = (describe(name, TABLE_SPECS[name].update_column) or "").replace("'", "''")
        assert meaning and f"COMMENT '{meaning}'" in create, create  # the data dictionary, as column comments
    alter = client._get_table_update_sql("spans", [{"name": "added_later", "data_type": "text"}], generate_alter=True)
    # dlt re-states the clustering key on every ALTER; it must still be the same key
    assert alter[-1] == 'ALTER TABLE "CARGO"."SPANS"\nCLUSTER BY ("WORKFLOW_UUID","EXECUTION_STARTED_AT")'


# -- live BigQuery (only with credentials) -----------------------------------------------------------


def _bigquery_configured() -> bool:
    keys = (
        "DESTINATION__BIGQUERY__CREDENTIALS__PROJECT_ID",
        "DESTINATION__BIGQUERY__CREDENTIALS",
        "GOOGLE_APPLICATION_CREDENTIALS",
    )
    return any(os.environ.get(key) for key in keys)


@pytest.mark.skipif(
    not _bigquery_configured(),
    reason="live BigQuery load: set DESTINATION__BIGQUERY__CREDENTIALS__* (or GOOGLE_APPLICATION_CREDENTIALS) to run",
)
def test_live_bigquery_load_is_partitioned_clustered_and_exact(tmp_path: Any) -> None:
    pytest.importorskip("google.cloud.bigquery", reason="the `bigquery` extra is not installed")
    import dlt

    from cargo_elt.emulator.server import EmulatorOptions, running_emulator

    dataset = f"cargo_test_{uuid.uuid4().hex[:8]}"
    options = EmulatorOptions(port=0, seed=3, scale="tiny", workspaces=1, admin=True)
    with running_emulator(options) as emulator:
        token = emulator.state.workspaces[0].token
        source = apply_bigquery_layout(
            cargo_source(api_token=token, base_url=emulator.base_url, start_date="2026-01-01", tables=["runs", "spans"])
        )
        pipeline = dlt.pipeline(
            "cargo_bq_live", destination="bigquery", dataset_name=dataset, pipelines_dir=str(tmp_path)
        )
        try:
            pipeline.run(source).raise_on_failed_jobs()
            with pipeline.destination_client() as client:
                native = client.sql_client.native_connection  # type: ignore[attr-defined]
                for name in ("runs", "spans"):
                    table = native.get_table(client.sql_client.make_qualified_table_name(name, quote=False))  # type: ignore[attr-defined]
                    assert table.time_partitioning.type_ == "DAY"
                    assert table.time_partitioning.field == BIGQUERY_LAYOUTS[name].partition
                    assert tuple(table.clustering_fields) == BIGQUERY_LAYOUTS[name].cluster
            from tests.e2e.support import Sandbox

            truth = Sandbox(tmp_path, emulator)
            counts = dict(pipeline.dataset().row_counts(table_names=["runs", "spans"]).fetchall())
            assert counts == {name: len(truth.truth_rows(name)) for name in ("runs", "spans")}
        finally:
            with pipeline.sql_client() as sql:
                sql.drop_dataset()
