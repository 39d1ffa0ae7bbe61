"""``POST /v1/orchestration/query`` over real HTTP: shape, caps, denials, isolation, concurrency."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import FIXED_NOW

Api = Callable[..., httpx.Client]


def query(client: httpx.Client, sql: str) -> httpx.Response:
    return client.post("/orchestration/query", json={"query": sql})


def error_of(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    message = response.json()["errorMessage"]
    assert isinstance(message, str)
    return message


def test_success_shape_uses_json_numbers_and_clickhouse_labels(api: Api) -> None:
    response = query(api(), "SELECT count(), max(created_at) AS last, toUInt64(1) AS one FROM runs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    rows = response.json()["rows"]
    assert len(rows) == 1
    assert isinstance(rows[0]["count()"], int) and rows[0]["count()"] > 0
    assert rows[0]["one"] == 1
    assert rows[0]["last"] < FIXED_NOW.strftime("%Y-%m-%d %H:%M:%S.000"), "the data ends before the virtual now"


def test_clock_functions_read_the_emulators_virtual_clock(api: Api) -> None:
    """``now()`` & co. are the emulator's clock (FIXED_NOW), not this machine's, in every form."""
    sql = (
        "SELECT now() AS a, NOW() AS b, now('UTC') AS c, now64(3) AS d, toString(now64(6, 'UTC')) AS e, "
        "today() AS f, yesterday() AS g, toStartOfDay(now()) AS h, CURRENT_TIMESTAMP AS i, current_date AS j, "
        "toUnixTimestamp64Milli(now64(3)) AS k, toTypeName(now64(3)) AS l, toTypeName(now('UTC')) AS m, "
        "'now()' AS n, dateDiff('day', toDateTime('2026-10-01 12:00:00', 'UTC'), now()) AS o"
    )
    row = query(api(), sql).json()["rows"][0]
    assert row == {
        "a": "2026-11-01 12:00:00", "b": "2026-11-01 12:00:00", "c": "2026-11-01 12:00:00",
        "d": "2026-11-01 12:00:00.000", "e": "2026-11-01 12:00:00.000000", "f": "2026-11-01", "g": "2026-10-31",
        "h": "2026-11-01 00:00:00", "i": "2026-11-01 12:00:00", "j": "2026-11-01",
        "k": int(FIXED_NOW.timestamp() * 1000), "l": "DateTime64(3)", "m": "DateTime('UTC')", "n": "now()", "o": 31,
    }  # fmt: skip


def test_the_last_day_by_now_is_the_last_day_of_generated_data(api: Api) -> None:
    """Cargo's advice, ``created_at > now() - INTERVAL 1 DAY``, sees exactly the data's last day."""
    last_day = query(api(), "SELECT count() AS n FROM runs WHERE created_at > now() - INTERVAL 1 DAY").json()
    literal = query(
        api(), "SELECT count() AS n FROM runs WHERE created_at > toDateTime64('2026-10-31 12:00:00', 3, 'UTC')"
    ).json()
    assert last_day == literal and last_day["rows"][0]["n"] > 0


def test_empty_result_is_an_empty_rows_array(api: Api) -> None:
    response = query(api(), "SELECT uuid FROM runs WHERE 0")
    assert response.json() == {"rows": []}


def test_select_star_on_runs_hits_the_column_cap_like_cargo(api: Api) -> None:
    message = error_of(query(api(), "SELECT * FROM runs LIMIT 1"))
    assert message.startswith("Code: 161. DB::Exception: ")
    assert "Requested: 51, maximum: 50" in message


@pytest.mark.parametrize("table", ["batches", "spans", "records"])
def test_select_star_fits_on_the_other_tables(api: Api, table: str) -> None:
    response = query(api(), f"SELECT * FROM {table} LIMIT 1")
    assert response.status_code == 200, response.text
    assert len(response.json()["rows"]) == 1


def test_result_cap_throws_396(api: Api) -> None:
    message = error_of(query(api(), "SELECT uuid, i FROM runs ARRAY JOIN range(100) AS i"))
    assert message.startswith("Code: 396.")
    assert "Limit for result exceeded, max rows: 10.00 thousand" in message


def test_a_query_refused_while_running_leaves_no_output_for_the_next_one(api: Api) -> None:
    """chDB hands what a failed UNION ALL had produced to the connection's next query; the emulator
    replaces such a connection (the next query would otherwise answer a syntax error about ``{"x":0}``)."""
    branch = "SELECT arrayJoin(range(10)) AS x FROM (SELECT 1 FROM spans LIMIT 100)"
    client = api()
    message = error_of(query(client, "SELECT x FROM (" + " UNION ALL ".join([branch] * 11) + ")"))
    assert message.startswith("Code: 396.")
    for number in range(10):  # more than a workspace's pooled connections, each answering its own query
        response = query(client, f"SELECT {number} AS n")
        assert response.status_code == 200, response.text
        assert response.json() == {"rows": [{"n": number}]}


def test_subquery_depth_cap_is_162(api: Api) -> None:
    sql = "SELECT 1 FROM (SELECT 1 FROM (SELECT 1 FROM (SELECT 1 FROM (SELECT 1 FROM (SELECT 1 FROM (SELECT 1))))))"
    assert error_of(query(api(), sql)).startswith("Code: 162. DB::Exception: Too deep subqueries. Maximum: 5")


@pytest.mark.parametrize(
    ("sql", "code", "fragment"),
    [
        ("SELECT nope FROM runs", 47, "Unknown expression identifier"),
        ("SELECT count() FROM orchestration.spans", 60, "Table orchestration.spans does not exist"),
        ("SELECT count() FROM nowhere", 60, "nowhere"),
        ("SELECT count( FROM runs", 62, "Syntax error"),
        ("SELECT 1; SELECT 2", 62, "Multi-statements are not allowed"),
        ("SELECT count() FROM numbers(10)", 497, "Not enough privileges"),
        ("SELECT * FROM file('/etc/passwd')", 497, "Not enough privileges"),
        ("SELECT * FROM url('http://127.0.0.1/', CSV)", 497, "Not enough privileges"),
        ("SELECT * FROM merge('.*', 'runs')", 497, "Not enough privileges"),
        ("SELECT * FROM remote('127.0.0.1', 'system', 'one')", 497, "Not enough privileges"),
        ("SELECT name FROM system.tables", 497, "Not enough privileges"),
        ("SELECT dictGet('d', 'x', toUInt64(1))", 497, "Not enough privileges"),
        ("SELECT 1 FROM runs WHERE uuid IN (SELECT uuid FROM system.one)", 497, "Not enough privileges"),
        ("SELECT count() FROM runs SETTINGS max_result_rows = 1000000", 164, "readonly"),
        ("INSERT INTO runs (uuid) VALUES (generateUUIDv4())", 164, "readonly"),
        ("DROP TABLE runs", 164, "readonly"),
        ("ALTER TABLE runs DELETE WHERE 1", 164, "readonly"),
        ("CREATE TABLE x (a Int8) ENGINE = Memory", 164, "readonly"),
        ("SELECT 1 FORMAT CSV", 497, "Not enough privileges"),
        ("SHOW TABLES", 164, "readonly"),
    ],
)
def test_errors_carry_clickhouse_codes(api: Api, sql: str, code: int, fragment: str) -> None:
    message = error_of(query(api(), sql))
    assert message.startswith(f"Code: {code}. DB::Exception: "), message
    assert fragment in message


def test_another_workspace_database_is_unreachable(api: Api, emulator: object) -> None:
    from cargo_elt.emulator.schema import workspace_database

    state = emulator.state  # type: ignore[attr-defined]
    other_db = workspace_database(state.store.namespace, state.workspaces[1].uuid)
    for sql in (
        f"SELECT count() FROM {other_db}.runs",
        f"SELECT count() FROM runs WHERE uuid IN {other_db}.runs",
        f"SELECT count() FROM {state.store.database}.runs",
        f"SELECT count() FROM `{other_db}`.`runs`",
    ):
        message = error_of(query(api(), sql))
        assert message.startswith(("Code: 60.", "Code: 497.")), message


ISOLATION_SHAPES = [
    "SELECT workspace_uuid AS w FROM runs",
    "SELECT workspace_uuid AS w FROM (SELECT * FROM spans)",
    "WITH r AS (SELECT workspace_uuid FROM batches) SELECT workspace_uuid AS w FROM r",
    "SELECT r.workspace_uuid AS w FROM runs AS r INNER JOIN spans AS s ON s.run_uuid = r.uuid",
    "SELECT workspace_uuid AS w FROM runs UNION ALL SELECT workspace_uuid FROM records",
    "SELECT workspace_uuid AS w FROM spans WHERE run_uuid IN (SELECT uuid FROM runs)",
    "SELECT workspace_uuid AS w FROM runs ARRAY JOIN executions.node_slug AS slug",
    "SELECT workspace_uuid AS w FROM runs WHERE workspace_uuid != toUUID('00000000-0000-0000-0000-000000000000')",
    "WITH runs AS (SELECT workspace_uuid FROM batches) SELECT workspace_uuid AS w FROM runs",
    "SELECT any(workspace_uuid) AS w FROM records GROUP BY workflow_uuid",
]


@pytest.mark.parametrize("shape", ISOLATION_SHAPES)
def test_every_sql_shape_sees_only_the_callers_workspace(api: Api, emulator: object, shape: str) -> None:
    workspaces = emulator.state.workspaces  # type: ignore[attr-defined]
    for index, ws in enumerate(workspaces):
        response = query(api(index), f"SELECT DISTINCT w FROM ({shape}) LIMIT 100")
        assert response.status_code == 200, response.text
        seen = {row["w"] for row in response.json()["rows"]}
        assert seen == {ws.uuid}


def test_counts_per_workspace_match_the_stored_rows(api: Api, emulator: object) -> None:
    state = emulator.state  # type: ignore[attr-defined]
    for index, ws in enumerate(state.workspaces):
        for table in ("runs", "batches", "spans", "records"):
            stored = state.store.scalar(
                f"SELECT count() FROM {state.store.table(table)} FINAL WHERE workspace_uuid = toUUID('{ws.uuid}')"
            )
            served = query(api(index), f"SELECT count() AS n FROM {table}").json()["rows"][0]["n"]
            assert served == stored > 0


def test_concurrent_queries_are_all_answered_correctly(api: Api, emulator: object) -> None:
    clients = [api(i % 2) for i in range(8)]
    expected = [query(c, "SELECT count() AS n, sum(credits_used_count) AS c FROM spans").json() for c in clients[:2]]

    def ask(i: int) -> tuple[int, dict[str, object]]:
        client = clients[i % 8]
        return i % 2, query(client, "SELECT count() AS n, sum(credits_used_count) AS c FROM spans").json()

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(ask, range(48)))
    for ws_index, body in answers:
        assert body == expected[ws_index]


def test_payload_validation_is_zod_shaped(api: Api) -> None:
    client = api()
    missing = client.post("/orchestration/query", json={})
    issues = json.loads(error_of(missing))
    assert issues[0]["code"] == "invalid_type" and issues[0]["path"] == ["query"]
    extra = client.post("/orchestration/query", json={"query": "SELECT 1", "format": "csv"})
    issues = json.loads(error_of(extra))
    assert issues[0]["code"] == "unrecognized_keys" and issues[0]["keys"] == ["format"]


@pytest.mark.parametrize("token", ["", "crg_not_a_token"])
def test_unknown_or_missing_token_is_401(api: Api, token: str) -> None:
    response = query(api(token=token), "SELECT 1")
    assert response.status_code == 401
    assert response.json() == {"errorMessage": "Unauthorized"}


def test_selected_workspace_header_must_match_the_token(api: Api, emulator: object) -> None:
    other = emulator.state.workspaces[1].uuid  # type: ignore[attr-defined]
    response = api().post(
        "/orchestration/query", json={"query": "SELECT 1"}, headers={"selected-workspace-uuid": other}
    )
    assert response.status_code == 403


@pytest.fixture(scope="module")
def capped_emulator() -> Iterator[object]:
    """A second emulator whose scan and time caps are lowered, to reach them on tiny data."""
    from cargo_elt.emulator.server import EmulatorOptions, running_emulator

    options = EmulatorOptions(
        port=0,
        seed=3,
        scale="tiny",
        workspaces=1,
        now=FIXED_NOW,
        cap_overrides={"max_rows_to_read": 100, "max_execution_time": 1},
    )
    with running_emulator(options) as running:
        yield running


def _capped_client(capped: object) -> httpx.Client:
    ws = capped.state.workspaces[0]  # type: ignore[attr-defined]
    return httpx.Client(
        base_url=capped.base_url + "/v1",
        headers={"authorization": f"Bearer {ws.token}"},
        timeout=60,  # type: ignore[attr-defined]
    )


def test_scan_cap_is_158(capped_emulator: object) -> None:
    with _capped_client(capped_emulator) as client:
        message = error_of(query(client, "SELECT count() FROM spans"))
    assert message.startswith("Code: 158. DB::Exception: Limit for rows (controlled by 'max_rows_to_read' setting)")


def test_time_cap_is_159(capped_emulator: object) -> None:
    with _capped_client(capped_emulator) as client:
        heavy = (
            "SELECT count() FROM (SELECT arrayJoin(range(20000)) AS a) AS x "
            "CROSS JOIN (SELECT arrayJoin(range(20000)) AS b) AS y WHERE sipHash64(a, b) % 7 = 3"
        )
        message = error_of(query(client, heavy))
    assert message.startswith("Code: 159. DB::Exception: Timeout exceeded")


def test_truncation_switch_returns_at_most_a_block_over_the_cap(emulator: object, api: Api) -> None:
    base = emulator.base_url  # type: ignore[attr-defined]
    httpx.post(f"{base}/_emulator/settings", json={"truncateResults": True}).raise_for_status()
    try:
        response = query(api(), "SELECT uuid, i FROM runs ARRAY JOIN range(100) AS i")
        assert response.status_code == 200
        assert 10_000 <= len(response.json()["rows"]) < 100 * 10_000
    finally:
        httpx.post(f"{base}/_emulator/settings", json={"truncateResults": False}).raise_for_status()
    assert query(api(), "SELECT uuid, i FROM runs ARRAY JOIN range(100) AS i").status_code == 400


def test_query_log_lists_served_queries_and_the_emulator_cpu_time(emulator: object, api: Api) -> None:
    """The benchmarks read this log: which queries were served, and how much CPU the server spent."""
    base = emulator.base_url  # type: ignore[attr-defined]
    cleared = httpx.delete(f"{base}/_emulator/queries").json()
    assert cleared["cleared"] is True
    sql = "SELECT sum(cityHash64(uuid, i)) AS h FROM runs ARRAY JOIN range(200) AS i"
    assert query(api(), sql).status_code == 200
    log = httpx.get(f"{base}/_emulator/queries").json()
    assert [(q["sql"], q["outcome"]) for q in log["queries"]] == [(sql, "ok")]
    assert log["cpu_seconds"] > cleared["cpu_seconds"]
