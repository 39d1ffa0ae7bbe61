"""Request validation that fails the way Cargo's zod schemas fail.

Cargo validates every payload with strict zod schemas and answers 400 with the zod issue list
(REFERENCE.md sections 1.6 and 9.2). Clients react to those issues (and tests assert on them), so the
emulator must reproduce them: the payloads are pydantic models (``StrictPayload``: unknown keys
forbidden, no type coercion for JSON bodies) and pydantic's errors are translated here, in one
place, into the issues of zod 4, the version Cargo's client ships (``invalid_type`` with
``expected``, ``unrecognized_keys`` with ``keys``, ``invalid_value`` with ``values``,
``too_small``/``too_big``, ``invalid_format``), messages included (``Invalid input: expected
string, received undefined``).

GET endpoints receive their parameters as a query string in the Axios format the official client
produces (section 1.3: ``key[]=a&key[]=b``, ``filter[x]=1``, ``true``/``false``); ``parse_query``
turns it back into the object the client serialized, and ``validate_query`` coerces the strings
(numbers, booleans) the way a zod ``coerce`` schema would.
"""

from __future__ import annotations

import math
import re
import types
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin
from urllib.parse import parse_qsl

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, WithJsonSchema, field_validator
from pydantic_core import PydanticCustomError

Issue = dict[str, Any]
ModelT = TypeVar("ModelT", bound=BaseModel)

_NULL_NOT_ALLOWED = "null_not_allowed"
_INVALID_DATETIME = "invalid_datetime"


class ValidationFailed(Exception):
    """A request did not match its schema; ``issues`` is the zod issue list for the 400 body."""

    def __init__(self, issues: list[Issue]) -> None:
        super().__init__(f"{len(issues)} validation issue(s)")
        self.issues = issues


class StrictPayload(BaseModel):
    """Base of every request schema: unknown keys are refused and ``null`` is not "absent".

    zod's ``.optional()`` accepts a missing key but refuses an explicit ``null`` ("expected string,
    received null"); none of Cargo's read payloads declares a nullable field, so every explicit
    ``null`` is refused here too.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_null(cls, value: Any) -> Any:
        if value is None:
            raise PydanticCustomError(_NULL_NOT_ALLOWED, "null is not allowed")
        return value


class LenientPayload(StrictPayload):
    """A schema that drops unknown keys instead of refusing them (zod's default ``z.object``).

    Used for filter objects, where Cargo documents that a misspelled key (``conjunction``) is
    silently dropped rather than rejected (REFERENCE.md section 6.2).
    """

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


def _check_timestamp(value: str) -> str:
    """Accept an ISO-8601 datetime (or a bare date) and normalise it to a ClickHouse literal (UTC)."""
    parsed = parse_timestamp(value)
    if parsed is None:
        raise PydanticCustomError(_INVALID_DATETIME, "Invalid datetime")
    return parsed.strftime("%Y-%m-%d %H:%M:%S.") + f"{parsed.microsecond // 1000:03d}"


def parse_timestamp(value: str) -> datetime | None:
    """``value`` as an aware UTC datetime, or None when it is not an ISO date or datetime.

    Whether Cargo accepts bare dates is unknown (REFERENCE.md open question 7); the emulator accepts
    them (as midnight UTC) so the question cannot break a client here.
    """
    text = value.strip()
    if not text:
        return None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


Timestamp = Annotated[str, AfterValidator(_check_timestamp), WithJsonSchema({"type": "string", "format": "date-time"})]
"""A payload timestamp (``createdAfter`` ...): validated, then held as ``YYYY-MM-DD hh:mm:ss.fff`` UTC."""


# -- zod issues ------------------------------------------------------------------------------------

ZOD_VERSION = "4"
"""The zod major whose issue wording the emulator reproduces: Cargo's client (``@cargo-ai/api`` 1.0.57)
ships zod 4.4.3 (tests/node/package-lock.json), and REFERENCE.md 1.6 quotes its text (``expected
string, received undefined``). ``tests/integration/test_zod_wording.py`` checks these issues
against that zod, run by Node on the same payloads. [I] Cargo's server-side schemas themselves are
not public: which checks (``datetime``, ``int``) its fields carry is inferred."""


def zod_type_of(value: Any) -> str:
    """The name zod gives a received value's type (``util.parsedType``; NaN is shown as ``NaN``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "number"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return "unknown"


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated`` and ``X | None`` so the payload type itself is left."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
            continue
        if origin in (Union, types.UnionType):
            members = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation


def _annotation_at(model: type[BaseModel], loc: Sequence[int | str]) -> Any:
    """The declared type at ``loc`` inside ``model`` (None when the path leaves the schema)."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(part, str):
            field = current.model_fields.get(part)
            if field is None:
                return None
            current = field.annotation
        elif get_origin(current) in (list, Sequence) and isinstance(part, int):
            current = get_args(current)[0]
        else:
            return None
    return _unwrap(current)


def _literal_options(annotation: Any) -> list[Any] | None:
    return list(get_args(annotation)) if get_origin(annotation) is Literal else None


def _json_text(value: Any) -> str:
    """A value as zod's ``util.stringifyPrimitive`` shows it in messages (strings double-quoted)."""
    return f'"{value}"' if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)


def zod_expected(annotation: Any) -> str:
    """How zod names an expected type in ``invalid_type`` issues."""
    origin = get_origin(annotation)
    if annotation is str:
        return "string"
    if annotation is bool:
        return "boolean"
    if annotation in (int, float):
        return "number"
    if origin in (list, Sequence) or annotation is list:
        return "array"
    if origin in (dict, Mapping) or annotation is dict:
        return "object"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "object"
    return "unknown"


def _invalid_type(expected: str, received: str, path: list[int | str]) -> Issue:
    issue: Issue = {"expected": expected, "code": "invalid_type"}
    if received == "NaN":
        issue["received"] = "NaN"  # zod's number check names NaN in the issue itself
    issue["path"] = path
    issue["message"] = f"Invalid input: expected {expected}, received {received}"
    return issue


def _invalid_value(options: Sequence[Any], path: list[int | str]) -> Issue:
    if len(options) == 1:
        message = f"Invalid input: expected {_json_text(options[0])}"
    else:
        message = "Invalid option: expected one of " + "|".join(_json_text(o) for o in options)
    return {"code": "invalid_value", "values": list(options), "path": path, "message": message}


def _bound(code: str, limit: Any, inclusive: bool, path: list[int | str]) -> Issue:
    small = code == "too_small"
    sign = (">" if small else "<") + ("=" if inclusive else "")
    return {
        "origin": "number",
        "code": code,
        "minimum" if small else "maximum": limit,
        "inclusive": inclusive,
        "path": path,
        "message": f"Too {'small' if small else 'big'}: expected number to be {sign}{limit}",
    }


def _issue_for(model: type[BaseModel], error: Mapping[str, Any]) -> Issue:
    """One pydantic error as the zod issue Cargo would have produced."""
    kind: str = error["type"]
    path: list[int | str] = list(error["loc"])
    value = error.get("input")
    annotation = _annotation_at(model, path)
    options = _literal_options(annotation)
    context: Mapping[str, Any] = error.get("ctx") or {}
    if options is not None and kind in ("missing", "literal_error", _NULL_NOT_ALLOWED):
        return _invalid_value(options, path)  # zod checks an enum or literal by value, whatever the type
    expected = zod_expected(annotation)
    if kind == "missing":
        return _invalid_type(expected, "undefined", path)
    if kind == _NULL_NOT_ALLOWED:
        return _invalid_type(expected, "null", path)
    if kind in ("int_type", "int_from_float", "int_parsing", "float_type", "float_parsing"):
        if isinstance(value, float) and not isinstance(value, bool) and not math.isnan(value):
            return {
                "expected": "int",
                "format": "safeint",
                "code": "invalid_type",
                "path": path,
                "message": "Invalid input: expected int, received number",
            }
        return _invalid_type("number", zod_type_of(value), path)
    if kind in ("greater_than_equal", "greater_than"):
        return _bound("too_small", context.get("ge", context.get("gt")), kind.endswith("equal"), path)
    if kind in ("less_than_equal", "less_than"):
        return _bound("too_big", context.get("le", context.get("lt")), kind.endswith("equal"), path)
    if kind == _INVALID_DATETIME:
        # zod also sends the ``pattern`` of its ISO check, which depends on options Cargo's schemas do not show
        return {"origin": "string", "code": "invalid_format", "format": "datetime", "path": path,
                "message": "Invalid ISO datetime"}  # fmt: skip
    if kind.endswith("_type") or kind.endswith("_parsing") or kind in ("model_attributes_type",):
        return _invalid_type(expected, zod_type_of(value), path)
    return {"code": "custom", "path": path, "message": str(error.get("msg", "Invalid input"))}


def zod_issues(model: type[BaseModel], error: ValidationError) -> list[Issue]:
    """All of ``error`` as zod issues: field issues first, then one ``unrecognized_keys`` per object."""
    issues: list[Issue] = []
    unknown: dict[tuple[int | str, ...], list[str]] = {}
    for item in error.errors(include_url=False):
        if item["type"] == "extra_forbidden":
            location = tuple(item["loc"])
            unknown.setdefault(location[:-1], []).append(str(location[-1]))
            continue
        issues.append(_issue_for(model, item))
    for parent, keys in unknown.items():
        issues.append(
            {
                "code": "unrecognized_keys",
                "keys": keys,
                "path": list(parent),
                "message": f"Unrecognized key{'s' if len(keys) > 1 else ''}: " + ", ".join(f'"{k}"' for k in keys),
            }
        )
    return issues


def _js_numbers(value: Any) -> Any:
    """Integral floats become ints: JSON has one number type, so ``5.0`` is the integer 5 to zod."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_js_numbers(item) for item in value]
    if isinstance(value, dict):
        return {key: _js_numbers(item) for key, item in value.items()}
    return value


def validate_body(model: type[ModelT], payload: Any) -> ModelT:
    """Validate a decoded JSON body (no coercion: ``"5"`` is not a number, as with zod)."""
    if not isinstance(payload, dict):
        raise ValidationFailed([_invalid_type("object", zod_type_of(payload), [])])
    try:
        return model.model_validate(_js_numbers(payload), strict=True)
    except ValidationError as error:
        raise ValidationFailed(zod_issues(model, error)) from None


# -- query strings ---------------------------------------------------------------------------------

_BRACKETED = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])+)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


def _split_key(key: str) -> list[str]:
    """``a[b][0]`` -> ``["a", "b", "0"]``; ``a[]`` -> ``["a", ""]``; anything else stays one segment."""
    match = _BRACKETED.match(key)
    if match is None:
        return [key]
    return [match.group(1), *_SEGMENT.findall(match.group(2))]


def _put(container: dict[str, Any], segments: list[str], value: str) -> None:
    key, rest = segments[0], segments[1:]
    existing = container.get(key)
    if not rest:
        if key not in container:
            container[key] = value
        elif isinstance(existing, list):
            existing.append(value)
        else:
            container[key] = [existing, value]
        return
    if rest[0] == "":
        items = existing if isinstance(existing, list) else ([] if key not in container else [existing])
        container[key] = items
        if len(rest) == 1:
            items.append(value)
        else:
            child: dict[str, Any] = {}
            items.append(child)
            _put(child, rest[1:], value)
        return
    if not isinstance(existing, dict):
        existing = {}
        container[key] = existing
    _put(existing, rest, value)


def _indexed_to_lists(value: Any) -> Any:
    """Objects whose keys are all indices (``filter[tags][0]=a``) become arrays, as qs does."""
    if isinstance(value, list):
        return [_indexed_to_lists(item) for item in value]
    if isinstance(value, dict):
        converted = {key: _indexed_to_lists(item) for key, item in value.items()}
        if converted and all(key.isdigit() for key in converted):
            return [converted[key] for key in sorted(converted, key=int)]
        return converted
    return value


def parse_query(query: str | bytes) -> dict[str, Any]:
    """Decode an Axios-serialized query string back into the object the client passed.

    Handles ``%5B%5D``-encoded brackets, ``+`` for spaces, repeated plain keys (``k=a&k=b``) and
    nested paths. Values stay strings; ``validate_query`` coerces them per schema.
    """
    text = query.decode("latin-1") if isinstance(query, bytes) else query
    result: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        _put(result, _split_key(key), value)
    converted = _indexed_to_lists(result)
    assert isinstance(converted, dict)
    return converted


def _is_list_type(annotation: Any) -> bool:
    return get_origin(annotation) in (list, Sequence)


def _coerce_for(annotation: Any, value: Any) -> Any:
    """Turn query-string text into the schema's type where it unambiguously fits."""
    annotation = _unwrap(annotation)
    if _is_list_type(annotation):
        items = value if isinstance(value, list) else [value]
        inner = _unwrap(get_args(annotation)[0])
        return [_coerce_for(inner, item) for item in items]
    if isinstance(value, str):
        if annotation is bool and value in ("true", "false"):
            return value == "true"
        if annotation in (int, float) and re.fullmatch(r"-?\d+(\.\d+)?", value):
            number = float(value)
            return int(number) if number.is_integer() and annotation is int else number
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(value, dict):
        return {key: _coerce_for(_field_type(annotation, key), item) for key, item in value.items()}
    return value


def _field_type(model: type[BaseModel], key: str) -> Any:
    field = model.model_fields.get(key)
    return field.annotation if field is not None else None


def validate_query(model: type[ModelT], query: str | bytes | Mapping[str, Any]) -> ModelT:
    """Validate GET parameters: parse the query string, coerce text per field, then validate strictly.

    Unparseable numbers stay strings, so they fail as zod ``coerce.number()`` would (``received NaN``).
    """
    params = dict(query) if isinstance(query, Mapping) else parse_query(query)
    coerced = {key: _coerce_for(_field_type(model, key), value) for key, value in params.items()}
    try:
        return model.model_validate(coerced, strict=True)
    except ValidationError as error:
        issues = [
            _invalid_type("number", "NaN", issue["path"])
            if issue.get("code") == "invalid_type"
            and issue.get("expected") == "number"
            and issue.get("message", "").endswith("received string")
            else issue
            for issue in zod_issues(model, error)
        ]
        raise ValidationFailed(issues) from None


__all__ = [
    "Issue",
    "LenientPayload",
    "StrictPayload",
    "Timestamp",
    "ValidationFailed",
    "parse_query",
    "parse_timestamp",
    "validate_body",
    "validate_query",
    "zod_expected",
    "zod_issues",
    "zod_type_of",
]
