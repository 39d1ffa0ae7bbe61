"""``cargo-elt check`` as a user runs it: a subprocess against emulators over real HTTP.

On the emulator as it is, every row is ``ok`` and the exit code 0; started with a renamed column or
another export layout, the right rows turn ``warn`` or ``fail`` with the table and column (or the
file's first bytes) named, and the exit code says whether a selected table cannot be loaded. Bad
input exits 2 with one ``error:`` line. Nothing is written anywhere: not the working directory, not
the emulator's data (no batch created).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cargo_elt.source import SEGMENT_TABLES, TABLE_NAMES
from tests.conftest import FIXED_NOW
from tests.e2e.test_cli import Workdir, cargo_elt, not_cargo, output, user_env  # noqa: F401  (fixture)

ALL_TABLES = [t for t in TABLE_NAMES]


def check(work: Workdir, emulator: Any, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``cargo-elt check --base-url <emulator> ...`` in ``work``, the token set unless ``env`` sets it."""
    return work.run([*cargo_elt(), "check", "--base-url", emulator.base_url, *args], {**work.env(), **env})


def report(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The ``--json`` report (fails with the whole output if it does not parse)."""
    try:
        document: dict[str, Any] = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"--json did not print JSON\n{output(result)}")
    return document


def rows(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in document["checks"]}


def started_with(**options: Any) -> Any:
    """A tiny one-workspace emulator started with these options (``--rename-column``, ``--export-layout``).

    Its clock starts at this machine's (the emulator's default), so the clock row has no skew to warn
    about; what the other rows assert holds for any seeded data.
    """
    from cargo_elt.emulator.server import EmulatorOptions, running_emulator

    return running_emulator(EmulatorOptions(port=0, seed=7, scale="tiny", workspaces=1, admin=True, **options))


def admin(emulator: Any, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, f"{emulator.base_url}{path}", timeout=120, **kwargs)
    response.raise_for_status()
    return response.json()


def workdir(tmp_path: Path, emulator: Any) -> Workdir:
    return Workdir(tmp_path, str(emulator.state.workspaces[0].token))


# -- the emulator as it is -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[Any]:
    """This module's emulator, on this machine's clock (the shared one runs a month behind it)."""
    with started_with() as running:
        yield running


def test_a_server_clock_a_month_behind_is_a_warning_with_the_skew(tmp_path: Path) -> None:
    with started_with(now=FIXED_NOW) as behind:
        result = check(workdir(tmp_path, behind), behind, "--json", "--tables", "runs")
    assert result.returncode == 0, output(result)  # a warning: every bound comes from the server's clock
    clock = rows(report(result))["server clock"]
    assert clock["result"] == "warn", clock
    assert clock["data"]["skew_seconds"] < -30 * 86400 + 3600, clock
    assert "this machine's clock is ahead of the server's" in clock["detail"]


def test_check_passes_on_the_emulator_and_changes_nothing(emulator: Any, tmp_path: Path) -> None:
    work = workdir(tmp_path, emulator)
    truth_before = admin(emulator, "GET", "/_emulator/truth")["tables"]
    admin(emulator, "DELETE", "/_emulator/queries")

    result = check(work, emulator)
    assert result.returncode == 0, output(result)
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"cargo-elt check of {emulator.base_url} (workspace "), output(result)
    assert lines[2].split() == ["check", "result", "detail"], output(result)
    assert lines[-1] == f"every selected table can be loaded ({len(ALL_TABLES)} tables, 0 warnings)", output(result)

    as_json = check(work, emulator, "--json")
    assert as_json.returncode == 0, output(as_json)
    document = report(as_json)
    assert document["exit_code"] == 0 and document["base_url"] == emulator.base_url
    assert document["workspace"]["uuid"] == emulator.state.workspaces[0].uuid
    assert document["tables"] == {t: {"loadable": True, "failed_checks": []} for t in ALL_TABLES}
    found = rows(document)
    assert {name: c["result"] for name, c in found.items() if c["result"] != "ok"} == {}, output(as_json)
    for expected in (
        "base URL",
        "token and workspace",
        "server clock",
        *(f"columns of {t}" for t in ("runs", "batches", "spans", "records")),
        *(f"pages of {t}" for t in ("runs", "batches", "spans", "records")),
        *(f"queries of {t}" for t in ("run_outputs", "batch_outputs", "batch_failures", "run_metrics_daily")),
        "column cap",
        "result cap",
        "GET orchestration/workflows/list",
        "GET orchestration/releases/list",
        "POST orchestration/runs/metrics",
        "export run_outputs",
        "export batch_outputs",
        "segment exports",
    ):
        assert expected in found, f"no row {expected!r}\n{output(as_json)}"
    assert found["result cap"]["data"] == {"mode": "throw", "code": 396, "max_rows": 10_000}
    assert found["column cap"]["data"]["max_columns"] == 50
    assert abs(found["server clock"]["data"]["skew_seconds"]) < 60
    assert "limit 101 refused (maximum 100)" in found["GET orchestration/releases/list"]["detail"]
    exported = found["export run_outputs"]["data"]
    assert exported["format"] == "a JSON array" and exported["rows"] == exported["parsed"] > 0
    assert exported["fields"]["created_at"] == "_created_at"
    assert found["export batch_outputs"]["data"]["fields"] == {"output": "output"}

    assert work.token not in result.stdout + result.stderr + as_json.stdout + as_json.stderr
    # read-only: nothing written here, nothing changed in Cargo
    assert not any(work.root.iterdir()), sorted(str(p) for p in work.root.rglob("*"))
    assert admin(emulator, "GET", "/_emulator/truth")["tables"] == truth_before
    requests = admin(emulator, "GET", "/_emulator/queries")["requests"]
    assert not [path for path in requests if path.endswith("/orchestration/batches")], requests


def test_configured_segment_exports_are_validated_against_their_model(emulator: Any, tmp_path: Path) -> None:
    work = workdir(tmp_path, emulator)
    token = {"authorization": f"Bearer {work.token}"}
    listed = httpx.get(f"{emulator.base_url}/v1/segmentation/segments/list", headers=token, timeout=60).json()
    segment = next(s for s in listed["segments"] if not s["fromPlay"])
    unknown_column = {
        "conjonction": "and",
        "groups": [
            {
                "conjonction": "and",
                "conditions": [{"kind": "string", "columnSlug": "nope", "operator": "is", "values": ["x"]}],
            }
        ],
    }
    segments = [
        {"segment_uuid": segment["uuid"]},
        {"model_uuid": segment["modelUuid"], "table_name": "unknown_column", "filter": unknown_column},
    ]
    result = check(
        work, emulator, "--json", "--tables", "workflows,segment_records", SOURCES__CARGO__SEGMENTS=json.dumps(segments)
    )
    assert result.returncode == 1, output(result)
    document = report(result)
    assert document["tables"]["workflows"]["loadable"] is True
    assert document["tables"][SEGMENT_TABLES]["failed_checks"] == ["segment filter sources.cargo.segments[1]"]
    found = rows(document)
    assert found["segment filter sources.cargo.segments[0]"]["result"] == "ok"
    assert 'the model has no column "nope"' in found["segment filter sources.cargo.segments[1]"]["detail"]
    sample = found["export segment"]
    assert sample["result"] == "ok" and sample["data"]["format"] == "CSV", output(result)
    assert "_id" in sample["data"]["keys"] and sample["data"]["rows"] == sample["data"]["parsed"] > 0

    misspelled = json.dumps([{"model_uuid": segment["modelUuid"], "filter": {"conjunction": "and", "groups": []}}])
    result = check(work, emulator, "--json", "--tables", "workflows", SOURCES__CARGO__SEGMENTS=misspelled)
    assert result.returncode == 1, output(result)
    refused = rows(report(result))["setting sources.cargo.segments"]
    assert refused["result"] == "fail" and refused["blocks"] == ["workflows"]
    assert '"conjunction" must be spelled "conjonction"' in refused["detail"]


# -- a server that differs -----------------------------------------------------------------------------


def test_a_renamed_time_column_fails_its_table_naming_table_and_column(tmp_path: Path) -> None:
    with started_with(renamed_columns=("runs.created_at=created",)) as emulator:
        work = workdir(tmp_path, emulator)
        result = check(work, emulator)
        as_json = check(work, emulator, "--json")
    assert result.returncode == 1, output(result)
    row = next(line for line in result.stdout.splitlines() if line.startswith("columns of runs"))
    assert row.split()[3] == "fail", output(result)
    document = report(as_json)
    assert as_json.returncode == 1 and document["exit_code"] == 1
    failed = rows(document)["columns of runs"]
    assert failed["result"] == "fail" and failed["blocks"] == ["runs"]
    assert "runs.created_at (time column)" in failed["detail"] and "created" in failed["detail"]
    assert document["tables"]["runs"]["failed_checks"] == ["columns of runs"]
    # the exports whose SQL reads runs.created_at say so too; the other tables load
    assert "created_at" in rows(document)["queries of batch_failures"]["detail"]
    assert document["tables"]["spans"]["loadable"] and document["tables"]["workflows"]["loadable"]
    assert result.stdout.splitlines()[-1].startswith("4 of 20 selected tables cannot be loaded: runs (columns of runs)")


def test_another_column_renamed_is_a_warning_naming_table_and_column(tmp_path: Path) -> None:
    renamed = ("spans.execution_icon_url=icon_url", "records.id=record_id")
    with started_with(renamed_columns=renamed) as emulator:
        result = check(workdir(tmp_path, emulator), emulator, "--json")
    assert result.returncode == 0, output(result)
    found = rows(report(result))
    spans = found["columns of spans"]
    assert spans["result"] == "warn", output(result)
    assert "not on the server, loaded as NULL: execution_icon_url" in spans["detail"]
    assert "extra, loaded from now on: icon_url (Nullable(String))" in spans["detail"]
    records = found["columns of records"]
    assert records["result"] == "warn" and "records.id is served as record_id: read from there" in records["detail"]
    assert found["pages of records"]["result"] == "ok", "the key read from record_id decodes like id"
    assert {n: c["result"] for n, c in found.items() if c["result"] != "ok"} == {
        "columns of spans": "warn",
        "columns of records": "warn",
    }


@pytest.fixture(scope="module")
def other_layout() -> Iterator[Any]:
    """An emulator started with another export layout (switched at run time by the tests after)."""
    layout = "runOutputsFormat=ndjson,runOutputsKeys=camel,gzipExports=true,batchOutputColumn=result"
    with started_with(export_layout=layout) as emulator:
        yield emulator


EXPORTS = ("--tables", "run_outputs,batch_outputs")


def test_another_export_layout_is_detected_and_reported(other_layout: Any, tmp_path: Path) -> None:
    result = check(workdir(tmp_path, other_layout), other_layout, "--json", *EXPORTS)
    assert result.returncode == 0, output(result)
    found = rows(report(result))
    runs = found["export run_outputs"]
    assert runs["result"] == "warn" and runs["data"]["format"] == "NDJSON (gzip)", output(result)
    assert runs["data"]["fields"]["created_at"] == "createdAt" and runs["data"]["rows"] == runs["data"]["parsed"] > 0
    for said in ("arrives as NDJSON, not a JSON array", "gzip-compressed", "keys spelled like 'createdAt'"):
        assert said in runs["detail"], runs["detail"]
    batches = found["export batch_outputs"]
    assert batches["result"] == "warn" and batches["data"]["format"] == "CSV (gzip)", output(result)
    assert "the output is in column 'result', not 'output'" in batches["detail"]


def test_a_malformed_export_fails_its_table_with_the_reason(other_layout: Any, tmp_path: Path) -> None:
    admin(other_layout, "POST", "/_emulator/settings", json={"malformedExports": ["run-outputs"]})
    try:
        result = check(workdir(tmp_path, other_layout), other_layout, *EXPORTS)
        as_json = check(workdir(tmp_path, other_layout), other_layout, "--json", *EXPORTS)
    finally:
        admin(other_layout, "POST", "/_emulator/settings", json={"malformedExports": []})
    assert result.returncode == 1 and as_json.returncode == 1, output(result)
    failed = rows(report(as_json))["export run_outputs"]
    assert failed["result"] == "fail" and failed["blocks"] == ["run_outputs"]
    assert "an HTML or XML document (an error page?), starting b'<!DOCTYPE html>" in failed["detail"]
    assert rows(report(as_json))["export batch_outputs"]["result"] == "warn", "the other export still reads"
    assert result.stdout.splitlines()[-1] == (
        "1 of 2 selected tables cannot be loaded: run_outputs (export run_outputs)"
    ), output(result)


def test_a_server_that_truncates_results_is_told_from_one_that_refuses_them(other_layout: Any, tmp_path: Path) -> None:
    admin(other_layout, "POST", "/_emulator/settings", json={"truncateResults": True})
    try:
        result = check(workdir(tmp_path, other_layout), other_layout, "--json", "--tables", "runs")
    finally:
        admin(other_layout, "POST", "/_emulator/settings", json={"truncateResults": False})
    assert result.returncode == 0, output(result)
    cap = rows(report(result))["result cap"]
    assert cap["result"] == "warn" and cap["data"] == {"mode": "truncate", "returned": 10_000, "asked": 11_000}
    assert "truncated to 10,000 of 11,000 rows without an error" in cap["detail"]


# -- bad input -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (("--tables", "runs,nope"), {}, "unknown table(s) nope"),
        (
            ("--base-url", "ftp://cargo.example"),
            {},
            "--base-url = 'ftp://cargo.example' is not an http:// or https:// URL",
        ),
        ((), {"SOURCES__CARGO__API_TOKEN": ""}, "no Cargo API token"),
        ((), {"SOURCES__CARGO__API_TOKEN": "crg_not_a_token"}, "Unauthorized"),
        (
            (),
            {"SOURCES__CARGO__WORKSPACE_UUID": "not-a-uuid"},
            "sources.cargo.workspace_uuid = 'not-a-uuid' is not a UUID",
        ),
    ],
)
def test_bad_input_exits_2_with_one_error_line(
    emulator: Any, tmp_path: Path, args: tuple[str, ...], env: dict[str, str], says: str
) -> None:
    work = workdir(tmp_path, emulator)
    result = check(work, emulator, *args, **env)
    assert result.returncode == 2, output(result)
    assert result.stdout == "" and result.stderr.startswith("error: ") and says in result.stderr, output(result)
    assert "crg_not_a_token" not in result.stderr and "Traceback" not in result.stderr
    assert not any(work.root.iterdir())


def test_a_server_that_is_not_cargo_exits_2(not_cargo: str, tmp_path: Path) -> None:  # noqa: F811
    work = Workdir(tmp_path, "crg_any")
    result = work.run([*cargo_elt(), "check", "--base-url", not_cargo])
    assert result.returncode == 2, output(result)
    assert "does not answer like Cargo's API" in result.stderr, output(result)
