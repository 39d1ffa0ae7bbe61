"""Zod-compatible validation and Axios query-string parsing (emulator/validation.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pytest
from pydantic import Field

from cargo_elt.emulator.validation import (
    LenientPayload,
    StrictPayload,
    Timestamp,
    ValidationFailed,
    parse_query,
    parse_timestamp,
    validate_body,
    validate_query,
)


class Condition(LenientPayload):
    kind: Literal["node"]
    status: Literal["absent", "success"]


class Group(LenientPayload):
    conjonction: Literal["and", "or"] | None = None
    conditions: list[Condition]


class Payload(StrictPayload):
    workflowUuid: str
    statuses: list[Literal["success", "error"]] | None = None
    isFinished: bool | None = None
    limit: Annotated[int, Field(ge=1, le=100)] | None = None
    createdAfter: Timestamp | None = None
    groups: list[Group] | None = None


def issues_of(payload: Any) -> list[dict[str, Any]]:
    with pytest.raises(ValidationFailed) as failed:
        validate_body(Payload, payload)
    return failed.value.issues


def test_required() -> None:
    """zod 4's wording (Cargo's client ships zod 4.4.3), not zod 3's ``Required``."""
    assert issues_of({}) == [
        {"expected": "string", "code": "invalid_type", "path": ["workflowUuid"],
         "message": "Invalid input: expected string, received undefined"}
    ]  # fmt: skip


def test_unrecognized_keys_come_last_and_grouped() -> None:
    issues = issues_of({"workflowUuid": 1, "b": 1, "a": 2})
    assert issues[0]["message"] == "Invalid input: expected string, received number"
    assert issues[1] == {"code": "unrecognized_keys", "keys": ["b", "a"], "path": [],
                         "message": 'Unrecognized keys: "b", "a"'}  # fmt: skip
    assert issues_of({"workflowUuid": "w", "c": 1})[0]["message"] == 'Unrecognized key: "c"'


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        (
            "isFinished",
            "true",
            {
                "code": "invalid_type",
                "expected": "boolean",
                "message": "Invalid input: expected boolean, received string",
            },
        ),
        (
            "isFinished",
            None,
            {
                "code": "invalid_type",
                "expected": "boolean",
                "message": "Invalid input: expected boolean, received null",
            },
        ),
        (
            "statuses",
            "success",
            {"code": "invalid_type", "expected": "array", "message": "Invalid input: expected array, received string"},
        ),
        (
            "limit",
            1.5,
            {
                "code": "invalid_type",
                "expected": "int",
                "format": "safeint",
                "message": "Invalid input: expected int, received number",
            },
        ),
        (
            "limit",
            True,
            {
                "code": "invalid_type",
                "expected": "number",
                "message": "Invalid input: expected number, received boolean",
            },
        ),
        (
            "limit",
            0,
            {
                "code": "too_small",
                "origin": "number",
                "minimum": 1,
                "inclusive": True,
                "message": "Too small: expected number to be >=1",
            },
        ),
        ("limit", 101, {"code": "too_big", "maximum": 100, "message": "Too big: expected number to be <=100"}),
        (
            "createdAfter",
            "last week",
            {"code": "invalid_format", "format": "datetime", "message": "Invalid ISO datetime"},
        ),
        (
            "groups",
            {},
            {"code": "invalid_type", "expected": "array", "message": "Invalid input: expected array, received object"},
        ),
    ],
)
def test_type_issues(field: str, value: Any, expected: dict[str, Any]) -> None:
    issues = issues_of({"workflowUuid": "w", field: value})
    assert len(issues) == 1
    assert issues[0]["path"] == [field]
    assert expected.items() <= issues[0].items()


def test_enum_and_literal_issues_in_nested_lists() -> None:
    issues = issues_of(
        {"workflowUuid": "w", "statuses": ["error", "done"],
         "groups": [{"conjonction": "xor", "conditions": [{"kind": "edge", "status": "success", "extra": 1}]}]}
    )  # fmt: skip
    assert issues[0] == {"code": "invalid_value", "values": ["success", "error"], "path": ["statuses", 1],
                         "message": 'Invalid option: expected one of "success"|"error"'}  # fmt: skip
    assert issues[1]["path"] == ["groups", 0, "conjonction"] and issues[1]["code"] == "invalid_value"
    assert issues[2] == {"code": "invalid_value", "values": ["node"], "path": ["groups", 0, "conditions", 0, "kind"],
                         "message": 'Invalid input: expected "node"'}  # fmt: skip
    assert len(issues) == 3  # lenient filter objects drop unknown keys


def test_valid_payload_normalises() -> None:
    parsed = validate_body(Payload, {"workflowUuid": "w", "limit": 5.0, "createdAfter": "2026-01-02T03:04:05.6+01:00"})
    assert parsed.limit == 5  # JSON has one number type: 5.0 is the integer 5
    assert parsed.createdAfter == "2026-01-02 02:04:05.600"
    group = validate_body(Payload, {"workflowUuid": "w", "groups": [{"conjunction": "and", "conditions": []}]})
    assert group.groups is not None and group.groups[0].conjonction is None


def test_non_object_body() -> None:
    assert issues_of([1])[0] == {"expected": "object", "code": "invalid_type", "path": [],
                                 "message": "Invalid input: expected object, received array"}  # fmt: skip


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("statuses%5B%5D=success&statuses%5B%5D=error", {"statuses": ["success", "error"]}),
        ("statuses=success&statuses=error", {"statuses": ["success", "error"]}),
        ("statuses[]=success", {"statuses": ["success"]}),
        ("filter%5Bx%5D=1&filter%5Btags%5D%5B0%5D=a&filter%5Btags%5D%5B1%5D=b",
         {"filter": {"x": "1", "tags": ["a", "b"]}}),
        ("q=a+b%2Cc&t=2026-01-01T00:00:00.000Z", {"q": "a b,c", "t": "2026-01-01T00:00:00.000Z"}),
        ("empty=&flag=true", {"empty": "", "flag": "true"}),
        ("items%5B%5D%5Bid%5D=1", {"items": [{"id": "1"}]}),
        ("", {}),
    ],
)  # fmt: skip
def test_parse_query(query: str, expected: dict[str, Any]) -> None:
    assert parse_query(query) == expected


class Params(StrictPayload):
    workflowUuids: list[str] | None = None
    isFinished: bool | None = None
    limit: Annotated[int, Field(ge=1, le=100)] | None = None


def test_validate_query_coerces() -> None:
    parsed = validate_query(Params, "workflowUuids=a&isFinished=false&limit=50")
    assert parsed == Params(workflowUuids=["a"], isFinished=False, limit=50)


def test_validate_query_issues() -> None:
    with pytest.raises(ValidationFailed) as failed:
        validate_query(Params, b"limit=ten&isFinished=yes&other=1")
    issues = failed.value.issues
    assert issues[0] == {"expected": "boolean", "code": "invalid_type", "path": ["isFinished"],
                         "message": "Invalid input: expected boolean, received string"}  # fmt: skip
    assert issues[1] == {"expected": "number", "code": "invalid_type", "received": "NaN", "path": ["limit"],
                         "message": "Invalid input: expected number, received NaN"}  # fmt: skip
    assert issues[2]["code"] == "unrecognized_keys" and issues[2]["keys"] == ["other"]


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("2026-07-22T00:20:41.999Z", "2026-07-22T00:20:41.999000+00:00"),
        ("2026-07-22T02:20:41+02:00", "2026-07-22T00:20:41+00:00"),
        ("2026-07-22", "2026-07-22T00:00:00+00:00"),
        ("2026-07-22 00:20:41", "2026-07-22T00:20:41+00:00"),
    ],
)
def test_parse_timestamp(text: str, iso: str) -> None:
    parsed = parse_timestamp(text)
    assert parsed is not None and parsed.isoformat() == iso


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01", "1700000000"])
def test_parse_timestamp_refuses(text: str) -> None:
    assert parse_timestamp(text) is None
