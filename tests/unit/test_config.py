"""The settings model (``sources/cargo/config.py``): one parser for every setting and date, each problem
named by the setting's path (or the command-line option it came from)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from cargo_elt.source.config import (
    TABLE_NAMES,
    CargoConnection,
    CargoSettings,
    PipelineSettings,
    configured_settings,
    parse_instant,
    parse_setting,
    parse_settings,
)
from cargo_elt.source.errors import CargoConfigurationError

TOKEN = "crg_test_token_0042"
WORKFLOW = "991C515B-963C-4C3B-BA19-E46F8FCC3521"
MODEL = "ec99469b-781b-4fc9-b701-f2785cbfea9d"


def refused(raw: dict[str, Any], labels: dict[str, str] | None = None) -> str:
    with pytest.raises(CargoConfigurationError) as caught:
        parse_settings({"api_token": TOKEN, **raw}, labels)
    text = str(caught.value)
    assert TOKEN not in text
    return text


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2026-05-01", datetime(2026, 5, 1, tzinfo=UTC)),
        ("2026-05-01T06:30:00", datetime(2026, 5, 1, 6, 30, tzinfo=UTC)),  # naive = UTC, never local time
        ("2026-05-01T06:30:00Z", datetime(2026, 5, 1, 6, 30, tzinfo=UTC)),
        ("2026-05-01T08:30:00.250+02:00", datetime(2026, 5, 1, 6, 30, 0, 250000, tzinfo=UTC)),
        (" 2026-05-01 06:30:00 ", datetime(2026, 5, 1, 6, 30, tzinfo=UTC)),
        (datetime(2026, 5, 1, 6, 30), datetime(2026, 5, 1, 6, 30, tzinfo=UTC)),
    ],
)
def test_one_date_parser_for_every_date_setting(text: Any, moment: datetime) -> None:
    settings = parse_settings({"api_token": TOKEN, "start_date": text, "since": text})
    assert settings.start_date == moment and settings.since == moment
    assert parse_instant(text, "--since") == moment
    assert moment.tzinfo is UTC


@pytest.mark.parametrize("text", ["last tuesday", "2026-13-01", "1700000000", "05/01/2026"])
def test_a_date_that_is_not_one_names_the_setting_and_the_forms(text: str) -> None:
    assert refused({"start_date": text}) == (
        f"sources.cargo.start_date = {text!r} is not a date (YYYY-MM-DD) or an ISO datetime (YYYY-MM-DDTHH:MM:SSZ) "
        "(set it in .dlt/config.toml or SOURCES__CARGO__START_DATE)"
    )
    assert refused({"since": text}, {"since": "--since"}).startswith(f"--since = {text!r} is not a date")


def test_defaults_and_values_as_the_environment_writes_them() -> None:
    settings = parse_settings(
        {
            "api_token": f"  {TOKEN} ",
            "concurrency": "8",
            "settle_seconds": "0",
            "hard_delete": "true",
            "tables": '["runs", "spans"]',
            "run_outputs": f'[{{"workflow_uuid": "{WORKFLOW}", "output_node_slug": " enrich "}}]',
        }
    )
    assert settings.token == TOKEN and settings.concurrency == 8 and settings.settle_seconds == 0.0
    assert settings.hard_delete is True and settings.tables == ["runs", "spans"]
    assert settings.run_outputs is not None
    assert [t.state_key for t in settings.run_outputs] == [f"{WORKFLOW.lower()}:enrich"]
    defaults = parse_settings({"api_token": TOKEN})
    assert defaults.tables == list(TABLE_NAMES) and defaults.segments == [] and defaults.run_outputs is None
    assert parse_settings({"api_token": TOKEN, "tables": "runs, spans,"}).tables == ["runs", "spans"]


def test_the_source_arguments_give_back_the_same_settings() -> None:
    raw = {
        "api_token": TOKEN,
        "workspace_uuid": MODEL,
        "start_date": "2026-01-01",
        "since": "2026-02-01T10:00:00+01:00",
        "tables": "runs",
        "run_outputs": [{"workflow_uuid": WORKFLOW, "output_node_slug": "enrich"}],
        "segments": [
            {"segment_uuid": WORKFLOW, "table_name": "saved"},
            {
                "model_uuid": MODEL,
                "filter": {
                    "conjonction": "or",
                    "groups": [
                        {
                            "conjonction": "and",
                            "conditions": [{"kind": "number", "columnSlug": "n", "operator": "is", "value": 2.5}],
                        }
                    ],
                },
                "sort": [{"columnSlug": "n", "kind": "desc"}],
                "limit": 10,
            },
        ],
    }
    settings = parse_settings(raw)
    assert parse_settings(settings.source_arguments()) == settings
    saved, model = settings.segment_exports
    assert (saved.segment_uuid, saved.table_name, saved.filter) == (WORKFLOW.lower(), "saved", None)
    assert model.filter == raw["segments"][1]["filter"] and model.sort == [{"columnSlug": "n", "kind": "desc"}]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"concurrency": 0}, "sources.cargo.concurrency = 0 is not a whole number from 1 to 32"),
        ({"concurrency": "four"}, "sources.cargo.concurrency = 'four' is not a whole number from 1 to 32"),
        ({"concurrency": 2.5}, "sources.cargo.concurrency = 2.5 is not a whole number"),
        ({"max_lookback_days": 0}, "sources.cargo.max_lookback_days = 0 is not a positive number of days"),
        ({"max_skipped_rows": -1}, "sources.cargo.max_skipped_rows = -1 is not a whole number of rows, 0 or more"),
        ({"max_skipped_rows": True}, "sources.cargo.max_skipped_rows = True is not a whole number"),
        ({"hard_delete": "maybe"}, "sources.cargo.hard_delete = 'maybe' is not true or false"),
        ({"workspace_uuid": "acme"}, "sources.cargo.workspace_uuid = 'acme' is not a UUID"),
        ({"base_url": "localhost:8787"}, "sources.cargo.base_url = 'localhost:8787' is not an http:// or https:// URL"),
        ({"lock_wait_seconds": "nan"}, "sources.cargo.lock_wait_seconds = 'nan' is not a number of seconds"),
        ({"tables": "runs,jobs"}, "sources.cargo.tables: unknown table(s) jobs: choose from runs, batches"),
        ({"tables": ""}, "sources.cargo.tables: unknown table(s) (none given)"),
        ({"run_outputs": {"workflow_uuid": WORKFLOW}}, "sources.cargo.run_outputs: must be a list of"),
        (
            {"run_outputs": [{"workflow_uuid": "w1", "output_node_slug": "n"}]},
            "sources.cargo.run_outputs[0].workflow_uuid: must be a workflow UUID, not 'w1'",
        ),
        (
            {"run_outputs": [{"workflow_uuid": WORKFLOW, "output_node": "n"}]},
            "sources.cargo.run_outputs[0]: has unknown key(s) output_node: use workflow_uuid and output_node_slug",
        ),
    ],
)
def test_each_problem_is_named_by_its_setting(raw: dict[str, Any], message: str) -> None:
    assert message in refused(raw)


def test_top_level_settings_say_where_they_are_set_options_do_not() -> None:
    assert refused({"concurrency": 0}).endswith("(set it in .dlt/config.toml or SOURCES__CARGO__CONCURRENCY)")
    assert refused({"base_url": "ftp://x"}, {"base_url": "--base-url"}) == (
        "--base-url = 'ftp://x' is not an http:// or https:// URL"
    )


@pytest.mark.parametrize("token", [None, "", "   "])
def test_no_token(token: Any) -> None:
    with pytest.raises(CargoConfigurationError) as caught:
        parse_settings({"api_token": token}, model=CargoConnection)
    assert str(caught.value) == (
        "sources.cargo.api_token: no Cargo API token (set it in .dlt/secrets.toml or SOURCES__CARGO__API_TOKEN)"
    )


def test_rules_across_settings_name_both_settings_as_the_user_gave_them() -> None:
    assert refused({"overlap_seconds": 60, "settle_seconds": 120}) == (
        "sources.cargo.overlap_seconds (60) must be at least sources.cargo.settle_seconds (120): a row updated "
        "while the last sync ran would otherwise be missed"
    )
    labels = {"since": "--since", "until": "--until"}
    assert refused({"until": "2026-03-01"}, labels) == "--until needs --since: a backfill chunk is [since, until)"
    assert refused({"since": "2026-03-02", "until": "2026-03-01"}, labels) == (
        "--until 2026-03-01T00:00:00+00:00 must be after --since 2026-03-02T00:00:00+00:00"
    )


def test_every_problem_is_reported_at_once_and_the_token_never_shows() -> None:
    text = refused({"concurrency": 0, "workspace_uuid": "acme", "segments": [{"model_uuid": "m"}]})
    lines = text.splitlines()
    assert lines[0] == "3 problems in the sources.cargo settings:"
    assert lines[1].startswith("- sources.cargo.workspace_uuid = 'acme' is not") and lines[1].endswith("UUID)")
    assert lines[2].startswith("- sources.cargo.concurrency = 0 is not")
    assert lines[3] == "- sources.cargo.segments[0].model_uuid: 'm' is not a UUID (8-4-4-4-12 hexadecimal digits)"


def test_a_nested_conditions_path_leaves_out_the_union_members() -> None:
    """pydantic puts the member of a discriminated union in an error's location (``...conditions[0].occurrence``);
    the path names only what the user wrote."""
    occurrence = {
        "kind": "occurrence",
        "relatedModelUuid": MODEL,
        "frequency": {"operator": "not"},
        "period": {"operator": "lessThan", "value": 3, "unit": "day"},
        "conjonction": "and",
        "conditions": [
            {"kind": "string", "columnSlug": "title", "operator": "is", "values": ["CEO"]},
            {"kind": "string", "columnSlug": "title", "operator": "is", "value": "CTO"},
        ],
    }
    flt = {"conjonction": "and", "groups": [{"conjonction": "and", "conditions": [occurrence]}]}
    text = refused({"segments": [{"segment_uuid": MODEL}, {"model_uuid": MODEL, "filter": flt}]})
    assert text == (
        "sources.cargo.segments[1].filter.groups[0].conditions[0].conditions[1]: string conditions take "
        '"values" (a string or list of strings), not "value"'
    )


def test_one_setting_alone_as_the_cli_and_the_dag_read_it() -> None:
    assert parse_setting("lock_wait_seconds", None) == 300.0
    assert parse_setting("lock_wait_seconds", "0") == 0.0
    assert parse_setting("tables", None) == list(TABLE_NAMES)
    with pytest.raises(
        CargoConfigurationError, match=re.escape("--lock-wait = '-1' is not a number of seconds: use 0")
    ):
        parse_setting("lock_wait_seconds", "-1", "--lock-wait")
    with pytest.raises(CargoConfigurationError, match=re.escape("sources.cargo.segments[0]: each export is a table")):
        parse_setting("segments", ["x"])


def test_configured_settings_read_dlts_configuration_under_the_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCES__CARGO__API_TOKEN", TOKEN)
    monkeypatch.setenv("SOURCES__CARGO__CONCURRENCY", "7")
    monkeypatch.setenv("SOURCES__CARGO__TABLES", "runs,spans")
    monkeypatch.setenv("SOURCES__CARGO__START_DATE", "2026-02-01")
    settings = configured_settings({"tables": ["batches"]}, {"tables": "--tables"})
    assert isinstance(settings, CargoSettings)
    assert (settings.token, settings.concurrency, settings.tables) == (TOKEN, 7, ["batches"])
    assert settings.start_date == datetime(2026, 2, 1, tzinfo=UTC)
    monkeypatch.setenv("SOURCES__CARGO__CONCURRENCY", "0")
    with pytest.raises(CargoConfigurationError, match=re.escape("sources.cargo.concurrency = 0 is not")):
        configured_settings()


def test_the_duckdb_file_is_never_named_like_the_dataset() -> None:
    assert PipelineSettings().duckdb_file == "cargo_warehouse.duckdb"
    assert PipelineSettings(pipeline_name="nightly").duckdb_file == "nightly_warehouse.duckdb"
    labels = {"duckdb_path": "--duckdb-path", "dataset_name": "--dataset", "pipeline_name": "--pipeline-name"}
    with pytest.raises(CargoConfigurationError) as caught:
        parse_settings({"duckdb_path": "data/Cargo.duckdb"}, labels, model=PipelineSettings)
    assert str(caught.value) == (
        "the DuckDB file 'data/Cargo.duckdb' is named like the dataset 'cargo', which DuckDB cannot tell apart "
        "(catalog and schema): choose another --duckdb-path or --dataset"
    )
    with pytest.raises(CargoConfigurationError, match=re.escape("--pipeline-name = '../x' is not usable as a folder")):
        parse_settings({"pipeline_name": "../x"}, labels, model=PipelineSettings)
