"""Decide whether a caller's SQL may run, from ClickHouse's own parse tree.

Cargo runs callers' SQL as a read-only user that sees four tables of its own workspace and nothing
else. chDB has no users or grants, so the emulator re-creates that boundary here. The checks work on
``EXPLAIN AST`` output (ClickHouse's own parser, so there is no parser differential to exploit) of
the statement canonicalised by ``formatQuerySingleLine`` (which also refuses multi-statements). The
canonical text is what then runs, so what was checked is exactly what executes.

Bare table names are not rewritten: each caller's connection has its workspace database as its
current database, so ClickHouse resolves ``runs`` (in CTEs, subqueries, joins, UNION, ``IN``) to that
workspace's views. The guard only has to refuse every way of naming something else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .caps import READER_USER
from .schema import DATABASE_PREFIX

ALLOWED_ROOTS = frozenset({"SelectWithUnionQuery", "SelectIntersectExceptQuery"})

DENIED_DATABASE_PREFIXES = ("system", "information_schema", DATABASE_PREFIX, "default", "_temporary")

DENIED_FUNCTIONS = frozenset(
    {
        # dictionaries and lookups into named tables
        "dictget",
        "dictgetordefault",
        "dictgetornull",
        "dicthas",
        "dictgethierarchy",
        "dictisin",
        "dictgetchildren",
        "dictgetdescendants",
        "dictgetall",
        "joinget",
        "joingetornull",
        "hastable",
        "hascolumnintable",
        "hasdictionary",
        # files, settings and server introspection
        "file",
        "getsetting",
        "getsettingordefault",
        "getmacro",
        "getserverport",
        "filesystemavailable",
        "filesystemcapacity",
        "filesystemunreserved",
        "currentdatabase",
        "addresstoline",
        "addresstolinewithinlines",
        "addresstosymbol",
        "demangle",
        "getclienthttpheader",
        "catboostevaluate",
        # table functions named outside FROM (e.g. ``x IN numbers(10)``)
        "url",
        "s3",
        "hdfs",
        "azureblobstorage",
        "remote",
        "remotesecure",
        "cluster",
        "clusterallreplicas",
        "merge",
        "numbers",
        "numbers_mt",
        "zeros",
        "zeros_mt",
        "generaterandom",
        "input",
        "view",
        "viewifpermitted",
        "viewexplain",
        "loop",
        "mysql",
        "postgresql",
        "sqlite",
        "odbc",
        "jdbc",
        "mongodb",
        "redis",
        "executable",
        "generate_series",
        "generateseries",
        "mergetreeindex",
        "mergetreeanalyzeindexes",
        "fuzzjson",
        "fuzzquery",
        "iceberg",
        "deltalake",
        "hudi",
        "s3cluster",
        "urlcluster",
        "filecluster",
        "hdfscluster",
        "azureblobstoragecluster",
    }
)


@dataclass(frozen=True)
class Denial:
    """Why a query may not run, rendered the way ClickHouse renders the same refusal."""

    code: int
    name: str
    text: str

    def message(self) -> str:
        """The ``errorMessage`` Cargo would answer."""
        return f"Code: {self.code}. DB::Exception: {self.text}. ({self.name})"


_LINE = re.compile(
    r"^(?P<indent> *)(?P<kind>[A-Za-z]+)(?: (?P<arg>[^ (][^(]*?))?(?: \(alias [^)]*\))?(?: +\(children \d+\))?\s*$"
)


@dataclass
class AstNode:
    """One node of ClickHouse's ``EXPLAIN AST`` dump."""

    kind: str
    arg: str
    children: list[AstNode]
    parent: AstNode | None = None


def parse_ast_dump(dump: str) -> AstNode:
    """Turn the indented ``EXPLAIN AST`` text into a tree."""
    root = AstNode("Root", "", [])
    stack: list[tuple[int, AstNode]] = [(-1, root)]
    for raw in dump.splitlines():
        if not raw.strip():
            continue
        match = _LINE.match(raw)
        indent = len(raw) - len(raw.lstrip(" "))
        if match is None:
            kind, arg = raw.strip().split(" ", 1)[0], ""
        else:
            kind, arg = match.group("kind"), (match.group("arg") or "").strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        node = AstNode(kind, arg, [], parent)
        parent.children.append(node)
        stack.append((indent, node))
    return root


def _walk(node: AstNode) -> list[AstNode]:
    out = [node]
    for child in node.children:
        out.extend(_walk(child))
    return out


def _names_denied_database(qualified: str) -> bool:
    head = qualified.strip("`").split(".", 1)[0].lower()
    return head.startswith(DENIED_DATABASE_PREFIXES)


def access_denied(what: str) -> Denial:
    """ClickHouse's ACCESS_DENIED text for a grant the reader does not have."""
    return Denial(
        497,
        "ACCESS_DENIED",
        f"{READER_USER}: Not enough privileges. To execute this query, it's necessary to have the grant {what}",
    )


def check_ast(dump: str) -> Denial | None:
    """Return why the parsed statement may not run, or None when it may."""
    tree = parse_ast_dump(dump)
    if not tree.children:
        return Denial(62, "SYNTAX_ERROR", "Empty query")
    statement = tree.children[0]
    if statement.kind not in ALLOWED_ROOTS:
        return Denial(164, "READONLY", f"{READER_USER}: Cannot execute query in readonly mode")
    # Direct children of the statement beyond its select list are FORMAT / INTO OUTFILE / SETTINGS.
    for extra in statement.children[1:]:
        if extra.kind == "Set":
            return Denial(164, "READONLY", "Cannot modify settings in readonly mode")
        return access_denied("FILE ON *.*" if extra.kind == "Literal" else "SELECT FORMAT ON *.*")
    for node in _walk(statement):
        if node.kind == "Set":
            return Denial(164, "READONLY", "Cannot modify settings in readonly mode")
        if node.kind == "TableIdentifier" and "." in node.arg:
            if _names_denied_database(node.arg) and node.arg.split(".", 1)[0].lower() in {
                "system",
                "information_schema",
            }:
                return access_denied(f"SELECT ON {node.arg}")
            return Denial(60, "UNKNOWN_TABLE", f"Table {node.arg} does not exist")
        if node.kind == "Identifier" and "." in node.arg and _names_denied_database(node.arg):
            return access_denied(f"SELECT ON {node.arg}")
        if node.kind == "Function":
            name = node.arg.split(" ", 1)[0]
            in_from = node.parent is not None and node.parent.kind == "TableExpression"
            if in_from:
                return access_denied(f"CREATE TEMPORARY TABLE, {name.upper()} ON *.*")
            lowered = name.lower()
            if lowered in DENIED_FUNCTIONS or lowered.startswith(("dictget", "joinget", "file")):
                return access_denied(f"{name.upper()} ON *.*")
    return None
