"""Every setting of the Cargo source as one typed model (pydantic), and where each problem is.

dlt still finds the values (``.dlt/config.toml``, ``.dlt/secrets.toml``, ``SOURCES__CARGO__*``
variables, an Airflow connection): ``cargo_source`` gets them as its parameters and builds
``CargoSettings`` from them; ``cargo-elt`` reads them with ``configured_settings`` (the same keys, plus
its command-line options) before a pipeline is created; the Airflow DAG builds the source the same way.
This module is the only place where settings and dates are parsed and checked on their own; what can
only be checked against Cargo (a date against Cargo's clock, a filter's columns against the model) is
checked where Cargo's answer is read (``bounds.py``, ``segments.py``).

A problem is reported at the setting's path, with what to write instead (``problems.py``)::

    sources.cargo.concurrency = 0 is not a whole number from 1 to 32 (set in .dlt/config.toml or ...)
    sources.cargo.segments[1].filter.groups[0].conditions[2]: string conditions take "values" ...
    --until 2026-03-01T00:00:00+00:00 must be after --since 2026-03-02T00:00:00+00:00
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Self, TypeVar, overload
from urllib.parse import urlsplit

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    SecretStr,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)

from .catalogue import DIMENSION_NAMES
from .errors import CargoConfigurationError
from .filters import MATCH_ALL, Filter, Sort
from .instants import DATE_FORMS, to_instant
from .problems import (
    SETTINGS_ERROR,
    UNION_TAGS,
    Loc,
    ProblemNode,
    describe_errors,
    kind_of,
    problems_error,
    setting_error,
    settings_error,
    value_error,
)
from .settings import (
    API_TOKEN_ENV,
    DEFAULT_BASE_URL,
    DEFAULT_CONCURRENCY,
    DEFAULT_LOCK_WAIT_SECONDS,
    DEFAULT_MAX_LOOKBACK,
    DEFAULT_OVERLAP,
    DEFAULT_SETTLE,
)
from .specs import TABLE_SPECS
from .sqltext import is_uuid

__all__ = [
    "EXPORT_TABLES",
    "FACT_TABLES",
    "SEGMENT_TABLES",
    "SETTINGS_SECTION",
    "TABLE_NAMES",
    "CargoConnection",
    "CargoSettings",
    "OutputTarget",
    "PipelineSettings",
    "SegmentExport",
    "configured_settings",
    "configured_value",
    "default_duckdb_path",
    "parse_instant",
    "parse_segment_exports",
    "parse_setting",
    "parse_settings",
]

SETTINGS_SECTION = "sources.cargo"
"""Where dlt looks for the settings (``[sources.cargo]``, ``SOURCES__CARGO__*``)."""
SECRET_SETTINGS = frozenset({"api_token"})
"""Read with ``dlt.secrets``: dlt records them in its traces as ``<secret>``, never in clear."""

FACT_TABLES: tuple[str, ...] = tuple(TABLE_SPECS)
EXPORT_TABLES: tuple[str, ...] = ("run_outputs", "batch_outputs", "run_metrics", "run_metrics_daily", "batch_failures")
SEGMENT_TABLES = "segment_records"
"""Selects every configured segment export (each loads into a table of its own)."""
TABLE_NAMES: tuple[str, ...] = (*FACT_TABLES, *EXPORT_TABLES, *DIMENSION_NAMES, SEGMENT_TABLES)
MAX_CONCURRENCY = 32

SEGMENTS_SETTING = f"{SETTINGS_SECTION}.segments"
SEGMENTS_HEADING = "the segment configuration"

M = TypeVar("M", bound=BaseModel)


# -- values ------------------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """A config value as plain dicts, lists and scalars (dlt may hand over TOML document containers)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value


def _number(value: Any) -> float | None:
    """A number written as a number or as text (environment variables are text); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _whole(low: int, high: int | None, what: str) -> PlainValidator:
    def parse(value: Any) -> int:
        number = _number(value)
        if number is None or not number.is_integer() or number < low or (high is not None and number > high):
            raise value_error(what)
        return int(number)

    return PlainValidator(parse)


def _positive(what: str, *, zero: bool = False) -> PlainValidator:
    def parse(value: Any) -> float:
        number = _number(value)
        if number is None or number < 0 or (number == 0 and not zero):
            raise value_error(what)
        return number

    return PlainValidator(parse)


def _optional(parse: PlainValidator) -> PlainValidator:
    """``parse``, with None (the setting left out) kept as None."""

    def optional(value: Any) -> Any:
        return None if value is None else parse.func(value)  # type: ignore[call-arg]

    return PlainValidator(optional)


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str | int) else None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise value_error("is not true or false")


def _instant(value: Any) -> datetime | None:
    """The one date parser (``instants.to_instant``): a date or an ISO datetime, naive = UTC."""
    if value is None or value == "":
        return None
    if not isinstance(value, str | date):
        raise value_error(f"is not {DATE_FORMS}")
    try:
        return to_instant(value)
    except ValueError:
        raise value_error(f"is not {DATE_FORMS}") from None


def _token(value: Any) -> SecretStr:
    secret = value.get_secret_value() if isinstance(value, SecretStr) else value
    if secret is None or (isinstance(secret, str) and not secret.strip()):
        raise setting_error("no Cargo API token")
    if not isinstance(secret, str):
        raise setting_error(f"the Cargo API token must be text, not {type(secret).__name__}")
    return SecretStr(secret.strip())


def _base_url(value: Any) -> str:
    text = value.strip() if isinstance(value, str) else ""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise value_error("is not an http:// or https:// URL")
    return text


def _workspace_uuid(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not is_uuid(value):
        raise value_error("is not a UUID: give the workspace's UUID, or leave it out")
    return str(value)


def _tables(value: Any) -> list[str]:
    if value is None:
        return list(TABLE_NAMES)
    listed: Any = value
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):  # dlt hands a TOML/env list over as its JSON text
            try:
                listed = orjson.loads(text)
            except orjson.JSONDecodeError:
                listed = text.split(",")
        else:
            listed = text.split(",")
    if not isinstance(listed, list | tuple):
        raise setting_error(f"must be a list of table names, not {kind_of(value)}")
    names = [str(t).strip() for t in listed if str(t).strip()]
    unknown = [t for t in names if t not in TABLE_NAMES]
    if unknown or not names:
        raise setting_error(
            f"unknown table(s) {', '.join(unknown) or '(none given)'}: choose from {', '.join(TABLE_NAMES)}"
        )
    return list(dict.fromkeys(names))


def _json_list(what: str, *, empty: Any, table: str | None = None) -> BeforeValidator:
    """A list setting as written, or as its JSON text (environment variables); ``empty`` when absent.
    ``table``: the message for a single table written where a list of them belongs."""

    def parse(value: Any) -> Any:
        if value is None or value in ("", []):
            return empty
        if isinstance(value, str):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                raise setting_error(
                    f"is not {what} (JSON text from the environment could not be read: {exc})"
                ) from None
        value = plain(value)
        if isinstance(value, dict) and table is not None:
            raise setting_error(table)
        if not isinstance(value, list):
            raise setting_error(f"must be {what}, not {kind_of(value)}")
        return value

    return BeforeValidator(parse)


# -- run_outputs ---------------------------------------------------------------------------------------


def _workflow_uuid(value: Any) -> str:
    if not is_uuid(value):
        raise setting_error(f"must be a workflow UUID, not {value!r}")
    return str(value).lower()


def _node_slug(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise setting_error(f"must be a node slug of the workflow (see release_nodes.slug), not {value!r}")
    return value.strip()


class OutputTarget(ProblemNode):
    """One ``(workflow, output node slug)`` pair of ``sources.cargo.run_outputs`` whose run outputs are exported."""

    workflow_uuid: Annotated[str, PlainValidator(_workflow_uuid)]
    output_node_slug: Annotated[str, PlainValidator(_node_slug)]

    @classmethod
    def shape_problem(cls, value: Any) -> str:
        return f"must be a table with workflow_uuid and output_node_slug, not {kind_of(value)}"

    @classmethod
    def own_problems(cls, raw: Mapping[str, Any]) -> list[tuple[Loc, str]]:
        unknown = sorted(set(raw) - {"workflow_uuid", "output_node_slug"})
        if unknown:
            return [((), f"has unknown key(s) {', '.join(unknown)}: use workflow_uuid and output_node_slug")]
        return []

    @property
    def state_key(self) -> str:
        return f"{self.workflow_uuid}:{self.output_node_slug}"


# -- segments ----------------------------------------------------------------------------------------

EXPORT_KEYS = ("segment_uuid", "model_uuid", "filter", "sort", "limit", "table_name", "update_column")
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def _uuid(value: Any) -> str:
    if not is_uuid(value):
        raise setting_error(f"{value!r} is not a UUID (8-4-4-4-12 hexadecimal digits)")
    return str(value).lower()


def _table_name(value: Any) -> str:
    if not isinstance(value, str) or not _TABLE_NAME.fullmatch(value):
        raise setting_error(
            f"{value!r} is not a table name: use letters, digits and underscores (not first), at most 63 characters"
        )
    if value.lower() in TABLE_NAMES or value.lower().startswith("_dlt"):
        raise setting_error(f"{value!r} is taken by the source's own tables; choose another")
    return value


def _update_column(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise setting_error(f"must be a date column's slug, not {value!r}")
    return value


def _limit(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise setting_error(f"must be a whole number >= 1, not {value!r}")
    return value


def _unknown_export_keys(raw: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    for key in raw:
        if key not in EXPORT_KEYS:
            close = [k for k in EXPORT_KEYS if k.replace("_", "") == str(key).replace("_", "").lower()]
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            problems.append(((key,), f"unknown key{hint}; allowed: {', '.join(EXPORT_KEYS)}"))
    return problems


class _Export(ProblemNode):
    table_name: Annotated[str | None, PlainValidator(_table_name)] = None
    update_column: Annotated[str | None, PlainValidator(_update_column)] = None

    @classmethod
    def own_problems(cls, raw: Mapping[str, Any]) -> list[tuple[Loc, str]]:
        return _unknown_export_keys(raw)


class SavedSegmentExport(_Export):
    """``{segment_uuid}``: a saved segment, with its model, filter, sort and limit."""

    segment_uuid: Annotated[str, PlainValidator(_uuid)]

    @classmethod
    def own_problems(cls, raw: Mapping[str, Any]) -> list[tuple[Loc, str]]:
        brought = [
            ((key,), f"a saved segment brings its own {key}; to export with another one use model_uuid + filter")
            for key in ("filter", "sort", "limit")
            if key in raw
        ]
        return super().own_problems(raw) + brought


class ModelExport(_Export):
    """``{model_uuid, filter?, sort?, limit?}``: a model's records matching a filter (default: all)."""

    model_uuid: Annotated[str, PlainValidator(_uuid)]
    filter: Filter | None = None
    sort: Sort | None = None
    limit: Annotated[int | None, PlainValidator(_limit)] = None

    def after_problems(self) -> list[tuple[Loc, str]]:
        if self.update_column is not None and self.limit is not None:
            return [
                (
                    ("update_column",),
                    "cannot be combined with limit: later syncs read only recent rows, and the limit would apply "
                    "to those",
                )
            ]
        return []


def _export_kind(value: Any) -> str:
    if isinstance(value, SavedSegmentExport) or (isinstance(value, Mapping) and "segment_uuid" in value):
        return "saved_segment"
    return "model"


def _one_export(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Before the union: a table naming exactly one of ``segment_uuid`` and ``model_uuid``."""
    if isinstance(value, _Export):
        return value
    if not isinstance(value, Mapping):
        raise setting_error('each export is a table: {segment_uuid = "..."} or {model_uuid = "...", filter = {...}}')
    if ("segment_uuid" in value) == ("model_uuid" in value):
        both = ", not both" if "segment_uuid" in value else ""
        one = "give exactly one of segment_uuid (a saved segment) or model_uuid (with filter, sort, limit)" + both
        raise problems_error("SegmentExport", [*_unknown_export_keys(value), ((), one)])
    return handler(value)


UNION_TAGS.update(("saved_segment", "model"))

SegmentExportSetting = Annotated[
    Annotated[SavedSegmentExport, Tag("saved_segment")] | Annotated[ModelExport, Tag("model")],
    Discriminator(_export_kind),
    WrapValidator(_one_export),
]


def _distinct_tables(exports: list[SavedSegmentExport | ModelExport]) -> list[SavedSegmentExport | ModelExport]:
    seen: dict[str, int] = {}
    problems: list[tuple[Loc, str]] = []
    for index, export in enumerate(exports):
        if export.table_name is None:
            continue
        key = export.table_name.lower()
        if key in seen:
            problems.append(
                ((index, "table_name"), f"{export.table_name!r} is already used by {SEGMENTS_SETTING}[{seen[key]}]")
            )
        seen[key] = index
    if problems:
        raise problems_error("segments", problems)
    return exports


SegmentExports = Annotated[
    list[SegmentExportSetting],
    AfterValidator(_distinct_tables),
    _json_list(
        "a list of tables",
        empty=[],
        table=f"must be a list of tables: write [[{SEGMENTS_SETTING}]] (double brackets) in TOML, once per export",
    ),
]


@dataclass(frozen=True)
class SegmentExport:
    """One entry of ``sources.cargo.segments`` as the export reads it (``index``: its place, for messages)."""

    index: int
    segment_uuid: str | None = None
    model_uuid: str | None = None
    filter: dict[str, Any] | None = None
    sort: list[dict[str, str]] | None = None
    limit: int | None = None
    table_name: str | None = None
    update_column: str | None = None

    @property
    def where(self) -> str:
        """Where the entry sits in the configuration: ``sources.cargo.segments[i]``."""
        return f"{SEGMENTS_SETTING}[{self.index}]"

    @classmethod
    def of(cls, index: int, setting: SavedSegmentExport | ModelExport) -> SegmentExport:
        if isinstance(setting, SavedSegmentExport):
            return cls(index, segment_uuid=setting.segment_uuid, **_export_names(setting))
        return cls(
            index,
            model_uuid=setting.model_uuid,
            filter=setting.filter.as_sent() if setting.filter is not None else dict(MATCH_ALL),
            sort=[{"columnSlug": str(s.columnSlug), "kind": str(s.kind)} for s in setting.sort]
            if setting.sort is not None
            else None,
            limit=setting.limit,
            **_export_names(setting),
        )


def _export_names(setting: _Export) -> dict[str, Any]:
    return {"table_name": setting.table_name, "update_column": setting.update_column}


# -- the settings ----------------------------------------------------------------------------------


class CargoConnection(BaseModel):
    """How to reach Cargo: what every command needs, the sync and the read-only ones alike."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_token: Annotated[SecretStr, PlainValidator(_token)] = Field(default=SecretStr(""), validate_default=True)
    """The workspace's API token (a secret: ``.dlt/secrets.toml`` or ``SOURCES__CARGO__API_TOKEN``)."""
    base_url: Annotated[str, PlainValidator(_base_url)] = DEFAULT_BASE_URL
    """Cargo's API host, or the emulator's URL."""
    workspace_uuid: Annotated[str | None, PlainValidator(_workspace_uuid)] = None
    """Sent as ``selected-workspace-uuid`` when given."""

    @property
    def token(self) -> str:
        return self.api_token.get_secret_value()


class CargoSettings(CargoConnection):
    """Every setting of the Cargo source (``cargo_source``'s parameters, and ``lock_wait_seconds``)."""

    start_date: Annotated[datetime | None, PlainValidator(_instant)] = None
    tables: Annotated[list[str], PlainValidator(_tables)] = Field(default=None, validate_default=True)
    concurrency: Annotated[int, _whole(1, MAX_CONCURRENCY, f"is not a whole number from 1 to {MAX_CONCURRENCY}")] = (
        DEFAULT_CONCURRENCY
    )
    max_lookback_days: Annotated[float, _positive("is not a positive number of days")] = (
        DEFAULT_MAX_LOOKBACK.total_seconds() / 86400
    )
    overlap_seconds: Annotated[float, _positive("is not a number of seconds, 0 or more", zero=True)] = (
        DEFAULT_OVERLAP.total_seconds()
    )
    settle_seconds: Annotated[float, _positive("is not a number of seconds, 0 or more", zero=True)] = (
        DEFAULT_SETTLE.total_seconds()
    )
    request_timeout: Annotated[float, _positive("is not a positive number of seconds")] = 90.0
    since: Annotated[datetime | None, PlainValidator(_instant)] = None
    until: Annotated[datetime | None, PlainValidator(_instant)] = None
    hard_delete: Annotated[bool, PlainValidator(_flag)] = False
    run_outputs: Annotated[
        list[OutputTarget] | None, _json_list("a list of {workflow_uuid, output_node_slug} tables", empty=None)
    ] = None
    run_metrics_per_release: Annotated[bool, PlainValidator(_flag)] = False
    segments: SegmentExports = []
    max_skipped_rows: Annotated[int, _whole(0, None, "is not a whole number of rows, 0 or more")] = 0
    step_rows: Annotated[int | None, _optional(_whole(1, None, "is not a whole number of rows, 1 or more"))] = None
    """Rows of the fact tables one extraction reads at most before it commits (``steps.py``); None: no
    limit (``cargo-elt sync``: ``steps.DEFAULT_STEP_ROWS``)."""
    step_seconds: Annotated[float | None, _optional(_positive("is not a positive number of seconds"))] = None
    """Seconds one extraction reads at most before it commits; None: no limit (``cargo-elt sync``: 300)."""
    lock_wait_seconds: Annotated[
        float,
        _positive(
            "is not a number of seconds: use 0 (refuse at once while another sync of the pipeline runs) or more",
            zero=True,
        ),
    ] = DEFAULT_LOCK_WAIT_SECONDS
    """How long a sync waits for another sync of the same pipeline (the CLI and the DAG; not the source)."""

    @model_validator(mode="after")
    def _across(self) -> Self:
        problems: list[str] = []
        if self.overlap_seconds < self.settle_seconds:
            problems.append(
                f"${{overlap_seconds}} ({self.overlap_seconds:g}) must be at least ${{settle_seconds}} "
                f"({self.settle_seconds:g}): a row updated while the last sync ran would otherwise be missed"
            )
        if self.until is not None and self.since is None:
            problems.append("${until} needs ${since}: a backfill chunk is [since, until)")
        if self.since is not None and self.until is not None and self.until <= self.since:
            problems.append(f"${{until}} {self.until.isoformat()} must be after ${{since}} {self.since.isoformat()}")
        if problems:
            raise problems_error("CargoSettings", [((), p) for p in problems], kind=SETTINGS_ERROR)
        return self

    @property
    def settle(self) -> timedelta:
        return timedelta(seconds=self.settle_seconds)

    @property
    def overlap(self) -> timedelta:
        return timedelta(seconds=self.overlap_seconds)

    @property
    def max_lookback(self) -> timedelta:
        return timedelta(days=self.max_lookback_days)

    @property
    def segment_exports(self) -> list[SegmentExport]:
        return [SegmentExport.of(index, setting) for index, setting in enumerate(self.segments)]

    def source_arguments(self) -> dict[str, Any]:
        """``cargo_source``'s arguments for these settings (it validates them again, which is cheap)."""
        values = self.model_dump(exclude={"lock_wait_seconds", "segments", "run_outputs"})
        values["api_token"] = self.token
        for name in ("start_date", "since", "until"):
            values[name] = values[name].isoformat() if values[name] is not None else None
        values["run_outputs"] = [t.model_dump() for t in self.run_outputs] if self.run_outputs is not None else None
        values["segments"] = [s.model_dump(exclude_unset=True) for s in self.segments]
        return values


# -- the pipeline ----------------------------------------------------------------------------------

_PIPELINE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def _pipeline_name(value: Any) -> str:
    if not isinstance(value, str) or not _PIPELINE_NAME.fullmatch(value) or value.strip(".") == "":
        raise value_error(
            "is not usable as a folder name: use letters, digits, '_', '-' and '.' (not starting with '.' or '-')"
        )
    return value


_MEMORY_SIZE = re.compile(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)


def _memory_limit(value: Any) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if text.lower() in ("auto", "none"):
        return text.lower()
    if not _MEMORY_SIZE.fullmatch(text):
        raise value_error(
            "is not a size: use e.g. 256MB or 2GB, auto (the default: sized from the step and the machine), "
            "or none for DuckDB's own default"
        )
    return text


def default_duckdb_path(pipeline_name: str) -> str:
    """The DuckDB file of a pipeline when none is given: ``<pipeline-name>_warehouse.duckdb``.

    Not ``<pipeline-name>.duckdb``: DuckDB names the catalog after the file, and a catalog named
    like the dataset (``cargo.duckdb`` holding schema ``cargo``) makes DuckDB's binder fail on merges.
    """
    return f"{pipeline_name}_warehouse.duckdb"


class PipelineSettings(BaseModel):
    """Where a pipeline of the source writes: its name (its folder), its dataset, its DuckDB file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pipeline_name: Annotated[str, PlainValidator(_pipeline_name)] = "cargo"
    dataset_name: str = "cargo"
    duckdb_path: str | None = None
    """The DuckDB file; ``None``: ``default_duckdb_path(pipeline_name)`` in the working directory."""
    duckdb_memory_limit: Annotated[str, PlainValidator(_memory_limit)] = "auto"
    """DuckDB's ``memory_limit`` while the sync loads: ``auto`` (sized from the step and the machine,
    ``pipelines/duckdb_load.auto_memory_limit``), ``none`` (DuckDB's own: 80 % of the machine) or a size."""

    @property
    def duckdb_file(self) -> str:
        return self.duckdb_path or default_duckdb_path(self.pipeline_name)

    @model_validator(mode="after")
    def _catalog_is_not_the_schema(self) -> Self:
        if Path(self.duckdb_file).stem.lower() == self.dataset_name.lower():
            raise settings_error(
                f"the DuckDB file {self.duckdb_file!r} is named like the dataset {self.dataset_name!r}, which DuckDB "
                "cannot tell apart (catalog and schema): choose another ${duckdb_path} or ${dataset_name}"
            )
        return self


# -- parsing -----------------------------------------------------------------------------------------


def _hint(fields: Mapping[str, Any], labels: Mapping[str, str]) -> Any:
    """Where a top-level setting is set, after its problem (not for command-line options)."""

    def hint(loc: Loc) -> str:
        if len(loc) != 1 or loc[0] not in fields or loc[0] in labels:
            return ""
        name = str(loc[0])
        env = API_TOKEN_ENV if name == "api_token" else f"SOURCES__CARGO__{name.upper()}"
        return f" (set it in .dlt/{'secrets' if name in SECRET_SETTINGS else 'config'}.toml or {env})"

    return hint


@overload
def parse_settings(raw: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> CargoSettings: ...


@overload
def parse_settings(raw: Mapping[str, Any], labels: Mapping[str, str] | None = None, *, model: type[M]) -> M: ...


def parse_settings(
    raw: Mapping[str, Any], labels: Mapping[str, str] | None = None, *, model: type[BaseModel] = CargoSettings
) -> BaseModel:
    """``raw`` as ``model``; else ``CargoConfigurationError`` naming every problem at its setting's path.

    ``labels`` names settings given on the command line by their option (``{"since": "--since"}``).
    """
    names = dict(labels or {})
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        root = SETTINGS_SECTION if issubclass(model, CargoConnection) else ""
        hint = _hint(model.model_fields, names) if root else None
        heading = f"the {SETTINGS_SECTION} settings" if root else "the pipeline settings"
        if all(e["loc"][:1] == ("segments",) for e in exc.errors()):
            heading = SEGMENTS_HEADING
        raise CargoConfigurationError(describe_errors(exc, root, names, heading, hint)) from None


def parse_setting(name: str, value: Any, label: str | None = None) -> Any:
    """One setting of ``CargoSettings``, parsed and checked alone; ``None`` or ``""``: its default."""
    field = CargoSettings.model_fields[name]
    if value is None or value == "":
        if not field.validate_default:
            return field.get_default(call_default_factory=True)
        value = None
    try:
        return _adapter(name).validate_python(value)
    except ValidationError as exc:
        located = problems_error(name, [], exc.errors(include_url=False), prefix=(name,))
        labels = {name: label} if label else {}
        heading = SEGMENTS_HEADING if name == "segments" else f"{SETTINGS_SECTION}.{name}"
        message = describe_errors(located, SETTINGS_SECTION, labels, heading, _hint(CargoSettings.model_fields, labels))
        raise CargoConfigurationError(message) from None


_ADAPTERS: dict[str, TypeAdapter[Any]] = {}


def _adapter(name: str) -> TypeAdapter[Any]:
    if name not in _ADAPTERS:
        field = CargoSettings.model_fields[name]
        _ADAPTERS[name] = TypeAdapter(Annotated[field.annotation, *field.metadata])  # type: ignore[arg-type]
    return _ADAPTERS[name]


def parse_instant(value: Any, setting: str) -> datetime | None:
    """A date setting (``None`` or ``""``: not set) as an aware UTC datetime; the error names ``setting``."""
    try:
        return _DATE.validate_python(value)
    except ValidationError as exc:
        raise CargoConfigurationError(describe_errors(exc, setting)) from None


_DATE: TypeAdapter[datetime | None] = TypeAdapter(Annotated[datetime | None, PlainValidator(_instant)])


def parse_segment_exports(raw: Any) -> list[SegmentExport]:
    """``sources.cargo.segments`` alone (``[]`` when not set), every problem of every entry at once."""
    exports: list[SavedSegmentExport | ModelExport] = parse_setting("segments", raw)
    return [SegmentExport.of(index, setting) for index, setting in enumerate(exports)]


def configured_value(name: str) -> Any:
    """A ``[sources.cargo]`` value as dlt finds it (environment, toml files, ...), or None."""
    import dlt

    accessor = dlt.secrets if name in SECRET_SETTINGS else dlt.config
    try:
        value = plain(accessor.get(f"{SETTINGS_SECTION}.{name}"))
    except Exception:
        return None
    if isinstance(value, str) and name not in SECRET_SETTINGS and _NUMBER.fullmatch(value.strip()):
        text = value.strip()  # an environment variable's number, read as TOML would read it
        return float(text) if "." in text else int(text)
    return value


_NUMBER = re.compile(r"-?\d+(\.\d+)?")


@overload
def configured_settings(
    overrides: Mapping[str, Any] | None = None, labels: Mapping[str, str] | None = None
) -> CargoSettings: ...


@overload
def configured_settings(
    overrides: Mapping[str, Any] | None = None, labels: Mapping[str, str] | None = None, *, model: type[M]
) -> M: ...


def configured_settings(
    overrides: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
    *,
    model: type[BaseModel] = CargoSettings,
) -> BaseModel:
    """``model`` from dlt's configuration, ``overrides`` (not None) taking precedence (command-line options,
    named by ``labels``); ``CargoConfigurationError`` naming every problem."""
    raw: dict[str, Any] = {}
    for name in model.model_fields:
        value = (overrides or {}).get(name)
        if value is None:
            value = configured_value(name)
        if value is not None and value != "":
            raw[name] = value
    return parse_settings(raw, labels, model=model)
