"""Segment filter validation (REFERENCE.md 6.2), the segments config, and AND-distribution.

The API answers a misspelled ``conjonction`` or a ``value``/``values`` mix-up with an empty 200, so
these tests pin the exact messages that tell the user what to fix, and where.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from cargo_elt.source.errors import CargoConfigurationError
from cargo_elt.source.filters import (
    MATCH_ALL,
    and_condition,
    check_filter_columns,
    validate_filter,
    validate_sort,
)
from cargo_elt.source.segments import parse_segment_exports, table_name_for

UUID_A = "991c515b-963c-4c3b-ba19-e46f8fcc3521"
UUID_B = "ec99469b-781b-4fc9-b701-f2785cbfea9d"
WHERE = "sources.cargo.segments[1].filter"


def one(*conditions: dict[str, Any], top: str = "and", group: str = "and") -> dict[str, Any]:
    return {"conjonction": top, "groups": [{"conjonction": group, "conditions": list(conditions)}]}


def refused(flt: Any) -> str:
    with pytest.raises(CargoConfigurationError) as caught:
        validate_filter(flt, WHERE)
    return str(caught.value)


GOOD_CONDITIONS: list[dict[str, Any]] = [
    {"kind": "string", "columnSlug": "country", "operator": "is", "values": ["US", "GB"]},
    {"kind": "string", "columnSlug": "country", "operator": "contains", "values": "U"},
    {"kind": "string", "columnSlug": "country", "operator": "isEmpty"},
    {"kind": "string", "columnSlug": "country", "operator": "isNotNull", "relatedModelUuid": UUID_B},
    {"kind": "number", "columnSlug": "employees", "operator": "greaterThan", "value": 1000},
    {"kind": "number", "columnSlug": "employees", "operator": "lowerThan", "value": 2.5},
    {"kind": "number", "columnSlug": "employees", "operator": "between", "firstValue": 1, "lastValue": 10},
    {"kind": "number", "columnSlug": "employees", "operator": "isNull"},
    {"kind": "date", "columnSlug": "founded_on", "operator": "is", "value": "2025-01-01"},
    {"kind": "date", "columnSlug": "founded_on", "operator": "greaterThan", "value": "2025-01-01T10:00:00.000Z"},
    {
        "kind": "date",
        "columnSlug": "founded_on",
        "operator": "between",
        "firstValue": "2025-01-01",
        "lastValue": "2025-02-01",
    },
    {"kind": "boolean", "columnSlug": "is_customer", "operator": "isTrue"},
    {"kind": "boolean", "columnSlug": "is_customer", "operator": "isNotNull"},
    {"kind": "object", "columnSlug": "metadata", "operator": "isNull"},
    {
        "kind": "object",
        "columnSlug": "metadata",
        "operator": "matchConditions",
        "conjonction": "or",
        "propertyConditions": [
            {
                "kind": "objectProperty",
                "columnSlug": "metadata",
                "propertyName": "source",
                "operator": "is",
                "value": "web",
            },
            {
                "kind": "objectProperty",
                "columnSlug": "metadata",
                "propertyName": "owner_id",
                "operator": "between",
                "value": "1",
                "otherValue": "9",
            },
        ],
    },
    {
        "kind": "array",
        "columnSlug": "tags",
        "operator": "matchConditions",
        "conjonction": "and",
        "propertyConditions": [
            {"kind": "objectProperty", "columnSlug": "tags", "propertyName": "0", "operator": "isNotEmpty"}
        ],
    },
    {
        "kind": "objectProperty",
        "columnSlug": "metadata",
        "propertyName": "stage",
        "operator": "startsWith",
        "value": "op",
    },
    {"kind": "vector", "columnSlug": "embedding", "operator": "isNotNull"},
    {"kind": "any", "columnSlug": "payload", "operator": "isNull"},
    {"kind": "segment", "segmentUuid": UUID_A, "operator": "notIn"},
    {
        "kind": "occurrence",
        "relatedModelUuid": UUID_B,
        "frequency": {"operator": "moreThan", "value": 2},
        "period": {"operator": "lessThan", "value": 30, "unit": "day"},
        "conjonction": "and",
        "conditions": [{"kind": "string", "columnSlug": "title", "operator": "is", "values": ["CEO"]}],
    },
    {
        "kind": "enrollment",
        "workflowUuid": UUID_A,
        "activityKind": "workflowEntered",
        "frequency": {"operator": "not"},
        "period": {"operator": "moreThan", "value": 0, "unit": "day"},
    },
    {
        "kind": "enrollment",
        "workflowUuid": UUID_A,
        "activityKind": "workflowNodeExecuted",
        "nodeSlug": "enrich",
        "frequency": {"operator": "exactly", "value": 1},
        "period": {"operator": "exactly", "value": 7, "unit": "day"},
    },
    {"kind": "sql", "name": "big", "clause": "employees > 10"},
]


@pytest.mark.parametrize("condition", GOOD_CONDITIONS, ids=lambda c: f"{c['kind']}-{c.get('operator', '')}")
def test_every_kind_accepts_its_documented_forms(condition: dict[str, Any]) -> None:
    flt = one(condition, top="or", group="or")
    assert validate_filter(flt, WHERE) == flt


def test_match_all_and_empty_groups_are_valid() -> None:
    assert validate_filter(MATCH_ALL, WHERE) == MATCH_ALL
    assert validate_filter({"conjonction": "or", "groups": [{"conjonction": "and", "conditions": []}]}, WHERE)


def test_validate_returns_a_copy() -> None:
    flt = one(GOOD_CONDITIONS[0])
    copied = validate_filter(flt, WHERE)
    copied["groups"][0]["conditions"].clear()
    assert flt["groups"][0]["conditions"]


def test_misspelled_conjunction_at_the_top() -> None:
    flt = {"conjunction": "and", "groups": []}
    assert refused(flt) == f'{WHERE}: "conjunction" must be spelled "conjonction" (Cargo\'s spelling)'


def test_misspelled_conjunction_in_a_group() -> None:
    flt = {"conjonction": "and", "groups": [{"conjunction": "or", "conditions": []}]}
    assert refused(flt) == f'{WHERE}.groups[0]: "conjunction" must be spelled "conjonction" (Cargo\'s spelling)'


def test_string_condition_with_value_instead_of_values() -> None:
    good = GOOD_CONDITIONS[0]
    bad = {"kind": "string", "columnSlug": "country", "operator": "is", "value": "US"}
    flt = {"conjonction": "and", "groups": [{"conjonction": "and", "conditions": [good, good, bad]}]}
    assert refused(flt) == (
        f'{WHERE}.groups[0].conditions[2]: string conditions take "values" (a string or list of strings), not "value"'
    )


def test_number_condition_with_values_instead_of_value() -> None:
    bad = {"kind": "number", "columnSlug": "employees", "operator": "greaterThan", "values": [10]}
    assert (
        refused(one(bad)) == f'{WHERE}.groups[0].conditions[0]: number conditions take "value" (a number), not "values"'
    )


def test_date_condition_with_values_instead_of_value() -> None:
    bad = {"kind": "date", "columnSlug": "founded_on", "operator": "lowerThan", "values": "2025-01-01"}
    assert refused(one(bad)) == (
        f'{WHERE}.groups[0].conditions[0]: date conditions take "value" (a date string ("YYYY-MM-DD")), not "values"'
    )


def test_object_property_with_values() -> None:
    bad = {"kind": "objectProperty", "columnSlug": "m", "propertyName": "p", "operator": "is", "values": ["x"]}
    assert (
        refused(one(bad))
        == f'{WHERE}.groups[0].conditions[0]: objectProperty conditions take "value" (a string), not "values"'
    )


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        (
            {"kind": "number", "columnSlug": "e", "operator": "between", "value": 1},
            'number between conditions take "firstValue" and "lastValue", not "value"',
        ),
        (
            {"kind": "number", "columnSlug": "e", "operator": "is", "value": "10"},
            "\"value\" must be a number, not '10'",
        ),
        ({"kind": "number", "columnSlug": "e", "operator": "is", "value": True}, '"value" must be a number, not True'),
        (
            {"kind": "number", "columnSlug": "e", "operator": "lt", "value": 1},
            'number conditions take "operator" = one of',
        ),
        ({"kind": "date", "columnSlug": "d", "operator": "is", "value": "01/02/2025"}, '"value" must be a date string'),
        ({"kind": "string", "columnSlug": "s", "operator": "is"}, 'string is conditions need "values"'),
        (
            {"kind": "string", "columnSlug": "s", "operator": "is", "values": []},
            '"values" must be a string or a non-empty list',
        ),
        (
            {"kind": "string", "columnSlug": "s", "operator": "isNull", "values": ["x"]},
            'string isNull conditions take no value; remove "values"',
        ),
        ({"kind": "string", "operator": "is", "values": "x"}, 'string conditions need "columnSlug"'),
        (
            {"kind": "boolean", "columnSlug": "b", "operator": "is", "value": True},
            'boolean conditions take "operator" = one of',
        ),
        (
            {"kind": "boolean", "columnSlug": "b", "operator": "isTrue", "value": True},
            'boolean isTrue conditions take no value; remove "value"',
        ),
        (
            {"kind": "vector", "columnSlug": "v", "operator": "is"},
            'vector conditions take "operator" = one of "isNull", "isNotNull"',
        ),
        (
            {"kind": "object", "columnSlug": "o", "operator": "matchConditions", "conjonction": "and"},
            'need "propertyConditions"',
        ),
        (
            {"kind": "objectProperty", "columnSlug": "o", "propertyName": "p", "operator": "between", "value": "1"},
            'objectProperty between conditions need "otherValue"',
        ),
        ({"kind": "objectProperty", "columnSlug": "o", "operator": "isNull"}, 'need "propertyName"'),
        ({"kind": "segment", "segmentUuid": "nope", "operator": "in"}, 'need "segmentUuid" (a segment UUID)'),
        (
            {"kind": "segment", "segmentUuid": UUID_A, "operator": "is"},
            'segment conditions take "operator" = one of "in", "notIn"',
        ),
        (
            {
                "kind": "enrollment",
                "workflowUuid": UUID_A,
                "activityKind": "workflowLeft",
                "nodeSlug": "n",
                "frequency": {"operator": "not"},
                "period": {"operator": "moreThan", "value": 0, "unit": "day"},
            },
            '"nodeSlug" is only allowed with activityKind "workflowNodeExecuted"',
        ),
        (
            {
                "kind": "enrollment",
                "workflowUuid": UUID_A,
                "activityKind": "workflowLeft",
                "frequency": {"operator": "moreThan"},
                "period": {"operator": "moreThan", "value": 0, "unit": "week"},
            },
            '"frequency.value" must be a whole number >= 0, not None',
        ),
        (
            {
                "kind": "occurrence",
                "relatedModelUuid": UUID_B,
                "frequency": {"operator": "not"},
                "period": {"operator": "lessThan", "value": 3, "unit": "day"},
                "conjonction": "and",
                "conditions": [{"kind": "segment", "segmentUuid": UUID_A, "operator": "in"}],
            },
            '"kind" must be one of "string", "number", "object"',
        ),
        ({"kind": "sql", "name": "x"}, 'sql conditions need "clause"'),
        ({"kind": "relation", "columnSlug": "x"}, '"kind" must be one of "string"'),
        ({"kind": "string", "columnSlug": "s", "operator": "is", "values": "x", "colour": 1}, 'unknown key "colour"'),
        ({"kind": "string", "column_slug": "s", "operator": "is", "values": "x"}, '(did you mean "columnSlug"?)'),
    ],
)
def test_malformed_conditions_are_refused(condition: dict[str, Any], message: str) -> None:
    text = refused(one(condition))
    assert message in text
    assert text.startswith(f"{WHERE}.groups[0].conditions[0]") or "problems" in text


def test_every_problem_is_reported_at_once() -> None:
    flt = {
        "conjunction": "and",
        "groups": [
            {
                "conjonction": "and",
                "conditions": [{"kind": "string", "columnSlug": "c", "operator": "is", "value": "x"}],
            },
            {"conjonction": "xor", "conditions": []},
        ],
    }
    text = refused(flt)
    assert text.startswith("3 problems in the segment configuration:")
    assert f'- {WHERE}: "conjunction" must be spelled "conjonction"' in text
    assert f'- {WHERE}.groups[0].conditions[0]: string conditions take "values"' in text
    assert f'- {WHERE}.groups[1]: "conjonction" must be "and" or "or", not \'xor\'' in text


def test_missing_pieces_of_the_structure() -> None:
    assert refused({"conjonction": "and"}) == f'{WHERE}: missing "groups" (a list; an empty list matches every record)'
    assert refused({"groups": []}) == f'{WHERE}: missing "conjonction" ("and" or "or"; Cargo\'s spelling)'
    assert "must be a list of conditions" in refused(
        {"conjonction": "and", "groups": [{"conjonction": "and", "conditions": {}}]}
    )
    assert "a filter is a table" in refused("employees > 10")


def test_sort_items() -> None:
    assert validate_sort([{"columnSlug": "employees", "kind": "desc"}], "s.sort") == [
        {"columnSlug": "employees", "kind": "desc"}
    ]
    with pytest.raises(
        CargoConfigurationError, match=re.escape('s.sort[0]: sort "kind" must be "asc" or "desc", not \'descending\'')
    ):
        validate_sort([{"columnSlug": "employees", "kind": "descending"}], "s.sort")
    with pytest.raises(CargoConfigurationError, match=re.escape('s.sort[0]: unknown key "direction"')):
        validate_sort([{"columnSlug": "employees", "kind": "asc", "direction": "asc"}], "s.sort")
    with pytest.raises(CargoConfigurationError, match="a sort is a list"):
        validate_sort({"columnSlug": "employees", "kind": "asc"}, "s.sort")


def test_columns_are_checked_against_the_model() -> None:
    columns = {"_id": "string", "employees": "number", "country": "string"}
    good = one({"kind": "number", "columnSlug": "employees", "operator": "isNull"})
    check_filter_columns(good, columns, WHERE)
    bad = one(
        GOOD_CONDITIONS[0] | {"columnSlug": "employes"},
        {"kind": "string", "columnSlug": "elsewhere", "operator": "isNull", "relatedModelUuid": UUID_B},
    )
    with pytest.raises(CargoConfigurationError) as caught:
        check_filter_columns(bad, columns, WHERE)
    assert str(caught.value) == (
        f'{WHERE}.groups[0].conditions[0]: the model has no column "employes" (did you mean "employees"?); '
        "its columns: _id, country, employees"
    )


# -- AND-distribution ---------------------------------------------------------------------------------

X = {"kind": "date", "columnSlug": "_emitted_at", "operator": "greaterThan", "value": "2026-10-30"}
A = {"kind": "string", "columnSlug": "country", "operator": "is", "values": ["US"]}
B = {"kind": "number", "columnSlug": "employees", "operator": "greaterThan", "value": 10}
C = {"kind": "boolean", "columnSlug": "is_customer", "operator": "isTrue"}


def test_and_top_gets_one_more_group() -> None:
    flt = {"conjonction": "and", "groups": [{"conjonction": "or", "conditions": [A, B]}]}
    assert and_condition(flt, X) == {
        "conjonction": "and",
        "groups": [{"conjonction": "or", "conditions": [A, B]}, {"conjonction": "and", "conditions": [X]}],
    }


def test_match_all_becomes_the_condition_alone() -> None:
    assert and_condition(MATCH_ALL, X) == {"conjonction": "and", "groups": [{"conjonction": "and", "conditions": [X]}]}
    assert and_condition({"conjonction": "or", "groups": []}, X)["groups"] == [
        {"conjonction": "and", "conditions": [X]}
    ]


def test_or_top_distributes_into_every_group() -> None:
    flt = {
        "conjonction": "or",
        "groups": [
            {"conjonction": "and", "conditions": [A, B]},
            {"conjonction": "or", "conditions": [B, C]},
            {"conjonction": "or", "conditions": []},
        ],
    }
    before = copy.deepcopy(flt)
    assert and_condition(flt, X) == {
        "conjonction": "or",
        "groups": [
            {"conjonction": "and", "conditions": [A, B, X]},
            {"conjonction": "and", "conditions": [B, X]},
            {"conjonction": "and", "conditions": [C, X]},
            {"conjonction": "or", "conditions": []},
        ],
    }
    assert flt == before, "the original filter must not change"


def _matches(flt: dict[str, Any], row: dict[str, bool]) -> bool:
    """Evaluate a filter over boolean 'conditions' named by their columnSlug (truth-table check)."""

    def group(g: dict[str, Any]) -> bool:
        values = [row[c["columnSlug"]] for c in g["conditions"]]
        if not values:
            return bool(g["conjonction"] == "and")
        return all(values) if g["conjonction"] == "and" else any(values)

    groups = [group(g) for g in flt["groups"]]
    if not groups:
        return True
    return all(groups) if flt["conjonction"] == "and" else any(groups)


@pytest.mark.parametrize("top", ["and", "or"])
@pytest.mark.parametrize("inner", [("and", "or"), ("or", "or"), ("and", "and"), ("or", "and")])
def test_distribution_is_equivalent_on_every_truth_assignment(top: str, inner: tuple[str, str]) -> None:
    a, b, c, x = ({"columnSlug": n} for n in "abcx")
    flt = {
        "conjonction": top,
        "groups": [{"conjonction": inner[0], "conditions": [a, b]}, {"conjonction": inner[1], "conditions": [c]}],
    }
    narrowed = and_condition(flt, x)
    assert all(len(g["conditions"]) <= 3 for g in narrowed["groups"])
    for bits in range(16):
        row = {name: bool(bits >> i & 1) for i, name in enumerate("abcx")}
        assert _matches(narrowed, row) == (_matches(flt, row) and row["x"]), (row, narrowed)


# -- the segments list ---------------------------------------------------------------------------------


def test_segments_config_is_parsed() -> None:
    exports = parse_segment_exports(
        [
            {"segment_uuid": UUID_A.upper()},
            {
                "model_uuid": UUID_B,
                "filter": one(A),
                "sort": [{"columnSlug": "employees", "kind": "asc"}],
                "limit": 10,
                "table_name": "big_us",
            },
            {"model_uuid": UUID_B, "update_column": "_emitted_at"},
        ]
    )
    assert [e.where for e in exports] == [f"sources.cargo.segments[{i}]" for i in range(3)]
    assert exports[0].segment_uuid == UUID_A and exports[0].filter is None
    assert exports[1].filter == one(A) and exports[1].limit == 10 and exports[1].table_name == "big_us"
    assert exports[2].filter == MATCH_ALL and exports[2].update_column == "_emitted_at"
    assert parse_segment_exports(None) == [] and parse_segment_exports("") == []
    from_env = parse_segment_exports(f'[{{"segment_uuid": "{UUID_A}"}}]')
    assert from_env[0].segment_uuid == UUID_A


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            [{"segment_uuid": UUID_A, "model_uuid": UUID_B}],
            "sources.cargo.segments[0]: give exactly one of segment_uuid",
        ),
        ([{"table_name": "x"}], "sources.cargo.segments[0]: give exactly one of segment_uuid"),
        ([{"segment_uuid": "12"}], "sources.cargo.segments[0].segment_uuid: '12' is not a UUID"),
        (
            [{"segment_uuid": UUID_A, "filter": MATCH_ALL}],
            "sources.cargo.segments[0].filter: a saved segment brings its own filter",
        ),
        (
            [{"model_uuid": UUID_B, "tablename": "x"}],
            'sources.cargo.segments[0].tablename: unknown key (did you mean "table_name"?)',
        ),
        (
            [{"model_uuid": UUID_B, "table_name": "my table"}],
            "sources.cargo.segments[0].table_name: 'my table' is not a table name",
        ),
        ([{"model_uuid": UUID_B, "table_name": "runs"}], "'runs' is taken by the source's own tables"),
        ([{"model_uuid": UUID_B, "limit": 0}], "sources.cargo.segments[0].limit: must be a whole number >= 1, not 0"),
        ([{"model_uuid": UUID_B, "limit": 5, "update_column": "_emitted_at"}], "cannot be combined with limit"),
        (
            [{"model_uuid": UUID_B, "table_name": "t"}, {"model_uuid": UUID_B, "table_name": "T"}],
            "sources.cargo.segments[1].table_name: 'T' is already used by sources.cargo.segments[0]",
        ),
        (
            [{"segment_uuid": UUID_A}, {"model_uuid": UUID_B, "filter": {"conjunction": "and", "groups": []}}],
            'sources.cargo.segments[1].filter: "conjunction" must be spelled "conjonction"',
        ),
        ({"segment_uuid": UUID_A}, "write [[sources.cargo.segments]]"),
        (["x"], "sources.cargo.segments[0]: each export is a table"),
        ("[not json", "is not a list of tables"),
    ],
)
def test_segments_config_problems_name_the_setting(raw: Any, message: str) -> None:
    with pytest.raises(CargoConfigurationError) as caught:
        parse_segment_exports(raw)
    assert message in str(caught.value)


def test_default_table_names_are_snake_case() -> None:
    assert table_name_for("Enterprise accounts") == "segment_enterprise_accounts"
    assert table_name_for("  US / software (2025)!") == "segment_us_software_2025"
    assert table_name_for("***") == "segment_export"
