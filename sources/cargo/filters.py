"""Client-side validation of Cargo segment filters and sorts (REFERENCE.md 6.2), and AND-ing a condition in.

Why validate here at all: Cargo answers the two commonest filter mistakes with a ``200`` and an
empty result instead of an error. A misspelled ``conjunction`` (Cargo spells it ``conjonction``) is
dropped as an unknown key and the filter then matches nothing; a string condition given ``value``
instead of ``values`` (or a number condition given ``values``) is silently dropped. Either would
load an empty (or too large) table and look like success. So every filter is checked before any
request, and each problem is reported with its path in the configuration
(``sources.cargo.segments[1].filter.groups[0].conditions[2]: ...``) and what to write instead.

The checks follow the condition types of ``@cargo-ai/types`` as summarised in REFERENCE.md 6.2:
per ``kind`` the required fields, the operators, and which of ``values`` / ``value`` /
``firstValue``+``lastValue`` / ``value``+``otherValue`` each operator takes. Unknown keys are
refused too, because the API would drop them without a word.

``and_condition`` narrows a filter by one more condition. Filters have exactly two levels
(filter -> groups -> conditions), so when the top level is ``or`` the condition has to be
distributed into every group: ``(a or b) and x`` becomes ``(a and x) or (b and x)``.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from .errors import CargoConfigurationError

__all__ = [
    "CONDITION_KINDS",
    "MATCH_ALL",
    "FilterProblems",
    "and_condition",
    "check_filter_columns",
    "check_sort_columns",
    "validate_filter",
    "validate_sort",
]

MATCH_ALL: dict[str, Any] = {"conjonction": "and", "groups": []}
"""Cargo's match-everything filter."""

CONJONCTIONS = ("and", "or")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")

# -- the grammar (REFERENCE.md 6.2) ----------------------------------------------------------------

STRING_VALUE_OPERATORS = ("is", "isNot", "contains", "doesNotContain", "startsWith", "endsWith")
TEXT_NO_VALUE_OPERATORS = ("isNull", "isNotNull", "isEmpty", "isNotEmpty")
NULL_OPERATORS = ("isNull", "isNotNull")
ORDERED_VALUE_OPERATORS = ("is", "isNot", "greaterThan", "lowerThan")
BOOLEAN_OPERATORS = ("isTrue", "isFalse", "isNull", "isNotNull")
PROPERTY_VALUE_OPERATORS = (*STRING_VALUE_OPERATORS, "greaterThan", "lowerThan")
SEGMENT_OPERATORS = ("in", "notIn")
ACTIVITY_KINDS = ("workflowEntered", "workflowNodeExecuted", "workflowLeft")
FREQUENCY_OPERATORS = ("moreThan", "lessThan", "exactly")
PERIOD_OPERATORS = ("lessThan", "moreThan", "exactly")
OCCURRENCE_CONDITION_KINDS = ("string", "number", "object", "array", "any", "vector", "date", "boolean")

_COLUMN_KINDS = ("string", "number", "date", "boolean", "object", "array", "vector", "any")
CONDITION_KINDS = (*_COLUMN_KINDS, "objectProperty", "segment", "occurrence", "enrollment", "sql")
"""Every condition ``kind`` Cargo's filter type knows."""

# keys each kind may carry (anything else is dropped by the API, so it is refused here)
_COLUMN_KEYS = {"kind", "columnSlug", "operator", "relatedModelUuid"}
_ALLOWED_KEYS: dict[str, set[str]] = {
    "string": _COLUMN_KEYS | {"values"},
    "number": _COLUMN_KEYS | {"value", "firstValue", "lastValue"},
    "date": _COLUMN_KEYS | {"value", "firstValue", "lastValue"},
    "boolean": set(_COLUMN_KEYS),
    "object": _COLUMN_KEYS | {"conjonction", "propertyConditions"},
    "array": _COLUMN_KEYS | {"conjonction", "propertyConditions"},
    "objectProperty": _COLUMN_KEYS | {"propertyName", "value", "otherValue"},
    "vector": set(_COLUMN_KEYS),
    "any": set(_COLUMN_KEYS),
    "segment": {"kind", "segmentUuid", "operator"},
    "occurrence": {"kind", "relatedModelUuid", "frequency", "period", "conjonction", "conditions"},
    "enrollment": {"kind", "workflowUuid", "activityKind", "nodeSlug", "frequency", "period"},
    "sql": {"kind", "name", "clause"},
}
# What operators each column kind has, for the messages.
_OPERATORS: dict[str, tuple[str, ...]] = {
    "string": (*STRING_VALUE_OPERATORS, *TEXT_NO_VALUE_OPERATORS),
    "number": (*ORDERED_VALUE_OPERATORS, "between", *NULL_OPERATORS),
    "date": (*ORDERED_VALUE_OPERATORS, "between", *NULL_OPERATORS),
    "boolean": BOOLEAN_OPERATORS,
    "object": (*NULL_OPERATORS, "matchConditions"),
    "array": (*NULL_OPERATORS, "matchConditions"),
    "objectProperty": (*PROPERTY_VALUE_OPERATORS, "between", *TEXT_NO_VALUE_OPERATORS),
    "vector": NULL_OPERATORS,
    "any": NULL_OPERATORS,
    "segment": SEGMENT_OPERATORS,
}
_VALUE_KEYS = ("values", "value", "firstValue", "lastValue", "otherValue")


class FilterProblems:
    """Collects every problem of one configuration entry, so the user fixes them in one go."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")

    def raise_if_any(self) -> None:
        """One problem: its line is the message; several: one line each."""
        if len(self.items) == 1:
            raise CargoConfigurationError(self.items[0])
        if self.items:
            raise CargoConfigurationError(
                f"{len(self.items)} problems in the segment configuration:\n" + "\n".join(f"- {p}" for p in self.items)
            )


def _quote(names: Sequence[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _unknown_keys(
    node: Mapping[str, Any],
    allowed: set[str],
    where: str,
    what: str,
    problems: FilterProblems,
    skip: set[str] | None = None,
) -> None:
    for key in node:
        if key in allowed or (skip and key in skip):
            continue
        if key == "conjunction":
            problems.add(where, '"conjunction" must be spelled "conjonction" (Cargo\'s spelling)')
            continue
        close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        problems.add(
            where,
            f'unknown key "{key}" in {what}{hint}: Cargo would ignore it; allowed keys: {_quote(sorted(allowed))}',
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_date_text(value: Any) -> bool:
    """``YYYY-MM-DD`` or an ISO datetime, as Cargo's date conditions take them."""
    if not isinstance(value, str) or not _DATE.match(value):
        return False
    text = value.strip()
    try:
        if len(text) == 10:
            date.fromisoformat(text)
        else:
            datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return True


def _conjonction(node: Mapping[str, Any], where: str, problems: FilterProblems) -> None:
    if "conjonction" not in node:
        if "conjunction" not in node:  # the misspelling is reported by the unknown-key check
            problems.add(where, 'missing "conjonction" ("and" or "or"; Cargo\'s spelling)')
        return
    if node["conjonction"] not in CONJONCTIONS:
        problems.add(where, f'"conjonction" must be "and" or "or", not {node["conjonction"]!r}')


# -- filters ---------------------------------------------------------------------------------------


def validate_filter(raw: Any, where: str) -> dict[str, Any]:
    """A deep copy of ``raw`` once it is a well-formed Cargo filter; else ``CargoConfigurationError``.

    ``where`` names the filter in the configuration (``sources.cargo.segments[0].filter``); every
    problem found is reported with its path below it.
    """
    problems = FilterProblems()
    filter_problems(raw, where, problems)
    problems.raise_if_any()
    return copy.deepcopy(dict(raw))


def filter_problems(raw: Any, where: str, problems: FilterProblems) -> None:
    """Add every problem of the filter ``raw`` to ``problems`` (for callers collecting several)."""
    if not isinstance(raw, Mapping):
        problems.add(where, f'a filter is a table {{conjonction = "and"|"or", groups = [...]}}, not {_kind_of(raw)}')
        return
    _unknown_keys(raw, {"conjonction", "groups"}, where, "a filter", problems)
    _conjonction(raw, where, problems)
    groups = raw.get("groups")
    if groups is None:
        problems.add(where, 'missing "groups" (a list; an empty list matches every record)')
        return
    if not _is_list(groups):
        problems.add(f"{where}.groups", f"must be a list of groups, not {_kind_of(groups)}")
        return
    for index, group in enumerate(groups):
        _group(group, f"{where}.groups[{index}]", problems)


def _group(group: Any, where: str, problems: FilterProblems) -> None:
    if not isinstance(group, Mapping):
        problems.add(
            where, f'a group is a table {{conjonction = "and"|"or", conditions = [...]}}, not {_kind_of(group)}'
        )
        return
    _unknown_keys(group, {"conjonction", "conditions"}, where, "a filter group", problems)
    _conjonction(group, where, problems)
    conditions = group.get("conditions")
    if conditions is None:
        problems.add(where, 'missing "conditions" (a list of conditions)')
        return
    if not _is_list(conditions):
        problems.add(f"{where}.conditions", f"must be a list of conditions, not {_kind_of(conditions)}")
        return
    for index, condition in enumerate(conditions):
        _condition(condition, f"{where}.conditions[{index}]", problems, CONDITION_KINDS)


def _condition(condition: Any, where: str, problems: FilterProblems, kinds: Sequence[str]) -> None:
    if not isinstance(condition, Mapping):
        problems.add(where, f"a condition is a table with a kind, not {_kind_of(condition)}")
        return
    kind = condition.get("kind")
    if not isinstance(kind, str) or kind not in kinds:
        problems.add(where, f'"kind" must be one of {_quote(kinds)}, not {kind!r}')
        return
    handled = set(_VALUE_KEYS) if kind in _OPERATORS else set()  # misplaced operands get a precise message below
    _unknown_keys(condition, _ALLOWED_KEYS[kind], where, f"a {kind} condition", problems, skip=handled)
    if kind in _COLUMN_KINDS or kind == "objectProperty":
        _column_condition(kind, condition, where, problems)
    elif kind == "segment":
        _segment_condition(condition, where, problems)
    elif kind == "occurrence":
        _occurrence_condition(condition, where, problems)
    elif kind == "enrollment":
        _enrollment_condition(condition, where, problems)
    else:
        for key in ("name", "clause"):
            if not isinstance(condition.get(key), str) or not condition[key].strip():
                problems.add(where, f'sql conditions need "{key}" (a non-empty string)')


def _column_condition(kind: str, condition: Mapping[str, Any], where: str, problems: FilterProblems) -> None:
    slug = condition.get("columnSlug")
    if not isinstance(slug, str) or not slug:
        problems.add(where, f'{kind} conditions need "columnSlug" (the column\'s slug)')
    related = condition.get("relatedModelUuid")
    if related is not None and not _is_uuid(related):
        problems.add(where, f'"relatedModelUuid" must be a model UUID, not {related!r}')
    if kind == "objectProperty":
        name = condition.get("propertyName")
        if not isinstance(name, str) or not name:
            problems.add(where, 'objectProperty conditions need "propertyName" (a string)')
    operator = condition.get("operator")
    operators = _OPERATORS[kind]
    if operator not in operators:
        problems.add(where, f'{kind} conditions take "operator" = one of {_quote(operators)}, not {operator!r}')
        return
    if kind == "string":
        _string_operands(str(operator), condition, where, problems)
    elif kind in ("number", "date"):
        _ordered_operands(kind, str(operator), condition, where, problems)
    elif kind == "objectProperty":
        _property_operands(str(operator), condition, where, problems)
    elif kind in ("object", "array"):
        _object_operands(kind, str(operator), condition, where, problems)
    else:  # boolean, vector, any: no operand at all
        _no_operand(kind, str(operator), condition, where, problems)


def _present(condition: Mapping[str, Any], *keys: str) -> list[str]:
    return [k for k in keys if k in condition]


def _no_operand(kind: str, operator: str, condition: Mapping[str, Any], where: str, problems: FilterProblems) -> None:
    extra = _present(condition, *_VALUE_KEYS)
    if extra:
        problems.add(where, f"{kind} {operator} conditions take no value; remove {_quote(extra)}")


def _string_operands(operator: str, condition: Mapping[str, Any], where: str, problems: FilterProblems) -> None:
    if operator in TEXT_NO_VALUE_OPERATORS:
        _no_operand("string", operator, condition, where, problems)
        return
    wrong = _present(condition, "value", "firstValue", "lastValue", "otherValue")
    if "value" in wrong:
        problems.add(where, 'string conditions take "values" (a string or list of strings), not "value"')
    elif wrong:
        problems.add(where, f'string conditions take "values" (a string or list of strings), not {_quote(wrong)}')
    if "values" not in condition:
        if not wrong:
            problems.add(where, f'string {operator} conditions need "values" (a string or list of strings)')
        return
    values = condition["values"]
    if isinstance(values, str):
        return
    if not _is_list(values) or not values or not all(isinstance(v, str) for v in values):
        problems.add(where, f'"values" must be a string or a non-empty list of strings, not {values!r}')


def _ordered_operands(
    kind: str, operator: str, condition: Mapping[str, Any], where: str, problems: FilterProblems
) -> None:
    noun = "a number" if kind == "number" else 'a date string ("YYYY-MM-DD")'
    check = _is_number if kind == "number" else _is_date_text
    if operator in NULL_OPERATORS:
        _no_operand(kind, operator, condition, where, problems)
        return
    if "values" in condition:
        problems.add(where, f'{kind} conditions take "value" ({noun}), not "values"')
    if operator == "between":
        if "value" in condition or "otherValue" in condition:
            wrong = _present(condition, "value", "otherValue")
            problems.add(where, f'{kind} between conditions take "firstValue" and "lastValue", not {_quote(wrong)}')
        for key in ("firstValue", "lastValue"):
            if key not in condition:
                problems.add(where, f'{kind} between conditions need "{key}" ({noun})')
            elif not check(condition[key]):
                problems.add(where, f'"{key}" must be {noun}, not {condition[key]!r}')
        return
    wrong = _present(condition, "firstValue", "lastValue", "otherValue")
    if wrong:
        problems.add(where, f'{kind} {operator} conditions take "value" ({noun}), not {_quote(wrong)}')
    if "value" not in condition:
        if "values" not in condition and not wrong:
            problems.add(where, f'{kind} {operator} conditions need "value" ({noun})')
    elif not check(condition["value"]):
        problems.add(where, f'"value" must be {noun}, not {condition["value"]!r}')


def _property_operands(operator: str, condition: Mapping[str, Any], where: str, problems: FilterProblems) -> None:
    if operator in TEXT_NO_VALUE_OPERATORS:
        _no_operand("objectProperty", operator, condition, where, problems)
        return
    if "values" in condition:
        problems.add(where, 'objectProperty conditions take "value" (a string), not "values"')
    wrong = _present(condition, "firstValue", "lastValue")
    if wrong:
        problems.add(
            where, f'objectProperty conditions take "value" (and "otherValue" for between), not {_quote(wrong)}'
        )
    needed = ("value", "otherValue") if operator == "between" else ("value",)
    if operator != "between" and "otherValue" in condition:
        problems.add(where, f'"otherValue" is only for between; objectProperty {operator} takes "value" alone')
    for key in needed:
        if key not in condition:
            if key != "value" or "values" not in condition:
                problems.add(where, f'objectProperty {operator} conditions need "{key}" (a string)')
        elif not isinstance(condition[key], str):
            problems.add(where, f'"{key}" must be a string, not {condition[key]!r}')


def _object_operands(
    kind: str, operator: str, condition: Mapping[str, Any], where: str, problems: FilterProblems
) -> None:
    if operator in NULL_OPERATORS:
        _no_operand(kind, operator, condition, where, problems)
        extra = _present(condition, "propertyConditions", "conjonction")
        if extra:
            problems.add(where, f"{kind} {operator} conditions take no {_quote(extra)} (only matchConditions does)")
        return
    _no_operand(kind, operator, condition, where, problems)
    _conjonction(condition, where, problems)
    nested = condition.get("propertyConditions")
    if not _is_list(nested) or not nested:
        problems.add(where, f'{kind} matchConditions conditions need "propertyConditions" (a non-empty list)')
        return
    for index, item in enumerate(nested):
        _condition(item, f"{where}.propertyConditions[{index}]", problems, ("objectProperty",))


def _segment_condition(condition: Mapping[str, Any], where: str, problems: FilterProblems) -> None:
    if not _is_uuid(condition.get("segmentUuid")):
        problems.add(
            where, f'segment conditions need "segmentUuid" (a segment UUID), not {condition.get("segmentUuid")!r}'
        )
    if condition.get("operator") not in SEGMENT_OPERATORS:
        problems.add(
            where,
            f'segment conditions take "operator" = one of {_quote(SEGMENT_OPERATORS)}, '
            f"not {condition.get('operator')!r}",
        )


def _frequency(value: Any, where: str, problems: FilterProblems) -> None:
    if not isinstance(value, Mapping):
        problems.add(
            where, '"frequency" must be {operator = "not"} or {operator = "moreThan"|"lessThan"|"exactly", value = N}'
        )
        return
    operator = value.get("operator")
    if operator == "not":
        if set(value) - {"operator"}:
            problems.add(where, '"frequency" with operator "not" takes no other key')
        return
    if operator not in FREQUENCY_OPERATORS:
        problems.add(
            where, f'"frequency.operator" must be one of {_quote(("not", *FREQUENCY_OPERATORS))}, not {operator!r}'
        )
    count = value.get("value")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        problems.add(where, f'"frequency.value" must be a whole number >= 0, not {count!r}')
    if set(value) - {"operator", "value"}:
        problems.add(
            where,
            f'"frequency" takes only "operator" and "value", not {_quote(sorted(set(value) - {"operator", "value"}))}',
        )


def _period(value: Any, where: str, problems: FilterProblems) -> None:
    if not isinstance(value, Mapping):
        problems.add(where, '"period" must be {operator = "lessThan"|"moreThan"|"exactly", value = N, unit = "day"}')
        return
    if value.get("operator") not in PERIOD_OPERATORS:
        problems.add(
            where, f'"period.operator" must be one of {_quote(PERIOD_OPERATORS)}, not {value.get("operator")!r}'
        )
    count = value.get("value")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        problems.add(where, f'"period.value" must be a whole number >= 0, not {count!r}')
    if value.get("unit") != "day":
        problems.add(where, f'"period.unit" must be "day", not {value.get("unit")!r}')
    extra = sorted(set(value) - {"operator", "value", "unit"})
    if extra:
        problems.add(where, f'"period" takes only "operator", "value" and "unit", not {_quote(extra)}')


def _occurrence_condition(condition: Mapping[str, Any], where: str, problems: FilterProblems) -> None:
    if not _is_uuid(condition.get("relatedModelUuid")):
        problems.add(where, 'occurrence conditions need "relatedModelUuid" (the related model\'s UUID)')
    _frequency(condition.get("frequency"), where, problems)
    _period(condition.get("period"), where, problems)
    _conjonction(condition, where, problems)
    nested = condition.get("conditions")
    if not isinstance(nested, list):
        problems.add(where, 'occurrence conditions need "conditions" (a list of conditions on the related model)')
        return
    for index, item in enumerate(nested):
        _condition(item, f"{where}.conditions[{index}]", problems, OCCURRENCE_CONDITION_KINDS)


def _enrollment_condition(condition: Mapping[str, Any], where: str, problems: FilterProblems) -> None:
    if not _is_uuid(condition.get("workflowUuid")):
        problems.add(where, 'enrollment conditions need "workflowUuid" (a workflow UUID)')
    activity = condition.get("activityKind")
    if activity not in ACTIVITY_KINDS:
        problems.add(where, f'"activityKind" must be one of {_quote(ACTIVITY_KINDS)}, not {activity!r}')
    if "nodeSlug" in condition:
        if activity != "workflowNodeExecuted":
            problems.add(where, '"nodeSlug" is only allowed with activityKind "workflowNodeExecuted"')
        elif not isinstance(condition["nodeSlug"], str) or not condition["nodeSlug"]:
            problems.add(where, '"nodeSlug" must be a node slug (a string)')
    _frequency(condition.get("frequency"), where, problems)
    _period(condition.get("period"), where, problems)


# -- sort ------------------------------------------------------------------------------------------


def validate_sort(raw: Any, where: str) -> list[dict[str, str]]:
    """``raw`` as a list of ``{columnSlug, kind: "asc"|"desc"}``; else ``CargoConfigurationError``."""
    problems = FilterProblems()
    items = sort_problems(raw, where, problems)
    problems.raise_if_any()
    return items


def sort_problems(raw: Any, where: str, problems: FilterProblems) -> list[dict[str, str]]:
    """The validated sort items, adding any problem to ``problems``."""
    shape = '{columnSlug = "...", kind = "asc"|"desc"}'
    if not _is_list(raw):
        problems.add(where, f"a sort is a list of {shape}, not {_kind_of(raw)}")
        return []
    items: list[dict[str, str]] = []
    for index, item in enumerate(raw):
        at = f"{where}[{index}]"
        if not isinstance(item, Mapping):
            problems.add(at, f"a sort item is {shape}, not {_kind_of(item)}")
            continue
        _unknown_keys(item, {"columnSlug", "kind"}, at, "a sort item", problems)
        slug, kind = item.get("columnSlug"), item.get("kind")
        if not isinstance(slug, str) or not slug:
            problems.add(at, f'sort items need "columnSlug" (the column\'s slug): {shape}')
        if kind not in ("asc", "desc"):
            problems.add(at, f'sort "kind" must be "asc" or "desc", not {kind!r}')
        if isinstance(slug, str) and kind in ("asc", "desc"):
            items.append({"columnSlug": slug, "kind": str(kind)})
    return items


# -- column checks once the model is known -----------------------------------------------------------


def check_filter_columns(flt: Mapping[str, Any], columns: Mapping[str, str], where: str) -> None:
    """Refuse conditions on columns the model does not have (Cargo answers ``invalidFilter``, without saying which).

    ``columns`` maps the model's column slugs to their Cargo types. Conditions on a related model
    (``relatedModelUuid``) and inside occurrences are on another model and are not checked.
    """
    problems = FilterProblems()
    known = sorted(columns)
    for g, group in enumerate(flt.get("groups", [])):
        for c, condition in enumerate(group.get("conditions", [])):
            at = f"{where}.groups[{g}].conditions[{c}]"
            _check_column(condition, columns, known, at, problems)
            for p, nested in enumerate(condition.get("propertyConditions") or []):
                _check_column(nested, columns, known, f"{at}.propertyConditions[{p}]", problems)
    problems.raise_if_any()


def _check_column(
    condition: Mapping[str, Any], columns: Mapping[str, str], known: list[str], at: str, problems: FilterProblems
) -> None:
    slug = condition.get("columnSlug")
    if condition.get("relatedModelUuid") or not isinstance(slug, str):
        return
    if slug not in columns:
        close = difflib.get_close_matches(slug, known, n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        problems.add(at, f'the model has no column "{slug}"{hint}; its columns: {", ".join(known)}')


def check_sort_columns(sort: Sequence[Mapping[str, Any]], columns: Mapping[str, str], where: str) -> None:
    """Refuse sort items on columns the model does not have."""
    problems = FilterProblems()
    for index, item in enumerate(sort):
        slug = str(item.get("columnSlug"))
        if slug not in columns:
            problems.add(
                f"{where}[{index}]", f'the model has no column "{slug}"; its columns: {", ".join(sorted(columns))}'
            )
    problems.raise_if_any()


# -- narrowing ---------------------------------------------------------------------------------------


def and_condition(flt: Mapping[str, Any], condition: Mapping[str, Any]) -> dict[str, Any]:
    """A new filter matching ``flt AND condition`` (``flt`` is left unchanged).

    Top ``and``: the condition becomes one more group. Top ``or``: it is distributed, since
    ``(g1 or g2) and x = (g1 and x) or (g2 and x)``: added to each ``and`` group; an ``or`` group
    ``(a or b)`` is split into one ``and`` group per condition (``(a and x)``, ``(b and x)``).
    An ``or`` group without conditions matches nothing and stays as it is. A filter without groups
    matches everything, so the result is the condition alone.
    """
    narrowed = copy.deepcopy(dict(flt))
    extra = copy.deepcopy(dict(condition))
    groups: list[dict[str, Any]] = [dict(g) for g in narrowed.get("groups", [])]
    if not groups:
        return {"conjonction": "and", "groups": [{"conjonction": "and", "conditions": [extra]}]}
    if narrowed.get("conjonction") == "and":
        return {**narrowed, "groups": [*groups, {"conjonction": "and", "conditions": [extra]}]}
    distributed: list[dict[str, Any]] = []
    for group in groups:
        conditions = list(group.get("conditions", []))
        if group.get("conjonction") == "and":
            distributed.append({**group, "conditions": [*conditions, copy.deepcopy(extra)]})
        elif not conditions:
            distributed.append(group)
        else:
            distributed.extend(
                {"conjonction": "and", "conditions": [item, copy.deepcopy(extra)]} for item in conditions
            )
    return {**narrowed, "groups": distributed}


# -- helpers -----------------------------------------------------------------------------------------


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _is_uuid(value: Any) -> bool:
    return isinstance(value, str) and _UUID.match(value) is not None


def _kind_of(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return f"the string {value!r}"
    if _is_list(value):
        return "a list"
    return f"a {type(value).__name__}"
