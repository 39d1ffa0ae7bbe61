"""The SQL guard's reading of ClickHouse's ``EXPLAIN AST`` dumps, with no server."""

from __future__ import annotations

from cargo_elt.emulator.sqlguard import check_ast, parse_ast_dump

JOIN_DUMP = """SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Identifier a.x
   TablesInSelectQuery (children 2)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      TableIdentifier runs (alias a)
    TablesInSelectQueryElement (children 2)
     TableExpression (children 1)
      Subquery (alias b) (children 1)
       SelectWithUnionQuery (children 1)
        ExpressionList (children 1)
         SelectQuery (children 2)
          ExpressionList (children 1)
           Asterisk
          TablesInSelectQuery (children 1)
           TablesInSelectQueryElement (children 1)
            TableExpression (children 1)
             Function numbers (children 1)
              ExpressionList (children 1)
               Literal UInt64_3
"""


def test_tree_keeps_nesting_and_arguments() -> None:
    root = parse_ast_dump(JOIN_DUMP)
    statement = root.children[0]
    assert statement.kind == "SelectWithUnionQuery"
    select = statement.children[0].children[0]
    assert select.kind == "SelectQuery"
    assert select.children[0].children[0].arg == "a.x"


def test_table_function_deep_in_a_join_subquery_is_denied() -> None:
    denial = check_ast(JOIN_DUMP)
    assert denial is not None and denial.code == 497 and "NUMBERS" in denial.text


def test_plain_select_over_a_bare_table_passes() -> None:
    dump = (
        "SelectWithUnionQuery (children 1)\n ExpressionList (children 1)\n  SelectQuery (children 2)\n"
        "   ExpressionList (children 1)\n    Identifier uuid\n   TablesInSelectQuery (children 1)\n"
        "    TablesInSelectQueryElement (children 1)\n     TableExpression (children 1)\n      TableIdentifier runs\n"
    )
    assert check_ast(dump) is None


def test_non_select_roots_are_readonly_errors() -> None:
    denial = check_ast("InsertQuery   (children 1)\n Identifier runs\n")
    assert denial is not None and denial.code == 164


def test_alias_named_like_a_column_qualifier_is_not_a_database() -> None:
    dump = (
        "SelectWithUnionQuery (children 1)\n ExpressionList (children 1)\n  SelectQuery (children 1)\n"
        "   ExpressionList (children 1)\n    Identifier r.uuid\n"
    )
    assert check_ast(dump) is None
