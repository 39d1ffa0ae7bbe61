"""Run dlt's real Snowflake destination against fakesnow (an in-process Snowflake on DuckDB), for tests only.

dlt 1.31 and fakesnow 0.12 disagree in four places; each is bridged here, nowhere in the product:

1. **"Schema ... already exists" on the first sync.** dlt connects with ``schema='"CARGO"'`` (the
   quoted, fully qualified dataset name, which real Snowflake accepts). fakesnow upper-cases that
   *with* its quotes and, with ``create_schema_on_connect`` (the default), looks up
   ``'"CARGO"'`` in ``information_schema.schemata``, never finds it and runs ``CREATE SCHEMA`` on every
   connect: the first connect creates ``CARGO``, the next one fails. Fix: ``create_schema_on_connect=False``,
   so the schema is created once, by dlt itself, after its own ``has_dataset`` check.
2. **Multi-statement SQL.** dlt joins DDL statements with ``;`` in one ``execute`` (Snowflake's
   ``MULTI_STATEMENT_COUNT=0``); fakesnow parses only the first. Fix: the destination capability
   ``supports_multiple_statements=False`` (a documented dlt capability override), one statement per call.
3. **Stage references.** dlt writes the table stage as a quoted literal, ``PUT 'file://...'
   '@"CARGO"."%RUNS"/"<load id>"' OVERWRITE = TRUE, AUTO_COMPRESS = FALSE`` and ``COPY INTO ... FROM
   '@"CARGO"."%RUNS"/...' FILE_FORMAT = (TYPE = 'PARQUET', ...) MATCH_BY_COLUMN_NAME='CASE_INSENSITIVE'``.
   fakesnow only understands an unquoted ``@CARGO.%RUNS/...`` target, options without commas and an
   unquoted ``CASE_INSENSITIVE``. Fix: those statements are rewritten, textually, just before fakesnow
   parses them (same meaning in Snowflake).
4. **JSON ``COPY`` with ``MATCH_BY_COLUMN_NAME``** is not implemented by fakesnow, and dlt loads its
   pipeline state row as JSONL. Fix: ``restore_from_destination=false`` for the test pipeline, so no
   state row is loaded (the state stays in the local pipeline directory, which is all a test's second
   sync needs). The source's own tables are arrow, so they load as Parquet through PUT + COPY as in
   production. Where the state must travel through the destination (Airflow tasks start from an empty
   pipeline folder), ``restore_state=True`` instead gives fakesnow that ``COPY``: the staged JSONL file
   inserted by column name (``INSERT ... BY NAME SELECT * FROM read_json(...)``), what Snowflake does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

FAKE_CREDENTIALS = "snowflake://fake_user:fake_password@fake-account/CARGO_DB?warehouse=FAKE_WH&role=FAKE_ROLE"
"""Credentials dlt accepts; fakesnow ignores all but the database."""

_QUOTED_STAGE = re.compile(r"""'@"([^"]+)"\."([^"]+)"/"([^"]+)"(/[^']*)?'""")
_FILE_FORMAT = re.compile(r"FILE_FORMAT = \(([^)]*)\)")


def rewrite_for_fakesnow(command: str) -> str:
    """dlt's PUT / COPY INTO / REMOVE statement in the spelling fakesnow parses (see point 3 above)."""
    if not command.lstrip().upper().startswith(("PUT ", "COPY INTO", "REMOVE ")):
        return command
    command = _QUOTED_STAGE.sub(lambda m: f"@{m[1]}.{m[2]}/{m[3]}{m[4] or ''}", command)
    command = command.replace("OVERWRITE = TRUE, AUTO_COMPRESS", "OVERWRITE = TRUE AUTO_COMPRESS")
    command = _FILE_FORMAT.sub(lambda m: "FILE_FORMAT = (" + m[1].replace(",", " ") + ")", command)
    return command.replace("MATCH_BY_COLUMN_NAME='CASE_INSENSITIVE'", "MATCH_BY_COLUMN_NAME=CASE_INSENSITIVE")


def _json_copy_by_name(original: Any) -> Any:
    """fakesnow's ``COPY INTO`` statement builder, with JSON files matched to columns by name (point 4)."""
    from fakesnow import copy_into
    from sqlglot import exp

    def inserts(expr: Any, params: Any, urls: list[str], parquet_info: Any = None) -> Any:
        by_name = params.match_by_column_name != copy_into.MatchByColumnName.NONE
        if not (isinstance(params.file_format, copy_into.ReadJSON) and by_name) or isinstance(
            expr.args["files"][0], exp.Subquery
        ):
            return original(expr, params, urls, parquet_info)
        lines = exp.EQ(this=exp.column("format"), expression=exp.Literal.string("newline_delimited"))
        return [
            exp.Insert(
                this=expr.this,
                expression=exp.select("*").from_(exp.Table(this=exp.func("read_json", exp.Literal.string(url), lines))),
                by_name=True,
            )
            for url in urls
        ]

    return inserts


@contextmanager
def fakesnow_connector(db_path: Path, *, restore_state: bool = False) -> Iterator[None]:
    """Patch the Snowflake connector with fakesnow (databases kept under ``db_path``), for this process.

    Also what a destination named only ``snowflake`` (``cargo-elt sync --destination snowflake``) needs:
    the credentials in ``DESTINATION__SNOWFLAKE__CREDENTIALS`` and point 2 as dlt's factory default.
    ``restore_state``: load dlt's state rows too and restore pipelines from them (point 4).
    Everything is undone on exit: the connector, fakesnow's cursor, the factory and the environment.
    """
    import fakesnow
    from dlt.destinations.impl.snowflake.factory import snowflake
    from fakesnow import copy_into
    from fakesnow.cursor import FakeSnowflakeCursor

    original_execute = FakeSnowflakeCursor.execute
    original_capabilities = snowflake._raw_capabilities

    def execute(self: FakeSnowflakeCursor, command: str, *args: Any, **kwargs: Any) -> FakeSnowflakeCursor:
        return original_execute(self, rewrite_for_fakesnow(command), *args, **kwargs)

    def capabilities(self: snowflake) -> Any:
        caps = original_capabilities(self)
        caps.supports_multiple_statements = False
        return caps

    db_path.mkdir(parents=True, exist_ok=True)
    environment = {
        "RESTORE_FROM_DESTINATION": "true" if restore_state else "false",
        "DESTINATION__SNOWFLAKE__CREDENTIALS": FAKE_CREDENTIALS,
    }
    inserts = _json_copy_by_name(copy_into._inserts) if restore_state else copy_into._inserts
    with (
        fakesnow.patch(create_schema_on_connect=False, db_path=db_path),
        mock.patch.object(FakeSnowflakeCursor, "execute", execute),
        mock.patch.object(snowflake, "_raw_capabilities", capabilities),
        mock.patch.object(copy_into, "_inserts", inserts),
        mock.patch.dict(os.environ, environment),
    ):
        yield


@contextmanager
def fakesnow_destination(db_path: Path, *, restore_state: bool = False) -> Iterator[Any]:
    """``fakesnow_connector``, yielding dlt's Snowflake destination for it."""
    import dlt

    with fakesnow_connector(db_path, restore_state=restore_state):
        yield dlt.destinations.snowflake(credentials=FAKE_CREDENTIALS, supports_multiple_statements=False)
