"""The emulator's validation errors, issue for issue and word for word, as zod gives them.

Cargo validates payloads with zod and answers its issue list (REFERENCE.md 1.6, which quotes
``expected string, received undefined``). The zod to follow is the one Cargo's own client ships
(``@cargo-ai/api`` pins zod 4.4.3 in ``tests/node/package-lock.json``), not zod 3's ``Required``. Each
case validates one payload twice: with the emulator's pydantic model (``validate_body``), and with
zod itself, run by Node on the JSON Schema of that same model (``tests/node/zod_issues.mjs``); the two
issue lists must be equal. Only zod's ``pattern`` (the regex of its ISO check, which depends on
options Cargo's schemas do not show) is left out of the comparison.
"""

from __future__ import annotations

import subprocess
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from cargo_elt.emulator.api.payloads import (
    RunsCountPayload,
    RunsDownloadOutputsPayload,
    RunsDownloadPayload,
    RunsListPayload,
    RunsMetricsPayload,
    SegmentDownloadPayload,
    SpansListPayload,
)
from cargo_elt.emulator.validation import ValidationFailed, validate_body
from tests.node_project import node_project

CASES: list[tuple[type[BaseModel], Any]] = [
    (RunsMetricsPayload, {}),  # REFERENCE.md's quote: expected string, received undefined
    (RunsDownloadPayload, {"workflowUuid": "w", "isFinished": True}),  # refused key, as Cargo does
    (RunsDownloadPayload, {"isFinished": True, "recordId": 7}),
    (RunsListPayload, {"workflowUuid": 5, "statuses": ["success", "done"], "limit": 1.5, "extra": 1, "more": 2}),
    (RunsListPayload, {"limit": 0, "offset": -1}),
    (RunsListPayload, {"limit": 101}),
    (RunsListPayload, {"limit": "5", "isFinished": "true"}),
    (RunsCountPayload, {"workflowUuid": None, "statuses": "success"}),
    (RunsCountPayload, {"isGroupParent": 1, "recordTitle": ["a"], "batchUuid": {}}),
    (RunsDownloadOutputsPayload, {"workflowUuid": "w", "format": "xml"}),
    (RunsDownloadOutputsPayload, {"workflowUuid": "w", "format": 3}),
    (SpansListPayload, {}),
    (SpansListPayload, {"executionStartedAfter": "last week", "nodeKind": "robot", "executionStatuses": [1]}),
    (SegmentDownloadPayload, {"filter": "all", "modelUuid": "m"}),
    (SegmentDownloadPayload, {"filter": {"conjonction": "and", "groups": []}, "sort": [{"columnSlug": "x"}]}),
    (RunsMetricsPayload, "workflowUuid"),
    (RunsMetricsPayload, []),
]


def _nullable_to_optional(schema: Any) -> Any:
    """The JSON Schema zod's ``.optional()`` fields amount to: pydantic writes ``X | None = None`` as
    ``anyOf: [X, null]`` with a null default, but the emulator (like zod) refuses an explicit null."""
    if isinstance(schema, list):
        return [_nullable_to_optional(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    members = schema.get("anyOf")
    if isinstance(members, list) and {"type": "null"} in members and len(members) == 2:
        rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
        return _nullable_to_optional({**rest, **next(m for m in members if m != {"type": "null"})})
    return {k: _nullable_to_optional(v) for k, v in schema.items() if k != "default"}


@pytest.fixture(scope="module")
def zod_answers() -> list[list[dict[str, Any]]]:
    node = node_project()  # skips without Node.js (test_api_wire's first test fails for it)
    cases = [{"schema": _nullable_to_optional(model.model_json_schema()), "payload": p} for model, p in CASES]
    done = subprocess.run(
        ["node", "zod_issues.mjs"],
        check=False,
        cwd=node,
        input=orjson.dumps(cases),
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    answers: list[list[dict[str, Any]]] = orjson.loads(done.stdout)
    return answers


def _emulator_issues(model: type[BaseModel], payload: Any) -> list[dict[str, Any]]:
    try:
        validate_body(model, payload)
    except ValidationFailed as failed:
        return failed.issues
    return []


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{m.__name__}-{i}" for i, (m, _) in enumerate(CASES)])
def test_the_emulator_words_validation_errors_as_cargos_zod(index: int, zod_answers: list[list[Any]]) -> None:
    model, payload = CASES[index]
    expected = [{k: v for k, v in issue.items() if k != "pattern"} for issue in zod_answers[index]]
    assert expected, f"zod accepts {payload!r}: the case checks nothing"
    assert _emulator_issues(model, payload) == expected


def test_the_reference_quote_is_what_a_missing_field_gets() -> None:
    """REFERENCE.md 1.6: ``expected string, received undefined`` at ``path: ["segmentUuid"]``-style paths."""
    issues = _emulator_issues(RunsMetricsPayload, {})
    assert issues == [
        {
            "expected": "string",
            "code": "invalid_type",
            "path": ["workflowUuid"],
            "message": "Invalid input: expected string, received undefined",
        }
    ]
