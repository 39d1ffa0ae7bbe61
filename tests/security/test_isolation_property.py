"""Workspace isolation of ``orchestration/query`` under random SQL shapes (hypothesis, derandomized).

Each example is a query built from a small grammar: the four tables, subqueries, CTEs (one shadowing a
table name), joins, UNION / INTERSECT / EXCEPT, ``arrayJoin``, ``IN`` subqueries, table functions,
qualified names of other databases, and SETTINGS clauses. It runs, over real HTTP, as each of the two
workspaces. The property: an answer is either refused with a ClickHouse error, or every row it holds
belongs to the caller; no value of the other workspace (its uuid, its run, batch or record keys)
appears anywhere in the body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TABLES = ("runs", "batches", "spans", "records")
KEY_OF = {"runs": "uuid", "batches": "uuid", "spans": "run_uuid", "records": "workflow_uuid"}
"""A key column of each table whose values identify the workspace's rows."""

Api = Callable[..., httpx.Client]


def _source(table: str, other_db: str, store_db: str) -> st.SearchStrategy[str]:
    """A FROM item producing columns ``w`` (workspace uuid) and ``k`` (a row key)."""
    key = KEY_OF[table]
    plain = f"(SELECT workspace_uuid AS w, toString({key}) AS k FROM {table})"
    return st.sampled_from(
        [
            plain,
            f"(SELECT workspace_uuid AS w, toString({key}) AS k FROM {table} FINAL)",
            f"(SELECT w, k FROM {plain} WHERE w != toUUID('00000000-0000-0000-0000-000000000000'))",
            f"(SELECT workspace_uuid AS w, toString({key}) AS k FROM {table} WHERE 1 = 1 OR 1 = 1)",
            f"(SELECT workspace_uuid AS w, toString(arrayJoin([{key}, {key}])) AS k FROM {table})",
            f"(SELECT workspace_uuid AS w, toString({key}) AS k FROM {other_db}.{table})",
            f"(SELECT workspace_uuid AS w, toString({key}) AS k FROM {store_db}.{table})",
            f"(SELECT workspace_uuid AS w, toString({key}) AS k FROM `{other_db}`.`{table}`)",
            f"(SELECT workspace_uuid AS w, toString({key}) AS k FROM merge('{other_db}', '.*'))",
            f"(SELECT workspace_uuid AS w, toString({key}) AS k FROM merge(REGEXP('.*'), '{table}'))",
            f"(SELECT workspace_uuid AS w, toString({key}) AS k FROM remote('127.0.0.1', '{store_db}', '{table}'))",
            f"(SELECT workspace_uuid AS w, toString({key}) AS k FROM cluster('default', '{store_db}', '{table}'))",
            f"(SELECT workspace_uuid AS w, toString({key}) AS k FROM view(SELECT * FROM {store_db}.{table}))",
            "(SELECT toUUID(toString(number)) AS w, toString(number) AS k FROM numbers(3))",
            f"(SELECT workspace_uuid AS w, toString({key}) AS k FROM {table} SETTINGS readonly = 0)",
            "(SELECT name AS w, name AS k FROM system.databases)",
            f"(SELECT database AS w, name AS k FROM system.tables WHERE database = '{other_db}')",
            f"(SELECT toUUID(joinGet('{other_db}.{table}', 'workspace_uuid', 1)) AS w, '' AS k)",
            f"(SELECT * FROM (SELECT workspace_uuid AS w, toString({key}) AS k FROM {table}) AS inner_q)",
        ]
    )


def _query(other_db: str, store_db: str) -> st.SearchStrategy[str]:
    sources = st.sampled_from(TABLES).flatmap(lambda t: _source(t, other_db, store_db))

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        pair = st.tuples(inner, inner)
        return st.one_of(
            inner.map(lambda q: f"(SELECT w, k FROM {q} AS s)"),
            inner.map(lambda q: f"(WITH c AS (SELECT w, k FROM {q}) SELECT w, k FROM c)"),
            st.tuples(inner, st.sampled_from(TABLES)).map(
                lambda a: f"(WITH {a[1]} AS (SELECT w, k FROM {a[0]}) SELECT w, k FROM {a[1]})"
            ),
            pair.map(lambda p: f"(SELECT a.w AS w, b.k AS k FROM {p[0]} AS a INNER JOIN {p[1]} AS b ON a.w = b.w)"),
            pair.map(lambda p: f"(SELECT a.w AS w, b.k AS k FROM {p[0]} AS a LEFT JOIN {p[1]} AS b ON a.k = b.k)"),
            pair.map(lambda p: f"(SELECT a.w AS w, a.k AS k FROM {p[0]} AS a CROSS JOIN {p[1]} AS b LIMIT 50)"),
            pair.map(lambda p: f"(SELECT w, k FROM {p[0]} UNION ALL SELECT w, k FROM {p[1]})"),
            pair.map(lambda p: f"(SELECT w, k FROM {p[0]} UNION DISTINCT SELECT w, k FROM {p[1]})"),
            pair.map(lambda p: f"(SELECT w, k FROM {p[0]} EXCEPT SELECT w, k FROM {p[1]})"),
            pair.map(lambda p: f"(SELECT w, k FROM {p[0]} INTERSECT SELECT w, k FROM {p[1]})"),
            pair.map(lambda p: f"(SELECT w, k FROM {p[0]} WHERE k IN (SELECT k FROM {p[1]}))"),
            pair.map(lambda p: f"(SELECT w, k FROM {p[0]} WHERE k GLOBAL IN (SELECT k FROM {p[1]}))"),
            inner.map(lambda q: f"(SELECT any(w) AS w, k FROM {q} GROUP BY k)"),
            inner.map(lambda q: f"(SELECT w, arrayJoin(groupArray(k)) AS k FROM {q} GROUP BY w)"),
        )

    return st.recursive(sources, extend, max_leaves=3)


@pytest.fixture(scope="module")
def fixture_facts(emulator: Any) -> dict[str, Any]:
    """Both workspaces: their uuids and every key value of theirs (read on the admin side)."""
    from cargo_elt.emulator.schema import workspace_database

    state = emulator.state
    store = state.store
    keys: dict[str, set[str]] = {}
    for ws in state.workspaces:
        found: set[str] = set()
        for table, key in KEY_OF.items():
            rows = store.rows(
                f"SELECT DISTINCT toString({key}) AS k FROM {store.table(table)} "
                f"WHERE workspace_uuid = toUUID('{ws.uuid}')"
            )
            found |= {str(r["k"]) for r in rows}
        keys[ws.uuid] = found
    return {
        "uuids": [ws.uuid for ws in state.workspaces],
        "keys": keys,
        "dbs": [workspace_database(store.namespace, ws.uuid) for ws in state.workspaces],
        "store_db": store.database,
    }


def test_the_workspaces_do_not_share_keys(fixture_facts: dict[str, Any]) -> None:
    """The property below means something only if each workspace's keys are its own."""
    first, second = fixture_facts["uuids"]
    assert fixture_facts["keys"][first] and fixture_facts["keys"][second]
    assert not fixture_facts["keys"][first] & fixture_facts["keys"][second]


@settings(
    max_examples=70,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_shape_of_query_returns_another_workspaces_rows(
    api: Api, fixture_facts: dict[str, Any], data: st.DataObject
) -> None:
    uuids: list[str] = fixture_facts["uuids"]
    for caller in (0, 1):
        other = 1 - caller
        shape = data.draw(_query(fixture_facts["dbs"][other], fixture_facts["store_db"]), label=f"shape as {caller}")
        sql = f"SELECT DISTINCT toString(w) AS w, k FROM {shape} AS q LIMIT 2000"
        response = api(caller).post("/orchestration/query", json={"query": sql})
        problem = leak(
            response.status_code, response.text, uuids[caller], uuids[other], fixture_facts["keys"][uuids[other]]
        )
        assert problem is None, f"{problem}: {sql}"


def leak(status: int, text: str, caller: str, other: str, other_keys: set[str]) -> str | None:
    """What of the other workspace an answer shows, or None."""
    import orjson

    if other in text:
        return "the other workspace's uuid is in the answer"
    body = orjson.loads(text)
    if status != 200:
        return None if status == 400 and str(body.get("errorMessage", "")).startswith("Code: ") else f"HTTP {status}"
    rows = body["rows"]
    leaked = {str(r["k"]) for r in rows} & other_keys
    if leaked:
        return f"{len(leaked)} keys of the other workspace"
    strangers = {str(r["w"]) for r in rows} - {caller}
    return f"rows of {strangers}" if strangers else None


def test_the_leak_check_sees_a_leak(emulator: Any, fixture_facts: dict[str, Any]) -> None:
    """Rows of both workspaces (read on the admin side, no guard) are flagged; the caller's own are not."""
    import orjson

    first, second = fixture_facts["uuids"]
    store = emulator.state.store
    both = store.rows(
        f"SELECT toString(workspace_uuid) AS w, toString(uuid) AS k FROM {store.table('runs')} LIMIT 100000"
    )
    mine = [r for r in both if r["w"] == first]
    keys = fixture_facts["keys"][second]
    assert leak(200, orjson.dumps({"rows": both}).decode(), first, second, keys) is not None
    assert leak(200, orjson.dumps({"rows": mine}).decode(), first, second, keys) is None
    only_keys = [{"w": first, "k": r["k"]} for r in both if r["w"] == second][:1]
    assert leak(200, orjson.dumps({"rows": only_keys}).decode(), first, "none", keys) == "1 keys of the other workspace"
