"""Segmentation endpoints (REFERENCE.md section 6.1): segments list/get, fetch and download.

``fetch`` and ``download`` take a model UUID plus a filter, compiled to SQL over the model's table.
Conditions on the model's own columns of kind string/number/date/boolean are evaluated; other kinds
answer 400 ``invalidFilter`` for now (see ``condition_sql``). The documented quirks are kept: no
``conjonction`` matches nothing (200, empty), a condition missing its ``value(s)`` is dropped.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from ..downloads import FileSpec, sign_file_url
from ..store import ClickHouseStore
from ..validation import parse_timestamp
from . import catalog
from .common import Call, lit, not_found, ok, rejected
from .limits import SEGMENT_FETCH_DEFAULT_LIMIT
from .payloads import SegmentDownloadPayload, SegmentFetchPayload, SegmentFilter, SortItem
from .resolver import model_columns, model_record

DEFAULT_ORDER = "_id"


def _values(raw: Any) -> list[str] | None:
    """A string condition's ``values`` (a string or an array of strings); None when malformed."""
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(v, str) for v in raw):
        return list(raw)
    return None


def _any(column: str, values: list[str], template: str, joiner: str = " OR ") -> str:
    return "(" + joiner.join(template.format(col=column, val=lit(v)) for v in values) + ")"


def _string_condition(column: str, operator: str, condition: dict[str, Any]) -> str | None:
    if operator in _NO_VALUE:
        return _NO_VALUE[operator].format(col=column)
    if "values" not in condition:
        return None  # Cargo silently drops a condition without its ``values``
    values = _values(condition["values"])
    if values is None:
        raise rejected("invalidFilter")
    text = f"toString({column})"
    templates = {
        "is": (f"{text} IN ({', '.join(lit(v) for v in values)})", None),
        "isNot": (f"{text} NOT IN ({', '.join(lit(v) for v in values)})", None),
        "contains": (None, ("positionCaseInsensitiveUTF8({col}, {val}) > 0", " OR ")),
        "doesNotContain": (None, ("positionCaseInsensitiveUTF8({col}, {val}) = 0", " AND ")),
        "startsWith": (None, ("startsWith({col}, {val})", " OR ")),
        "endsWith": (None, ("endsWith({col}, {val})", " OR ")),
    }
    if operator not in templates:
        raise rejected("invalidFilter")
    fixed, each = templates[operator]
    if fixed is not None:
        return fixed
    assert each is not None
    return _any(text, values, each[0], each[1])


_NO_VALUE = {
    "isNull": "{col} IS NULL",
    "isNotNull": "{col} IS NOT NULL",
    "isEmpty": "ifNull(toString({col}), '') = ''",
    "isNotEmpty": "ifNull(toString({col}), '') != ''",
}


def _scalar(kind: str, raw: Any) -> str:
    """A number or date operand as SQL (anything else makes the filter invalid)."""
    if kind == "number" and isinstance(raw, int | float) and not isinstance(raw, bool):
        return repr(raw)
    if kind == "date" and isinstance(raw, str) and parse_timestamp(raw) is not None:
        return f"parseDateTime64BestEffort({lit(raw)}, 3, 'UTC')"
    raise rejected("invalidFilter")


def _ordered_condition(kind: str, column: str, operator: str, condition: dict[str, Any]) -> str | None:
    if operator in ("isNull", "isNotNull"):
        return _NO_VALUE[operator].format(col=column)
    if operator == "between":
        if "firstValue" not in condition or "lastValue" not in condition:
            return None
        low, high = _scalar(kind, condition["firstValue"]), _scalar(kind, condition["lastValue"])
        return f"{column} BETWEEN {low} AND {high}"
    comparisons = {"is": "=", "isNot": "!=", "greaterThan": ">", "lowerThan": "<"}
    if operator not in comparisons:
        raise rejected("invalidFilter")
    if "value" not in condition:
        return None  # dropped, like a ``values`` given where ``value`` is expected
    return f"{column} {comparisons[operator]} {_scalar(kind, condition['value'])}"


def _boolean_condition(column: str, operator: str) -> str:
    sql = {
        "isTrue": f"{column} = true",
        "isFalse": f"{column} = false",
        "isNull": f"{column} IS NULL",
        "isNotNull": f"{column} IS NOT NULL",
    }
    if operator not in sql:
        raise rejected("invalidFilter")
    return sql[operator]


def condition_sql(condition: dict[str, Any], columns: list[str]) -> str | None:
    """One filter condition as SQL; None when Cargo would silently drop it.

    Supported: ``string``, ``number``, ``date`` and ``boolean`` conditions on the model's own columns.
    Other kinds (object/array properties, segment membership, occurrences, enrollments, raw SQL) and
    related-model columns answer ``invalidFilter`` until they are implemented.
    """
    kind = condition.get("kind")
    operator = condition.get("operator")
    slug = condition.get("columnSlug")
    if condition.get("relatedModelUuid") or not isinstance(operator, str) or slug not in columns:
        raise rejected("invalidFilter")
    column = f"`{slug}`"
    if kind == "string":
        return _string_condition(column, operator, condition)
    if kind in ("number", "date"):
        return _ordered_condition(str(kind), column, operator, condition)
    if kind == "boolean":
        return _boolean_condition(column, operator)
    raise rejected("invalidFilter")


def filter_sql(flt: SegmentFilter, columns: list[str]) -> str:
    """The WHERE predicate of a segment filter (REFERENCE.md 6.2).

    A filter or group without ``conjonction`` (e.g. the misspelling ``conjunction``, dropped as an
    unknown key) matches nothing: Cargo's documented 200-with-no-rows behaviour.
    """
    if flt.conjonction is None:
        return "0"
    groups: list[str] = []
    for group in flt.groups:
        if group.conjonction is None:
            groups.append("0")
            continue
        parts = [sql for sql in (condition_sql(c, columns) for c in group.conditions) if sql is not None]
        if not parts:
            groups.append("1" if group.conjonction == "and" else "0")
        else:
            groups.append("(" + f" {group.conjonction.upper()} ".join(parts) + ")")
    if not groups:
        return "1"
    return "(" + f" {flt.conjonction.upper()} ".join(groups) + ")"


def table_columns(store: ClickHouseStore, model_uuid: str) -> list[str]:
    """Column names of a model's data table, in table order (empty when the table is missing)."""
    name = "model_" + model_uuid.replace("-", "")
    rows = store.rows(
        f"SELECT name FROM system.columns WHERE database = {lit(store.database)} AND table = {lit(name)} "
        "ORDER BY position"
    )
    return [str(r["name"]) for r in rows]


def order_sql(sort: list[SortItem] | None, columns: list[str]) -> str:
    """ORDER BY for a segment sort; sorting on a column the model lacks is an invalid filter ([I])."""
    if not sort:
        return DEFAULT_ORDER
    parts = []
    for item in sort:
        if item.columnSlug not in columns:
            raise rejected("invalidFilter")
        parts.append(f"`{item.columnSlug}` {item.kind.upper()}")
    return ", ".join([*parts, DEFAULT_ORDER])


def selection_sql(
    store: ClickHouseStore, model_uuid: str, flt: SegmentFilter, sort: list[SortItem] | None, limit: int | None
) -> tuple[str, str, list[str]]:
    """``(members query, its order, table columns)``: the rows a segment holds, ``limit`` applied."""
    columns = table_columns(store, model_uuid)
    predicate = filter_sql(flt, columns) if columns else "0"
    order = order_sql(sort, columns)
    source = catalog.model_table(store, model_uuid)
    members = f"SELECT * FROM {source} WHERE {predicate}"
    if limit is not None:
        members = f"SELECT * FROM ({members} ORDER BY {order} LIMIT {limit})"
    return members, order, columns


def _model(call: Call, model_uuid: str) -> catalog.Entity:
    model = catalog.get_entity(call.store, call.ws, "model", model_uuid)
    if model is None:
        raise not_found("modelNotFound")
    return model


def seg_columns(model: catalog.Entity) -> list[dict[str, Any]]:
    """``SegColumn``s of a model: ``slug``, ``type``, ``label``, ``modelUuid``."""
    return [
        {"slug": c["slug"], "type": c.get("type"), "label": c.get("label", c["slug"]), "modelUuid": model.uuid}
        for c in model_columns(model.body)
    ]


def segments_fetch(call: Call) -> Response:
    """``POST segmentation/segments/fetch`` -> ``{records, count, columns, isRefreshing}``."""
    p = call.payload(SegmentFetchPayload)
    model = _model(call, p.modelUuid)
    columns = seg_columns(model)
    members, order, table_cols = selection_sql(call.store, model.uuid, p.filter, p.sort, p.limit)
    if not table_cols:
        return ok({"records": [], "count": 0, "columns": columns, "isRefreshing": False})
    limit = p.fetchingLimit if p.fetchingLimit is not None else SEGMENT_FETCH_DEFAULT_LIMIT
    rows = call.store.rows(f"{members} ORDER BY {order} LIMIT {limit} OFFSET {p.fetchingOffset or 0}")
    total = int(call.store.scalar(f"SELECT count() FROM ({members})") or 0)
    types = {c["slug"]: str(c.get("type")) for c in columns}
    return ok(
        {"records": [model_record(r, types) for r in rows], "count": total, "columns": columns, "isRefreshing": False}
    )


def segments_download(call: Call) -> Response:
    """``POST segmentation/segments/download`` -> ``{urls: [...]}`` (one CSV shard of the model rows)."""
    p = call.payload(SegmentDownloadPayload)
    model = _model(call, p.modelUuid)
    selection_sql(call.store, model.uuid, p.filter, p.sort, p.limit)  # refuse a bad filter now, not at fetch
    spec = FileSpec(
        workspace_uuid=call.ws,
        kind="segment",
        params={"payload": p.model_dump(mode="json", exclude_none=True)},
        filename=f"segment-{model.uuid}-000.csv",
    )
    return ok({"urls": [sign_file_url(call.state, spec)]})
