"""Problems of the settings, located the way the settings are written, from pydantic's errors.

The settings model (``config.py``) and Cargo's filter grammar (``filters.py``) are pydantic models.
Their validators raise pydantic errors that carry the project's own messages; this module turns an
error's ``loc`` (``('segments', 1, 'filter', 'groups', 0, 'conditions', 2)``) into the setting's path
(``sources.cargo.segments[1].filter.groups[0].conditions[2]``) and joins all of them into one message,
so the user fixes every problem in one go.

Three kinds of message, told apart by the error's type:

* ``VALUE_ERROR``: a predicate about the value, shown after it:
  ``sources.cargo.concurrency = 0 is not a whole number from 1 to 32``;
* ``SETTING_ERROR`` (and pydantic's own errors): ``<path>: <message>``;
* ``SETTINGS_ERROR``: a rule across settings whose message names them itself as ``${name}``
  (``${until} needs ${since}``), each replaced by the setting's path or command-line option.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ModelWrapValidatorHandler, ValidationError, model_validator
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

__all__ = [
    "SETTINGS_ERROR",
    "SETTING_ERROR",
    "VALUE_ERROR",
    "Loc",
    "ProblemNode",
    "describe_errors",
    "kind_of",
    "problems_error",
    "setting_error",
    "value_error",
]

VALUE_ERROR = "cargo_value"
SETTING_ERROR = "cargo_setting"
SETTINGS_ERROR = "cargo_settings"

Loc = tuple[str | int, ...]

UNION_TAGS: set[str] = set()
"""Tags pydantic puts in a ``loc`` inside a discriminated union (the condition kinds, ...): they name
the union's member, not a key the user wrote, so paths leave them out. Registered by each union."""

_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


def value_error(message: str) -> PydanticCustomError:
    """``message`` completes ``<path> = <value>`` (``is not a UUID``)."""
    return PydanticCustomError(VALUE_ERROR, message)


def setting_error(message: str) -> PydanticCustomError:
    """``message`` follows ``<path>: ``."""
    return PydanticCustomError(SETTING_ERROR, message)


def settings_error(message: str) -> PydanticCustomError:
    """``message`` stands alone, naming its settings as ``${name}``."""
    return PydanticCustomError(SETTINGS_ERROR, message)


def problems_error(
    title: str,
    problems: Iterable[tuple[Loc, str]],
    nested: Iterable[ErrorDetails] = (),
    *,
    kind: str = SETTING_ERROR,
    prefix: Loc = (),
) -> ValidationError:
    """One ``ValidationError`` holding ``problems`` (errors of type ``kind`` at their ``loc``) and the
    errors ``nested`` validation found (kept as they were: type, message, value), every location
    below ``prefix``."""
    details = [
        InitErrorDetails(type=PydanticCustomError(kind, message), loc=(*prefix, *loc), input=None)
        for loc, message in problems
    ]
    details += [
        InitErrorDetails(type=PydanticCustomError(e["type"], e["msg"]), loc=(*prefix, *e["loc"]), input=e["input"])
        for e in nested
    ]
    return ValidationError.from_exception_data(title, details)


def _inside_an_item(loc: Loc) -> bool:
    """An error of an item of a list field (``('groups', 0, ...)``), not of the field itself."""
    return len(loc) >= 2 and isinstance(loc[1], int)


class ProblemNode(BaseModel):
    """A table of the settings whose rules are written out, so each problem gets its own message.

    ``own_problems`` reports what is wrong with the table's own keys and values (unknown keys, an
    operand that does not fit the operator, ...). Its fields are then validated by pydantic as usual,
    which reaches the nested tables (a filter's groups, a group's conditions). When the table has own
    problems, pydantic's errors about the same fields are left out (they would say the same thing less
    well), but errors inside nested tables are kept: every problem is reported at once.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    shape: ClassVar[str] = "a table"
    """What the table looks like, for the message when something else was written."""

    @classmethod
    def shape_problem(cls, value: Any) -> str:
        return f"must be {cls.shape}, not {kind_of(value)}"

    @classmethod
    def own_problems(cls, raw: Mapping[str, Any]) -> list[tuple[Loc, str]]:
        """Problems of ``raw``'s own keys and values (``loc`` relative to the table)."""
        return []

    def after_problems(self) -> list[tuple[Loc, str]]:
        """Problems only the parsed table shows (rules across its fields)."""
        return []

    @model_validator(mode="wrap")
    @classmethod
    def _located(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping):
            raise setting_error(cls.shape_problem(data))
        raw = {str(key): value for key, value in data.items()}
        own = cls.own_problems(raw)
        try:
            parsed = handler(raw)
        except ValidationError as exc:
            nested = [e for e in exc.errors(include_url=False) if not own or _inside_an_item(e["loc"])]
            raise problems_error(cls.__name__, own, nested) from None
        own += parsed.after_problems()
        if own:
            raise problems_error(cls.__name__, own)
        return parsed


def kind_of(value: Any) -> str:
    """What a wrongly written value is, for messages (``the string 'x'``, ``a list``, ``nothing``)."""
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        return "a list"
    if isinstance(value, Mapping):
        return "a table"
    return f"a {type(value).__name__}"


def path_of(loc: Loc, root: str, labels: Mapping[str, str]) -> str:
    """``root`` (or the label of the first key, e.g. ``--since``) then ``.key`` / ``[index]`` for each step."""
    steps = [s for i, s in enumerate(loc) if not (s in UNION_TAGS and i > 0 and isinstance(loc[i - 1], int))]
    text = root
    if steps and isinstance(steps[0], str) and steps[0] in labels:
        text, steps = labels[steps[0]], steps[1:]
    for step in steps:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text


def describe_errors(
    exc: ValidationError,
    root: str,
    labels: Mapping[str, str] | None = None,
    heading: str | None = None,
    hint: Callable[[Loc], str] | None = None,
) -> str:
    """Every problem of ``exc`` on a line of its own, each starting with where it is.

    ``labels`` maps a top-level key to the name the user gave it by (a command-line option);
    ``hint`` adds where a setting is set (``(set in .dlt/config.toml or SOURCES__CARGO__X)``).
    """
    names = dict(labels or {})
    lines: list[str] = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        path = path_of(loc, root, names)
        message = error["msg"]
        if error["type"] == SETTINGS_ERROR:
            text = _PLACEHOLDER.sub(lambda m: path_of((m.group(1),), root, names), message)
        elif error["type"] == VALUE_ERROR:
            text = f"{path} = {error['input']!r} {message}"
        else:
            text = f"{path}: {message}"
        text += hint(loc) if hint is not None else ""
        if text not in lines:
            lines.append(text)
    if len(lines) == 1:
        return lines[0]
    return f"{len(lines)} problems in {heading or root}:\n" + "\n".join(f"- {line}" for line in lines)
