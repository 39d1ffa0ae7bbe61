"""Segment filters of every kind and operator (REFERENCE.md 6.2) and sharded segment downloads.

Each filter's answer from ``segmentation/segments/fetch`` (count and ids) is compared with an
independent evaluation: a plain-Python reading of the semantics documented in
``emulator/api/filters.py`` over the records a match-all fetch returns (and, for ``enrollment``, over
the run rows read straight from the store). Runs on the shared session emulator (tiny scale:
200 companies, 500 contacts), plus a small hand-made store for the segment-recursion guard.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from cargo_elt.emulator.api import exports, segments
from cargo_elt.emulator.generator import current_now
from tests.integration.api_support import Served, served_fixture, u

Record = dict[str, Any]
Predicate = Callable[[Record], bool]
MATCH_ALL: dict[str, Any] = {"conjonction": "and", "groups": []}
DAY = timedelta(days=1)


# -- access ----------------------------------------------------------------------------------------


class World:
    """The session emulator's first workspace: its models, all their records, and its runs."""

    def __init__(self, emulator: Any, client: httpx.Client) -> None:
        self.emulator = emulator
        self.client = client
        self.ws = emulator.state.workspaces[0].uuid
        self.now = current_now(emulator.state.store)
        self.models = {m["slug"]: m for m in ok(client.get("/storage/models/list"))["models"]}
        self.records = {slug: self.fetch(slug, MATCH_ALL)[1] for slug in self.models}
        self.segments = ok(client.get("/segmentation/segments/list"))["segments"]

    def uuid(self, slug: str) -> str:
        return str(self.models[slug]["uuid"])

    def fetch(self, slug: str, flt: dict[str, Any], **extra: Any) -> tuple[int, list[Record]]:
        payload = {"modelUuid": self.uuid(slug), "filter": flt, "fetchingLimit": 1000, **extra}
        body = ok(self.client.post("/segmentation/segments/fetch", json=payload))
        return int(body["count"]), list(body["records"])

    def post_fetch(self, slug: str, flt: dict[str, Any]) -> httpx.Response:
        return self.client.post("/segmentation/segments/fetch", json={"modelUuid": self.uuid(slug), "filter": flt})

    def runs(self, workflow_uuid: str) -> list[Record]:
        """Live runs of a workflow, read from the store (not through the filter code)."""
        store = self.emulator.state.store
        return store.rows(
            "SELECT record_id, toString(created_at) AS created, toString(finished_at) AS finished, "
            "executions.node_slug AS slugs, arrayMap(t -> toString(t), executions.started_at) AS starts "
            f"FROM {store.database}.runs FINAL WHERE workspace_uuid = toUUID('{self.ws}') "
            f"AND workflow_uuid = toUUID('{workflow_uuid}') AND deleted_at IS NULL"
        )


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, dict)
    return body


@pytest.fixture(scope="module")
def world(emulator: Any) -> Iterator[World]:
    ws = emulator.state.workspaces[0]
    client = httpx.Client(base_url=emulator.base_url + "/v1", headers={"authorization": f"Bearer {ws.token}"},
                          timeout=60)  # fmt: skip
    try:
        yield World(emulator, client)
    finally:
        client.close()


def cond(**condition: Any) -> dict[str, Any]:
    return {"conjonction": "and", "groups": [{"conjonction": "and", "conditions": [condition]}]}


def check(world: World, slug: str, flt: dict[str, Any], predicate: Predicate, *, nonempty: bool = True) -> None:
    """The emulator's answer equals the Python evaluation (same ids, in ``_id`` order, same count)."""
    count, records = world.fetch(slug, flt)
    expected = [r["_id"] for r in world.records[slug] if predicate(r)]
    assert [r["_id"] for r in records] == expected
    assert count == len(expected)
    if nonempty:
        assert 0 < len(expected) < len(world.records[slug]) or flt.get("groups") == [], "case does not discriminate"


def instant(text: str) -> datetime:
    """An ISO instant, a ClickHouse timestamp or a bare day as aware UTC."""
    cleaned = text.replace("Z", "+00:00").replace(" ", "T")
    moment = datetime.fromisoformat(cleaned)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def age_in(period: dict[str, Any], now: datetime, moment: datetime) -> bool:
    age = now - moment
    n = period["value"] * DAY
    if period["operator"] == "lessThan":
        return age < n
    if period["operator"] == "moreThan":
        return age > n
    return n <= age < n + DAY


def frequency_ok(frequency: dict[str, Any], count: int) -> bool:
    operator = frequency["operator"]
    if operator == "not":
        return count == 0
    value = frequency["value"]
    return {"moreThan": count > value, "lessThan": count < value, "exactly": count == value}[operator]


# -- Python semantics of property conditions -------------------------------------------------------


def json_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def prop_match(present: bool, value: Any, condition: dict[str, Any]) -> bool:
    """One ``objectProperty`` condition on a value (``present`` False = absent or null)."""
    operator = condition["operator"]
    text = json_text(value) if present else ""
    empty = not present or text == "" or (isinstance(value, list | dict) and not value)
    if operator in ("isNull", "isNotNull"):
        return (not present) == (operator == "isNull")
    if operator in ("isEmpty", "isNotEmpty"):
        return empty == (operator == "isEmpty")
    operand = str(condition["value"])
    if operator in ("greaterThan", "lowerThan", "between"):
        bounds = [operand] if operator != "between" else [operand, str(condition["otherValue"])]
        if all(number(b) is not None for b in bounds):
            mine = number(text) if present else None
            if mine is None:
                return False
            low = [number(b) or 0.0 for b in bounds]
        else:
            if not present:
                return False
            mine, low = text, bounds  # type: ignore[assignment]
        if operator == "between":
            return bool(low[0] <= mine <= low[1])  # type: ignore[operator]
        return bool(mine > low[0]) if operator == "greaterThan" else bool(mine < low[0])  # type: ignore[operator]
    positive = (
        present
        and {
            "is": text == operand,
            "isNot": text == operand,
            "contains": operand.lower() in text.lower(),
            "doesNotContain": operand.lower() in text.lower(),
            "startsWith": text.startswith(operand),
            "endsWith": text.endswith(operand),
        }[operator]
    )
    return not positive if operator in ("isNot", "doesNotContain") else positive


def on_object(name: str, condition: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    def test(obj: dict[str, Any]) -> bool:
        present = obj.get(name) is not None
        return prop_match(present, obj.get(name), condition)

    return test


# -- cases: plain column kinds ---------------------------------------------------------------------

COLUMN_CASES: list[tuple[str, dict[str, Any], Predicate]] = [
    # string
    ("companies", {"kind": "string", "columnSlug": "country", "operator": "is", "values": ["US", "DE"]},
     lambda r: r["country"] in ("US", "DE")),
    ("companies", {"kind": "string", "columnSlug": "country", "operator": "is", "values": "FR"},
     lambda r: r["country"] == "FR"),
    ("companies", {"kind": "string", "columnSlug": "country", "operator": "isNot", "values": ["US", "DE"]},
     lambda r: r["country"] not in ("US", "DE")),
    ("companies", {"kind": "string", "columnSlug": "name", "operator": "contains", "values": ["LABS", "tech"]},
     lambda r: "labs" in r["name"].lower() or "tech" in r["name"].lower()),
    ("companies", {"kind": "string", "columnSlug": "name", "operator": "doesNotContain", "values": ["a", "E"]},
     lambda r: "a" not in r["name"].lower() and "e" not in r["name"].lower()),
    ("companies", {"kind": "string", "columnSlug": "domain", "operator": "startsWith", "values": ["a", "b"]},
     lambda r: r["domain"].startswith(("a", "b"))),
    ("companies", {"kind": "string", "columnSlug": "domain", "operator": "endsWith", "values": [".io"]},
     lambda r: r["domain"].endswith(".io")),
    ("contacts", {"kind": "string", "columnSlug": "seniority", "operator": "is", "values": ["vp", "c-level"]},
     lambda r: r["seniority"] in ("vp", "c-level")),
    # number
    ("companies", {"kind": "number", "columnSlug": "employees", "operator": "greaterThan", "value": 1000},
     lambda r: r["employees"] > 1000),
    ("companies", {"kind": "number", "columnSlug": "employees", "operator": "lowerThan", "value": 50},
     lambda r: r["employees"] < 50),
    ("companies", {"kind": "number", "columnSlug": "employees", "operator": "between", "firstValue": 100,
                   "lastValue": 5000}, lambda r: 100 <= r["employees"] <= 5000),
    ("contacts", {"kind": "number", "columnSlug": "score", "operator": "greaterThan", "value": 50.5},
     lambda r: r["score"] > 50.5),
    ("contacts", {"kind": "number", "columnSlug": "score", "operator": "lowerThan", "value": 12.25},
     lambda r: r["score"] < 12.25),
    # date
    ("companies", {"kind": "date", "columnSlug": "founded_on", "operator": "lowerThan", "value": "1990-01-01"},
     lambda r: r["founded_on"] < "1990-01-01"),
    ("companies", {"kind": "date", "columnSlug": "founded_on", "operator": "between", "firstValue": "1990-01-01",
                   "lastValue": "2010-12-31"}, lambda r: "1990-01-01" <= r["founded_on"] <= "2010-12-31"),
    ("contacts", {"kind": "date", "columnSlug": "last_activity_at", "operator": "greaterThan",
                  "value": "2026-10-15T00:00:00Z"},
     lambda r: instant(r["last_activity_at"]) > instant("2026-10-15T00:00:00Z")),
    ("contacts", {"kind": "date", "columnSlug": "_emitted_at", "operator": "lowerThan", "value": "2026-10-10"},
     lambda r: instant(r["_emitted_at"]) < instant("2026-10-10")),
    # boolean
    ("companies", {"kind": "boolean", "columnSlug": "is_customer", "operator": "isTrue"}, lambda r: r["is_customer"]),
    ("contacts", {"kind": "boolean", "columnSlug": "is_subscribed", "operator": "isFalse"},
     lambda r: not r["is_subscribed"]),
    # object: matchConditions over metadata
    ("companies", {"kind": "object", "columnSlug": "metadata", "operator": "matchConditions", "conjonction": "and",
                   "propertyConditions": [
                       {"kind": "objectProperty", "columnSlug": "metadata", "propertyName": "source", "operator": "is",
                        "value": "website"},
                       {"kind": "objectProperty", "columnSlug": "metadata", "propertyName": "owner_id",
                        "operator": "greaterThan", "value": "20"}]},
     lambda r: r["metadata"]["source"] == "website" and r["metadata"]["owner_id"] > 20),
    ("companies", {"kind": "object", "columnSlug": "metadata", "operator": "matchConditions", "conjonction": "or",
                   "propertyConditions": [
                       {"kind": "objectProperty", "propertyName": "lifecycle_stage", "operator": "contains",
                        "value": "LEAD"},
                       {"kind": "objectProperty", "propertyName": "owner_id", "operator": "between", "value": "3",
                        "otherValue": "5"}]},
     lambda r: "lead" in r["metadata"]["lifecycle_stage"] or 3 <= r["metadata"]["owner_id"] <= 5),
    # array: matchConditions over tags (some element matches; propertyName ignored for strings)
    ("companies", {"kind": "array", "columnSlug": "tags", "operator": "matchConditions", "conjonction": "or",
                   "propertyConditions": [
                       {"kind": "objectProperty", "propertyName": "", "operator": "is", "value": "target"},
                       {"kind": "objectProperty", "propertyName": "", "operator": "startsWith", "value": "ch"}]},
     lambda r: any(t == "target" or t.startswith("ch") for t in r["tags"])),
    ("companies", {"kind": "array", "columnSlug": "tags", "operator": "matchConditions", "conjonction": "and",
                   "propertyConditions": [
                       {"kind": "objectProperty", "propertyName": "value", "operator": "contains", "value": "E"},
                       {"kind": "objectProperty", "propertyName": "value", "operator": "isNot", "value": "target"}]},
     lambda r: any("e" in t.lower() and t != "target" for t in r["tags"])),
    ("companies", {"kind": "array", "columnSlug": "tags", "operator": "isNull"}, lambda r: not r["tags"]),
    ("companies", {"kind": "array", "columnSlug": "tags", "operator": "isNotNull"}, lambda r: bool(r["tags"])),
    # vector / any: null tests
    ("companies", {"kind": "vector", "columnSlug": "tags", "operator": "isNull"}, lambda r: not r["tags"]),
    ("companies", {"kind": "any", "columnSlug": "tags", "operator": "isNotNull"}, lambda r: bool(r["tags"])),
]  # fmt: skip

PROPERTY_OPERATORS: list[dict[str, Any]] = [
    {"propertyName": "source", "operator": "is", "value": "website"},
    {"propertyName": "source", "operator": "isNot", "value": "website"},
    {"propertyName": "lifecycle_stage", "operator": "contains", "value": "OPP"},
    {"propertyName": "lifecycle_stage", "operator": "doesNotContain", "value": "o"},
    {"propertyName": "source", "operator": "startsWith", "value": "w"},
    {"propertyName": "lifecycle_stage", "operator": "endsWith", "value": "er"},
    {"propertyName": "owner_id", "operator": "greaterThan", "value": "30"},
    {"propertyName": "owner_id", "operator": "lowerThan", "value": 10},
    {"propertyName": "source", "operator": "lowerThan", "value": "m"},
    {"propertyName": "owner_id", "operator": "between", "value": "10", "otherValue": "20"},
    {"propertyName": "lifecycle_stage", "operator": "between", "value": "c", "otherValue": "m"},
    {"propertyName": "owner_id", "operator": "is", "value": "7"},
    {"propertyName": "nope", "operator": "isNull"},
    {"propertyName": "owner_id", "operator": "isNotNull"},
    {"propertyName": "nope", "operator": "isNotEmpty"},
    {"propertyName": "source", "operator": "isEmpty"},
    {"propertyName": "nope", "operator": "isNot", "value": "x"},
]


@pytest.mark.parametrize(("slug", "condition", "predicate"), COLUMN_CASES)
def test_column_kinds(world: World, slug: str, condition: dict[str, Any], predicate: Predicate) -> None:
    check(world, slug, cond(**condition), predicate)


@pytest.mark.parametrize("prop", PROPERTY_OPERATORS, ids=lambda p: f"{p['propertyName']}-{p['operator']}")
def test_object_property_operators(world: World, prop: dict[str, Any]) -> None:
    condition = {"kind": "objectProperty", "columnSlug": "metadata", **prop}
    check(world, "companies", cond(**condition), lambda r: on_object(prop["propertyName"], prop)(r["metadata"]),
          nonempty=False)  # fmt: skip
    tags = {"kind": "objectProperty", "columnSlug": "tags", **prop, "propertyName": ""}
    if prop["propertyName"] != "nope":
        check(world, "companies", cond(**tags), lambda r: any(prop_match(True, t, prop) for t in r["tags"]),
              nonempty=False)  # fmt: skip


def test_null_and_empty_operators(world: World) -> None:
    everything = lambda r: True  # noqa: E731
    nothing = lambda r: False  # noqa: E731
    for kind, column in (("string", "name"), ("number", "employees"), ("date", "founded_on"),
                         ("boolean", "is_customer"), ("object", "metadata"), ("any", "name")):  # fmt: skip
        check(world, "companies", cond(kind=kind, columnSlug=column, operator="isNull"), nothing, nonempty=False)
        check(world, "companies", cond(kind=kind, columnSlug=column, operator="isNotNull"), everything, nonempty=False)
    check(world, "companies", cond(kind="string", columnSlug="name", operator="isEmpty"), nothing, nonempty=False)
    check(world, "companies", cond(kind="string", columnSlug="name", operator="isNotEmpty"), everything,
          nonempty=False)  # fmt: skip


def test_date_is_compares_days(world: World) -> None:
    day = world.records["contacts"][3]["last_activity_at"][:10]
    check(world, "contacts", cond(kind="date", columnSlug="last_activity_at", operator="is", value=day),
          lambda r: r["last_activity_at"][:10] == day)  # fmt: skip
    check(world, "contacts", cond(kind="date", columnSlug="last_activity_at", operator="isNot", value=day),
          lambda r: r["last_activity_at"][:10] != day)  # fmt: skip


def test_groups_and_quirks(world: World) -> None:
    us = {"kind": "string", "columnSlug": "country", "operator": "is", "values": ["US"]}
    big = {"kind": "number", "columnSlug": "employees", "operator": "greaterThan", "value": 2000}
    customer = {"kind": "boolean", "columnSlug": "is_customer", "operator": "isTrue"}
    flt = {"conjonction": "or", "groups": [{"conjonction": "and", "conditions": [us, big]},
                                           {"conjonction": "or", "conditions": [customer]}]}  # fmt: skip
    check(world, "companies", flt,
          lambda r: (r["country"] == "US" and r["employees"] > 2000) or r["is_customer"])  # fmt: skip
    # misspelled ``conjonction`` -> nothing; ``value`` where ``values`` is required -> condition dropped
    assert world.fetch("companies", {"conjunction": "and", "groups": []}) == (0, [])
    misspelled_group = {"conjonction": "and", "groups": [{"conjunction": "and", "conditions": [us]}]}
    assert world.fetch("companies", misspelled_group)[0] == 0
    dropped = cond(kind="string", columnSlug="country", operator="is", value="US")
    assert world.fetch("companies", dropped)[0] == len(world.records["companies"])
    dropped_number = cond(kind="number", columnSlug="employees", operator="greaterThan", values=[5])
    assert world.fetch("companies", dropped_number)[0] == len(world.records["companies"])
    dropped_property = cond(kind="objectProperty", columnSlug="metadata", propertyName="source", operator="is",
                            values=["website"])  # fmt: skip
    assert world.fetch("companies", dropped_property)[0] == len(world.records["companies"])
    source_set = {"kind": "objectProperty", "propertyName": "source", "operator": "isNotNull"}
    no_conjonction = cond(kind="object", columnSlug="metadata", operator="matchConditions",
                          propertyConditions=[source_set])  # fmt: skip
    assert world.fetch("companies", no_conjonction)[0] == 0


# -- relationships: related columns, occurrence ----------------------------------------------------


def contacts_by_domain(world: World) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {}
    for contact in world.records["contacts"]:
        out.setdefault(contact["company_domain"], []).append(contact)
    return out


def test_related_model_column(world: World) -> None:
    companies = {c["domain"]: c for c in world.records["companies"]}
    by_domain = contacts_by_domain(world)
    companies_uuid = world.uuid("companies")
    on_contacts = cond(kind="boolean", columnSlug="is_customer", operator="isTrue", relatedModelUuid=companies_uuid)
    check(world, "contacts", on_contacts,
          lambda r: r["company_domain"] in companies and companies[r["company_domain"]]["is_customer"])  # fmt: skip
    on_companies = cond(kind="string", columnSlug="seniority", operator="is", values=["c-level"],
                        relatedModelUuid=world.uuid("contacts"))  # fmt: skip
    check(world, "companies", on_companies,
          lambda r: any(c["seniority"] == "c-level" for c in by_domain.get(r["domain"], [])))  # fmt: skip
    unrelated = cond(kind="string", columnSlug="name", operator="isNotNull", relatedModelUuid=world.uuid("companies"))
    assert world.post_fetch("companies", unrelated).json() == {"reason": "invalidFilter"}


@pytest.mark.parametrize(
    ("frequency", "period", "conjonction"),
    [
        ({"operator": "moreThan", "value": 2}, {"operator": "moreThan", "value": 0, "unit": "day"}, "and"),
        ({"operator": "exactly", "value": 1}, {"operator": "lessThan", "value": 20, "unit": "day"}, "and"),
        ({"operator": "lessThan", "value": 2}, {"operator": "moreThan", "value": 5, "unit": "day"}, "or"),
        ({"operator": "not"}, {"operator": "lessThan", "value": 30, "unit": "day"}, "and"),
        ({"operator": "exactly", "value": 0}, {"operator": "exactly", "value": 3, "unit": "day"}, "and"),
    ],
)
def test_occurrence(world: World, frequency: dict[str, Any], period: dict[str, Any], conjonction: str) -> None:
    conditions = [
        {"kind": "boolean", "columnSlug": "is_subscribed", "operator": "isTrue"},
        {"kind": "number", "columnSlug": "score", "operator": "greaterThan", "value": 30},
    ]
    condition = {"kind": "occurrence", "relatedModelUuid": world.uuid("contacts"), "frequency": frequency,
                 "period": period, "conjonction": conjonction, "conditions": conditions}  # fmt: skip
    by_domain = contacts_by_domain(world)

    def matching(contact: Record) -> bool:
        tests = [contact["is_subscribed"], contact["score"] > 30]
        return (all(tests) if conjonction == "and" else any(tests)) and age_in(
            period, world.now, instant(contact["_emitted_at"])
        )

    check(world, "companies", cond(**condition),
          lambda r: frequency_ok(frequency, sum(matching(c) for c in by_domain.get(r["domain"], []))))  # fmt: skip


def test_occurrence_reverse_and_errors(world: World) -> None:
    companies = {c["domain"]: c for c in world.records["companies"]}
    condition = {"kind": "occurrence", "relatedModelUuid": world.uuid("companies"),
                 "frequency": {"operator": "exactly", "value": 1},
                 "period": {"operator": "moreThan", "value": 0, "unit": "day"}, "conjonction": "and",
                 "conditions": [{"kind": "string", "columnSlug": "country", "operator": "is",
                                 "values": ["US"]}]}  # fmt: skip
    check(world, "contacts", cond(**condition),
          lambda r: r["company_domain"] in companies and companies[r["company_domain"]]["country"] == "US")  # fmt: skip
    for broken in (
        {**condition, "period": {"operator": "moreThan", "value": 0, "unit": "week"}},
        {**condition, "frequency": {"operator": "moreThan"}},
        {**condition, "conditions": [{"kind": "sql", "name": "x", "clause": "1"}]},
        {k: v for k, v in condition.items() if k != "period"},
    ):
        assert world.post_fetch("contacts", cond(**broken)).json() == {"reason": "invalidFilter"}


# -- enrollment ------------------------------------------------------------------------------------


def busiest(world: World) -> tuple[str, str]:
    """``(workflow uuid, model slug)`` of the play with the most runs."""
    plays = ok(world.client.get("/orchestration/plays/list"))["plays"]
    by_model = {m["uuid"]: slug for slug, m in world.models.items()}
    counts = {p["workflowUuid"]: len(world.runs(p["workflowUuid"])) for p in plays}
    play = max(plays, key=lambda p: counts[p["workflowUuid"]])
    return play["workflowUuid"], by_model[play["modelUuid"]]


@pytest.mark.parametrize(
    ("activity", "frequency", "period", "node"),
    [
        ("workflowEntered", {"operator": "not"}, {"operator": "moreThan", "value": 0, "unit": "day"}, None),
        ("workflowEntered", {"operator": "moreThan", "value": 0}, {"operator": "lessThan", "value": 10, "unit": "day"},
         None),
        ("workflowEntered", {"operator": "exactly", "value": 1}, {"operator": "moreThan", "value": 7, "unit": "day"},
         None),
        ("workflowLeft", {"operator": "lessThan", "value": 1}, {"operator": "moreThan", "value": 2, "unit": "day"},
         None),
        ("workflowNodeExecuted", {"operator": "moreThan", "value": 0},
         {"operator": "moreThan", "value": 0, "unit": "day"}, "__second__"),
        ("workflowNodeExecuted", {"operator": "moreThan", "value": 2},
         {"operator": "lessThan", "value": 20, "unit": "day"}, None),
    ],
)  # fmt: skip
def test_enrollment(
    world: World, activity: str, frequency: dict[str, Any], period: dict[str, Any], node: str | None
) -> None:
    workflow, slug = busiest(world)
    runs = world.runs(workflow)
    if node == "__second__":
        node = next(r["slugs"][1] for r in runs if len(r["slugs"]) > 1)
    counts: dict[str, int] = {}
    for run in runs:
        if activity == "workflowEntered":
            moments = [run["created"]]
        elif activity == "workflowLeft":
            moments = [run["finished"]] if run["finished"] is not None else []
        else:
            moments = [s for n, s in zip(run["slugs"], run["starts"], strict=True) if node is None or n == node]
        hits = sum(age_in(period, world.now, instant(m)) for m in moments)
        counts[run["record_id"]] = counts.get(run["record_id"], 0) + hits
    condition: dict[str, Any] = {"kind": "enrollment", "workflowUuid": workflow, "activityKind": activity,
                                 "frequency": frequency, "period": period}  # fmt: skip
    if node is not None:
        condition["nodeSlug"] = node
    check(world, slug, cond(**condition), lambda r: frequency_ok(frequency, counts.get(r["_id"], 0)))


def test_enrollment_errors(world: World) -> None:
    workflow, slug = busiest(world)
    base = {"kind": "enrollment", "workflowUuid": workflow, "activityKind": "workflowEntered",
            "frequency": {"operator": "not"},
            "period": {"operator": "moreThan", "value": 0, "unit": "day"}}  # fmt: skip
    for broken in (
        {**base, "nodeSlug": "start"},
        {**base, "activityKind": "workflowPaused"},
        {**base, "workflowUuid": u("no-such-workflow")},
        {**base, "frequency": {"operator": "atLeast", "value": 1}},
    ):
        assert world.post_fetch(slug, cond(**broken)).json() == {"reason": "invalidFilter"}


# -- segment membership ----------------------------------------------------------------------------


def test_segment_membership(world: World) -> None:
    saved = [s for s in world.segments if not s["fromPlay"] and s["filter"]["groups"]]
    assert saved
    for segment in saved:
        slug = next(k for k, m in world.models.items() if m["uuid"] == segment["modelUuid"])
        payload: dict[str, Any] = {"sort": segment["sort"]} if segment["sort"] else {}
        if segment["limit"] is not None:
            payload["limit"] = segment["limit"]
        _, members = world.fetch(slug, segment["filter"], **payload)
        ids = {r["_id"] for r in members}
        assert len(ids) == segment["recordsCount"]
        check(world, slug, cond(kind="segment", segmentUuid=segment["uuid"], operator="in"),
              lambda r, ids=ids: r["_id"] in ids, nonempty=False)  # fmt: skip
        check(world, slug, cond(kind="segment", segmentUuid=segment["uuid"], operator="notIn"),
              lambda r, ids=ids: r["_id"] not in ids, nonempty=False)  # fmt: skip
    other_model = next(s for s in world.segments if s["modelUuid"] == world.uuid("contacts"))
    wrong = cond(kind="segment", segmentUuid=other_model["uuid"], operator="in")
    assert world.post_fetch("companies", wrong).json() == {"reason": "invalidFilter"}
    assert world.post_fetch("companies", cond(kind="segment", segmentUuid=u("nope"), operator="in")).status_code == 400


def _insert_segment(served: Served, key: str, flt: dict[str, Any], limit: int | None = None) -> str:
    fx = served.fixture
    uuid = u("segment", key)
    body = {"uuid": uuid, "workspaceUuid": fx.ws.uuid, "modelUuid": fx.model, "name": key, "filter": flt,
            "sort": [{"columnSlug": "employees", "kind": "desc"}] if limit else None, "limit": limit,
            "fromPlay": False, "deletedAt": None}  # fmt: skip
    row = {"workspace_uuid": fx.ws.uuid, "kind": "segment", "uuid": uuid, "parent_uuid": fx.model,
           "created_at": "2026-01-01 00:00:00.000", "body": json.dumps(body)}  # fmt: skip
    store = served.state.store
    store.execute(f"INSERT INTO {store.database}.entities FORMAT JSONEachRow\n" + json.dumps(row))
    return uuid


def test_segment_nesting_and_recursion_guard() -> None:
    with served_fixture() as served:
        big = _insert_segment(served, "big", cond(kind="number", columnSlug="employees", operator="greaterThan",
                                                  value=200), limit=3)  # fmt: skip
        outer = _insert_segment(served, "outer", cond(kind="segment", segmentUuid=big, operator="in"))
        loop_a, loop_b = u("segment", "loop-a"), u("segment", "loop-b")
        _insert_segment(served, "loop-a", cond(kind="segment", segmentUuid=loop_b, operator="in"))
        _insert_segment(served, "loop-b", cond(kind="segment", segmentUuid=loop_a, operator="notIn"))
        selfish = _insert_segment(served, "self", cond(kind="segment", segmentUuid=u("segment", "self"),
                                                       operator="in"))  # fmt: skip

        def fetch(flt: dict[str, Any]) -> httpx.Response:
            return served.api.post("/segmentation/segments/fetch", json={"modelUuid": served.fixture.model,
                                                                         "filter": flt})  # fmt: skip

        nested = ok(fetch(cond(kind="segment", segmentUuid=outer, operator="in")))
        assert [r["_id"] for r in nested["records"]] == ["c2", "c4", "c5"]  # top 3 by employees among > 200
        excluded = ok(fetch(cond(kind="segment", segmentUuid=outer, operator="notIn")))
        assert [r["_id"] for r in excluded["records"]] == ["c1", "c3"]
        for target in (loop_a, loop_b, selfish):
            response = fetch(cond(kind="segment", segmentUuid=target, operator="in"))
            assert response.status_code == 400 and response.json() == {"reason": "invalidFilter"}


# -- sql -------------------------------------------------------------------------------------------

SQL_CASES: list[tuple[str, Predicate]] = [
    ("employees > 500 AND country IN ('US', 'GB')", lambda r: r["employees"] > 500 and r["country"] in ("US", "GB")),
    ("has(tags, 'target') OR NOT is_customer", lambda r: "target" in r["tags"] or not r["is_customer"]),
    ("arrayExists(t -> startsWith(t, 'c'), tags)", lambda r: any(t.startswith("c") for t in r["tags"])),
    ("JSONExtractString(metadata, 'source') = 'website' -- trailing comment",
     lambda r: r["metadata"]["source"] == "website"),
    ("lower(name) LIKE '%a%' AND toYear(founded_on) < 2000",
     lambda r: "a" in r["name"].lower() and int(r["founded_on"][:4]) < 2000),
]  # fmt: skip

HOSTILE_CLAUSES = [
    "_id IN (SELECT record_id FROM runs)",
    "(SELECT count() FROM system.tables) > 0",
    "_id IN runs",
    "runs.record_id = _id",
    "system.one.dummy = 0",
    "_id IN numbers(10)",
    "EXISTS (SELECT 1)",
    "1 SETTINGS max_threads = 1",
    "1) SETTINGS max_threads = 1 --",
    "1); DROP TABLE runs; --",
    "1) UNION ALL SELECT 1 FROM system.users WHERE (1",
    "1) FORMAT JSON --",
    "file('/etc/passwd') != ''",
    "length(url('http://127.0.0.1/', 'CSV')) > 0",
    "dictGet('d', 'a', 1) = 1",
    "sleep(3) = 0",
    "count() OVER () > 0",
    "{p:String} = ''",
    "not_a_column = 1",
    "name > 5",
    "'unterminated",
    "",
    "   ",
]


@pytest.mark.parametrize(("clause", "predicate"), SQL_CASES)
def test_sql_clause(world: World, clause: str, predicate: Predicate) -> None:
    check(world, "companies", cond(kind="sql", name="custom", clause=clause), predicate)


@pytest.mark.parametrize("clause", HOSTILE_CLAUSES)
def test_sql_clause_refused(world: World, clause: str) -> None:
    response = world.post_fetch("companies", cond(kind="sql", name="evil", clause=clause))
    assert response.status_code == 400 and response.json() == {"reason": "invalidFilter"}, clause


def test_malformed_conditions(world: World) -> None:
    for condition in (
        {"kind": "relation", "columnSlug": "name"},
        {"kind": "string", "columnSlug": "name", "operator": "like", "values": ["a"]},
        {"kind": "string", "columnSlug": "nope", "operator": "isNull"},
        {"kind": "number", "columnSlug": "employees", "operator": "greaterThan", "value": "10"},
        {"kind": "date", "columnSlug": "founded_on", "operator": "greaterThan", "value": "yesterday"},
        {"kind": "object", "columnSlug": "metadata", "operator": "contains"},
        {"kind": "object", "columnSlug": "name", "operator": "isNull"},
        {"kind": "object", "columnSlug": "metadata", "operator": "matchConditions", "conjonction": "and"},
        {"kind": "objectProperty", "columnSlug": "metadata", "operator": "is", "value": "x"},
        {"kind": "vector", "columnSlug": "tags", "operator": "isEmpty"},
        {"kind": "segment", "segmentUuid": u("x"), "operator": "within"},
        {"kind": "sql", "clause": "1"},
    ):
        assert world.post_fetch("companies", cond(**condition)).json() == {"reason": "invalidFilter"}, condition


# -- sharded download ------------------------------------------------------------------------------


def _shards(world: World, slug: str, payload: dict[str, Any]) -> list[list[dict[str, str]]]:
    body = ok(world.client.post("/segmentation/segments/download", json={"modelUuid": world.uuid(slug), **payload}))
    assert list(body) == ["urls"]
    files = []
    for url in body["urls"]:
        response = httpx.get(url, timeout=60)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        files.append(list(csv.DictReader(io.StringIO(response.text))))
    return files


@pytest.mark.parametrize(
    ("slug", "payload"),
    [
        ("contacts", {"filter": MATCH_ALL}),
        ("contacts", {"filter": MATCH_ALL, "sort": [{"columnSlug": "seniority", "kind": "desc"},
                                                    {"columnSlug": "score", "kind": "asc"}], "limit": 301}),
        ("companies", {"filter": cond(kind="string", columnSlug="name", operator="contains", values=["e"]),
                       "sort": [{"columnSlug": "is_customer", "kind": "desc"}]}),
        ("companies", {"filter": cond(kind="number", columnSlug="employees", operator="greaterThan", value=10**9)}),
    ],
)  # fmt: skip
def test_sharded_download(world: World, monkeypatch: pytest.MonkeyPatch, slug: str, payload: dict[str, Any]) -> None:
    monkeypatch.setattr(segments, "SEGMENT_DOWNLOAD_SHARD_ROWS", 64)
    monkeypatch.setattr(exports, "SEGMENT_EXPORT_PAGE_ROWS", 9)  # several keyset pages per shard
    monkeypatch.setattr(exports, "SEGMENT_EXPORT_SORTED_PAGE_ROWS", 7)
    files = _shards(world, slug, payload)
    extra = {k: v for k, v in payload.items() if k != "filter"}
    count, records = world.fetch(slug, payload["filter"], **extra)
    assert len(files) == max(1, math.ceil(count / 64))
    assert all(len(rows) <= 64 for rows in files)
    ids = [row["_id"] for rows in files for row in rows]
    assert ids == [r["_id"] for r in records]  # together: exactly the fetch, in order, no duplicates
    assert len(set(ids)) == len(ids) == count
    if records:
        first = files[0][0]
        assert list(first) == list(records[0])  # every model column, header on each shard
        if slug == "companies":
            assert isinstance(orjson.loads(first["tags"]), list)  # arrays as JSON text


def test_download_refuses_bad_filters(world: World) -> None:
    response = world.client.post("/segmentation/segments/download", json={
        "modelUuid": world.uuid("companies"), "filter": cond(kind="sql", name="x", clause="1; SELECT 1")})  # fmt: skip
    assert response.status_code == 400 and response.json() == {"reason": "invalidFilter"}


def test_shard_urls_expire(world: World) -> None:
    state = world.emulator.state
    state.signed_url_ttl_s = -1
    try:
        payload = {"modelUuid": world.uuid("contacts"), "filter": MATCH_ALL}
        urls = ok(world.client.post("/segmentation/segments/download", json=payload))["urls"]
    finally:
        state.signed_url_ttl_s = 900
    response = httpx.get(urls[0], timeout=30)
    assert response.status_code == 403 and "<Message>Request has expired</Message>" in response.text
