"""The data dictionary: every column described, the facts linked to the catalogue, docs/TABLES.md current."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cargo_elt.pipelines.tables import MARKDOWN_COMMAND, render, table_catalog
from cargo_elt.source import EXPORT_TABLES, FACT_TABLES, SEGMENT_TABLES, TABLE_NAMES, cargo_source
from cargo_elt.source.descriptions import REFERENCES

REPO = Path(__file__).resolve().parents[2]


def test_every_column_of_every_table_is_described() -> None:
    infos = table_catalog()
    assert [i.name for i in infos] == [t for t in TABLE_NAMES if t != SEGMENT_TABLES]
    undescribed = [f"{i.name}.{c.name}" for i in infos for c in i.columns if not c.description.strip()]
    assert not undescribed, f"add them to sources/cargo/descriptions.py: {undescribed}"
    assert all(i.description and i.columns for i in infos)
    assert all(i.primary_key for i in infos if i.write_disposition != "append"), "merged tables need a key"


def test_the_dlt_schema_carries_descriptions_and_references() -> None:
    source = cargo_source(api_token="-", base_url="http://127.0.0.1:1", tables=[*FACT_TABLES, *EXPORT_TABLES])
    for name, resource in source.resources.items():
        table = resource.compute_table_schema()
        assert all(c.get("description") for c in table["columns"].values()), name
        assert table.get("references") == REFERENCES[name], name
    referenced = {r["referenced_table"] for refs in REFERENCES.values() for r in refs}
    assert referenced <= {"workflows", "releases", "batches", "runs"}
    assert all(REFERENCES[t] for t in FACT_TABLES)


def test_docs_tables_md_is_generated_from_the_specs() -> None:
    written = (REPO / "docs" / "TABLES.md").read_text()
    assert written == render("markdown"), f"docs/TABLES.md is stale: run `{MARKDOWN_COMMAND}`"


def test_the_command_prints_json_and_text() -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "cargo_elt.pipelines.cli", "tables", "--json"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    tables = {t["name"]: t for t in json.loads(listed.stdout)}
    assert tables["spans"]["primary_key"] == ["run_uuid", "node_uuid", "execution_index"]
    assert tables["spans"]["time_column"] == "execution_started_at"
    assert tables["run_metrics"]["write_disposition"] == "append"
    assert tables["workflows"]["write_disposition"].startswith("merge")
    text = subprocess.run(
        [sys.executable, "-m", "cargo_elt.pipelines.cli", "tables"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "runs: One row per run" in text and "execution_index" in text
