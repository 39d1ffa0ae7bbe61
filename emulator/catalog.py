"""The workspace catalogue: plays, tools, workflows, releases and the rest, as Cargo's API shows them.

The catalogue is small (a few dozen entities per workspace), so it is built in Python from a seeded
RNG and stored as JSON bodies in ``<store>.entities``. The REST endpoints serve those bodies as they
are, so every body here is the exact API shape of REFERENCE.md sections 2, 5 and 6: camelCase keys,
every nullable key present (as ``null`` when empty) and ISO timestamps with milliseconds and ``Z``.

The same catalogue also drives the fact generator (which workflow runs on which model, on which
schedule, through which node graph), so it must be rebuilt identically by the clock long after the
first generation: everything here is a pure function of (seed, workspace, generation time, sizes).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .workspaces import Workspace, seeded_uuid

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

ASSETS = "https://assets.getcargo.io"

JsonObj = dict[str, Any]


def iso(ms: int) -> str:
    """``ms`` (Unix epoch milliseconds) as Cargo's ISO form, e.g. ``2026-07-22T00:20:41.999Z``."""
    moment = datetime.fromtimestamp(ms // 1000, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def ch_time(ms: int) -> str:
    """``ms`` as a ClickHouse ``DateTime64(3)`` literal body (``YYYY-MM-DD hh:mm:ss.fff``, UTC)."""
    moment = datetime.fromtimestamp(ms // 1000, UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S}.{ms % 1000:03d}"


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime (naive datetimes are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


# -- node templates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeTemplate:
    """What one kind of workflow step does, costs and how long it takes.

    ``title`` is the execution title on success (``{record}`` is replaced by the record title; empty
    means the node writes no title). ``cost`` is the provider credit cost of one successful execution
    (a multiple of 1/4, so that credit sums are exact in binary floating point and therefore
    independent of summation order: batch totals must be byte-identical between two generations).
    """

    slug: str
    kind: str
    name: str
    action: str | None = None
    integration: str | None = None
    ref: str | None = None
    title: str = ""
    cost: float = 0.0
    dur: tuple[int, int] = (5, 60)
    errors: tuple[str, ...] = ()


_HTTP_ERRORS = ("API error: 429 Too Many Requests", "Request timed out after 30000 ms", "API error: 502 Bad Gateway")

NODE_TEMPLATES: dict[str, NodeTemplate] = {
    t.slug: t
    for t in (
        NodeTemplate("start", "native", "Start", action="start", dur=(3, 40)),
        NodeTemplate("end", "native", "End", action="end", dur=(2, 25)),
        NodeTemplate("branch", "native", "Has a website?", action="branch", title="Condition evaluated", dur=(4, 50)),
        NodeTemplate("format_data", "native", "Format data", action="transform", title="Formatted data", dur=(5, 80)),
        NodeTemplate(
            "enrich_company",
            "connector",
            "Enrich company",
            action="enrichCompany",
            integration="clearbit",
            title="Enriched {record}",
            cost=1.0,
            dur=(400, 3500),
            errors=("Clearbit: company not found", *(f"Clearbit {e}" for e in _HTTP_ERRORS)),
        ),
        NodeTemplate(
            "enrich_person",
            "connector",
            "Enrich person",
            action="enrichPerson",
            integration="clearbit",
            title="Enriched {record}",
            cost=1.0,
            dur=(400, 3000),
            errors=("Clearbit: person not found", *(f"Clearbit {e}" for e in _HTTP_ERRORS)),
        ),
        NodeTemplate(
            "find_email",
            "connector",
            "Find email",
            action="findEmail",
            integration="apollo",
            title="Found email for {record}",
            cost=0.5,
            dur=(600, 4000),
            errors=("No email found for this person", *(f"Apollo {e}" for e in _HTTP_ERRORS)),
        ),
        NodeTemplate(
            "verify_email",
            "connector",
            "Verify email",
            action="verifyEmail",
            integration="apollo",
            title="Verified email of {record}",
            cost=0.25,
            dur=(300, 2500),
            errors=("Email address is undeliverable", *(f"Apollo {e}" for e in _HTTP_ERRORS)),
        ),
        NodeTemplate(
            "write_crm",
            "connector",
            "Write to CRM",
            action="upsertRecord",
            integration="hubspot",
            title="Updated {record} in HubSpot",
            cost=0.25,
            dur=(300, 2500),
            errors=("HubSpot: property 'lifecyclestage' does not exist", *(f"HubSpot {e}" for e in _HTTP_ERRORS)),
        ),
        NodeTemplate(
            "write_salesforce",
            "connector",
            "Upsert account",
            action="upsertAccount",
            integration="salesforce",
            title="Upserted {record} in Salesforce",
            cost=0.25,
            dur=(500, 3500),
            errors=("Salesforce: INVALID_FIELD_FOR_INSERT_UPDATE", *(f"Salesforce {e}" for e in _HTTP_ERRORS)),
        ),
        NodeTemplate(
            "assign_owner",
            "connector",
            "Assign owner",
            action="assignOwner",
            integration="hubspot",
            title="Assigned an owner to {record}",
            cost=0.25,
            dur=(300, 2000),
            errors=("HubSpot: owner not found", *(f"HubSpot {e}" for e in _HTTP_ERRORS)),
        ),
        NodeTemplate(
            "summarize",
            "connector",
            "Summarize",
            action="generateText",
            integration="openai",
            title="Summarized {record}",
            cost=0.5,
            dur=(1500, 12000),
            errors=("OpenAI: context length exceeded", *(f"OpenAI {e}" for e in _HTTP_ERRORS)),
        ),
        NodeTemplate(
            "generate_email",
            "connector",
            "Draft email",
            action="generateText",
            integration="openai",
            title="Drafted an email for {record}",
            cost=0.5,
            dur=(1500, 15000),
            errors=("OpenAI: rate limit reached for requests", *(f"OpenAI {e}" for e in _HTTP_ERRORS)),
        ),
        NodeTemplate(
            "research_account",
            "agent",
            "Research account",
            ref="account-researcher",
            title="Researched {record}",
            cost=2.0,
            dur=(4000, 45000),
            errors=("Agent exceeded the maximum number of steps", "Agent tool call failed: web search unavailable"),
        ),
        NodeTemplate(
            "score_lead",
            "agent",
            "Score lead",
            ref="lead-qualifier",
            title="Scored {record}",
            cost=1.0,
            dur=(3000, 30000),
            errors=("Agent exceeded the maximum number of steps", "Agent returned an invalid structured output"),
        ),
        NodeTemplate(
            "enrich_tool",
            "tool",
            "Enrich company (tool)",
            ref="enrich-company",
            title="Enriched {record}",
            cost=1.5,
            dur=(1500, 20000),
            errors=("Tool run failed: Clearbit: company not found",),
        ),
        NodeTemplate(
            "find_email_tool",
            "tool",
            "Find work email (tool)",
            ref="find-work-email",
            title="Found a work email for {record}",
            cost=1.0,
            dur=(1500, 20000),
            errors=("Tool run failed: No email found for this person",),
        ),
    )
}

INTEGRATION_FALLBACK = {"salesforce": "hubspot", "apollo": "clearbit"}
INTEGRATION_NAMES = {
    "hubspot": "HubSpot",
    "salesforce": "Salesforce",
    "clearbit": "Clearbit",
    "openai": "OpenAI",
    "apollo": "Apollo",
}

# -- play / tool templates ------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowTemplate:
    """A play or tool: name, model it runs on, how runs arrive, and its node slugs (v1 release)."""

    key: str
    name: str
    model: str
    pattern: str
    slugs: tuple[str, ...]
    description: str


PLAY_TEMPLATES: tuple[FlowTemplate, ...] = (
    FlowTemplate(
        "enrich-new-companies",
        "Enrich new companies",
        "companies",
        "hourly",
        ("start", "enrich_company", "branch", "score_lead", "write_crm", "end"),
        "Enrich every new company and score it before it reaches the CRM.",
    ),
    FlowTemplate(
        "find-emails",
        "Find emails for new contacts",
        "contacts",
        "realtime",
        ("start", "find_email_tool", "branch", "write_crm", "end"),
        "Look up a work email for every contact created in the CRM.",
    ),
    FlowTemplate(
        "daily-account-research",
        "Daily account research",
        "companies",
        "daily",
        ("start", "research_account", "summarize", "write_crm", "end"),
        "Research target accounts every morning and write a summary to the CRM.",
    ),
    FlowTemplate(
        "score-inbound-leads",
        "Score inbound leads",
        "contacts",
        "realtime",
        ("start", "enrich_person", "score_lead", "end"),
        "Enrich and score inbound leads as they arrive.",
    ),
    FlowTemplate(
        "sync-customers",
        "Sync customers to Salesforce",
        "companies",
        "hourly",
        ("start", "branch", "write_salesforce", "end"),
        "Keep customer accounts in sync with Salesforce.",
    ),
    FlowTemplate(
        "re-engage-churned",
        "Re-engage churned accounts",
        "companies",
        "daily",
        ("start", "enrich_tool", "generate_email", "end"),
        "Draft a re-engagement email for churned accounts.",
    ),
    FlowTemplate(
        "route-new-leads",
        "Route new leads",
        "contacts",
        "hourly",
        ("start", "score_lead", "branch", "assign_owner", "write_crm", "end"),
        "Score new leads and route the good ones to an owner.",
    ),
    FlowTemplate(
        "weekly-icp-refresh",
        "ICP refresh",
        "companies",
        "daily",
        ("start", "enrich_company", "research_account", "write_crm", "end"),
        "Re-evaluate the ideal customer profile fit of every account.",
    ),
    FlowTemplate(
        "contact-hygiene",
        "Contact hygiene",
        "contacts",
        "hourly",
        ("start", "verify_email", "end"),
        "Verify contact emails and flag the undeliverable ones.",
    ),
    FlowTemplate(
        "competitor-mentions",
        "Competitor mentions",
        "companies",
        "realtime",
        ("start", "research_account", "branch", "summarize", "write_crm", "end"),
        "Watch accounts for competitor mentions and summarize them.",
    ),
)

TOOL_TEMPLATES: tuple[FlowTemplate, ...] = (
    FlowTemplate(
        "enrich-company",
        "Enrich company",
        "companies",
        "api",
        ("start", "enrich_company", "end"),
        "Enrich one company from its domain.",
    ),
    FlowTemplate(
        "find-work-email",
        "Find work email",
        "contacts",
        "api",
        ("start", "find_email", "verify_email", "end"),
        "Find and verify the work email of one person.",
    ),
    FlowTemplate(
        "summarize-account",
        "Summarize account",
        "companies",
        "api",
        ("start", "summarize", "end"),
        "Write a short account summary.",
    ),
    FlowTemplate(
        "qualify-lead",
        "Qualify lead",
        "contacts",
        "api",
        ("start", "score_lead", "end"),
        "Ask the lead qualifier agent for a score.",
    ),
)

AGENT_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("account-researcher", "Account researcher"),
    ("lead-qualifier", "Lead qualifier"),
)

# -- model columns ----------------------------------------------------------------------------------

MODEL_COLUMNS: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    # slug, ClickHouse type, Cargo column type, label
    "companies": (
        ("_id", "String", "string", "ID"),
        ("_title", "String", "string", "Title"),
        ("_emitted_at", "DateTime64(3, 'UTC')", "date", "Emitted at"),
        ("name", "String", "string", "Name"),
        ("domain", "String", "string", "Domain"),
        ("industry", "String", "string", "Industry"),
        ("employees", "Int64", "number", "Employees"),
        ("annual_revenue", "Float64", "number", "Annual revenue"),
        ("country", "String", "string", "Country"),
        ("founded_on", "Date", "date", "Founded on"),
        ("is_customer", "Bool", "boolean", "Is customer"),
        ("tags", "Array(String)", "array", "Tags"),
        ("metadata", "String", "object", "Metadata"),
    ),
    "contacts": (
        ("_id", "String", "string", "ID"),
        ("_title", "String", "string", "Title"),
        ("_emitted_at", "DateTime64(3, 'UTC')", "date", "Emitted at"),
        ("first_name", "String", "string", "First name"),
        ("last_name", "String", "string", "Last name"),
        ("email", "String", "string", "Email"),
        ("title", "String", "string", "Job title"),
        ("company_domain", "String", "string", "Company domain"),
        ("seniority", "String", "string", "Seniority"),
        ("last_activity_at", "DateTime64(3, 'UTC')", "date", "Last activity at"),
        ("is_subscribed", "Bool", "boolean", "Is subscribed"),
        ("score", "Float64", "number", "Score"),
    ),
}


@dataclass(frozen=True)
class SegmentTemplate:
    """A saved segment: its filter in Cargo's syntax and the same predicate in ClickHouse SQL.

    The SQL twin is what makes ``recordsCount`` true: it is counted on the model table.
    """

    key: str
    name: str
    model: str
    filter: JsonObj
    sql: str
    sort: list[JsonObj] | None = None
    limit: int | None = None


def _segment_templates(now_ms: int) -> tuple[SegmentTemplate, ...]:
    since_ms = (now_ms - 14 * DAY_MS) // DAY_MS * DAY_MS
    since_day = iso(since_ms)[:10]
    return (
        SegmentTemplate(
            "enterprise",
            "Enterprise accounts",
            "companies",
            _filter([{"kind": "number", "columnSlug": "employees", "operator": "greaterThan", "value": 1000}]),
            "employees > 1000",
            sort=[{"columnSlug": "employees", "kind": "desc"}],
        ),
        SegmentTemplate(
            "us-software",
            "US software companies",
            "companies",
            _filter(
                [
                    {"kind": "string", "columnSlug": "country", "operator": "is", "values": ["US"]},
                    {"kind": "string", "columnSlug": "industry", "operator": "is", "values": ["Software"]},
                ]
            ),
            "country = 'US' AND industry = 'Software'",
        ),
        SegmentTemplate(
            "customers",
            "Current customers",
            "companies",
            _filter([{"kind": "boolean", "columnSlug": "is_customer", "operator": "isTrue"}]),
            "is_customer",
            limit=5000,
        ),
        SegmentTemplate(
            "decision-makers",
            "Senior decision makers",
            "contacts",
            _filter(
                [
                    {
                        "kind": "string",
                        "columnSlug": "seniority",
                        "operator": "is",
                        "values": ["director", "vp", "c-level"],
                    }
                ]
            ),
            "seniority IN ('director', 'vp', 'c-level')",
        ),
        SegmentTemplate(
            "engaged-subscribers",
            "Engaged subscribers",
            "contacts",
            _filter(
                [
                    {"kind": "boolean", "columnSlug": "is_subscribed", "operator": "isTrue"},
                    {"kind": "number", "columnSlug": "score", "operator": "greaterThan", "value": 70},
                ]
            ),
            "is_subscribed AND score > 70",
            sort=[{"columnSlug": "score", "kind": "desc"}],
        ),
        SegmentTemplate(
            "recently-active",
            "Recently active contacts",
            "contacts",
            _filter(
                [{"kind": "date", "columnSlug": "last_activity_at", "operator": "greaterThan", "value": since_day}]
            ),
            f"last_activity_at > toDateTime64('{since_day} 00:00:00', 3, 'UTC')",
        ),
    )


def _filter(conditions: list[JsonObj]) -> JsonObj:
    return (
        {"conjonction": "and", "groups": [{"conjonction": "and", "conditions": conditions}]}
        if conditions
        else {
            "conjonction": "and",
            "groups": [],
        }
    )


MATCH_ALL: JsonObj = {"conjonction": "and", "groups": []}

MODEL_RELATIONSHIPS: tuple[tuple[str, str, str, str], ...] = (("contacts", "company_domain", "companies", "domain"),)
"""[I] How the generated models relate, by model slug: ``(from model, from column, to model, to column)``.

A contact belongs to the company whose ``domain`` is its ``company_domain`` (many contacts, one
company). Segment filters follow it both ways for ``relatedModelUuid`` column conditions and
``occurrence`` conditions (``emulator/api/filters.py``).
"""

# -- the catalogue ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """One node of a release, with everything an execution of it copies."""

    uuid: str
    template: NodeTemplate
    integration: str | None
    connector_uuid: str | None
    tool_uuid: str | None
    tool_release_uuid: str | None
    agent_uuid: str | None
    icon_url: str | None
    x: int


@dataclass(frozen=True)
class Release:
    """One release of a workflow: its node list (in path order) and when it was deployed."""

    uuid: str
    workflow_uuid: str
    version: int
    nodes: tuple[Node, ...]
    created_ms: int
    deployed_ms: int
    parent_uuid: str | None
    deployed: bool

    @property
    def branch_index(self) -> int:
        """1-based position of the branch node (0 when the graph is linear)."""
        for index, node in enumerate(self.nodes, start=1):
            if node.template.slug == "branch":
                return index
        return 0

    def children(self, position: int) -> list[str]:
        """``childrenUuids`` of the node at 0-based ``position``.

        A branch has two children: the next node (condition matched) and the one after it (not
        matched), so the "not matched" path skips exactly one node. Every other node has the next
        node as its only child; the last node has none.
        """
        if position + 1 >= len(self.nodes):
            return []
        if self.nodes[position].template.slug == "branch" and position + 2 < len(self.nodes):
            return [self.nodes[position + 1].uuid, self.nodes[position + 2].uuid]
        return [self.nodes[position + 1].uuid]

    def paths(self) -> tuple[list[int], list[int]]:
        """Node positions (1-based) of the matched path and of the not-matched path."""
        full = list(range(1, len(self.nodes) + 1))
        branch = self.branch_index
        if branch == 0 or branch + 2 > len(self.nodes):
            return full, full
        return full, [p for p in full if p != branch + 1]


@dataclass(frozen=True)
class Flow:
    """A play or a tool together with its workflow, releases and how its runs arrive."""

    owner_kind: str
    uuid: str
    template: FlowTemplate
    workflow_uuid: str
    model: str
    pattern: str
    releases: tuple[Release, ...]
    created_ms: int
    error_pm: int
    enabled: bool
    disabled_ms: int | None
    segment_uuid: str | None

    def release_at(self, ms: int) -> Release:
        """The release that was deployed at ``ms`` (runs use the deployed release of their time)."""
        chosen = self.releases[0]
        for release in self.releases:
            if release.deployed_ms <= ms:
                chosen = release
        return chosen

    @property
    def deployed(self) -> Release:
        """The currently deployed release."""
        return self.releases[-1]


@dataclass(frozen=True)
class Segment:
    """A segment entity plus the SQL predicate that counts its records."""

    uuid: str
    template: SegmentTemplate
    model_uuid: str
    from_play: bool
    name: str
    created_ms: int


@dataclass(frozen=True)
class Model:
    """A storage model and the physical table of its records."""

    uuid: str
    slug: str
    size: int
    salt: int
    created_ms: int

    @property
    def table(self) -> str:
        """Unqualified physical table name (``model_<uuid hex>``)."""
        return "model_" + self.uuid.replace("-", "")


@dataclass
class Catalog:
    """Everything configured in one workspace."""

    workspace: Workspace
    seed: int
    now_ms: int
    created_ms: int
    connectors: dict[str, str]
    agents: dict[str, str]
    tools: dict[str, Flow]
    plays: list[Flow]
    models: dict[str, Model]
    dataset_uuid: str
    segments: list[Segment]
    connector_created_ms: int

    @property
    def flows(self) -> list[Flow]:
        """Plays then tools: every workflow of the workspace."""
        return [*self.plays, *self.tools.values()]


def _uuid(ctx: tuple[object, ...], *parts: object) -> str:
    return seeded_uuid(*ctx, *parts)


def build_catalog(ws: Workspace, seed: int, now_ms: int, *, companies: int, contacts: int) -> Catalog:
    """The catalogue of ``ws`` as it stands at ``now_ms`` (the generation time).

    Pure function of its arguments: the clock rebuilds it to plan new runs.
    """
    rng = random.Random(f"catalog/{seed}/{ws.uuid}")
    ctx: tuple[object, ...] = ("catalog", seed, ws.uuid)
    ws_created = now_ms - 150 * DAY_MS + rng.randrange(DAY_MS)
    conn_created = now_ms - 120 * DAY_MS + rng.randrange(DAY_MS)

    integrations = ["hubspot", "clearbit", "openai"]
    if rng.random() < 0.7:
        integrations.append(rng.choice(["salesforce", "apollo"]))
    connectors = {slug: _uuid(ctx, "connector", slug) for slug in integrations}
    agents = {slug: _uuid(ctx, "agent", slug) for slug, _ in AGENT_TEMPLATES}

    dataset_uuid = _uuid(ctx, "dataset", "default")
    models = {
        "companies": Model(
            _uuid(ctx, "model", "companies"),
            "companies",
            companies,
            rng.getrandbits(48),
            now_ms - 110 * DAY_MS + rng.randrange(DAY_MS),
        ),
        "contacts": Model(
            _uuid(ctx, "model", "contacts"),
            "contacts",
            contacts,
            rng.getrandbits(48),
            now_ms - 109 * DAY_MS + rng.randrange(DAY_MS),
        ),
    }

    tool_templates = list(TOOL_TEMPLATES[:2])
    tool_templates += rng.sample(list(TOOL_TEMPLATES[2:]), rng.randint(0, 2))
    tools: dict[str, Flow] = {}
    for template in tool_templates:
        created = now_ms - rng.randint(70, 95) * DAY_MS + rng.randrange(DAY_MS)
        tools[template.key] = _flow(
            ctx,
            rng,
            owner_kind="tool",
            template=template,
            created=created,
            now_ms=now_ms,
            connectors=connectors,
            agents=agents,
            tools={},
            segment_uuid=None,
        )

    n_plays = rng.randint(6, 10)
    play_templates = list(PLAY_TEMPLATES[:3])
    play_templates += rng.sample(list(PLAY_TEMPLATES[3:]), n_plays - 3)
    plays: list[Flow] = []
    segments: list[Segment] = []
    for index, template in enumerate(play_templates):
        created = now_ms - rng.randint(45, 65) * DAY_MS + rng.randrange(DAY_MS)
        segment_uuid = _uuid(ctx, "play-segment", template.key)
        flow = _flow(
            ctx,
            rng,
            owner_kind="play",
            template=template,
            created=created,
            now_ms=now_ms,
            connectors=connectors,
            agents=agents,
            tools=tools,
            segment_uuid=segment_uuid,
        )
        if index == len(play_templates) - 1 and n_plays >= 8:
            # One play was switched off a few days ago: its runs stop there.
            disabled = now_ms - rng.randint(3, 9) * DAY_MS - rng.randrange(DAY_MS)
            flow = Flow(**{**flow.__dict__, "enabled": False, "disabled_ms": disabled})
        plays.append(flow)
        segments.append(
            Segment(
                segment_uuid,
                SegmentTemplate(f"play-{template.key}", template.name, template.model, MATCH_ALL, "1"),
                models[template.model].uuid,
                True,
                template.name,
                created,
            )
        )

    standalone = list(_segment_templates(now_ms))
    chosen = [standalone[0], standalone[3]]
    chosen += rng.sample([t for t in standalone if t not in chosen], rng.randint(1, 3))
    for seg_template in chosen:
        segments.append(
            Segment(
                _uuid(ctx, "segment", seg_template.key),
                seg_template,
                models[seg_template.model].uuid,
                False,
                seg_template.name,
                now_ms - rng.randint(20, 100) * DAY_MS + rng.randrange(DAY_MS),
            )
        )

    return Catalog(
        workspace=ws,
        seed=seed,
        now_ms=now_ms,
        created_ms=ws_created,
        connectors=connectors,
        agents=agents,
        tools=tools,
        plays=plays,
        models=models,
        dataset_uuid=dataset_uuid,
        segments=segments,
        connector_created_ms=conn_created,
    )


def _flow(
    ctx: tuple[object, ...],
    rng: random.Random,
    *,
    owner_kind: str,
    template: FlowTemplate,
    created: int,
    now_ms: int,
    connectors: dict[str, str],
    agents: dict[str, str],
    tools: dict[str, Flow],
    segment_uuid: str | None,
) -> Flow:
    owner_uuid = _uuid(ctx, owner_kind, template.key)
    workflow_uuid = _uuid(ctx, "workflow", template.key)
    slugs = list(template.slugs)
    versions = [slugs]
    if rng.random() < 0.6:
        v2 = [*slugs[:-1], "format_data", slugs[-1]] if len(slugs) < 7 and "format_data" not in slugs else slugs
        versions.append(v2)
    releases: list[Release] = []
    v1_created = created + rng.randrange(HOUR_MS)
    for number, version_slugs in enumerate(versions, start=1):
        # A second release is recent: runs of the last weeks switch to it when it is deployed.
        rel_created = v1_created if number == 1 else now_ms - rng.randint(5, 20) * DAY_MS - rng.randrange(DAY_MS)
        release_uuid = _uuid(ctx, "release", template.key, number)
        nodes = tuple(
            _node(ctx, template.key, slug, position=position, connectors=connectors, agents=agents, tools=tools)
            for position, slug in enumerate(version_slugs)
        )
        releases.append(
            Release(
                uuid=release_uuid,
                workflow_uuid=workflow_uuid,
                version=number,
                nodes=nodes,
                created_ms=rel_created,
                deployed_ms=rel_created + 60_000 + rng.randrange(600_000),
                parent_uuid=releases[-1].uuid if releases else None,
                deployed=number == len(versions),
            )
        )
    return Flow(
        owner_kind=owner_kind,
        uuid=owner_uuid,
        template=template,
        workflow_uuid=workflow_uuid,
        model=template.model,
        pattern=template.pattern,
        releases=tuple(releases),
        created_ms=created,
        error_pm=rng.randint(15, 70),
        enabled=True,
        disabled_ms=None,
        segment_uuid=segment_uuid,
    )


def _node(
    ctx: tuple[object, ...],
    flow_key: str,
    slug: str,
    *,
    position: int,
    connectors: dict[str, str],
    agents: dict[str, str],
    tools: dict[str, Flow],
) -> Node:
    template = NODE_TEMPLATES[slug]
    integration = template.integration
    if integration is not None and integration not in connectors:
        integration = INTEGRATION_FALLBACK[integration]
    tool = tools.get(template.ref or "") if template.kind == "tool" else None
    if template.kind == "native":
        icon = None
    elif template.kind == "connector":
        icon = f"{ASSETS}/integrations/{integration}.svg"
    else:
        icon = f"{ASSETS}/icons/{template.kind}.svg"
    return Node(
        uuid=_uuid(ctx, "node", flow_key, slug),
        template=template,
        integration=integration,
        connector_uuid=connectors[integration] if integration else None,
        tool_uuid=tool.uuid if tool else None,
        tool_release_uuid=tool.deployed.uuid if tool else None,
        agent_uuid=agents[template.ref] if template.kind == "agent" and template.ref else None,
        icon_url=icon,
        x=position * 320,
    )


# -- API bodies ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entity:
    """One row of ``<store>.entities``."""

    workspace_uuid: str
    kind: str
    uuid: str
    parent_uuid: str | None
    created_ms: int
    body: JsonObj


@dataclass
class Derived:
    """Facts the bodies repeat that only the generated data knows."""

    segment_counts: dict[str, int] = field(default_factory=dict)
    last_emitted_ms: dict[str, int] = field(default_factory=dict)
    last_batches: dict[str, JsonObj | None] = field(default_factory=dict)


def node_body(release: Release, position: int) -> JsonObj:
    """The API ``Node`` of the node at ``position`` of ``release``."""
    node = release.nodes[position]
    tpl = node.template
    body: JsonObj = {
        "uuid": node.uuid,
        "slug": tpl.slug,
        "name": tpl.name,
        "description": None,
        "kind": tpl.kind,
        "config": _node_config(tpl),
        "childrenUuids": release.children(position),
        "fallbackOnFailure": False,
        "position": {"x": node.x, "y": 0 if tpl.slug != "branch" else 40},
    }
    if tpl.kind in ("connector", "agent", "tool"):
        body["retry"] = {"maximumAttempts": 3, "initialInterval": 1000, "backoffCoefficient": 2}
    if tpl.kind == "native":
        body["actionSlug"] = tpl.action
    elif tpl.kind == "connector":
        body["integrationSlug"] = node.integration
        body["connectorUuid"] = node.connector_uuid
        body["actionSlug"] = tpl.action
    elif tpl.kind == "tool":
        body["templateSlug"] = None
        body["toolUuid"] = node.tool_uuid
        body["releaseUuid"] = node.tool_release_uuid
        body["waitUntilFinished"] = True
    else:
        body["templateSlug"] = None
        body["agentUuid"] = node.agent_uuid
        body["releaseUuid"] = None
        body["waitUntilFinished"] = True
    return body


def _node_config(tpl: NodeTemplate) -> JsonObj:
    if tpl.slug == "branch":
        return {"condition": "{{nodes.start.domain}} != null"}
    if tpl.kind == "connector":
        return {"mapping": {"input": "{{nodes.start}}"}}
    if tpl.kind in ("agent", "tool"):
        return {"input": {"record": "{{nodes.start}}"}}
    return {}


def workflow_node_body(release: Release, position: int) -> JsonObj:
    """The API ``WorkflowNode``: a Node without ``waitUntilFinished``, plus archive flag and children."""
    body = node_body(release, position)
    body.pop("waitUntilFinished", None)
    body["isArchived"] = False
    body["nodes"] = []
    return body


def _form_fields(flow: Flow) -> list[JsonObj] | None:
    if flow.owner_kind != "tool":
        return None
    key = "domain" if flow.model == "companies" else "email"
    return [{"name": key.title(), "slug": key, "kind": "string", "isRequired": True}]


def release_body(catalog: Catalog, flow: Flow, release: Release) -> JsonObj:
    """The API ``Release``."""
    return {
        "uuid": release.uuid,
        "parentUuid": release.parent_uuid,
        "workspaceUuid": catalog.workspace.uuid,
        "userUuid": catalog.workspace.user_uuid,
        "workflowUuid": flow.workflow_uuid,
        "description": None if release.version == 1 else "Format the record before writing it back",
        "version": str(release.version),
        "status": "deployed" if release.deployed else "archived",
        "templateSlug": None,
        "nodes": [node_body(release, i) for i in range(len(release.nodes))],
        "formFields": _form_fields(flow),
        "testRecords": [],
        "deployedAt": iso(release.deployed_ms),
        "createdAt": iso(release.created_ms),
        "updatedAt": iso(release.deployed_ms),
        "deletedAt": None,
    }


def workflow_body(catalog: Catalog, flow: Flow, last_batch: JsonObj | None) -> JsonObj:
    """The API ``Workflow`` (names live on the owning play or tool)."""
    deployed = flow.deployed
    return {
        "uuid": flow.workflow_uuid,
        "workspaceUuid": catalog.workspace.uuid,
        "nodes": [workflow_node_body(deployed, i) for i in range(len(deployed.nodes))],
        "createdAt": iso(flow.created_ms),
        "updatedAt": iso(deployed.deployed_ms),
        "deletedAt": None,
        "playUuid": flow.uuid if flow.owner_kind == "play" else None,
        "toolUuid": flow.uuid if flow.owner_kind == "tool" else None,
        "folderUuid": None,
        "template": None,
        "lastBatch": last_batch,
        "deployedRelease": {
            "uuid": deployed.uuid,
            "userUuid": catalog.workspace.user_uuid,
            "description": None if deployed.version == 1 else "Format the record before writing it back",
            "version": str(deployed.version),
            "nodes": [node_body(deployed, i) for i in range(len(deployed.nodes))],
            "formFields": _form_fields(flow),
            "templateSlug": None,
            "deployedAt": iso(deployed.deployed_ms),
            "createdAt": iso(deployed.created_ms),
        },
    }


def _schedule(flow: Flow) -> JsonObj | None:
    schedule_id = f"play-schedule-{flow.uuid}"
    if flow.pattern == "hourly":
        return {"type": "cron", "cron": "0 * * * *", "temporalScheduleWorkflowId": schedule_id}
    if flow.pattern == "daily":
        return {"type": "cron", "cron": "0 6 * * *", "temporalScheduleWorkflowId": schedule_id}
    if flow.pattern == "realtime":
        return {"type": "realtime"}
    return None


def play_body(catalog: Catalog, flow: Flow) -> JsonObj:
    """The API ``Play``."""
    updated = flow.disabled_ms if flow.disabled_ms is not None else flow.deployed.deployed_ms
    return {
        "uuid": flow.uuid,
        "workspaceUuid": catalog.workspace.uuid,
        "workflowUuid": flow.workflow_uuid,
        "userUuid": catalog.workspace.user_uuid,
        "modelUuid": catalog.models[flow.model].uuid,
        "segmentUuid": flow.segment_uuid,
        "changeKinds": ["added", "updated"],
        "runCreationRule": "always" if flow.pattern != "daily" else "noConcurrency",
        "name": flow.template.name,
        "description": flow.template.description,
        "schedule": _schedule(flow),
        "isEnabled": flow.enabled,
        "healthThreshold": 0.2,
        "healthAlertActions": [],
        "folderUuid": None,
        "createdAt": iso(flow.created_ms),
        "updatedAt": iso(updated),
        "deletedAt": None,
    }


_TOOL_EMOJI = {
    "enrich-company": "office",
    "find-work-email": "email",
    "summarize-account": "memo",
    "qualify-lead": "dart",
}


def tool_body(catalog: Catalog, flow: Flow) -> JsonObj:
    """The API ``Tool``."""
    return {
        "uuid": flow.uuid,
        "icon": {"kind": "emoji", "emojiSlug": _TOOL_EMOJI.get(flow.template.key, "wrench")},
        "workspaceUuid": catalog.workspace.uuid,
        "workflowUuid": flow.workflow_uuid,
        "userUuid": catalog.workspace.user_uuid,
        "name": flow.template.name,
        "folderUuid": None,
        "creditsCost": {"kind": "sum"},
        "description": flow.template.description,
        "isReadOnly": False,
        "triggers": [],
        "publicForm": None,
        "createdAt": iso(flow.created_ms),
        "updatedAt": iso(flow.deployed.deployed_ms),
        "deletedAt": None,
    }


def model_body(catalog: Catalog, model: Model, derived: Derived) -> JsonObj:
    """The API ``Model`` (a HubSpot-backed connector model)."""
    ctx = ("catalog", catalog.seed, catalog.workspace.uuid)
    last_run_created = catalog.now_ms - 2 * HOUR_MS - (model.salt % HOUR_MS)
    plays = sum(1 for p in catalog.plays if p.model == model.slug)
    segments = sum(1 for s in catalog.segments if s.model_uuid == model.uuid and not s.from_play)
    last_emitted = derived.last_emitted_ms.get(model.uuid)
    return {
        "uuid": model.uuid,
        "workspaceUuid": catalog.workspace.uuid,
        "slug": model.slug,
        "name": model.slug.title(),
        "description": f"{model.slug.title()} synced from HubSpot",
        "datasetUuid": catalog.dataset_uuid,
        "extractorSlug": f"hubspot_{model.slug}",
        "position": {"x": 0 if model.slug == "companies" else 400, "y": 0},
        "config": {"objectType": model.slug},
        "schedule": {
            "type": "cron",
            "cron": "0 */6 * * *",
            "temporalScheduleWorkflowId": f"model-schedule-{model.uuid}",
        },
        "meta": None,
        "columns": [
            {"kind": "original", "slug": slug, "type": ctype, "label": label, "originalSlug": slug}
            for slug, _, ctype, label in MODEL_COLUMNS[model.slug]
        ],
        "additionalColumns": [],
        "idColumnSlug": "_id",
        "unification": None,
        "titleColumnSlug": "_title",
        "timeColumnSlug": "_emitted_at",
        "folderUuid": None,
        "playsCount": plays,
        "segmentsCount": segments,
        "isPaused": False,
        "lastEmittedAt": iso(last_emitted) if last_emitted is not None else None,
        "createdAt": iso(model.created_ms),
        "updatedAt": iso(last_run_created + 95_000),
        "deletedAt": None,
        "lastRun": {
            "uuid": _uuid(ctx, "storage-run", model.slug),
            "status": "success",
            "errorMessage": None,
            "createdAt": iso(last_run_created),
            "finishedAt": iso(last_run_created + 95_000),
        },
        "kind": "connector",
        "connectorUuid": catalog.connectors["hubspot"],
    }


def segment_body(catalog: Catalog, segment: Segment, derived: Derived) -> JsonObj:
    """The API ``Segment`` (counts come from the model table, see ``SegmentTemplate.sql``)."""
    ctx = ("catalog", catalog.seed, catalog.workspace.uuid)
    count = derived.segment_counts.get(segment.uuid, 0)
    synced = catalog.now_ms - 30 * 60_000 - (int(segment.uuid[:6], 16) % 1_800_000)
    added = min(count, int(segment.uuid[6:8], 16) % 40)
    removed = int(segment.uuid[9:11], 16) % 5
    slug = segment.uuid.replace("-", "")[:8]
    return {
        "uuid": segment.uuid,
        "workspaceUuid": catalog.workspace.uuid,
        "userUuid": catalog.workspace.user_uuid,
        "modelUuid": segment.model_uuid,
        "slug": slug,
        "name": segment.name,
        "filter": segment.template.filter,
        "sort": segment.template.sort,
        "limit": segment.template.limit,
        "recordsCount": count,
        "fromPlay": segment.from_play,
        "trackingColumnSlugs": None,
        "columnSlugs": None,
        "syncedAt": iso(synced),
        "createdAt": iso(segment.created_ms),
        "updatedAt": iso(synced),
        "deletedAt": None,
        "lastChange": {
            "uuid": _uuid(ctx, "change", segment.uuid),
            "slug": _uuid(ctx, "change-slug", segment.uuid).replace("-", "")[:8],
            "totalRecordsCount": count,
            "updatedRecordsCount": 0,
            "removedRecordsCount": removed,
            "addedRecordsCount": added,
            "unchangedRecordsCount": count - added,
            "createdAt": iso(synced),
        },
    }


def entities(catalog: Catalog, derived: Derived) -> list[Entity]:
    """Every entity of the workspace, bodies in API shape."""
    ws = catalog.workspace
    out: list[Entity] = []
    first, last = ws.user_email.split("@")[0].rstrip("0123456789").title(), "Operator"
    out.append(
        Entity(
            ws.uuid,
            "workspace",
            ws.uuid,
            None,
            catalog.created_ms,
            {
                "uuid": ws.uuid,
                "name": ws.name,
                "allowedEmailDomains": ["example.com"],
                "maxConcurrentRuns": 200,
                "logoUrl": None,
                "createdAt": iso(catalog.created_ms),
                "updatedAt": iso(catalog.created_ms + DAY_MS),
                "quotaBuckets": {"credits": 100000},
                "temporalNamespace": "cargo-production",
                "temporalTaskQueuePrefix": None,
                "openAiVectorStoreId": None,
                "metadata": None,
                "defaultRoleUuid": None,
                "allowedLoginProviders": None,
                "ssoIdentifier": None,
            },
        )
    )
    out.append(
        Entity(
            ws.uuid,
            "user",
            ws.user_uuid,
            None,
            catalog.created_ms,
            {
                "uuid": ws.user_uuid,
                "email": ws.user_email,
                "firstName": first,
                "lastName": last,
                "picture": None,
                "lastSignInAt": iso(catalog.now_ms - 3 * HOUR_MS),
                "createdAt": iso(catalog.created_ms),
                "updatedAt": iso(catalog.now_ms - 3 * HOUR_MS),
                "webExtensionData": None,
                "workspaceUuid": ws.uuid,
                "permissions": [],
                "role": "admin",
            },
        )
    )
    for slug, connector_uuid in catalog.connectors.items():
        out.append(
            Entity(
                ws.uuid,
                "connector",
                connector_uuid,
                None,
                catalog.connector_created_ms,
                {
                    "uuid": connector_uuid,
                    "workspaceUuid": ws.uuid,
                    "name": INTEGRATION_NAMES[slug],
                    "slug": slug,
                    "integrationSlug": slug,
                    "createdAt": iso(catalog.connector_created_ms),
                    "updatedAt": iso(catalog.connector_created_ms),
                    "deletedAt": None,
                },
            )
        )
    for slug, name in AGENT_TEMPLATES:
        agent_uuid = catalog.agents[slug]
        out.append(
            Entity(
                ws.uuid,
                "agent",
                agent_uuid,
                None,
                catalog.connector_created_ms + HOUR_MS,
                {
                    "uuid": agent_uuid,
                    "workspaceUuid": ws.uuid,
                    "name": name,
                    "slug": slug,
                    "createdAt": iso(catalog.connector_created_ms + HOUR_MS),
                    "updatedAt": iso(catalog.connector_created_ms + HOUR_MS),
                    "deletedAt": None,
                },
            )
        )
    for flow in catalog.flows:
        body = play_body(catalog, flow) if flow.owner_kind == "play" else tool_body(catalog, flow)
        out.append(Entity(ws.uuid, flow.owner_kind, flow.uuid, None, flow.created_ms, body))
        last_batch = derived.last_batches.get(flow.workflow_uuid)
        out.append(
            Entity(
                ws.uuid, "workflow", flow.workflow_uuid, None, flow.created_ms, workflow_body(catalog, flow, last_batch)
            )
        )
        for release in flow.releases:
            out.append(
                Entity(
                    ws.uuid,
                    "release",
                    release.uuid,
                    flow.workflow_uuid,
                    release.created_ms,
                    release_body(catalog, flow, release),
                )
            )
    dataset_created = min(m.created_ms for m in catalog.models.values()) - HOUR_MS
    out.append(
        Entity(
            ws.uuid,
            "dataset",
            catalog.dataset_uuid,
            None,
            dataset_created,
            {
                "uuid": catalog.dataset_uuid,
                "workspaceUuid": ws.uuid,
                "slug": "default",
                "createdAt": iso(dataset_created),
                "updatedAt": iso(dataset_created),
                "deletedAt": None,
                "kind": "native",
            },
        )
    )
    for model in catalog.models.values():
        out.append(
            Entity(
                ws.uuid,
                "model",
                model.uuid,
                catalog.dataset_uuid,
                model.created_ms,
                model_body(catalog, model, derived),
            )
        )
    for segment in catalog.segments:
        out.append(
            Entity(
                ws.uuid,
                "segment",
                segment.uuid,
                segment.model_uuid,
                segment.created_ms,
                segment_body(catalog, segment, derived),
            )
        )
    return out
