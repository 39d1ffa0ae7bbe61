"""Segment filters (REFERENCE.md 6.2) compiled to ClickHouse predicates over a model's table.

Why one module: ``segments/fetch``, ``segments/download`` (and the shard producers in ``exports.py``)
must agree row for row on what a filter matches and in which order, and a ``segment`` condition
re-uses a saved segment's own filter, sort and limit. Everything that turns Cargo's filter JSON into
SQL therefore lives here, and every caller value reaches the SQL through ``lit`` (or is checked by
ClickHouse's own parser, for ``sql`` clauses).

Documented quirks kept: a filter, group or ``matchConditions`` without ``conjonction`` (e.g. the
misspelling ``conjunction``, dropped as an unknown key) matches nothing (200, empty); a condition
given ``value`` where ``values`` is required (or vice versa), or missing the value of a valued
operator, is silently dropped. Any other malformed condition of a known kind, an unknown kind or
operator, or a column the model lacks answers 400 ``invalidFilter``.

Semantics per kind ([I] = our inference, the reference does not say):

* ``string``: ``is``/``isNot`` exact (case-sensitive) against any of ``values``; ``contains`` /
  ``doesNotContain`` case-insensitive (any value / no value); ``startsWith`` / ``endsWith``
  case-sensitive, any value; ``isEmpty`` = NULL or ``''``.
* ``number`` / ``date``: ``is``, ``isNot``, ``greaterThan``, ``lowerThan`` (strict) with ``value``;
  ``between`` inclusive with ``firstValue`` / ``lastValue``. [I] A date ``is`` / ``isNot`` with a bare
  day (``"2025-01-01"``) compares calendar days (UTC); other date values are instants.
* ``boolean``: ``isTrue``, ``isFalse``, ``isNull``, ``isNotNull``.
* ``object`` / ``array`` / ``vector`` / ``any`` ``isNull``: [I] SQL NULL; for JSON-text columns also
  ``''`` and ``null``; for native arrays also the empty array (warehouses such as BigQuery have no
  NULL arrays, they store them empty).
* ``objectProperty`` on an object column: the top-level key ``propertyName`` of the JSON object.
  [I] The property's text is the string itself for a JSON string, else its JSON text (``12``,
  ``true``, ``{...}``). ``is``/``isNot`` exact; ``contains``/``doesNotContain`` case-insensitive;
  ``startsWith``/``endsWith`` case-sensitive; ``greaterThan``/``lowerThan``/``between`` (inclusive,
  ``value`` + ``otherValue``) compare numbers when the operand(s) are numeric text, else strings
  lexicographically (which orders ISO dates); ``isNull`` = key absent or JSON null; ``isEmpty`` =
  null, ``""``, ``[]`` or ``{}``. Negative operators (``isNot``, ``doesNotContain``, ``isNotNull``,
  ``isNotEmpty``) are exact complements, so a missing property matches ``isNot``. [I] ``value`` may
  also be a JSON number (converted to its text).
* ``objectProperty`` on an array column, and ``array`` ``matchConditions``: [I] a record matches when
  *some element* satisfies all (``and``) / any (``or``) of the property conditions — one element must
  satisfy the combination. For an array of scalars (``tags`` is ``Array(String)``) the element itself
  is the operand and ``propertyName`` is ignored (send ``""`` or ``"value"``); for a JSON array of
  objects ``propertyName`` names the element's key, and an empty ``propertyName`` means the element.
* ``object`` ``matchConditions``: the property conditions combined with ``conjonction`` over the
  column's object ([I] a property condition's own ``columnSlug`` is ignored there: the parent's
  column is used).
* ``relatedModelUuid`` on a column condition: [I] the record matches when *some related record*
  satisfies the condition (for a contact: its company; for a company: any of its contacts). Models
  relate through ``emulator.catalog.MODEL_RELATIONSHIPS`` (``contacts.company_domain`` =
  ``companies.domain``); an unrelated model is an ``invalidFilter``.
* ``segment`` ``in``/``notIn``: membership in another saved segment of the same model, evaluated
  with that segment's filter, sort and limit. [I] An unknown, deleted or other-model segment, a
  cycle, or nesting deeper than ``MAX_SEGMENT_DEPTH`` is an ``invalidFilter``.
* ``occurrence``: [I] counts the related model's records (through the relationship) that satisfy
  ``conditions`` (combined with ``conjonction``; only column kinds allowed) and whose time — the
  related model's ``timeColumnSlug``, else ``_emitted_at`` — falls in ``period``; ``frequency`` is then
  checked on that count.
* ``enrollment``: [I] counts, per record (run ``record_id`` = model ``_id``), the workspace's live
  (not soft-deleted) runs of ``workflowUuid``: ``workflowEntered`` = runs, timed by ``created_at``;
  ``workflowNodeExecuted`` = executions (of ``nodeSlug`` when given), timed by the execution's
  ``started_at``; ``workflowLeft`` = finished runs, timed by ``finished_at``. An unknown workflow, or
  ``nodeSlug`` with another activity, is an ``invalidFilter``.
* ``period`` ([I], ``unit`` must be ``day``; age = now - time, now = the emulator's virtual clock):
  ``lessThan N`` = age < N days; ``moreThan N`` = age > N days; ``exactly N`` = N <= age < N + 1 days.
  ``frequency``: ``not`` = count 0; ``moreThan`` / ``lessThan`` / ``exactly`` compare the count (so
  ``lessThan`` and ``exactly 0`` include records with no activity at all).
* ``sql``: ``name`` + ``clause``, a boolean expression over the model's own columns. The clause is
  canonicalised and parsed by ClickHouse (``formatQuerySingleLine`` + ``EXPLAIN AST`` of
  ``SELECT 1 FROM t WHERE (<clause>)``); anything but a plain expression is refused: subqueries,
  table functions and named tables, settings, ``FORMAT``/``INTO``, several statements, window
  functions, query parameters, identifiers other than the model's columns and lambda parameters,
  and functions that reach outside the row (``file``, ``dictGet``, ``sleep``, ...). The canonical text
  (not the caller's) is what runs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from ..catalog import MODEL_RELATIONSHIPS
from ..sqlclock import aliases, pin_clock, remaining_clock
from ..sqlguard import DENIED_FUNCTIONS, AstNode, parse_ast_dump
from ..store import ClickHouseStore
from ..validation import parse_timestamp
from . import catalog
from .common import ApiError, lit, rejected, uuid_lit
from .facts import RUN_TABLE, table
from .limits import HIDE_DELETED_RUNS
from .payloads import SegmentFilter, SortItem
from .resolver import model_columns

MAX_SEGMENT_DEPTH = 8
"""[I] How deep ``segment`` conditions may nest (segment A in B in C ...) before it is refused."""

ID_COLUMN = "_id"
DEFAULT_TIME_COLUMN = "_emitted_at"
COLUMN_KINDS = frozenset({"string", "number", "date", "boolean", "object", "array", "objectProperty", "vector", "any"})
OCCURRENCE_CONDITION_KINDS = frozenset({"string", "number", "object", "array", "any", "vector", "date", "boolean"})

SQL_EXTRA_DENIED = frozenset(
    {
        "sleep",
        "sleepeachrow",
        "arrayjoin",
        "globalin",
        "globalnotin",
        "globalnullin",
        "globalnotnullin",
        "initializeaggregation",
        "runningaccumulate",
        "transactionid",
        "transactionlatestsnapshot",
        "transactionoldestsnapshot",
        "gethttpheader",
        "throwif",
        "hostname",
        "fqdn",
        "version",
        "uptime",
        "currentuser",
        "currentschemas",
        "currentprofiles",
        "currentroles",
        "enabledprofiles",
        "enabledroles",
        "defaultprofiles",
        "defaultroles",
        "serveruuid",
        "tcpport",
        "queryid",
        "initialqueryid",
        "shardnum",
        "shardcount",
        "blocknumber",
        "rownumberinallblocks",
        "rownumberinblock",
        "neighbor",
        "runningdifference",
        "runningdifferencestartingwithfirstvalue",
        "ignore",
    }
)
"""Functions a ``sql`` clause may not call on top of ``sqlguard.DENIED_FUNCTIONS``: ones that stall the
server, read server state, or depend on block layout (which would make shards disagree with fetch)."""

SQL_ALLOWED_NODES = frozenset({"Function", "Identifier", "Literal", "ExpressionList"})

RESOURCE_ERROR_CODES = frozenset({158, 159, 160, 241, 307, 396})
"""ClickHouse errors that are about load, not about the filter (they stay 500s)."""

_CODE = re.compile(r"^Code: (\d+)\.")


def invalid() -> ApiError:
    """Cargo's answer to a filter it cannot evaluate."""
    return rejected("invalidFilter")


def is_filter_error(exc: BaseException) -> bool:
    """Whether a ClickHouse failure while evaluating a filter is the filter's fault (-> invalidFilter)."""
    found = _CODE.match(str(exc).strip())
    return found is not None and int(found.group(1)) not in RESOURCE_ERROR_CODES


# -- models ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    """What compiling a filter needs to know about one model and its physical table."""

    uuid: str
    slug: str
    table: str
    columns: dict[str, str]
    """Physical columns of the table, name -> ClickHouse type, in table order (empty: no table)."""
    declared: dict[str, str]
    """Declared Cargo column types (``string``, ``object``, ...) by slug."""
    time_column: str
    entity: catalog.Entity


def load_model(store: ClickHouseStore, workspace_uuid: str, model_uuid: str) -> ModelInfo | None:
    """The model and its table's columns, or None when the workspace has no such model."""
    entity = catalog.get_entity(store, workspace_uuid, "model", model_uuid)
    if entity is None:
        return None
    name = "model_" + entity.uuid.replace("-", "")
    rows = store.rows(
        f"SELECT name, type FROM system.columns WHERE database = {lit(store.database)} AND table = {lit(name)} "
        "ORDER BY position"
    )
    declared = {str(c["slug"]): str(c.get("type")) for c in model_columns(entity.body)}
    time_column = entity.body.get("timeColumnSlug")
    return ModelInfo(
        uuid=entity.uuid,
        slug=str(entity.body.get("slug", "")),
        table=catalog.model_table(store, entity.uuid),
        columns={str(r["name"]): str(r["type"]) for r in rows},
        declared=declared,
        time_column=time_column if isinstance(time_column, str) else DEFAULT_TIME_COLUMN,
        entity=entity,
    )


def _inner_type(physical: str) -> tuple[str, bool]:
    """``(type without LowCardinality/Nullable, nullable)``."""
    text = physical
    if text.startswith("LowCardinality(") and text.endswith(")"):
        text = text[len("LowCardinality(") : -1]
    if text.startswith("Nullable(") and text.endswith(")"):
        return text[len("Nullable(") : -1], True
    return text, False


def quoted(name: str) -> str:
    """A column name as a ClickHouse identifier."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


# -- sort ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderKey:
    """One ORDER BY expression of a segment, with the type its values are cast back to for keyset paging."""

    expr: str
    direction: str
    type: str


def order_keys(sort: list[SortItem] | None, model: ModelInfo) -> list[OrderKey]:
    """The segment order: the sort items, then ``_id`` (unique) so the order is total and pages stable.

    [I] NULLs sort last in both directions. Sorting on a column the model lacks is an invalid filter.
    """
    keys: list[OrderKey] = []
    used: set[str] = set()
    for item in sort or []:
        if item.columnSlug not in model.columns:
            raise invalid()
        if item.columnSlug in used:
            continue
        used.add(item.columnSlug)
        keys.extend(_column_keys(item.columnSlug, model.columns[item.columnSlug], item.kind.upper()))
    if ID_COLUMN in model.columns and ID_COLUMN not in used:
        keys.extend(_column_keys(ID_COLUMN, model.columns[ID_COLUMN], "ASC"))
    return keys


def _column_keys(name: str, physical: str, direction: str) -> list[OrderKey]:
    inner, nullable = _inner_type(physical)
    column = quoted(name)
    if not nullable:
        return [OrderKey(column, direction, inner)]
    return [OrderKey(f"isNull({column})", "ASC", "UInt8"), OrderKey(f"assumeNotNull({column})", direction, inner)]


def order_sql(keys: list[OrderKey]) -> str:
    """``ORDER BY`` list of ``keys``."""
    return ", ".join(f"{k.expr} {k.direction}" for k in keys) or "tuple()"


def key_select_sql(keys: list[OrderKey]) -> str:
    """Extra select items carrying each key's value as text (``__k0``, ``__k1``, ...)."""
    return ", ".join(f"toString({k.expr}) AS __k{i}" for i, k in enumerate(keys))


def after_sql(keys: list[OrderKey], values: list[str]) -> str:
    """Rows strictly after the key ``values`` in the segment order (lexicographic, mixed directions)."""
    if len(values) != len(keys):
        raise ValueError("keyset values do not match the order keys")
    literals = [f"CAST({lit(v)} AS {k.type})" for k, v in zip(keys, values, strict=True)]
    terms: list[str] = []
    for i, key in enumerate(keys):
        equal = [f"{keys[j].expr} = {literals[j]}" for j in range(i)]
        step = f"{key.expr} {'>' if key.direction == 'ASC' else '<'} {literals[i]}"
        terms.append("(" + " AND ".join([*equal, step]) + ")")
    return "(" + " OR ".join(terms) + ")" if terms else "0"


# -- the compiler ----------------------------------------------------------------------------------


@dataclass
class FilterCompiler:
    """Compiles filters of one workspace; caches models and the virtual clock for one request."""

    store: ClickHouseStore
    workspace_uuid: str
    chain: tuple[str, ...] = ()
    """Saved segments being expanded (outermost first): the recursion guard."""
    now: datetime | None = None
    _models: dict[str, ModelInfo | None] = field(default_factory=dict)

    # -- entry points ------------------------------------------------------------------------------

    def model(self, model_uuid: str) -> ModelInfo | None:
        if model_uuid not in self._models:
            self._models[model_uuid] = load_model(self.store, self.workspace_uuid, model_uuid)
        return self._models[model_uuid]

    def predicate(self, flt: SegmentFilter, model: ModelInfo) -> str:
        """The WHERE predicate of ``flt`` over ``model``'s table (``0`` when the table is missing)."""
        if not model.columns or flt.conjonction is None:
            return "0"
        groups: list[str] = []
        for group in flt.groups:
            if group.conjonction is None:
                groups.append("0")
                continue
            parts = [p for p in (self.condition(c, model) for c in group.conditions) if p is not None]
            groups.append(_combine(parts, group.conjonction))
        return _combine(groups, flt.conjonction, empty="1")

    def members_sql(self, flt: SegmentFilter, sort: list[SortItem] | None, limit: int | None, model: ModelInfo) -> str:
        """``SELECT _id`` of the records a segment holds (its filter, order and limit)."""
        where = self.predicate(flt, model)
        select = f"SELECT {quoted(ID_COLUMN)} FROM {model.table} WHERE {where}"
        if limit is not None:
            select += f" ORDER BY {order_sql(order_keys(sort, model))} LIMIT {int(limit)}"
        return select

    # -- conditions --------------------------------------------------------------------------------

    def condition(self, condition: dict[str, Any], model: ModelInfo) -> str | None:
        """One condition as SQL over ``model``'s table; None when Cargo would silently drop it."""
        kind = condition.get("kind")
        if kind in COLUMN_KINDS:
            related = condition.get("relatedModelUuid")
            if related is not None:
                return self._related(condition, model, related)
            return column_condition(condition, model)
        if kind == "segment":
            return self._segment(condition, model)
        if kind == "occurrence":
            return self._occurrence(condition, model)
        if kind == "enrollment":
            return self._enrollment(condition, model)
        if kind == "sql":
            return self._sql(condition, model)
        raise invalid()

    def _relationship(self, model: ModelInfo, related_uuid: Any) -> tuple[ModelInfo, str, str]:
        """``(related model, own join column, related join column)``, or invalidFilter."""
        if not isinstance(related_uuid, str):
            raise invalid()
        related = self.model(related_uuid)
        if related is None:
            raise invalid()
        for from_slug, from_column, to_slug, to_column in MODEL_RELATIONSHIPS:
            if (model.slug, related.slug) == (from_slug, to_slug):
                own, other = from_column, to_column
            elif (model.slug, related.slug) == (to_slug, from_slug):
                own, other = to_column, from_column
            else:
                continue
            if own in model.columns and other in related.columns:
                return related, own, other
        raise invalid()

    def _related(self, condition: dict[str, Any], model: ModelInfo, related_uuid: Any) -> str | None:
        related, own, other = self._relationship(model, related_uuid)
        inner = column_condition(condition, related)
        if inner is None:
            return None
        return f"{quoted(own)} IN (SELECT {quoted(other)} FROM {related.table} WHERE {inner})"

    def _segment(self, condition: dict[str, Any], model: ModelInfo) -> str:
        operator = condition.get("operator")
        segment_uuid = condition.get("segmentUuid")
        if operator not in ("in", "notIn") or not isinstance(segment_uuid, str):
            raise invalid()
        if segment_uuid in self.chain or len(self.chain) >= MAX_SEGMENT_DEPTH:
            raise invalid()
        segment = catalog.get_entity(self.store, self.workspace_uuid, "segment", segment_uuid)
        if segment is None or segment.body.get("deletedAt") or segment.body.get("modelUuid") != model.uuid:
            raise invalid()
        try:
            flt = SegmentFilter.model_validate(segment.body.get("filter"))
            sort_raw = segment.body.get("sort")
            sort = [SortItem.model_validate(s) for s in sort_raw] if isinstance(sort_raw, list) else None
        except ValidationError:
            raise invalid() from None
        limit = segment.body.get("limit")
        limit = limit if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0 else None
        nested = FilterCompiler(self.store, self.workspace_uuid, (*self.chain, segment.uuid), self.now, self._models)
        members = nested.members_sql(flt, sort, limit, model)
        return f"{quoted(ID_COLUMN)} {'IN' if operator == 'in' else 'NOT IN'} ({members})"

    def _now(self) -> datetime:
        """The emulator's virtual clock (meta ``now``), else the wall clock for stores without it."""
        if self.now is None:
            from ..generator import parse_iso, read_meta  # late: the generator is heavy and optional here

            value = read_meta(self.store).get("now")
            self.now = parse_iso(value) if value else datetime.now(UTC)
        return self.now

    def _period_sql(self, period: Any, time_expr: str) -> str:
        if not isinstance(period, dict) or period.get("unit") != "day":
            raise invalid()
        days = _count_value(period.get("value"))
        now = self._now().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        age_ms = (
            f"(toUnixTimestamp64Milli(toDateTime64({lit(now)}, 3, 'UTC')) "
            f"- toUnixTimestamp64Milli(toDateTime64({time_expr}, 3, 'UTC')))"
        )
        day_ms = 86_400_000
        operator = period.get("operator")
        if operator == "lessThan":
            return f"{age_ms} < {days * day_ms}"
        if operator == "moreThan":
            return f"{age_ms} > {days * day_ms}"
        if operator == "exactly":
            return f"({age_ms} >= {days * day_ms} AND {age_ms} < {(days + 1) * day_ms})"
        raise invalid()

    def _occurrence(self, condition: dict[str, Any], model: ModelInfo) -> str:
        related, own, other = self._relationship(model, condition.get("relatedModelUuid"))
        conditions = condition.get("conditions")
        if not isinstance(conditions, list) or not all(isinstance(c, dict) for c in conditions):
            raise invalid()
        frequency = condition.get("frequency")
        if related.time_column not in related.columns:
            raise invalid()
        parts: list[str] = []
        for inner in conditions:
            if inner.get("kind") not in OCCURRENCE_CONDITION_KINDS or inner.get("relatedModelUuid") is not None:
                raise invalid()
            compiled = column_condition(inner, related)
            if compiled is not None:
                parts.append(compiled)
        conjonction = condition.get("conjonction")
        if conjonction is None:
            matching = "0"  # like a group without ``conjonction``: matches nothing
        elif conjonction in ("and", "or"):
            matching = _combine(parts, conjonction)
        else:
            raise invalid()
        period = self._period_sql(condition.get("period"), quoted(related.time_column))
        source = f"SELECT {quoted(other)} AS k FROM {related.table} WHERE ({matching}) AND {period}"
        return _frequency_sql(frequency, quoted(own), source)

    def _enrollment(self, condition: dict[str, Any], model: ModelInfo) -> str:
        workflow_uuid = condition.get("workflowUuid")
        activity = condition.get("activityKind")
        node_slug = condition.get("nodeSlug")
        if not isinstance(workflow_uuid, str) or activity not in (
            "workflowEntered",
            "workflowNodeExecuted",
            "workflowLeft",
        ):
            raise invalid()
        if node_slug is not None and (activity != "workflowNodeExecuted" or not isinstance(node_slug, str)):
            raise invalid()
        if catalog.get_entity(self.store, self.workspace_uuid, "workflow", workflow_uuid) is None:
            raise invalid()
        if ID_COLUMN not in model.columns:
            raise invalid()
        scope = [f"workspace_uuid = toUUID({lit(self.workspace_uuid)})", f"workflow_uuid = {uuid_lit(workflow_uuid)}"]
        if HIDE_DELETED_RUNS:
            scope.append("deleted_at IS NULL")
        runs = table(self.store, RUN_TABLE)
        if activity == "workflowEntered":
            scope.append(self._period_sql(condition.get("period"), "created_at"))
            source = f"SELECT record_id AS k FROM {runs} WHERE {' AND '.join(scope)}"
        elif activity == "workflowLeft":
            scope.append("finished_at IS NOT NULL")
            scope.append(self._period_sql(condition.get("period"), "assumeNotNull(finished_at)"))
            source = f"SELECT record_id AS k FROM {runs} WHERE {' AND '.join(scope)}"
        else:
            scope.append(self._period_sql(condition.get("period"), "x.started_at"))
            if node_slug is not None:
                scope.append(f"x.node_slug = {lit(node_slug)}")
            source = f"SELECT record_id AS k FROM {runs} ARRAY JOIN executions AS x WHERE {' AND '.join(scope)}"
        return _frequency_sql(condition.get("frequency"), quoted(ID_COLUMN), source)

    def _sql(self, condition: dict[str, Any], model: ModelInfo) -> str:
        name, clause = condition.get("name"), condition.get("clause")
        if not isinstance(name, str) or not isinstance(clause, str) or not clause.strip():
            raise invalid()
        now_ms = (self._now() - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
        return "(" + safe_clause(self.store, clause, set(model.columns), now_ms) + ")"


def _combine(parts: list[str], conjonction: str, *, empty: str | None = None) -> str:
    """Join predicates; an empty ``and`` matches everything and an empty ``or`` nothing (unless ``empty``)."""
    if not parts:
        return empty if empty is not None else ("1" if conjonction == "and" else "0")
    return "(" + f" {conjonction.upper()} ".join(parts) + ")"


def _count_value(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0 or raw != int(raw):
        raise invalid()
    return int(raw)


def _frequency_sql(frequency: Any, key: str, source: str) -> str:
    """``key`` whose number of rows in ``source`` (``SELECT k ...``) satisfies ``frequency``."""
    if not isinstance(frequency, dict):
        raise invalid()
    operator = frequency.get("operator")
    if operator == "not":
        return f"{key} NOT IN (SELECT k FROM ({source}))"
    if operator not in ("moreThan", "lessThan", "exactly"):
        raise invalid()
    n = _count_value(frequency.get("value"))
    grouped = f"SELECT k FROM ({source}) GROUP BY k HAVING count()"
    if operator == "moreThan":
        return f"{key} IN ({grouped} > {n})"
    if operator == "lessThan":
        return "0" if n == 0 else f"{key} NOT IN ({grouped} >= {n})"
    if n == 0:
        return f"{key} NOT IN (SELECT k FROM ({source}))"
    return f"{key} IN ({grouped} = {n})"


# -- column conditions -----------------------------------------------------------------------------


def column_condition(condition: Mapping[str, Any], model: ModelInfo) -> str | None:
    """A condition on one of ``model``'s own columns (kinds string ... any); None when dropped."""
    kind = condition.get("kind")
    operator = condition.get("operator")
    slug = condition.get("columnSlug")
    if not isinstance(operator, str) or not isinstance(slug, str) or slug not in model.columns:
        raise invalid()
    physical = model.columns[slug]
    declared = model.declared.get(slug)
    column = quoted(slug)
    if kind == "string":
        return _string_condition(column, operator, condition)
    if kind in ("number", "date"):
        return _ordered_condition(str(kind), column, operator, condition)
    if kind == "boolean":
        return _boolean_condition(column, operator)
    if kind in ("object", "array"):
        return _structured_condition(str(kind), column, physical, declared, operator, condition)
    if kind == "objectProperty":
        return _property_on_column(column, physical, declared, condition)
    if kind in ("vector", "any"):
        if operator not in ("isNull", "isNotNull"):
            raise invalid()
        null = _null_sql(column, physical, declared)
        return null if operator == "isNull" else f"NOT {null}"
    raise invalid()


def _values(raw: Any) -> list[str] | None:
    """A string condition's ``values`` (a string or an array of strings); None when malformed."""
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(v, str) for v in raw):
        return list(raw)
    return None


_NO_VALUE = {
    "isNull": "{col} IS NULL",
    "isNotNull": "{col} IS NOT NULL",
    "isEmpty": "ifNull(toString({col}), '') = ''",
    "isNotEmpty": "ifNull(toString({col}), '') != ''",
}


def _string_condition(column: str, operator: str, condition: Mapping[str, Any]) -> str | None:
    if operator in _NO_VALUE:
        return _NO_VALUE[operator].format(col=column)
    if operator not in ("is", "isNot", "contains", "doesNotContain", "startsWith", "endsWith"):
        raise invalid()
    if "values" not in condition:
        return None  # Cargo silently drops a condition without its ``values``
    values = _values(condition["values"])
    if values is None:
        raise invalid()
    text = f"toString({column})"
    listed = ", ".join(lit(v) for v in values)
    if operator == "is":
        return f"{text} IN ({listed})"
    if operator == "isNot":
        return f"{text} NOT IN ({listed})"
    if operator == "contains":
        return "(" + " OR ".join(f"positionCaseInsensitiveUTF8({text}, {lit(v)}) > 0" for v in values) + ")"
    if operator == "doesNotContain":
        return "(" + " AND ".join(f"positionCaseInsensitiveUTF8({text}, {lit(v)}) = 0" for v in values) + ")"
    function = "startsWith" if operator == "startsWith" else "endsWith"
    return "(" + " OR ".join(f"{function}({text}, {lit(v)})" for v in values) + ")"


_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _scalar(kind: str, raw: Any) -> str:
    """A number or date operand as SQL (anything else makes the filter invalid)."""
    if kind == "number" and isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
        return repr(raw)
    if kind == "date" and isinstance(raw, str) and parse_timestamp(raw) is not None:
        return f"parseDateTime64BestEffort({lit(raw)}, 3, 'UTC')"
    raise invalid()


def _ordered_condition(kind: str, column: str, operator: str, condition: Mapping[str, Any]) -> str | None:
    if operator in ("isNull", "isNotNull"):
        return _NO_VALUE[operator].format(col=column)
    if operator == "between":
        if "firstValue" not in condition or "lastValue" not in condition:
            return None
        low, high = _scalar(kind, condition["firstValue"]), _scalar(kind, condition["lastValue"])
        return f"{column} BETWEEN {low} AND {high}"
    comparisons = {"is": "=", "isNot": "!=", "greaterThan": ">", "lowerThan": "<"}
    if operator not in comparisons:
        raise invalid()
    if "value" not in condition:
        return None  # dropped, like a ``values`` given where ``value`` is expected
    value = condition["value"]
    operand = _scalar(kind, value)
    if kind == "date" and operator in ("is", "isNot") and isinstance(value, str) and _DAY.match(value):
        return f"toDate({column}) {comparisons[operator]} toDate({lit(value)})"
    return f"{column} {comparisons[operator]} {operand}"


def _boolean_condition(column: str, operator: str) -> str:
    sql = {
        "isTrue": f"{column} = true",
        "isFalse": f"{column} = false",
        "isNull": f"{column} IS NULL",
        "isNotNull": f"{column} IS NOT NULL",
    }
    if operator not in sql:
        raise invalid()
    return sql[operator]


_JSON_DECLARED = ("object", "array", "any", None)
"""Declared types of a text column that may hold JSON (object/array conditions refuse plain strings)."""


def _is_json_text(physical: str) -> bool:
    inner, _ = _inner_type(physical)
    return inner in ("String", "JSON", "Object('json')")


def _null_sql(column: str, physical: str, declared: str | None) -> str:
    """[I] Null test of an object/array/vector/any column (see the module docstring)."""
    inner, nullable = _inner_type(physical)
    tests: list[str] = []
    if nullable:
        tests.append(f"{column} IS NULL")
    if inner.startswith("Array("):
        tests.append(f"empty({column})")
    elif inner == "String" and declared in ("object", "array", "vector", "any"):
        tests.append(f"ifNull({column}, '') IN ('', 'null')" if nullable else f"{column} IN ('', 'null')")
    if not tests:
        return "0"
    return "(" + " OR ".join(tests) + ")"


def _structured_condition(
    kind: str, column: str, physical: str, declared: str | None, operator: str, condition: Mapping[str, Any]
) -> str | None:
    inner, nullable = _inner_type(physical)
    is_array = inner.startswith("Array(")
    if kind == "object" and not (_is_json_text(physical) and declared in _JSON_DECLARED):
        raise invalid()
    if kind == "array" and not (is_array or (_is_json_text(physical) and declared in _JSON_DECLARED)):
        raise invalid()
    if operator in ("isNull", "isNotNull"):
        null = _null_sql(column, physical, declared)
        return null if operator == "isNull" else f"NOT {null}"
    if operator != "matchConditions":
        raise invalid()
    properties = condition.get("propertyConditions")
    if not isinstance(properties, list) or not all(isinstance(p, dict) for p in properties):
        raise invalid()
    conjonction = condition.get("conjonction")
    if conjonction is None:
        for prop in properties:  # still refuse malformed property conditions
            _property_predicate(prop, _Operand.placeholder(), require_name=kind == "object")
        return "0"
    if conjonction not in ("and", "or"):
        raise invalid()
    if kind == "object":
        text = f"ifNull({column}, '')" if nullable else column
        parts = [_property_predicate(p, _Operand.json_property(text, p.get("propertyName"))) for p in properties]
        return _combine([p for p in parts if p is not None], str(conjonction))
    return _array_exists(column, inner, nullable, properties, str(conjonction))


def _property_on_column(column: str, physical: str, declared: str | None, condition: Mapping[str, Any]) -> str | None:
    inner, nullable = _inner_type(physical)
    if inner.startswith("Array(") or (_is_json_text(physical) and declared == "array"):
        return _array_exists(column, inner, nullable, [dict(condition)], "and", single=True)
    if not (_is_json_text(physical) and declared in _JSON_DECLARED):
        raise invalid()
    text = f"ifNull({column}, '')" if nullable else column
    return _property_predicate(condition, _Operand.json_property(text, condition.get("propertyName")))


def _array_exists(
    column: str,
    inner: str,
    nullable: bool,
    properties: list[dict[str, Any]],
    conjonction: str,
    *,
    single: bool = False,
) -> str | None:
    """Some element of the array satisfies the property conditions combined with ``conjonction``."""
    element = "__e"
    if inner.startswith("Array("):
        element_type, element_nullable = _inner_type(inner[len("Array(") : -1])
        source = column
        parts = [
            _property_predicate(p, _Operand.scalar(element, element_type, element_nullable), require_name=False)
            for p in properties
        ]
    else:
        text = f"ifNull({column}, '')" if nullable else column
        source = f"JSONExtractArrayRaw({text})"
        parts = [_property_predicate(p, _Operand.json_element(element, p.get("propertyName"))) for p in properties]
    kept = [p for p in parts if p is not None]
    if single and not kept:
        return None
    return f"arrayExists({element} -> {_combine(kept, conjonction)}, {source})"


@dataclass(frozen=True)
class _Operand:
    """A value a property condition tests: its text, whether it is missing, whether it is empty."""

    text: str
    missing: str
    empty: str

    @classmethod
    def placeholder(cls) -> _Operand:
        return cls("''", "1", "1")

    @classmethod
    def json_property(cls, json_text: str, name: Any) -> _Operand:
        """Top-level key ``name`` of the JSON object ``json_text``."""
        if not isinstance(name, str):
            raise invalid()
        kind = f"JSONType({json_text}, {lit(name)})"
        key = lit(name)
        text = f"if({kind} = 'String', JSONExtractString({json_text}, {key}), JSONExtractRaw({json_text}, {key}))"
        return cls._json(kind, text)

    @classmethod
    def _json(cls, kind: str, text: str) -> _Operand:
        """A JSON value of type ``kind`` (``JSONType``) and text ``text``: missing = absent or null."""
        missing = f"({kind} = 'Null')"
        empty = f"({missing} OR {text} = '' OR ({kind} IN ('Array', 'Object') AND {text} IN ('[]', '{{}}')))"
        return cls(text, missing, empty)

    @classmethod
    def json_element(cls, element: str, name: Any) -> _Operand:
        """A raw JSON array element, or its key ``name`` when a non-empty name is given."""
        if name is not None and not isinstance(name, str):
            raise invalid()
        if name:
            return cls.json_property(element, name)
        kind = f"JSONType({element})"
        return cls._json(kind, f"if({kind} = 'String', JSONExtractString({element}), {element})")

    @classmethod
    def scalar(cls, element: str, element_type: str, nullable: bool) -> _Operand:
        """An element of a native array (``Array(String)``, ``Array(Int64)``, ...)."""
        base = f"assumeNotNull({element})" if nullable else element
        text = base if element_type == "String" else f"toString({base})"
        missing = f"isNull({element})" if nullable else "0"
        return cls(text, missing, f"({missing} OR {text} = '')")


def _operand_value(raw: Any) -> str | None:
    """A property condition's ``value`` as text ([I] numbers accepted); None when malformed."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
        return repr(raw) if isinstance(raw, float) else str(raw)
    return None


def _as_number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _property_predicate(condition: Mapping[str, Any], operand: _Operand, *, require_name: bool = True) -> str | None:  # noqa: PLR0912 (one branch per operator of Cargo's filter language)
    """One ``objectProperty`` condition over ``operand``; None when dropped (value missing)."""
    kind = condition.get("kind", "objectProperty")
    if kind != "objectProperty":
        raise invalid()
    name = condition.get("propertyName")
    if (require_name and not isinstance(name, str)) or (name is not None and not isinstance(name, str)):
        raise invalid()
    operator = condition.get("operator")
    present = f"NOT {operand.missing}"
    if operator == "isNull":
        return operand.missing
    if operator == "isNotNull":
        return present
    if operator == "isEmpty":
        return operand.empty
    if operator == "isNotEmpty":
        return f"NOT {operand.empty}"
    valued = ("is", "isNot", "contains", "doesNotContain", "startsWith", "endsWith", "greaterThan", "lowerThan")
    if operator not in (*valued, "between"):
        raise invalid()
    if "value" not in condition:
        return None  # ``values`` where ``value`` is expected: dropped
    value = _operand_value(condition["value"])
    if value is None:
        raise invalid()
    text = operand.text
    if operator == "between":
        if "otherValue" not in condition:
            return None
        other = _operand_value(condition["otherValue"])
        if other is None:
            raise invalid()
        low, high = _as_number(value), _as_number(other)
        if low is not None and high is not None:
            return f"coalesce(toFloat64OrNull({text}) BETWEEN {low!r} AND {high!r}, 0)"
        return f"({present} AND {text} BETWEEN {lit(value)} AND {lit(other)})"
    if operator in ("greaterThan", "lowerThan"):
        sign = ">" if operator == "greaterThan" else "<"
        number = _as_number(value)
        if number is not None:
            return f"coalesce(toFloat64OrNull({text}) {sign} {number!r}, 0)"
        return f"({present} AND {text} {sign} {lit(value)})"
    positive = {
        "is": f"{text} = {lit(value)}",
        "isNot": f"{text} = {lit(value)}",
        "contains": f"positionCaseInsensitiveUTF8({text}, {lit(value)}) > 0",
        "doesNotContain": f"positionCaseInsensitiveUTF8({text}, {lit(value)}) > 0",
        "startsWith": f"startsWith({text}, {lit(value)})",
        "endsWith": f"endsWith({text}, {lit(value)})",
    }[operator]
    matched = f"({present} AND {positive})"
    return f"NOT {matched}" if operator in ("isNot", "doesNotContain") else matched


# -- sql clauses -----------------------------------------------------------------------------------

_CLAUSE_PREFIX = "SELECT 1 FROM t WHERE "
_IN_FUNCTIONS = frozenset({"in", "notin", "nullin", "notnullin", "globalin", "globalnotin", "globalnullin"})


def safe_clause(store: ClickHouseStore, clause: str, columns: set[str], now_ms: int | None = None) -> str:
    """The canonical text of a ``sql`` condition's clause, after checking it is a plain row predicate.

    Raises invalidFilter for anything else (see the module docstring). The check runs on
    ``EXPLAIN AST`` (ClickHouse's own parser), and the canonical text is re-parsed and compared, so
    what runs is exactly what was checked. With ``now_ms`` (the virtual clock), ``now()``, ``today()``
    ... read it, as in ``orchestration/query`` (``emulator/sqlclock.py``).
    """
    if "\x00" in clause:
        raise invalid()
    wrapped = f"{_CLAUSE_PREFIX}({clause}\n)"
    try:
        canonical = str(store.scalar(f"SELECT formatQuerySingleLine({lit(wrapped)}) AS q") or "")
        dump = _ast(store, canonical)
    except ApiError:
        raise
    except Exception:
        raise invalid() from None
    if not canonical.startswith(_CLAUSE_PREFIX):
        raise invalid()
    if now_ms is not None:
        canonical = pin_clock(canonical, now_ms)
        try:
            dump = _ast(store, canonical)
        except Exception:
            raise invalid() from None
        if remaining_clock(parse_ast_dump(dump), aliases(canonical)) is not None:
            raise invalid()
    expression = canonical[len(_CLAUSE_PREFIX) :]
    _check_clause_ast(dump, columns)
    try:
        recheck = _ast(store, f"{_CLAUSE_PREFIX}({expression})")
    except Exception:
        raise invalid() from None
    if recheck != dump:
        raise invalid()
    return expression


def _ast(store: ClickHouseStore, sql: str) -> str:
    rows = store.rows(f"EXPLAIN AST {sql}")
    return "\n".join(str(next(iter(r.values()))) for r in rows)


def _check_clause_ast(dump: str, columns: set[str]) -> None:  # noqa: PLR0912 (one branch per node kind the guard accepts)
    """The statement must be ``SELECT 1 FROM t WHERE <expr>`` and ``<expr>`` a plain row expression."""
    tree = parse_ast_dump(dump)
    if len(tree.children) != 1 or tree.children[0].kind != "SelectWithUnionQuery":
        raise invalid()
    union = tree.children[0]
    if len(union.children) != 1 or union.children[0].kind != "ExpressionList":
        raise invalid()
    selects = union.children[0].children
    if len(selects) != 1 or selects[0].kind != "SelectQuery":
        raise invalid()
    parts = selects[0].children
    if len(parts) != 3 or parts[0].kind != "ExpressionList" or parts[1].kind != "TablesInSelectQuery":
        raise invalid()
    if [n.kind for n in _walk(parts[1])] != [
        "TablesInSelectQuery",
        "TablesInSelectQueryElement",
        "TableExpression",
        "TableIdentifier",
    ] or parts[1].children[0].children[0].children[0].arg != "t":
        raise invalid()
    expression = parts[2]
    nodes = _walk(expression)
    lambda_params: set[str] = set()
    for node in nodes:
        if node.kind == "Function" and node.arg.split(" ", 1)[0] == "lambda":
            arguments = node.children[0].children if node.children else []
            if not arguments:
                raise invalid()
            lambda_params.update(p.arg for p in _walk(arguments[0]) if p.kind == "Identifier")
    for node in nodes:
        if node.kind not in SQL_ALLOWED_NODES:
            raise invalid()
        if node.kind == "Identifier" and node.arg not in columns and node.arg not in lambda_params:
            raise invalid()
        if node.kind == "Function":
            name = node.arg.split(" ", 1)[0].lower()
            arguments = node.children[0].children if node.children else []
            if name in _IN_FUNCTIONS and len(arguments) > 1 and arguments[1].kind == "Identifier":
                raise invalid()  # ``x IN name`` names a table or set, never a column
            if (
                name in DENIED_FUNCTIONS
                or name in SQL_EXTRA_DENIED
                or name.startswith(("dictget", "joinget", "file", "url", "s3", "hdfs", "remote"))
            ):
                raise invalid()


def _walk(node: AstNode) -> list[AstNode]:
    out = [node]
    for child in node.children:
        out.extend(_walk(child))
    return out
