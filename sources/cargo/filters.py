"""Cargo's segment filter grammar as pydantic models (REFERENCE.md 6.2), and AND-ing a condition in.

Why validate here at all: Cargo answers the two commonest filter mistakes with a ``200`` and an
empty result instead of an error. A misspelled ``conjunction`` (Cargo spells it ``conjonction``) is
dropped as an unknown key and the filter then matches nothing; a string condition given ``value``
instead of ``values`` (or a number condition given ``values``) is silently dropped. Either would
load an empty (or too large) table and look like success. So every filter is checked before any
request, and each problem is reported with its path in the configuration
(``sources.cargo.segments[1].filter.groups[0].conditions[2]: ...``) and what to write instead.

The models follow the condition types of ``@cargo-ai/types`` as summarised in REFERENCE.md 6.2: a
filter has groups, a group has conditions, and a condition is a discriminated union on ``kind``, one
model per kind. Each model's rules (``own_problems``, see ``problems.ProblemNode``) say per operator
which of ``values`` / ``value`` / ``firstValue``+``lastValue`` / ``value``+``otherValue`` it takes, in
the words a user needs, rather than pydantic's stock messages. Unknown keys are refused too, because
the API would drop them without a word. The settings model (``config.py``) holds filters as ``Filter``.

``and_condition`` narrows a filter by one more condition. Filters have exactly two levels
(filter -> groups -> conditions), so when the top level is ``or`` the condition has to be
distributed into every group: ``(a or b) and x`` becomes ``(a and x) or (b and x)``.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Discriminator, TypeAdapter, ValidationError, ValidatorFunctionWrapHandler, WrapValidator

from .errors import CargoConfigurationError
from .instants import is_date_text
from .problems import UNION_TAGS, Loc, ProblemNode, describe_errors, kind_of, setting_error
from .sqltext import is_uuid

__all__ = [
    "CONDITION_KINDS",
    "MATCH_ALL",
    "Condition",
    "Filter",
    "FilterGroup",
    "FilterProblems",
    "Sort",
    "SortItem",
    "and_condition",
    "check_filter_columns",
    "check_sort_columns",
    "validate_filter",
    "validate_sort",
]

MATCH_ALL: dict[str, Any] = {"conjonction": "and", "groups": []}
"""Cargo's match-everything filter."""

CONJONCTIONS = ("and", "or")
HEADING = "the segment configuration"
"""What the problems of a filter are problems of, in a message listing several."""

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
    """Problems of a filter against the model's columns (known only once Cargo has described the model),
    collected so the user fixes them in one go."""

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
                f"{len(self.items)} problems in {HEADING}:\n" + "\n".join(f"- {p}" for p in self.items)
            )


def _quote(names: Sequence[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _own(messages: list[str]) -> list[tuple[Loc, str]]:
    """Problems of a table itself (located at the table)."""
    return [((), message) for message in messages]


def _unknown_keys(node: Mapping[str, Any], allowed: set[str], what: str, skip: set[str] | None = None) -> list[str]:
    problems: list[str] = []
    for key in node:
        if key in allowed or (skip and key in skip):
            continue
        if key == "conjunction":
            problems.append('"conjunction" must be spelled "conjonction" (Cargo\'s spelling)')
            continue
        close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        problems.append(
            f'unknown key "{key}" in {what}{hint}: Cargo would ignore it; allowed keys: {_quote(sorted(allowed))}'
        )
    return problems


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _conjonction(node: Mapping[str, Any]) -> list[str]:
    if "conjonction" not in node:
        if "conjunction" not in node:  # the misspelling is reported by the unknown-key check
            return ['missing "conjonction" ("and" or "or"; Cargo\'s spelling)']
        return []
    if node["conjonction"] not in CONJONCTIONS:
        return [f'"conjonction" must be "and" or "or", not {node["conjonction"]!r}']
    return []


def _present(condition: Mapping[str, Any], *keys: str) -> list[str]:
    return [k for k in keys if k in condition]


# -- conditions: one model per kind ------------------------------------------------------------------

Conjonction = Literal["and", "or"]


class _Condition(ProblemNode):
    """A condition of a filter group; each kind checks its operator and operands (``own_problems``)."""

    @classmethod
    def checks(cls, kind: str, condition: Mapping[str, Any]) -> list[str]:
        raise NotImplementedError

    @classmethod
    def own_problems(cls, raw: Mapping[str, Any]) -> list[tuple[Loc, str]]:
        kind = str(raw["kind"])
        handled = set(_VALUE_KEYS) if kind in _OPERATORS else set()  # misplaced operands get a precise message
        problems = _unknown_keys(raw, _ALLOWED_KEYS[kind], f"a {kind} condition", skip=handled)
        return _own(problems + cls.checks(kind, raw))


class _ColumnCondition(_Condition):
    """A condition on a column of the model (or of a related model, ``relatedModelUuid``)."""

    columnSlug: str | None = None
    operator: str | None = None
    relatedModelUuid: str | None = None

    @classmethod
    def checks(cls, kind: str, condition: Mapping[str, Any]) -> list[str]:
        problems: list[str] = []
        slug = condition.get("columnSlug")
        if not isinstance(slug, str) or not slug:
            problems.append(f'{kind} conditions need "columnSlug" (the column\'s slug)')
        related = condition.get("relatedModelUuid")
        if related is not None and not is_uuid(related):
            problems.append(f'"relatedModelUuid" must be a model UUID, not {related!r}')
        if kind == "objectProperty":
            name = condition.get("propertyName")
            if not isinstance(name, str) or not name:
                problems.append('objectProperty conditions need "propertyName" (a string)')
        operator = condition.get("operator")
        operators = _OPERATORS[kind]
        if operator not in operators:
            problems.append(f'{kind} conditions take "operator" = one of {_quote(operators)}, not {operator!r}')
            return problems
        return problems + cls.operands(kind, str(operator), condition)

    @classmethod
    def operands(cls, kind: str, operator: str, condition: Mapping[str, Any]) -> list[str]:
        """Problems of the operands the operator takes (by default: none at all)."""
        return _no_operand(kind, operator, condition)


def _no_operand(kind: str, operator: str, condition: Mapping[str, Any]) -> list[str]:
    extra = _present(condition, *_VALUE_KEYS)
    return [f"{kind} {operator} conditions take no value; remove {_quote(extra)}"] if extra else []


class StringCondition(_ColumnCondition):
    kind: Literal["string"]
    values: str | list[str] | None = None

    @classmethod
    def operands(cls, kind: str, operator: str, condition: Mapping[str, Any]) -> list[str]:
        if operator in TEXT_NO_VALUE_OPERATORS:
            return _no_operand("string", operator, condition)
        problems: list[str] = []
        wrong = _present(condition, "value", "firstValue", "lastValue", "otherValue")
        if "value" in wrong:
            problems.append('string conditions take "values" (a string or list of strings), not "value"')
        elif wrong:
            problems.append(f'string conditions take "values" (a string or list of strings), not {_quote(wrong)}')
        if "values" not in condition:
            if not wrong:
                problems.append(f'string {operator} conditions need "values" (a string or list of strings)')
            return problems
        values = condition["values"]
        if not isinstance(values, str) and (
            not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values)
        ):
            problems.append(f'"values" must be a string or a non-empty list of strings, not {values!r}')
        return problems


class _OrderedCondition(_ColumnCondition):
    """``number`` and ``date``: ``value``, or ``firstValue`` and ``lastValue`` for ``between``."""

    noun: ClassVar[str]

    @classmethod
    def fits(cls, value: Any) -> bool:
        raise NotImplementedError

    @classmethod
    def operands(cls, kind: str, operator: str, condition: Mapping[str, Any]) -> list[str]:
        noun = cls.noun
        if operator in NULL_OPERATORS:
            return _no_operand(kind, operator, condition)
        problems: list[str] = []
        if "values" in condition:
            problems.append(f'{kind} conditions take "value" ({noun}), not "values"')
        if operator == "between":
            if "value" in condition or "otherValue" in condition:
                wrong = _present(condition, "value", "otherValue")
                problems.append(f'{kind} between conditions take "firstValue" and "lastValue", not {_quote(wrong)}')
            for key in ("firstValue", "lastValue"):
                if key not in condition:
                    problems.append(f'{kind} between conditions need "{key}" ({noun})')
                elif not cls.fits(condition[key]):
                    problems.append(f'"{key}" must be {noun}, not {condition[key]!r}')
            return problems
        wrong = _present(condition, "firstValue", "lastValue", "otherValue")
        if wrong:
            problems.append(f'{kind} {operator} conditions take "value" ({noun}), not {_quote(wrong)}')
        if "value" not in condition:
            if "values" not in condition and not wrong:
                problems.append(f'{kind} {operator} conditions need "value" ({noun})')
        elif not cls.fits(condition["value"]):
            problems.append(f'"value" must be {noun}, not {condition["value"]!r}')
        return problems


class NumberCondition(_OrderedCondition):
    kind: Literal["number"]
    value: int | float | None = None
    firstValue: int | float | None = None
    lastValue: int | float | None = None
    noun: ClassVar[str] = "a number"

    @classmethod
    def fits(cls, value: Any) -> bool:
        return _is_number(value)


class DateCondition(_OrderedCondition):
    kind: Literal["date"]
    value: str | None = None
    firstValue: str | None = None
    lastValue: str | None = None
    noun: ClassVar[str] = 'a date string ("YYYY-MM-DD")'

    @classmethod
    def fits(cls, value: Any) -> bool:
        return is_date_text(value)


class BooleanCondition(_ColumnCondition):
    kind: Literal["boolean"]


class VectorCondition(_ColumnCondition):
    kind: Literal["vector"]


class AnyCondition(_ColumnCondition):
    kind: Literal["any"]


class ObjectPropertyCondition(_ColumnCondition):
    """A condition on one property of an object or array column (inside ``matchConditions``, or alone)."""

    kind: Literal["objectProperty"]
    propertyName: str | None = None
    value: str | None = None
    otherValue: str | None = None

    @classmethod
    def operands(cls, kind: str, operator: str, condition: Mapping[str, Any]) -> list[str]:
        if operator in TEXT_NO_VALUE_OPERATORS:
            return _no_operand("objectProperty", operator, condition)
        problems: list[str] = []
        if "values" in condition:
            problems.append('objectProperty conditions take "value" (a string), not "values"')
        wrong = _present(condition, "firstValue", "lastValue")
        if wrong:
            problems.append(
                f'objectProperty conditions take "value" (and "otherValue" for between), not {_quote(wrong)}'
            )
        needed = ("value", "otherValue") if operator == "between" else ("value",)
        if operator != "between" and "otherValue" in condition:
            problems.append(f'"otherValue" is only for between; objectProperty {operator} takes "value" alone')
        for key in needed:
            if key not in condition:
                if key != "value" or "values" not in condition:
                    problems.append(f'objectProperty {operator} conditions need "{key}" (a string)')
            elif not isinstance(condition[key], str):
                problems.append(f'"{key}" must be a string, not {condition[key]!r}')
        return problems


def _kinds_gate(kinds: Sequence[str]) -> WrapValidator:
    """Before a union on ``kind``: the condition is a table and its kind one of ``kinds`` (else a message
    listing them, rather than pydantic's)."""

    def gate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if not isinstance(value, Mapping):
            raise setting_error(f"a condition is a table with a kind, not {kind_of(value)}")
        kind = value.get("kind")
        if not isinstance(kind, str) or kind not in kinds:
            raise setting_error(f'"kind" must be one of {_quote(kinds)}, not {kind!r}')
        return handler(value)

    return WrapValidator(gate)


PropertyCondition = Annotated[ObjectPropertyCondition, _kinds_gate(("objectProperty",))]


class _MatchingCondition(_ColumnCondition):
    """``object`` and ``array``: null checks, or ``matchConditions`` on their properties."""

    conjonction: Conjonction | None = None
    propertyConditions: list[PropertyCondition] | None = None

    @classmethod
    def operands(cls, kind: str, operator: str, condition: Mapping[str, Any]) -> list[str]:
        if operator in NULL_OPERATORS:
            problems = _no_operand(kind, operator, condition)
            extra = _present(condition, "propertyConditions", "conjonction")
            if extra:
                problems.append(f"{kind} {operator} conditions take no {_quote(extra)} (only matchConditions does)")
            return problems
        problems = _no_operand(kind, operator, condition) + _conjonction(condition)
        nested = condition.get("propertyConditions")
        if not isinstance(nested, list) or not nested:
            problems.append(f'{kind} matchConditions conditions need "propertyConditions" (a non-empty list)')
        return problems


class ObjectCondition(_MatchingCondition):
    kind: Literal["object"]


class ArrayCondition(_MatchingCondition):
    kind: Literal["array"]


class SegmentCondition(_Condition):
    """Records in (or not in) a saved segment."""

    kind: Literal["segment"]
    segmentUuid: str | None = None
    operator: str | None = None

    @classmethod
    def checks(cls, kind: str, condition: Mapping[str, Any]) -> list[str]:
        problems: list[str] = []
        if not is_uuid(condition.get("segmentUuid")):
            problems.append(
                f'segment conditions need "segmentUuid" (a segment UUID), not {condition.get("segmentUuid")!r}'
            )
        if condition.get("operator") not in SEGMENT_OPERATORS:
            problems.append(
                f'segment conditions take "operator" = one of {_quote(SEGMENT_OPERATORS)}, '
                f"not {condition.get('operator')!r}"
            )
        return problems


def _frequency(value: Any) -> list[str]:
    if not isinstance(value, Mapping):
        return ['"frequency" must be {operator = "not"} or {operator = "moreThan"|"lessThan"|"exactly", value = N}']
    operator = value.get("operator")
    if operator == "not":
        return ['"frequency" with operator "not" takes no other key'] if set(value) - {"operator"} else []
    problems: list[str] = []
    if operator not in FREQUENCY_OPERATORS:
        choices = _quote(("not", *FREQUENCY_OPERATORS))
        problems.append(f'"frequency.operator" must be one of {choices}, not {operator!r}')
    count = value.get("value")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        problems.append(f'"frequency.value" must be a whole number >= 0, not {count!r}')
    if set(value) - {"operator", "value"}:
        extra = _quote(sorted(set(value) - {"operator", "value"}))
        problems.append(f'"frequency" takes only "operator" and "value", not {extra}')
    return problems


def _period(value: Any) -> list[str]:
    if not isinstance(value, Mapping):
        return ['"period" must be {operator = "lessThan"|"moreThan"|"exactly", value = N, unit = "day"}']
    problems: list[str] = []
    if value.get("operator") not in PERIOD_OPERATORS:
        problems.append(f'"period.operator" must be one of {_quote(PERIOD_OPERATORS)}, not {value.get("operator")!r}')
    count = value.get("value")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        problems.append(f'"period.value" must be a whole number >= 0, not {count!r}')
    if value.get("unit") != "day":
        problems.append(f'"period.unit" must be "day", not {value.get("unit")!r}')
    extra = sorted(set(value) - {"operator", "value", "unit"})
    if extra:
        problems.append(f'"period" takes only "operator", "value" and "unit", not {_quote(extra)}')
    return problems


OccurrenceItem = Annotated[
    StringCondition
    | NumberCondition
    | ObjectCondition
    | ArrayCondition
    | AnyCondition
    | VectorCondition
    | DateCondition
    | BooleanCondition,
    Discriminator("kind"),
    _kinds_gate(OCCURRENCE_CONDITION_KINDS),
]
"""A condition on the related model of an ``occurrence`` (column conditions only)."""


class OccurrenceCondition(_Condition):
    """Records with (or without) a number of related records matching conditions, within a period."""

    kind: Literal["occurrence"]
    relatedModelUuid: str | None = None
    frequency: dict[str, Any] | None = None
    period: dict[str, Any] | None = None
    conjonction: Conjonction | None = None
    conditions: list[OccurrenceItem] | None = None

    @classmethod
    def checks(cls, kind: str, condition: Mapping[str, Any]) -> list[str]:
        problems: list[str] = []
        if not is_uuid(condition.get("relatedModelUuid")):
            problems.append('occurrence conditions need "relatedModelUuid" (the related model\'s UUID)')
        problems += _frequency(condition.get("frequency")) + _period(condition.get("period"))
        problems += _conjonction(condition)
        if not isinstance(condition.get("conditions"), list):
            problems.append('occurrence conditions need "conditions" (a list of conditions on the related model)')
        return problems


class EnrollmentCondition(_Condition):
    """Records that entered, went through a node of, or left a workflow, a number of times within a period."""

    kind: Literal["enrollment"]
    workflowUuid: str | None = None
    activityKind: str | None = None
    nodeSlug: str | None = None
    frequency: dict[str, Any] | None = None
    period: dict[str, Any] | None = None

    @classmethod
    def checks(cls, kind: str, condition: Mapping[str, Any]) -> list[str]:
        problems: list[str] = []
        if not is_uuid(condition.get("workflowUuid")):
            problems.append('enrollment conditions need "workflowUuid" (a workflow UUID)')
        activity = condition.get("activityKind")
        if activity not in ACTIVITY_KINDS:
            problems.append(f'"activityKind" must be one of {_quote(ACTIVITY_KINDS)}, not {activity!r}')
        if "nodeSlug" in condition:
            if activity != "workflowNodeExecuted":
                problems.append('"nodeSlug" is only allowed with activityKind "workflowNodeExecuted"')
            elif not isinstance(condition["nodeSlug"], str) or not condition["nodeSlug"]:
                problems.append('"nodeSlug" must be a node slug (a string)')
        return problems + _frequency(condition.get("frequency")) + _period(condition.get("period"))


class SqlCondition(_Condition):
    """A named SQL clause on the model's columns."""

    kind: Literal["sql"]
    name: str | None = None
    clause: str | None = None

    @classmethod
    def checks(cls, kind: str, condition: Mapping[str, Any]) -> list[str]:
        return [
            f'sql conditions need "{key}" (a non-empty string)'
            for key in ("name", "clause")
            if not isinstance(condition.get(key), str) or not condition[key].strip()
        ]


Condition = Annotated[
    StringCondition
    | NumberCondition
    | DateCondition
    | BooleanCondition
    | ObjectCondition
    | ArrayCondition
    | ObjectPropertyCondition
    | VectorCondition
    | AnyCondition
    | SegmentCondition
    | OccurrenceCondition
    | EnrollmentCondition
    | SqlCondition,
    Discriminator("kind"),
    _kinds_gate(CONDITION_KINDS),
]
"""A condition of a filter group, one model per ``kind`` (REFERENCE.md 6.2)."""

UNION_TAGS.update(CONDITION_KINDS)


# -- groups and filters ----------------------------------------------------------------------------


def _listed(raw: Mapping[str, Any], key: str, what: str, missing: str) -> list[tuple[Loc, str]]:
    value = raw.get(key)
    if value is None:
        return [((), f'missing "{key}" ({missing})')]
    if not isinstance(value, list):
        return [((key,), f"must be a list of {what}, not {kind_of(value)}")]
    return []


class FilterGroup(ProblemNode):
    """Conditions joined by ``and`` or ``or``."""

    conjonction: Conjonction | None = None
    conditions: list[Condition] | None = None

    @classmethod
    def shape_problem(cls, value: Any) -> str:
        return f'a group is a table {{conjonction = "and"|"or", conditions = [...]}}, not {kind_of(value)}'

    @classmethod
    def own_problems(cls, raw: Mapping[str, Any]) -> list[tuple[Loc, str]]:
        problems = _own(_unknown_keys(raw, {"conjonction", "conditions"}, "a filter group") + _conjonction(raw))
        return problems + _listed(raw, "conditions", "conditions", "a list of conditions")


class Filter(ProblemNode):
    """A Cargo filter: groups joined by ``and`` or ``or`` (``MATCH_ALL``: no group, every record)."""

    conjonction: Conjonction | None = None
    groups: list[FilterGroup] | None = None

    @classmethod
    def shape_problem(cls, value: Any) -> str:
        return f'a filter is a table {{conjonction = "and"|"or", groups = [...]}}, not {kind_of(value)}'

    @classmethod
    def own_problems(cls, raw: Mapping[str, Any]) -> list[tuple[Loc, str]]:
        problems = _own(_unknown_keys(raw, {"conjonction", "groups"}, "a filter") + _conjonction(raw))
        return problems + _listed(raw, "groups", "groups", "a list; an empty list matches every record")

    def as_sent(self) -> dict[str, Any]:
        """The filter as Cargo takes it (the keys the user wrote)."""
        return self.model_dump(exclude_unset=True)


# -- sort ------------------------------------------------------------------------------------------

SORT_SHAPE = '{columnSlug = "...", kind = "asc"|"desc"}'


class SortItem(ProblemNode):
    """One column to sort the export by."""

    columnSlug: str | None = None
    kind: str | None = None

    @classmethod
    def shape_problem(cls, value: Any) -> str:
        return f"a sort item is {SORT_SHAPE}, not {kind_of(value)}"

    @classmethod
    def own_problems(cls, raw: Mapping[str, Any]) -> list[tuple[Loc, str]]:
        problems = _unknown_keys(raw, {"columnSlug", "kind"}, "a sort item")
        slug, kind = raw.get("columnSlug"), raw.get("kind")
        if not isinstance(slug, str) or not slug:
            problems.append(f'sort items need "columnSlug" (the column\'s slug): {SORT_SHAPE}')
        if kind not in ("asc", "desc"):
            problems.append(f'sort "kind" must be "asc" or "desc", not {kind!r}')
        return _own(problems)


def _a_list(what: str) -> WrapValidator:
    def gate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if not isinstance(value, list | tuple):
            raise setting_error(f"{what}, not {kind_of(value)}")
        return handler(list(value))

    return WrapValidator(gate)


Sort = Annotated[list[SortItem], _a_list(f"a sort is a list of {SORT_SHAPE}")]

_FILTER: TypeAdapter[Filter] = TypeAdapter(Filter)
_SORT: TypeAdapter[list[SortItem]] = TypeAdapter(Sort)


def validate_filter(raw: Any, where: str) -> dict[str, Any]:
    """``raw`` as sent to Cargo once it is a well-formed filter; else ``CargoConfigurationError`` naming
    every problem with its path below ``where`` (``sources.cargo.segments[0].filter``)."""
    try:
        return _FILTER.validate_python(raw).as_sent()
    except ValidationError as exc:
        raise CargoConfigurationError(describe_errors(exc, where, heading=HEADING)) from None


def validate_sort(raw: Any, where: str) -> list[dict[str, str]]:
    """``raw`` as a list of ``{columnSlug, kind: "asc"|"desc"}``; else ``CargoConfigurationError``."""
    try:
        items = _SORT.validate_python(raw)
    except ValidationError as exc:
        raise CargoConfigurationError(describe_errors(exc, where, heading=HEADING)) from None
    return [{"columnSlug": str(item.columnSlug), "kind": str(item.kind)} for item in items]


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
