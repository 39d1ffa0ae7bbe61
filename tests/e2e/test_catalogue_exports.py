"""The catalogue and export resources synced into a real DuckDB, checked against the emulator's API.

Truth here is what the emulator's own endpoints and SQL answer (lists, ``runs/{uuid}`` contexts,
``runs/metrics``), read independently of the source's code paths.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from cargo_elt.source.catalogue import DIMENSION_NAMES
from cargo_elt.source.client import CargoClient
from tests.conftest import FIXED_NOW
from tests.e2e.support import Sandbox

CATALOGUE = list(DIMENSION_NAMES)
EXPORTS = ["run_outputs", "batch_outputs", "run_metrics", "batch_failures"]


@pytest.fixture
def client(emulator: Any) -> Iterator[CargoClient]:
    with CargoClient(emulator.state.workspaces[0].token, base_url=emulator.base_url) as c:
        yield c


@pytest.fixture(scope="module")
def own_emulator() -> Iterator[Any]:
    """An emulator this module may change (entities removed, renamed); one workspace, tiny."""
    from cargo_elt.emulator.server import EmulatorOptions, running_emulator

    now = datetime(2026, 11, 1, 12, tzinfo=UTC)
    with running_emulator(EmulatorOptions(port=0, seed=7, scale="tiny", workspaces=1, admin=True, now=now)) as emu:
        yield emu


def _column(box: Sandbox, sql: str) -> list[Any]:
    with box.db() as con:
        return [row[0] for row in con.execute(sql).fetchall()]


def test_catalogue_equals_the_api_lists(emulator: Any, client: CargoClient, tmp_path: Path) -> None:
    box = Sandbox(tmp_path, emulator)
    box.sync(tables=CATALOGUE)
    lists = {
        "workflows": ("orchestration/workflows/list", "workflows"),
        "plays": ("orchestration/plays/list", "plays"),
        "tools": ("orchestration/tools/list", "tools"),
        "agents": ("ai/agents/list", "agents"),
        "connectors": ("connection/connectors/list", "connectors"),
        "datasets": ("storage/datasets/list", "datasets"),
        "models": ("storage/models/list", "models"),
        "segments": ("segmentation/segments/list", "segments"),
    }
    for table, (path, wrapper) in lists.items():
        listed = client.call("GET", path)[wrapper]
        loaded = _column(box, f"SELECT uuid FROM cargo.{table} WHERE removed_at IS NULL")
        assert sorted(loaded) == sorted(e["uuid"] for e in listed), table
        assert listed, f"the emulator lists no {table}: the comparison would prove nothing"
    with box.db() as con:
        names = dict(con.execute("SELECT uuid, name FROM cargo.plays").fetchall())
    for play in client.call("GET", "orchestration/plays/list")["plays"]:
        assert names[play["uuid"]] == play["name"]
    releases = client.call("GET", "orchestration/releases/list", params={"limit": 100})["releases"]
    expected_nodes = sorted((r["uuid"], n["uuid"], n["slug"]) for r in releases for n in r["nodes"])
    with box.db() as con:
        loaded_nodes = sorted(
            (str(a), str(b), str(c))
            for a, b, c in con.execute("SELECT release_uuid, node_uuid, slug FROM cargo.release_nodes").fetchall()
        )
        named_workflows = con.execute(
            "SELECT count(*) FILTER (WHERE name IS NOT NULL), count(*) FROM cargo.workflows"
        ).fetchall()[0]
    assert loaded_nodes == expected_nodes
    assert named_workflows[0] == named_workflows[1], "every workflow carries its play's or tool's name"


def test_every_fact_uuid_joins_to_a_name(emulator: Any, tmp_path: Path) -> None:
    box = Sandbox(tmp_path, emulator)
    box.sync(tables=["runs", "spans", *CATALOGUE])
    with box.db() as con:
        unnamed_workflows = con.execute(
            "SELECT count(*) FROM cargo.runs r LEFT JOIN cargo.workflows w ON w.uuid = r.workflow_uuid "
            "WHERE w.name IS NULL"
        ).fetchall()[0][0]
        unnamed_nodes = con.execute(
            "SELECT count(*) FROM cargo.spans s JOIN cargo.runs r ON r.uuid = s.run_uuid "
            "LEFT JOIN cargo.release_nodes n ON n.release_uuid = r.release_uuid AND n.node_uuid = s.node_uuid "
            "WHERE n.node_uuid IS NULL OR n.slug IS NULL"
        ).fetchall()[0][0]
        unnamed_connectors = con.execute(
            "SELECT count(*) FROM cargo.spans s LEFT JOIN cargo.connectors c ON c.uuid = s.node_connector_uuid "
            "WHERE s.node_connector_uuid IS NOT NULL AND c.name IS NULL"
        ).fetchall()[0][0]
        joined = con.execute("SELECT count(*) FROM cargo.spans").fetchall()[0][0]
    assert joined > 0
    assert unnamed_workflows == 0
    assert unnamed_nodes == 0
    assert unnamed_connectors == 0


def test_removed_and_renamed_catalogue_rows(own_emulator: Any, tmp_path: Path) -> None:
    box = Sandbox(tmp_path, own_emulator)
    box.sync(tables=["plays", "agents"])
    store = own_emulator.state.store
    agent = _column(box, "SELECT uuid FROM cargo.agents ORDER BY uuid LIMIT 1")[0]
    play_uuid, play_name = box_first_play(box)
    store.execute(
        f"ALTER TABLE {store.database}.entities DELETE WHERE kind = 'agent' AND uuid = toUUID('{agent}') "
        "SETTINGS mutations_sync = 2"
    )
    rows = store.rows(
        f"SELECT body FROM {store.database}.entities FINAL WHERE kind = 'play' AND uuid = toUUID('{play_uuid}')"
    )
    body = orjson.loads(rows[0]["body"])
    body["name"] = play_name + " (renamed)"
    store.execute(
        f"ALTER TABLE {store.database}.entities UPDATE body = '{orjson.dumps(body).decode()}' "
        f"WHERE kind = 'play' AND uuid = toUUID('{play_uuid}') SETTINGS mutations_sync = 2"
    )
    box.sync(tables=["plays", "agents"])
    with box.db() as con:
        removed = con.execute("SELECT uuid, name, removed_at FROM cargo.agents WHERE uuid = ?", [agent]).fetchall()
        current = con.execute("SELECT count(*) FROM cargo.agents WHERE removed_at IS NULL").fetchall()[0][0]
        renamed = con.execute("SELECT name FROM cargo.plays WHERE uuid = ?", [play_uuid]).fetchall()
    assert len(removed) == 1, "a removed row stays, once"
    assert removed[0][1] is not None, "and keeps its last name"
    assert removed[0][2] == FIXED_NOW, "marked removed, at Cargo's clock (the emulator's), not this machine's"
    assert current >= 1
    assert renamed == [(play_name + " (renamed)",)]
    box.sync(tables=["plays", "agents"])  # a third sync: the mark is not moved again
    with box.db() as con:
        again = con.execute("SELECT removed_at FROM cargo.agents WHERE uuid = ?", [agent]).fetchall()
    assert again == [(removed[0][2],)]


def box_first_play(box: Sandbox) -> tuple[str, str]:
    with box.db() as con:
        row = con.execute("SELECT uuid, name FROM cargo.plays ORDER BY uuid LIMIT 1").fetchall()[0]
    return str(row[0]), str(row[1])


def test_run_outputs_equal_the_runs_and_their_contexts(emulator: Any, client: CargoClient, tmp_path: Path) -> None:
    box = Sandbox(tmp_path, emulator)
    stats = box.sync(tables=["run_outputs"])
    with box.db() as con:
        loaded = con.execute(
            "SELECT run_uuid, workflow_uuid, output_node_slug, status, output FROM cargo.run_outputs"
        ).fetchall()
    keys = [(str(r[0]), r[2]) for r in loaded]
    assert len(keys) == len(set(keys)), "a run exported twice"
    by_workflow: dict[str, set[str]] = {}
    slugs: dict[str, str] = {}
    for run_uuid, workflow, slug, _, _ in loaded:
        by_workflow.setdefault(str(workflow), set()).add(str(run_uuid))
        slugs[str(workflow)] = slug
    deployed = [w for w in client.call("GET", "orchestration/workflows/list")["workflows"] if w["deployedRelease"]]
    assert {w["uuid"] for w in deployed} == set(by_workflow)
    now = FIXED_NOW  # Cargo's clock: the sync (settle 0) reads everything created before it
    for workflow, loaded_runs in by_workflow.items():
        truth = client.query(
            f"SELECT toString(uuid) AS u FROM runs WHERE workflow_uuid = '{workflow}' AND deleted_at IS NULL "
            f"AND created_at >= '2026-01-01' AND created_at < '{now:%Y-%m-%d %H:%M:%S}'"
        )
        assert {r["u"] for r in truth} == loaded_runs, workflow
    finished = [r for r in loaded if r[3] == "success"][:5]
    assert finished
    for run_uuid, _, slug, _, output in finished:
        context = client.call("GET", f"orchestration/runs/{run_uuid}")["runContext"]
        assert (orjson.loads(output) if isinstance(output, str) else output) == context.get(slug)
    assert stats["run_outputs"].rows == len(loaded)


def test_run_outputs_windows_split_under_a_small_target(
    emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows sized to 5 runs: many exports, every run once (the 10,000 cap scaled down)."""
    from cargo_elt.source import outputs

    monkeypatch.setattr(outputs, "RUN_OUTPUTS_TARGET", 5)
    box = Sandbox(tmp_path, emulator, name="small_windows")
    stats = box.sync(tables=["run_outputs"])
    reference = Sandbox(tmp_path, emulator, name="reference")
    monkeypatch.setattr(outputs, "RUN_OUTPUTS_TARGET", 9_500)
    reference_stats = reference.sync(tables=["run_outputs"])
    small = set(_column(box, "SELECT run_uuid || output_node_slug FROM cargo.run_outputs"))
    whole = set(_column(reference, "SELECT run_uuid || output_node_slug FROM cargo.run_outputs"))
    assert small == whole and len(small) == stats["run_outputs"].rows
    assert stats["run_outputs"].data_queries > 2 * reference_stats["run_outputs"].data_queries


def test_batch_outputs_and_failures(emulator: Any, client: CargoClient, tmp_path: Path) -> None:
    box = Sandbox(tmp_path, emulator)
    box.sync(tables=["batch_outputs", "batch_failures"])
    now = FIXED_NOW  # Cargo's clock: the sync (settle 0) reads everything created before it
    finished = client.query(
        "SELECT toString(uuid) AS u, runs_count AS n, failed_runs_count AS f FROM batches "
        f"WHERE finished_at IS NOT NULL AND finished_at < '{now:%Y-%m-%d %H:%M:%S}' AND status != 'cancelled'"
    )
    with box.db() as con:
        per_batch = dict(con.execute("SELECT batch_uuid, count(*) FROM cargo.batch_outputs GROUP BY 1").fetchall())
        failures = con.execute(
            "SELECT batch_uuid, run_uuid, record_id, run_error_message, failed_node_slug, node_error_message "
            "FROM cargo.batch_failures"
        ).fetchall()
    runs_per_batch = {
        r["u"]: int(r["n"])
        for r in client.query(
            "SELECT toString(batch_uuid) AS u, count() AS n FROM runs WHERE deleted_at IS NULL GROUP BY batch_uuid"
        )
    }
    for batch in finished:
        assert per_batch.get(batch["u"], 0) == runs_per_batch.get(batch["u"], 0), batch["u"]
    failed_truth = {
        (r["b"], r["u"])
        for r in client.query(
            "SELECT toString(batch_uuid) AS b, toString(uuid) AS u FROM runs WHERE status = 'error' "
            "AND deleted_at IS NULL AND batch_uuid IN (SELECT uuid FROM batches WHERE failed_runs_count > 0)"
        )
    }
    assert failed_truth, "the tiny scale has failed runs in batches"
    assert {(str(f[0]), str(f[1])) for f in failures} == failed_truth
    for _, run_uuid, record_id, run_error, slug, node_error in failures:
        assert record_id and run_error and slug and node_error
        spans = client.query(
            "SELECT node_slug, execution_error_message FROM spans WHERE run_uuid = "
            f"'{run_uuid}' AND execution_status = 'error' ORDER BY execution_index DESC LIMIT 1"
        )
        assert (spans[0]["node_slug"], spans[0]["execution_error_message"]) == (slug, node_error)


def test_run_metrics_are_snapshots_stamped_with_cargos_clock(
    emulator: Any, client: CargoClient, tmp_path: Path
) -> None:
    """One snapshot per instant of Cargo's clock: a second sync while the emulator's clock stands still
    appends nothing (the appending across advances is in tests/e2e/test_clock_skew.py)."""
    box = Sandbox(tmp_path, emulator)
    box.sync(tables=["run_metrics"])
    second = box.sync(tables=["run_metrics"])
    assert second["run_metrics"].rows == 0
    workflows = client.call("GET", "orchestration/workflows/list")["workflows"]
    expected = 0
    for workflow in workflows:
        metrics = client.call("POST", "orchestration/runs/metrics", {"workflowUuid": workflow["uuid"]})["runMetrics"]
        expected += len(metrics)
        for metric in metrics:
            with box.db() as con:
                loaded = con.execute(
                    "SELECT total_executions_count, error_executions_count FROM cargo.run_metrics "
                    "WHERE workflow_uuid = ? AND node_uuid = ? ORDER BY snapshot_at",
                    [workflow["uuid"], metric["nodeUuid"]],
                ).fetchall()
            assert loaded == [(metric["totalExecutionsCount"], metric["errorExecutionsCount"])]
    with box.db() as con:
        snapshots = con.execute("SELECT DISTINCT snapshot_at, count(*) FROM cargo.run_metrics GROUP BY 1").fetchall()
    assert snapshots == [(FIXED_NOW, expected)], "snapshot_at is Cargo's clock, not this machine's"


def test_segment_exports_through_the_source_settings(emulator: Any, client: CargoClient, tmp_path: Path) -> None:
    """``segments`` as configured under ``[sources.cargo]`` reach ``segment_records`` (one table each)."""
    segment = next(s for s in client.call("GET", "segmentation/segments/list")["segments"] if not s["fromPlay"])
    box = Sandbox(tmp_path, emulator)
    stats = box.sync(tables=["segment_records"], segments=[{"segment_uuid": segment["uuid"], "table_name": "picked"}])
    ids: list[str] = []
    while True:
        page = client.call(
            "POST",
            "segmentation/segments/fetch",
            {
                "modelUuid": segment["modelUuid"],
                "filter": segment["filter"],
                **({"sort": segment["sort"]} if segment["sort"] else {}),
                **({"limit": segment["limit"]} if segment["limit"] is not None else {}),
                "fetchingLimit": 1000,
                "fetchingOffset": len(ids),
            },
        )
        ids.extend(r["_id"] for r in page["records"])
        if len(page["records"]) < 1000:
            break
    assert ids and len(ids) == page["count"]
    assert sorted(_column(box, "SELECT _id FROM cargo.picked")) == sorted(ids)
    assert stats["picked"].rows == len(ids)


def test_a_misspelled_segment_setting_fails_the_source_before_any_request(emulator: Any) -> None:
    from cargo_elt.source import cargo_source
    from cargo_elt.source.errors import CargoConfigurationError

    bad = [{"model_uuid": "ec99469b-781b-4fc9-b701-f2785cbfea9d", "filter": {"conjunction": "and", "groups": []}}]
    with pytest.raises(CargoConfigurationError, match="conjonction"):
        cargo_source(api_token="t", base_url=emulator.base_url, tables=["runs"], segments=bad)


def test_run_outputs_halve_a_window_the_server_refuses_as_too_many(
    emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's export cap lowered to 10 runs (in-process emulator): ``tooManyRuns`` windows are
    halved until they fit, and every run is still exported once."""
    import cargo_elt.emulator.api.runs as emulator_runs

    reference = Sandbox(tmp_path, emulator, name="reference_cap")
    reference.sync(tables=["run_outputs"])
    monkeypatch.setattr(emulator_runs, "DOWNLOAD_OUTPUTS_MAX_ROWS", 10)
    box = Sandbox(tmp_path, emulator, name="lowered_cap")
    stats = box.sync(tables=["run_outputs"])
    keys = _column(box, "SELECT run_uuid || output_node_slug FROM cargo.run_outputs")
    assert len(keys) == len(set(keys)) == stats["run_outputs"].rows
    assert set(keys) == set(_column(reference, "SELECT run_uuid || output_node_slug FROM cargo.run_outputs"))
    per_workflow = max(n for (n,) in _rows(box, "SELECT count(*) FROM cargo.run_outputs GROUP BY workflow_uuid"))
    assert per_workflow > 10, "some workflow needed more than one export"


def _rows(box: Sandbox, sql: str) -> list[tuple[Any, ...]]:
    with box.db() as con:
        return con.execute(sql).fetchall()
