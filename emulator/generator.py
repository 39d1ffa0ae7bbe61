"""Seeded, consistent Cargo orchestration data, generated inside ClickHouse.

How the data is made (and why):

* **Plan in Python, facts in ClickHouse.** Python plans *groups* of runs (a batch, or a stretch of
  record-by-record runs of a realtime play or an API-called tool): which workflow and release, when,
  how many, on which model. A medium workspace has a few thousand groups; the millions of runs,
  spans and records are then produced by ``INSERT ... SELECT`` statements over ``numbers_mt()``, so
  ten million rows take seconds rather than the minutes Python would need.
* **Every run has a destiny.** A run's identity (a hash of seed, group and index) fixes everything
  about it: its record, path through the node graph, per-node durations, whether and where it fails.
  What the tables show is that destiny *observed at a time T*: executions that started by T are
  present, those that finished by T are ``success``/``error``, the one in progress is ``pending``.
  Generation observes at ``now``; the clock (emulator/clock.py) observes the same runs again at a
  later time, so a run that was running "finishes" consistently, without any stored plan per run.
* **Derived tables are derived.** ``spans`` is the ARRAY JOIN of ``runs.executions``; ``records`` is
  the latest run per (workflow, record id); batch counters are aggregates of the batch's runs.
  Consistency therefore holds by construction, and the tests check it.
* **Determinism.** Only hashes of (seed, ...) are used (``cityHash64``); UUIDs are formatted from
  hashes with the v4 version/variant bits; no ``rand()``, ``now()`` or ``generateUUIDv4()``. Credit
  amounts are multiples of 1/16, exact in binary floating point, so sums do not depend on the order
  in which ClickHouse adds them. Same (seed, scale, now, workspaces) => identical rows.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from . import schema
from .catalog import (
    DAY_MS,
    HOUR_MS,
    MATCH_ALL,
    MODEL_COLUMNS,
    Catalog,
    Derived,
    Entity,
    Flow,
    Release,
    build_catalog,
    ch_time,
    entities,
    iso,
    to_ms,
)
from .store import ClickHouseStore
from .workspaces import Workspace, seeded_uuid

# -- scales ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScaleSpec:
    """Sizes of the first workspace at one scale (other workspaces get about a tenth).

    ``runs`` counts regular traffic plus the one-second ``bursts``; the ``large`` scale adds a
    backfill day sized by spans (``backfill_spans``) rather than runs, because the point of that day
    is to hold more spans than the scan cap (10 million rows) allows one query to read.
    ``advance_runs_per_hour`` is the floor of the clock's arrival rate: a tiny workspace only has a
    run every hour or so, too few to test late updates with.
    """

    name: str
    runs: int
    companies: int
    contacts: int
    bursts: tuple[int, ...] = ()
    backfill_spans: int = 0
    recent_runs: int = 20
    stuck_runs: int = 5
    error_batches: int = 2
    advance_runs_per_hour: int = 60
    days: int = 28


SCALES: dict[str, ScaleSpec] = {
    spec.name: spec
    for spec in (
        ScaleSpec("tiny", runs=360, companies=200, contacts=500, recent_runs=20, advance_runs_per_hour=60),
        ScaleSpec("small", runs=5_000, companies=2_000, contacts=5_000, recent_runs=40, advance_runs_per_hour=120),
        ScaleSpec(
            "medium",
            runs=150_000,
            companies=50_000,
            contacts=200_000,
            bursts=(12_500, 11_500, 10_800, 10_400),
            recent_runs=300,
            advance_runs_per_hour=400,
        ),
        ScaleSpec(
            "big",
            runs=1_100_000,
            companies=1_000_000,
            contacts=1_000_000,
            bursts=(12_500, 11_500, 10_800, 10_400),
            recent_runs=1_000,
            advance_runs_per_hour=2_000,
        ),
        ScaleSpec(
            "large",
            runs=2_400_000,
            companies=1_000_000,
            contacts=2_000_000,
            bursts=(15_000, 12_000, 11_000),
            backfill_spans=10_800_000,
            recent_runs=2_000,
            advance_runs_per_hour=4_000,
        ),
    )
}


@dataclass(frozen=True)
class Sizes:
    """What one workspace gets at a scale (the first workspace gets the full spec)."""

    runs: int
    companies: int
    contacts: int
    bursts: tuple[int, ...]
    backfill_spans: int
    recent_runs: int
    stuck_runs: int
    error_batches: int
    advance_runs_per_hour: int
    days: int


def workspace_sizes(spec: ScaleSpec, index: int) -> Sizes:
    """Sizes of workspace ``index``: full for the first, about a tenth (no bursts) for the others."""
    if index == 0:
        return Sizes(
            spec.runs,
            spec.companies,
            spec.contacts,
            spec.bursts,
            spec.backfill_spans,
            spec.recent_runs,
            spec.stuck_runs,
            spec.error_batches,
            spec.advance_runs_per_hour,
            spec.days,
        )
    return Sizes(
        max(spec.runs // 10, 40),
        max(spec.companies // 10, 50),
        max(spec.contacts // 10, 100),
        (),
        spec.backfill_spans // 10,
        max(spec.recent_runs // 10, 5),
        2,
        1,
        max(spec.advance_runs_per_hour // 10, 12),
        spec.days,
    )


# -- constants -------------------------------------------------------------------------------------

MAX_NODE_MS = 60_000
MAX_QUEUE_MS = 30_000
MAX_RUN_MS = 20 * 60_000
"""Upper bound of a (non-stuck) run's duration: the clock only re-examines groups this recent."""

LATE_WINDOW_MS = 120_000
"""Late arrivals are created up to this long before the previous ``now`` (ClickHouse insert lag)."""

STUCK_QUEUE_MS = 10_000_000_000_000
"""Queue delay of runs that never start (about 300 years): they stay ``pending``."""

NIL_UUID = "00000000-0000-0000-0000-000000000000"

AUX_TABLES = ("entities", "meta", "gen_groups", "gen_paths")

BULK = " SETTINGS optimize_on_insert = 0, max_insert_threads = 4"
"""Appended to bulk inserts: ReplacingMergeTree's in-insert dedup sorts and merges every block (5x
slower here) and is useless, since no insert ever carries two versions of one key; parallel insert
threads cut the remaining cost (sorting and compressing wide parts) by about a third."""

PATTERN_SHARE = {"hourly": 0.35, "daily": 0.2, "realtime": 0.25, "api": 0.2}


# -- reports ---------------------------------------------------------------------------------------


@dataclass
class GenerationReport:
    """What ``generate`` wrote: rows per table (all workspaces) and seconds per step."""

    scale: str
    seed: int
    now: str
    rows: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for logs and JSON)."""
        return asdict(self)


# -- auxiliary tables ------------------------------------------------------------------------------


def _aux_ddl(db: str) -> list[str]:
    return [
        f"CREATE TABLE IF NOT EXISTS {db}.entities (workspace_uuid UUID, kind LowCardinality(String), uuid UUID, "
        "parent_uuid Nullable(UUID), created_at DateTime64(3, 'UTC'), body String) "
        "ENGINE = ReplacingMergeTree ORDER BY (workspace_uuid, kind, uuid)",
        f"CREATE TABLE IF NOT EXISTS {db}.meta (key String, value String) ENGINE = ReplacingMergeTree ORDER BY key",
        f"CREATE TABLE IF NOT EXISTS {db}.gen_groups ("
        "epoch UInt32, workspace_uuid UUID, group_key UInt64, kind LowCardinality(String), first_index UInt64, "
        "batch_uuid Nullable(UUID), data_kind LowCardinality(String), data String, batch_error Nullable(String), "
        "workflow_uuid UUID, release_uuid UUID, user_uuid Nullable(UUID), start_ms Int64, spread_ms Int64, "
        "cnt UInt32, spread_mode UInt8, model_kind UInt8, model_salt UInt64, model_size UInt64, "
        "record_offset UInt64, record_mode UInt8, error_pm UInt32, cancel_pm UInt32, queue_max_ms UInt64, "
        "queue_floor_ms Int64, stuck UInt8) ENGINE = MergeTree ORDER BY (epoch, workspace_uuid, start_ms, group_key)",
        f"CREATE TABLE IF NOT EXISTS {db}.gen_paths ("
        "rel_uuid UUID, variant UInt8, p_len UInt8, p_uuid Array(UUID), p_slug Array(String), "
        "p_kind Array(LowCardinality(String)), p_action Array(Nullable(String)), p_connector Array(Nullable(UUID)), "
        "p_integration Array(Nullable(String)), p_tool Array(Nullable(UUID)), p_agent Array(Nullable(UUID)), "
        "p_release Array(Nullable(UUID)), p_wait Array(Bool), p_icon Array(Nullable(String)), p_title Array(String), "
        "p_cost Array(Float64), p_is_agent Array(UInt8), p_dmin Array(UInt32), p_dmax Array(UInt32), "
        "p_errors Array(Array(String)), p_child Array(Nullable(UInt32)), p_next Array(Nullable(UUID)), "
        "p_fail Array(UInt8)) ENGINE = ReplacingMergeTree ORDER BY (rel_uuid, variant)",
    ]


def ensure_aux_tables(store: ClickHouseStore) -> None:
    """Create the generator's own tables (entities, meta and the run plan) if missing."""
    for ddl in _aux_ddl(store.database):
        store.execute(ddl)


def insert_json_rows(store: ClickHouseStore, table: str, rows: Iterable[dict[str, Any]], chunk: int = 5000) -> int:
    """Insert ``rows`` into ``table`` as JSONEachRow, in chunks; returns the number of rows."""
    total = 0
    buffer: list[bytes] = []
    for row in rows:
        buffer.append(orjson.dumps(row))
        if len(buffer) >= chunk:
            store.execute(f"INSERT INTO {table} FORMAT JSONEachRow\n" + b"\n".join(buffer).decode())
            total += len(buffer)
            buffer = []
    if buffer:
        store.execute(f"INSERT INTO {table} FORMAT JSONEachRow\n" + b"\n".join(buffer).decode())
        total += len(buffer)
    return total


# -- meta ------------------------------------------------------------------------------------------


def set_meta(store: ClickHouseStore, values: dict[str, str]) -> None:
    """Write meta keys (the last write of a key wins); a new ``now`` moves the callers' SQL clock too."""
    insert_json_rows(store, store.table("meta"), ({"key": k, "value": v} for k, v in values.items()))
    if "now" in values:
        store.note_virtual_now(to_ms(parse_iso(values["now"])))


def read_meta(store: ClickHouseStore) -> dict[str, str]:
    """Every meta key (empty before the first generation)."""
    if not int(store.scalar(f"EXISTS TABLE {store.table('meta')}") or 0):
        return {}
    rows = store.rows(f"SELECT key, value FROM {store.table('meta')} FINAL")
    return {str(r["key"]): str(r["value"]) for r in rows}


def parse_iso(text: str) -> datetime:
    """Parse ``2026-07-22T00:20:41.999Z`` (or ClickHouse's ``2026-07-22 00:20:41.999``) as aware UTC."""
    cleaned = text.strip().replace("Z", "+00:00").replace(" ", "T")
    moment = datetime.fromisoformat(cleaned)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def current_now(store: ClickHouseStore) -> datetime:
    """The emulator's virtual clock: the time all data was generated or last advanced to."""
    value = read_meta(store).get("now")
    if value is None:
        raise LookupError("the store has no generated data yet (meta 'now' is missing)")
    return parse_iso(value)


# -- SQL building blocks ---------------------------------------------------------------------------


def _array(words: Sequence[str]) -> str:
    return "[" + ", ".join("'" + w.replace("'", "\\'") + "'" for w in words) + "]"


COMPANY_PREFIXES = (
    "Acme", "Apex", "Arcadia", "Atlas", "Aurora", "Beacon", "Birch", "Blue", "Bright", "Cedar", "Cinder",
    "Clear", "Cobalt", "Copper", "Crest", "Crimson", "Delta", "Echo", "Ember", "Evergreen", "Falcon",
    "Fern", "Forge", "Granite", "Harbor", "Helix", "Horizon", "Indigo", "Iron", "Juniper", "Keystone",
    "Lumen", "Maple", "Meridian", "Nimbus", "North", "Nova", "Oak", "Onyx", "Orbit", "Pine", "Pioneer",
    "Prism", "Quantum", "Quartz", "Raven", "Ridge", "River", "Sage", "Sierra", "Silver", "Solstice",
    "Summit", "Tidal", "Titan", "Vertex", "Vista", "Willow", "Zenith", "Zephyr",
)  # fmt: skip
COMPANY_SUFFIXES = (
    "Analytics", "Bio", "Capital", "Cloud", "Commerce", "Consulting", "Data", "Dynamics", "Energy",
    "Foods", "Freight", "Games", "Health", "Homes", "Industries", "Insights", "Labs", "Learning",
    "Logistics", "Media", "Medical", "Motors", "Networks", "Partners", "Payments", "Pharma", "Retail",
    "Robotics", "Security", "Software", "Solutions", "Studios", "Systems", "Technologies", "Telecom",
    "Therapeutics", "Travel", "Ventures", "Works", "AI",
)  # fmt: skip
COMPANY_COMBOS = len(COMPANY_PREFIXES) * len(COMPANY_SUFFIXES)
COMBO_STEP = 7919
"""A prime coprime with the number of name combinations, so ``k -> k*7919 + salt`` permutes them."""
assert math.gcd(COMBO_STEP, COMPANY_COMBOS) == 1

FIRST_NAMES = (
    "Ada", "Alex", "Amara", "Ana", "Ben", "Carla", "Chen", "Chloe", "Daniel", "Diego", "Elena", "Emma",
    "Farah", "Felix", "Grace", "Hana", "Hugo", "Ines", "Isaac", "Jade", "James", "Jonas", "Julia", "Kai",
    "Kenji", "Laura", "Leo", "Lina", "Lucas", "Maya", "Mia", "Nadia", "Noah", "Olivia", "Omar", "Paul",
    "Priya", "Rafael", "Rosa", "Sam", "Sara", "Sofia", "Tariq", "Theo", "Uma", "Victor", "Yara", "Zoe",
)  # fmt: skip
LAST_NAMES = (
    "Adams", "Almeida", "Baker", "Bauer", "Brown", "Castro", "Chen", "Clark", "Costa", "Davis", "Dubois",
    "Evans", "Fischer", "Garcia", "Gupta", "Hall", "Hansen", "Ito", "Jensen", "Johnson", "Kim", "Kowalski",
    "Larsen", "Lee", "Lopez", "Martin", "Meyer", "Moreau", "Müller", "Nguyen", "Novak", "Okafor", "Patel",
    "Perez", "Rossi", "Sato", "Schmidt", "Silva", "Singh", "Smith", "Tanaka", "Taylor", "Walker", "Wang",
    "Weber", "Williams", "Young", "Zhang",
)  # fmt: skip
INDUSTRIES = (
    "Software", "Software", "Financial Services", "Healthcare", "Manufacturing", "Retail", "Logistics",
    "Media", "Education", "Real Estate", "Energy", "Telecommunications",
)  # fmt: skip
COUNTRIES = ("US", "US", "US", "US", "GB", "DE", "FR", "CA", "NL", "SE", "AU", "IN", "BR", "ES", "JP", "SG")
TLDS = ("com", "com", "io", "co", "ai", "net")
TAGS = ("icp", "target", "partner", "competitor", "expansion", "churn-risk", "enterprise", "smb", "beta")
SOURCES = ("hubspot", "salesforce", "import", "website", "event")
STAGES = ("lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer", "evangelist")
JOB_TITLES = (
    "Account Executive", "CEO", "CFO", "CTO", "Data Analyst", "Head of Growth", "Head of Sales",
    "Marketing Manager", "Operations Manager", "Product Manager", "RevOps Lead", "Sales Development Rep",
    "Software Engineer", "VP Marketing", "VP Sales", "Founder",
)  # fmt: skip
SENIORITIES = ("entry", "senior", "senior", "manager", "manager", "director", "vp", "c-level")


def company_name_sql(salt: str, k: str) -> str:
    """ClickHouse expression of company ``k``'s name (model table and runs' record titles agree)."""
    perm = f"(({k}) * {COMBO_STEP} + ({salt})) % {COMPANY_COMBOS}"
    n_pre = len(COMPANY_PREFIXES)
    return (
        f"concat({_array(COMPANY_PREFIXES)}[1 + ({perm}) % {n_pre}], ' ', "
        f"{_array(COMPANY_SUFFIXES)}[1 + intDiv({perm}, {n_pre})])"
    )


def company_domain_sql(salt: str, k: str) -> str:
    """Expression of company ``k``'s domain: unique per ``k`` (the name combination plus a block number)."""
    perm = f"(({k}) * {COMBO_STEP} + ({salt})) % {COMPANY_COMBOS}"
    n_pre = len(COMPANY_PREFIXES)
    return (
        f"concat(lower({_array(COMPANY_PREFIXES)}[1 + ({perm}) % {n_pre}]), "
        f"lower({_array(COMPANY_SUFFIXES)}[1 + intDiv({perm}, {n_pre})]), "
        f"if(({k}) >= {COMPANY_COMBOS}, toString(intDiv({k}, {COMPANY_COMBOS})), ''), '.', "
        f"{_array(TLDS)}[1 + cityHash64({salt}, {k}, 7) % {len(TLDS)}])"
    )


def contact_first_sql(salt: str, k: str) -> str:
    """Expression of contact ``k``'s first name."""
    return f"{_array(FIRST_NAMES)}[1 + cityHash64({salt}, {k}, 1) % {len(FIRST_NAMES)}]"


def contact_last_sql(salt: str, k: str) -> str:
    """Expression of contact ``k``'s last name."""
    return f"{_array(LAST_NAMES)}[1 + cityHash64({salt}, {k}, 2) % {len(LAST_NAMES)}]"


def contact_name_sql(salt: str, k: str) -> str:
    """Expression of contact ``k``'s full name (its record title)."""
    return f"concat({contact_first_sql(salt, k)}, ' ', {contact_last_sql(salt, k)})"


def record_id_sql(model_kind: str, k: str) -> str:
    """Record id of entry ``k`` of a model (0 = companies ``cmp_…``, 1 = contacts ``ctc_…``)."""
    return f"concat(if({model_kind} = 0, 'cmp_', 'ctc_'), leftPad(toString({k}), 7, '0'))"


def uuid_sql(high: str, low: str) -> str:
    """A v4-shaped UUID from two UInt64 hash expressions (version and variant bits forced)."""
    a = f"bitOr(bitAnd({high}, 0xFFFFFFFFFFFF0FFF), 0x4000)"
    b = f"bitOr(bitAnd({low}, 0x3FFFFFFFFFFFFFFF), 0x8000000000000000)"
    return (
        f"toUUID(UUIDNumToString(toFixedString(concat(reverse(reinterpretAsFixedString({a})), "
        f"reverse(reinterpretAsFixedString({b}))), 16)))"
    )


def observed_at(now_ms: int) -> int:
    """The instant the data of virtual time ``now_ms`` is observed at: one millisecond before it.

    The data at virtual ``now`` is what happened strictly before ``now``: no row, execution or
    update is stamped ``now`` itself, let alone later. A reader that takes everything before the
    server's ``now()`` (half-open, as the connector reads) therefore sees all of it, and a run whose
    node finishes at ``now`` is observed still running it, never finished without its next node.
    """
    return now_ms - 1


def ts(ms: str) -> str:
    """Epoch-milliseconds expression as ``DateTime64(3, 'UTC')``."""
    return f"fromUnixTimestamp64Milli(toInt64({ms}), 'UTC')"


GROUP_COLUMNS = (
    "epoch", "workspace_uuid", "group_key", "kind", "first_index", "batch_uuid", "data_kind", "data",
    "batch_error", "workflow_uuid", "release_uuid", "user_uuid", "start_ms", "spread_ms", "cnt",
    "spread_mode", "model_kind", "model_salt", "model_size", "record_offset", "record_mode", "error_pm",
    "cancel_pm", "queue_max_ms", "queue_floor_ms", "stuck",
)  # fmt: skip

EXEC = [name for name, _ in schema.EXECUTION_FIELDS]
RUN_SCALARS = [name for name, _ in schema.RUNS.columns]


def generation_source(store: ClickHouseStore, total: int) -> str:
    """Rows (group columns + ``i``) for every run planned by the generation (epoch 0).

    ``numbers_mt`` spreads the work over threads; an ASOF join finds each run's group by its
    first index (the groups' indices are contiguous ranges).
    """
    cols = ", ".join(f"g.{c} AS {c}" for c in GROUP_COLUMNS)
    inner = ", ".join(GROUP_COLUMNS)
    return (
        f"SELECT {cols}, toUInt32(n.number - g.first_index) AS i "
        f"FROM (SELECT number, toUInt8(0) AS z FROM numbers_mt({total})) AS n "
        f"ASOF JOIN (SELECT {inner}, toUInt8(0) AS z FROM {store.table('gen_groups')} "
        f"WHERE epoch = 0 AND cnt > 0) AS g ON n.z = g.z AND n.number >= g.first_index"
    )


def groups_source(store: ClickHouseStore, where: str) -> str:
    """Rows (group columns + ``i``) for every run of the groups matching ``where`` (the clock's path)."""
    inner = ", ".join(GROUP_COLUMNS)
    return (
        f"SELECT {inner}, toUInt32(i) AS i FROM {store.table('gen_groups')} "
        f"ARRAY JOIN range(cnt) AS i WHERE cnt > 0 AND ({where})"
    )


def runs_select(store: ClickHouseStore, *, seed: int, at_ms: int, source: str, with_deletes: bool) -> str:
    """SELECT producing ``runs`` rows (columns in ``run_select_columns()`` order) observed at ``at_ms``.

    ``source`` yields group columns plus ``i`` (the run's index in its group). Everything about a run
    is a function of ``cityHash64(seed, group_key, i)``; only what has happened by ``at_ms`` shows.
    The run's path through its release (branch taken or not) selects a ``gen_paths`` row whose node
    arrays are already in path order, so most execution columns are a plain ``arraySlice`` (lambdas
    that capture arrays copy them for every element: several times slower at ten million rows).
    With ``with_deletes`` a few finished runs are soft-deleted some hours after they finished (only
    the generation does this: the clock deletes explicitly, never by formula).
    """
    t = str(int(at_ms))
    obs = "1, x_obs"
    title_sql = f"if(model_kind = 0, {company_name_sql('model_salt', 'x_k')}, {contact_name_sql('model_salt', 'x_k')})"
    deletes = "1" if with_deletes else "0"
    null_uuids = "arrayResize(CAST([], 'Array(Nullable(UUID))'), x_obs)"
    return f"""
SELECT
    x_uuid AS uuid, workspace_uuid, workflow_uuid, user_uuid, toNullable(release_uuid) AS release_uuid,
    CAST(NULL, 'Nullable(String)') AS nodes, batch_uuid, x_trace AS trace_uuid,
    concat('run-', toString(x_uuid)) AS temporal_workflow_id,
    {record_id_sql("model_kind", "x_k")} AS record_id, x_title AS record_title,
    concat('contexts/', toString(x_uuid), '.json') AS context_s3_filename,
    concat('computed-configs/', toString(x_uuid), '.json') AS computed_configs_s3_filename,
    CAST(NULL, 'Nullable(UUID)') AS parent_uuid, CAST(NULL, 'Nullable(UUID)') AS parent_node_uuid,
    CAST(NULL, 'Nullable(UUID)') AS parent_batch_uuid, CAST(NULL, 'Nullable(UUID)') AS parent_agent_uuid,
    CAST(NULL, 'Nullable(UUID)') AS parent_chat_uuid, CAST(NULL, 'Nullable(UUID)') AS parent_message_uuid,
    CAST(NULL, 'Nullable(Bool)') AS is_group_parent,
    multiIf(x_done, multiIf(x_err, 'error', x_cancel, 'cancelled', 'success'),
            x_obs = 1 AND x_e[1] > {t}, 'pending', 'running') AS status,
    if(x_done AND x_err, toNullable(x_errtext), NULL) AS error_message,
    arraySum(x_credits) AS credits_used_count,
    {ts("x_c")} AS created_at,
    {ts("x_upd")} AS updated_at,
    if(x_done, toNullable({ts("x_e[x_n]")}), NULL) AS finished_at,
    if(x_del, toNullable({ts("x_del_ms")}), NULL) AS deleted_at,
    toUInt64(x_upd) AS _version,
    arraySlice(p_uuid, {obs}) AS e_node_uuid,
    arraySlice(p_slug, {obs}) AS e_node_slug,
    arraySlice(p_kind, {obs}) AS e_node_kind,
    {null_uuids} AS e_node_batch_uuid,
    {null_uuids} AS e_node_run_uuid,
    {null_uuids} AS e_node_message_uuid,
    arrayMap((o, c) -> if(o, c, NULL), o_ok, arraySlice(p_child, {obs})) AS e_node_child_index,
    arrayMap((o, nx) -> if(o, nx, NULL), o_ok, arraySlice(p_next, {obs})) AS e_next_node_uuid,
    arrayMap((f, b) -> if(f, if(b, 'error', 'success'), 'pending'), o_fin, o_fail) AS e_status,
    arrayMap((f, b) -> if(f AND b, toNullable(x_errtext), NULL), o_fin, o_fail) AS e_error_message,
    arrayMap((o, tpl) -> if(o AND tpl != '', toNullable(replaceOne(tpl, '{{record}}', x_title)), NULL),
             o_ok, arraySlice(p_title, {obs})) AS e_title,
    arraySlice(p_icon, {obs}) AS e_icon_url,
    x_credits AS e_credits_used_count,
    arrayMap(v -> {ts("v")}, o_s) AS e_started_at,
    arrayMap((f, sv, ev) -> {ts("if(f, ev, sv)")}, o_fin, o_s, o_e) AS e_updated_at,
    arrayMap((f, ev) -> if(f, toNullable({ts("ev")}), NULL), o_fin, o_e) AS e_finished_at,
    arraySlice(p_wait, {obs}) AS e_node_wait_until_finished,
    arraySlice(p_action, {obs}) AS e_node_action_slug,
    arraySlice(p_connector, {obs}) AS e_node_connector_uuid,
    arraySlice(p_integration, {obs}) AS e_node_integration_slug,
    arraySlice(p_tool, {obs}) AS e_node_tool_uuid,
    arraySlice(p_agent, {obs}) AS e_node_agent_uuid,
    arraySlice(p_release, {obs}) AS e_node_release_uuid
FROM (
    SELECT *,
        {uuid_sql("x_h", "cityHash64(x_h, 1)")} AS x_uuid,
        {uuid_sql("cityHash64(x_h, 2)", "cityHash64(x_h, 3)")} AS x_trace,
        {title_sql} AS x_title,
        arrayElement(p_errors[x_n], 1 + cityHash64(x_h, 10) % greatest(length(p_errors[x_n]), 1)) AS x_errtext_raw,
        if(x_errtext_raw = '', 'Node execution failed', x_errtext_raw) AS x_errtext,
        arraySlice(x_s, {obs}) AS o_s,
        arraySlice(x_e, {obs}) AS o_e,
        arrayMap(ev -> ev <= {t}, o_e) AS o_fin,
        arrayMap(j -> x_err AND j = x_n, range(1, x_obs + 1)) AS o_fail,
        arrayMap((f, b) -> f AND NOT b, o_fin, o_fail) AS o_ok,
        arrayMap((o, c, a, j) -> if(o, c * if(a = 1, (2 + cityHash64(x_h, 200 + j) % 7) / 4, 1), 0),
                 o_ok, arraySlice(p_cost, {obs}), arraySlice(p_is_agent, {obs}), range(1, x_obs + 1)) AS x_credits,
        arrayMax(arrayMap((f, sv, ev) -> if(f, ev, sv), o_fin, o_s, o_e)) AS x_progress,
        x_e[x_n] + 3600000 + toInt64(cityHash64(x_h, 12) % 432000000) AS x_del_ms,
        {deletes} = 1 AND x_done AND cityHash64(x_h, 11) % 1000 < 3 AND x_del_ms <= {t} AS x_del,
        if(x_del, x_del_ms, x_progress) AS x_upd
    FROM (
        SELECT *,
            arrayCount(v -> v <= {t}, x_s) AS x_obs,
            x_e[x_n] <= {t} AS x_done
        FROM (
            SELECT *,
                arrayMap((lo, hi, j) -> toInt64(lo + cityHash64(x_h, 100 + j) % (hi - lo + 1)) + if(j = 1, x_q, 0),
                         arraySlice(p_dmin, 1, x_n), arraySlice(p_dmax, 1, x_n), range(1, x_n + 1)) AS x_d,
                arrayCumSum(x_d) AS x_cum,
                arrayMap((c, d) -> x_c + c - d, x_cum, x_d) AS x_s,
                arrayMap(c -> x_c + c, x_cum) AS x_e
            FROM (
                SELECT s1.*, p.*,
                    toInt64(if(s1.spread_mode = 0,
                               s1.start_ms + intDiv(toInt64(s1.i) * s1.spread_ms, greatest(toInt64(s1.cnt), 1)),
                               s1.start_ms + 1 + toInt64(cityHash64(s1.x_h, 4) % greatest(toUInt64(s1.spread_ms), 1))))
                        AS x_c,
                    if(s1.record_mode = 0, (s1.record_offset + s1.i) % s1.model_size,
                       cityHash64(s1.x_h, 5) % s1.model_size) AS x_k,
                    cityHash64(s1.x_h, 7) % 1000 AS x_roll,
                    x_roll < s1.error_pm AS x_err,
                    NOT x_err AND x_roll < s1.error_pm + s1.cancel_pm AS x_cancel,
                    toUInt32(multiIf(x_err, p.p_fail[1 + cityHash64(s1.x_h, 8) % length(p.p_fail)],
                                     x_cancel, 1 + cityHash64(s1.x_h, 8) % (p.p_len - 1), p.p_len)) AS x_n,
                    if(s1.stuck = 1, toInt64({STUCK_QUEUE_MS}),
                       greatest(s1.queue_floor_ms - x_c, 0)
                       + toInt64(intDiv(s1.queue_max_ms * pow(cityHash64(s1.x_h, 9) % 1000, 3)::UInt64, 1000000000)))
                        AS x_q
                FROM (
                    SELECT src.*, cityHash64({int(seed)}, src.group_key, src.i) AS x_h,
                        toUInt8(cityHash64(x_h, 6) % 100 < 35) AS x_b
                    FROM ({source}) AS src
                ) AS s1
                INNER JOIN {store.table("gen_paths")} AS p ON p.rel_uuid = s1.release_uuid AND p.variant = s1.x_b
            )
        )
    )
)
WHERE x_c <= {t}
"""


def run_insert_columns() -> list[str]:
    """Column list of ``INSERT INTO runs`` matching ``runs_select``'s output order."""
    return [*RUN_SCALARS, *(f"executions.{name}" for name in EXEC)]


def run_select_columns() -> list[str]:
    """Output column names of ``runs_select`` in insert order."""
    return [*RUN_SCALARS, *(f"e_{name}" for name in EXEC)]


def insert_runs(store: ClickHouseStore, target: str, select_sql: str) -> None:
    """``INSERT INTO target`` (a runs-shaped table) from a ``runs_select``."""
    cols = ", ".join(f"`{c}`" for c in run_insert_columns())
    outs = ", ".join(run_select_columns())
    store.execute(f"INSERT INTO {target} ({cols}) SELECT {outs} FROM ({select_sql}){BULK}")


def spans_select(runs_table: str, where: str = "1") -> str:
    """One span per execution of the runs in ``runs_table`` (the run's fields copied onto each)."""
    return f"""
SELECT workspace_uuid, workflow_uuid, user_uuid, ifNull(batch_uuid, toUUID('{NIL_UUID}')) AS batch_uuid,
    trace_uuid, record_id, record_title, uuid AS run_uuid, context_s3_filename AS run_context_s3_filename,
    computed_configs_s3_filename AS run_computed_configs_s3_filename, parent_uuid AS parent_run_uuid,
    parent_node_uuid, parent_batch_uuid, parent_agent_uuid, parent_chat_uuid, parent_message_uuid,
    is_group_parent, e.node_uuid AS node_uuid, e.node_kind AS node_kind, e.node_slug AS node_slug,
    ifNull(e.node_action_slug, '') AS node_action_slug, e.node_connector_uuid AS node_connector_uuid,
    e.node_integration_slug AS node_integration_slug, e.node_tool_uuid AS node_tool_uuid,
    e.node_agent_uuid AS node_agent_uuid, e.node_release_uuid AS node_release_uuid,
    e.node_batch_uuid AS node_batch_uuid, e.node_run_uuid AS node_run_uuid,
    e.node_message_uuid AS node_message_uuid, e.node_child_index AS node_child_index,
    e.node_wait_until_finished AS node_wait_until_finished, e.next_node_uuid AS node_next_uuid,
    toUInt32(x_idx - 1) AS execution_index, e.status AS execution_status,
    e.error_message AS execution_error_message, e.title AS execution_title, e.icon_url AS execution_icon_url,
    e.credits_used_count AS execution_credits_used_count, e.started_at AS execution_started_at,
    e.updated_at AS execution_updated_at, e.finished_at AS execution_finished_at,
    toUInt64(toUnixTimestamp64Milli(e.updated_at)) AS _version
FROM {runs_table}
ARRAY JOIN executions AS e, arrayEnumerate(executions.node_uuid) AS x_idx
WHERE {where}
"""


SPAN_COLUMNS = [name for name, _ in schema.SPANS.columns]
RECORD_SCALARS = [name for name, _ in schema.RECORDS.columns]


def records_select(runs_source: str, where: str = "1") -> str:
    """The latest run (by ``created_at``, then uuid) per (workspace, workflow, record id) as a record.

    ``created_at`` is the first run's; everything else comes from the latest run. Soft-deleted runs
    count: a record row cannot disappear (the table has no deletion marker), so it stays what the
    runs made it.
    """
    pick = ", ".join(f"r.`executions.{name}` AS `executions.{name}`" for name in EXEC)
    return f"""
SELECT r.workspace_uuid AS workspace_uuid, r.workflow_uuid AS workflow_uuid, r.user_uuid AS user_uuid,
    r.record_id AS id, r.record_title AS title, r.uuid AS run_uuid, r.trace_uuid AS trace_uuid,
    r.release_uuid AS release_uuid, r.nodes AS nodes, r.batch_uuid AS batch_uuid,
    r.temporal_workflow_id AS temporal_workflow_id, r.context_s3_filename AS context_s3_filename,
    r.computed_configs_s3_filename AS computed_configs_s3_filename, r.parent_uuid AS parent_run_uuid,
    r.parent_node_uuid AS parent_node_uuid, r.parent_batch_uuid AS parent_batch_uuid,
    r.parent_agent_uuid AS parent_agent_uuid, r.parent_chat_uuid AS parent_chat_uuid,
    r.parent_message_uuid AS parent_message_uuid, r.is_group_parent AS is_group_parent, r.status AS status,
    r.error_message AS error_message, r.credits_used_count AS credits_used_count,
    k.first_created AS created_at, r.updated_at AS updated_at, r.finished_at AS finished_at, {pick}
FROM ({runs_source}) AS r
INNER JOIN (
    SELECT argMax(uuid, (created_at, uuid)) AS latest, min(created_at) AS first_created
    FROM ({runs_source}) WHERE {where}
    GROUP BY workspace_uuid, workflow_uuid, record_id
) AS k ON r.uuid = k.latest
WHERE {where}
"""


def record_insert_columns() -> list[str]:
    """Column list of ``INSERT INTO records`` matching ``records_select``."""
    return [*RECORD_SCALARS, *(f"executions.{name}" for name in EXEC)]


BATCH_COLUMNS = [name for name, _ in schema.BATCHES.columns]


def batches_select(store: ClickHouseStore, runs_source: str, group_where: str) -> str:
    """Batch rows of the planned batch groups matching ``group_where``, counters from their runs.

    Status: ``error`` for batches that failed before creating runs; ``running`` while any run is
    unfinished; ``success`` otherwise (a successful batch can hold failed runs, as on Cargo).
    ``runsStatus`` turns ``unhealthy`` when more than 20% of the executed runs failed. ``updated_at``
    is the latest change of any of its runs.
    """
    groups = store.table("gen_groups")
    failed = "g.batch_error IS NOT NULL"
    upd = f"if({failed}, g.start_ms + 4200, greatest(g.start_ms, a.max_updated))"
    return f"""
SELECT assumeNotNull(g.batch_uuid) AS uuid, g.workspace_uuid AS workspace_uuid, g.workflow_uuid AS workflow_uuid,
    g.user_uuid AS user_uuid, toNullable(g.release_uuid) AS release_uuid, CAST(NULL, 'Nullable(String)') AS nodes,
    CAST(NULL, 'Nullable(UUID)') AS trace_uuid, concat('batch-', toString(g.batch_uuid)) AS temporal_workflow_id,
    g.data_kind AS data_kind, g.data AS data, CAST(NULL, 'Nullable(UUID)') AS parent_batch_uuid,
    CAST(NULL, 'Nullable(UUID)') AS parent_run_uuid, CAST(NULL, 'Nullable(UUID)') AS parent_node_uuid,
    multiIf({failed}, 'error', a.n_open > 0, 'running', 'success') AS status,
    if({failed} OR a.n_exec = 0, CAST(NULL, 'Nullable(String)'),
       if(a.n_failed * 5 > a.n_exec, 'unhealthy', 'healthy')) AS runs_status,
    g.batch_error AS error_message,
    toUInt64(a.n_runs) AS runs_count, toUInt64(a.n_exec) AS executed_runs_count,
    toUInt64(a.n_failed) AS failed_runs_count, a.credits AS credits_used_count,
    {ts("g.start_ms")} AS created_at,
    {ts(upd)} AS updated_at,
    multiIf({failed}, toNullable({ts("g.start_ms + 4200")}),
            a.n_open > 0, NULL, toNullable({ts("greatest(g.start_ms, a.max_finished)")})) AS finished_at,
    toUInt64({upd}) AS _version
FROM (SELECT * FROM {groups} WHERE kind = 'batch' AND ({group_where})) AS g
LEFT JOIN (
    SELECT batch_uuid, count() AS n_runs, countIf(finished_at IS NOT NULL) AS n_exec,
        countIf(status = 'error') AS n_failed, countIf(finished_at IS NULL) AS n_open,
        sum(credits_used_count) AS credits, max(toUnixTimestamp64Milli(updated_at)) AS max_updated,
        max(toUnixTimestamp64Milli(ifNull(finished_at, created_at))) AS max_finished
    FROM ({runs_source}) WHERE batch_uuid IS NOT NULL GROUP BY batch_uuid
) AS a ON a.batch_uuid = g.batch_uuid
"""


# -- planning --------------------------------------------------------------------------------------


def _key(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()[:8], "big")


def hour_weight(ms: int) -> float:
    """Relative arrival intensity of the hour starting at ``ms``: office hours, quieter weekends."""
    moment = datetime.fromtimestamp(ms // 1000, UTC)
    hour = moment.hour
    base = 1.0 if 8 <= hour < 18 else (0.45 if 6 <= hour < 21 else 0.15)
    return base * (0.35 if moment.weekday() >= 5 else 1.0)


def _stochastic_round(rng: random.Random, value: float) -> int:
    whole = math.floor(value)
    return whole + (1 if rng.random() < value - whole else 0)


@dataclass
class Group:
    """One planned group of runs (a batch, or a stretch of single runs)."""

    workspace_uuid: str
    group_key: int
    kind: str
    workflow_uuid: str
    release_uuid: str
    user_uuid: str | None
    start_ms: int
    spread_ms: int
    cnt: int
    spread_mode: int
    model_kind: int
    model_salt: int
    model_size: int
    record_offset: int
    record_mode: int
    error_pm: int
    cancel_pm: int = 3
    queue_max_ms: int = MAX_QUEUE_MS
    queue_floor_ms: int = 0
    stuck: int = 0
    epoch: int = 0
    first_index: int = 0
    batch_uuid: str | None = None
    data_kind: str = ""
    data: str = ""
    batch_error: str | None = None

    def row(self) -> dict[str, Any]:
        """The ``gen_groups`` row."""
        return {name: getattr(self, name) for name in GROUP_COLUMNS}


class Planner:
    """Plans the groups of one workspace for a time window."""

    def __init__(self, catalog: Catalog, sizes: Sizes, *, seed: int, epoch: int, tag: str) -> None:
        self.catalog = catalog
        self.sizes = sizes
        self.seed = seed
        self.epoch = epoch
        self.tag = tag
        self.serial = 0
        self.groups: list[Group] = []

    # base rates -----------------------------------------------------------------------------------

    def flow_rates(self, regular_runs: int, window_start: int, window_end: int) -> dict[str, float]:
        """Runs per unit of hour weight for each workflow, so the window holds ``regular_runs``."""
        total_weight = sum(hour_weight(h) for h in range(window_start, window_end, HOUR_MS))
        flows = self.catalog.flows
        counts: dict[str, int] = {}
        for flow in flows:
            counts[flow.pattern] = counts.get(flow.pattern, 0) + 1
        share_sum = sum(PATTERN_SHARE[p] for p in counts)
        rates: dict[str, float] = {}
        for flow in flows:
            share = PATTERN_SHARE[flow.pattern] / share_sum / counts[flow.pattern]
            rates[flow.workflow_uuid] = share * regular_runs / max(total_weight, 1e-9)
        return rates

    # group constructors ---------------------------------------------------------------------------

    def _model(self, flow_model: str) -> tuple[int, int, int]:
        model = self.catalog.models[flow_model]
        return (0 if flow_model == "companies" else 1), model.salt, model.size

    def add(
        self,
        flow: Flow,
        *,
        kind: str,
        start_ms: int,
        spread_ms: int,
        count: int,
        user: bool,
        data: dict[str, Any] | None = None,
        queue_max_ms: int = MAX_QUEUE_MS,
        queue_floor_ms: int = 0,
        stuck: bool = False,
        batch_error: str | None = None,
        error_pm: int | None = None,
    ) -> Group | None:
        """Plan one group (``kind`` is ``batch`` or ``stream``); nothing for empty streams."""
        if count <= 0 and batch_error is None:
            return None
        self.serial += 1
        key = _key("group", self.seed, self.catalog.workspace.uuid, self.tag, self.serial, start_ms)
        model_kind, salt, size = self._model(flow.model)
        release = flow.release_at(start_ms)
        rng = random.Random(key)
        group = Group(
            workspace_uuid=self.catalog.workspace.uuid,
            group_key=key,
            kind=kind,
            workflow_uuid=flow.workflow_uuid,
            release_uuid=release.uuid,
            user_uuid=self.catalog.workspace.user_uuid if user else None,
            start_ms=start_ms,
            spread_ms=max(spread_ms, 0),
            cnt=max(count, 0),
            spread_mode=0 if kind == "batch" else 1,
            model_kind=model_kind,
            model_salt=salt,
            model_size=size,
            record_offset=rng.randrange(size),
            record_mode=0 if kind == "batch" else 1,
            error_pm=flow.error_pm if error_pm is None else error_pm,
            queue_max_ms=queue_max_ms,
            queue_floor_ms=queue_floor_ms,
            stuck=1 if stuck else 0,
            epoch=self.epoch,
        )
        if kind == "batch":
            group.batch_uuid = seeded_uuid("batch", self.seed, self.catalog.workspace.uuid, key)
            payload = data if data is not None else self._schedule_data(flow, count, key)
            group.data_kind = str(payload["kind"])
            group.data = orjson.dumps(payload).decode()
            group.batch_error = batch_error
        self.groups.append(group)
        return group

    def _schedule_data(self, flow: Flow, count: int, key: int) -> dict[str, Any]:
        model = self.catalog.models[flow.model]
        return {
            "kind": "schedule",
            "modelUuid": model.uuid,
            "segmentUuid": flow.segment_uuid,
            "changeKinds": ["added", "updated"],
            "changeUuid": seeded_uuid("change", self.seed, key),
            "totalRecordsCount": count,
            "addedRecordsCount": count,
            "updatedRecordsCount": 0,
            "removedRecordsCount": 0,
            "unchangedRecordsCount": 0,
        }

    def segment_data(self, flow: Flow) -> dict[str, Any]:
        """BatchData of a manual enrollment of a saved segment on the flow's model."""
        model = self.catalog.models[flow.model]
        segment = next(
            (s for s in self.catalog.segments if s.model_uuid == model.uuid and not s.from_play),
            next(s for s in self.catalog.segments if s.model_uuid == model.uuid),
        )
        return {"kind": "segment", "segmentUuid": segment.uuid}

    # regular traffic ------------------------------------------------------------------------------

    def plan_regular(self, rates: dict[str, float], t0: int, t1: int) -> None:
        """Scheduled batches, realtime runs and tool calls with creation times in ``(t0, t1]``."""
        for flow in self.catalog.flows:
            rate = rates.get(flow.workflow_uuid, 0.0)
            end = t1 if flow.disabled_ms is None else min(t1, flow.disabled_ms)
            if rate <= 0 or end <= t0:
                continue
            rng = random.Random(f"plan/{self.seed}/{self.catalog.workspace.uuid}/{flow.workflow_uuid}/{t0}/{t1}")
            if flow.pattern in ("hourly", "daily"):
                self._plan_cron(flow, rng, rate, t0, end)
            else:
                self._plan_stream(flow, rng, rate, t0, end)

    def _plan_cron(self, flow: Flow, rng: random.Random, rate: float, t0: int, t1: int) -> None:
        step = HOUR_MS if flow.pattern == "hourly" else DAY_MS
        offset = 0 if flow.pattern == "hourly" else 6 * HOUR_MS
        first = ((t0 - offset) // step + 1) * step + offset
        for fire in range(first, t1 + 1, step):
            span = range(fire - step, fire, HOUR_MS)
            expected = rate * sum(hour_weight(h) for h in span)
            count = _stochastic_round(rng, expected)
            created = min(fire + rng.randrange(800, 20_000), t1)
            spread = min(count * rng.randrange(20, 90), 60_000, t1 - created)
            self.add(flow, kind="batch", start_ms=created, spread_ms=spread, count=count, user=False)

    def _plan_stream(self, flow: Flow, rng: random.Random, rate: float, t0: int, t1: int) -> None:
        slot = t0 // HOUR_MS * HOUR_MS
        while slot < t1:
            lo, hi = max(t0, slot), min(t1, slot + HOUR_MS)
            if hi > lo:
                expected = rate * hour_weight(slot) * (hi - lo) / HOUR_MS
                count = _stochastic_round(rng, expected)
                self.add(flow, kind="stream", start_ms=lo, spread_ms=hi - lo, count=count, user=flow.pattern == "api")
            slot += HOUR_MS


def flow_by_key(catalog: Catalog, *keys: str) -> Flow:
    """The first flow of ``catalog`` whose template key is one of ``keys`` (else the first play)."""
    for key in keys:
        for flow in catalog.flows:
            if flow.template.key == key:
                return flow
    return catalog.plays[0]


def expected_spans_per_run(release: Release, error_pm: int) -> float:
    """Mean executions per finished run of ``release`` (branch taken 35% of the time; errors cut short)."""
    path_a, path_b = release.paths()
    mean = 0.65 * len(path_a) + 0.35 * len(path_b) if release.branch_index else float(len(path_a))
    return mean * (1 - error_pm / 1000 * 0.5)


def plan_generation(catalog: Catalog, sizes: Sizes, *, seed: int, now_ms: int) -> list[Group]:
    """Every group of the initial data of one workspace (epoch 0), all created before ``now_ms``."""
    planner = Planner(catalog, sizes, seed=seed, epoch=0, tag="gen")
    rng = random.Random(f"generation/{seed}/{catalog.workspace.uuid}")
    window_start = (now_ms - sizes.days * DAY_MS) // HOUR_MS * HOUR_MS
    companies_flow = flow_by_key(catalog, "enrich-new-companies")
    contacts_flow = flow_by_key(catalog, "find-emails")

    # One-second enrollment bursts (a segment enrolled by hand): each holds > 10,000 runs in one second.
    offsets = rng.sample(range(2, max(sizes.days - 2, 3)), min(len(sizes.bursts), max(sizes.days - 4, 1)))
    for number, (burst, day_offset) in enumerate(zip(sizes.bursts, offsets, strict=False)):
        flow = companies_flow if number % 2 == 0 else contacts_flow
        day = (now_ms - day_offset * DAY_MS) // DAY_MS * DAY_MS
        start = day + rng.randrange(9 * 3600, 17 * 3600) * 1000
        planner.add(
            flow,
            kind="batch",
            start_ms=start,
            spread_ms=950,
            count=burst,
            user=True,
            data=planner.segment_data(flow),
            queue_max_ms=4_000,
        )

    # The backfill day: one UTC day holding more spans than one query may scan.
    if sizes.backfill_spans > 0:
        flow = flow_by_key(catalog, "route-new-leads", "find-emails")
        day = (now_ms - 10 * DAY_MS) // DAY_MS * DAY_MS
        release = flow.release_at(day)
        runs = math.ceil(sizes.backfill_spans / (expected_spans_per_run(release, flow.error_pm) * 0.97))
        n_batches = max(1, math.ceil(runs / 10_000))
        per_batch = math.ceil(runs / n_batches)
        slot = (22 * HOUR_MS) // n_batches
        for number in range(n_batches):
            start = day + 15 * 60_000 + number * slot + rng.randrange(0, 60_000)
            model = catalog.models[flow.model]
            data = {"kind": "filter", "modelUuid": model.uuid, "filter": MATCH_ALL, "limit": per_batch}
            planner.add(
                flow,
                kind="batch",
                start_ms=start,
                spread_ms=min(per_batch * 100, 20 * 60_000),
                count=per_batch,
                user=True,
                data=data,
                queue_max_ms=60_000,
            )

    # Regular traffic: cron batches, realtime runs, tool calls, all over the window.
    regular = max(sizes.runs - sum(sizes.bursts) - sizes.recent_runs - sizes.stuck_runs, 0)
    rates = planner.flow_rates(regular, window_start, now_ms)
    planner.plan_regular(rates, window_start, now_ms)

    # In-flight work: a batch enrolled a few seconds ago (its runs are pending or running at now).
    recent_flow = flow_by_key(catalog, "route-new-leads", "enrich-new-companies")
    planner.add(
        recent_flow,
        kind="batch",
        start_ms=now_ms - 45_000,
        spread_ms=35_000,
        count=sizes.recent_runs,
        user=True,
        data=planner.segment_data(recent_flow),
    )

    # Runs stuck in pending for more than eight days: they never finish.
    stuck_flow = flow_by_key(catalog, "find-emails")
    planner.add(
        stuck_flow,
        kind="stream",
        start_ms=now_ms - 11 * DAY_MS,
        spread_ms=2 * DAY_MS,
        count=sizes.stuck_runs,
        user=False,
        stuck=True,
    )

    # Batches that failed before creating any run.
    for _ in range(sizes.error_batches):
        flow = rng.choice(catalog.plays)
        start = now_ms - rng.randrange(2 * DAY_MS, (sizes.days - 1) * DAY_MS)
        planner.add(
            flow,
            kind="batch",
            start_ms=start,
            spread_ms=0,
            count=0,
            user=True,
            data=planner.segment_data(flow),
            batch_error="Failed to fetch the segment's records: the warehouse query timed out",
        )
    return planner.groups


def path_rows(catalogs: Sequence[Catalog]) -> list[dict[str, Any]]:
    """``gen_paths`` rows: for every release, its nodes in the order of each path through it.

    Variant 0 follows the branch's first child (condition matched, every node), variant 1 its second
    (one node skipped). A linear release has two identical variants. Per position: what an execution
    of that node copies, its cost and duration bounds, its possible errors, the child index followed
    and the next node (both null on the last node), and the positions where a run may fail (its
    non-native nodes).
    """
    rows: list[dict[str, Any]] = []
    for catalog in catalogs:
        for flow in catalog.flows:
            for release in flow.releases:
                for variant, path in enumerate(release.paths()):
                    nodes = [release.nodes[p - 1] for p in path]
                    fails = [j for j, n in enumerate(nodes, 1) if n.template.kind != "native"] or [len(nodes)]
                    skipped = variant == 1 and len(path) < len(release.nodes)
                    rows.append(
                        {
                            "rel_uuid": release.uuid,
                            "variant": variant,
                            "p_len": len(nodes),
                            "p_uuid": [n.uuid for n in nodes],
                            "p_slug": [n.template.slug for n in nodes],
                            "p_kind": [n.template.kind for n in nodes],
                            "p_action": [
                                n.template.action if n.template.kind in ("native", "connector") else None for n in nodes
                            ],
                            "p_connector": [n.connector_uuid for n in nodes],
                            "p_integration": [n.integration for n in nodes],
                            "p_tool": [n.tool_uuid for n in nodes],
                            "p_agent": [n.agent_uuid for n in nodes],
                            "p_release": [n.tool_release_uuid for n in nodes],
                            "p_wait": [n.template.kind in ("tool", "agent") for n in nodes],
                            "p_icon": [n.icon_url for n in nodes],
                            "p_title": [n.template.title for n in nodes],
                            "p_cost": [n.template.cost for n in nodes],
                            "p_is_agent": [1 if n.template.kind == "agent" else 0 for n in nodes],
                            "p_dmin": [n.template.dur[0] for n in nodes],
                            "p_dmax": [min(n.template.dur[1], MAX_NODE_MS) for n in nodes],
                            "p_errors": [list(n.template.errors) for n in nodes],
                            "p_child": [
                                None if j == len(nodes) - 1 else (1 if skipped and n.template.slug == "branch" else 0)
                                for j, n in enumerate(nodes)
                            ],
                            "p_next": [nodes[j + 1].uuid if j + 1 < len(nodes) else None for j in range(len(nodes))],
                            "p_fail": fails,
                        }
                    )
    return rows


# -- model tables ----------------------------------------------------------------------------------


def model_table_ddl(db: str, table: str, slug: str) -> str:
    """DDL of a model's record table."""
    cols = ", ".join(f"`{name}` {ctype}" for name, ctype, _, _ in MODEL_COLUMNS[slug])
    return f"CREATE TABLE IF NOT EXISTS {db}.{table} ({cols}) ENGINE = MergeTree ORDER BY _id"


def model_table_select(catalog: Catalog, slug: str) -> str:
    """SELECT generating every record of the model ``slug`` from ``numbers(size)``."""
    model = catalog.models[slug]
    s = str(model.salt)
    now = catalog.now_ms
    emitted = ts(f"{now} - 3600000 - toInt64(cityHash64({s}, number, 20) % {30 * DAY_MS})")
    if slug == "companies":
        r = f"(cityHash64({s}, number, 21) % 1000)"
        employees = f"toInt64(intDiv({r} * {r} * {r}, 20000) + 2)"
        tags = _array(TAGS)
        return f"""
SELECT concat('cmp_', leftPad(toString(number), 7, '0')) AS _id, {company_name_sql(s, "number")} AS _title,
    {emitted} AS _emitted_at, _title AS name, {company_domain_sql(s, "number")} AS domain,
    {_array(INDUSTRIES)}[1 + cityHash64({s}, number, 22) % {len(INDUSTRIES)}] AS industry,
    {employees} AS employees,
    toFloat64(employees * (60000 + cityHash64({s}, number, 23) % 190000)) AS annual_revenue,
    {_array(COUNTRIES)}[1 + cityHash64({s}, number, 24) % {len(COUNTRIES)}] AS country,
    toDate('1950-01-01') + toIntervalDay(cityHash64({s}, number, 25) % 27000) AS founded_on,
    cityHash64({s}, number, 26) % 100 < 18 AS is_customer,
    arrayFilter((t, j) -> bitAnd(bitShiftRight(cityHash64({s}, number, 27), j * 3), 7) = 0, {tags},
                range({len(TAGS)})) AS tags,
    concat('{{"source":"', {_array(SOURCES)}[1 + cityHash64({s}, number, 28) % {len(SOURCES)}],
           '","lifecycle_stage":"', {_array(STAGES)}[1 + cityHash64({s}, number, 29) % {len(STAGES)}],
           '","owner_id":', toString(cityHash64({s}, number, 30) % 40 + 1), '}}') AS metadata
FROM numbers({model.size})
"""
    companies = catalog.models["companies"]
    kc = f"(cityHash64({s}, number, 3) % {companies.size})"
    return f"""
SELECT concat('ctc_', leftPad(toString(number), 7, '0')) AS _id, {contact_name_sql(s, "number")} AS _title,
    {emitted} AS _emitted_at, {contact_first_sql(s, "number")} AS first_name,
    {contact_last_sql(s, "number")} AS last_name,
    {company_domain_sql(str(companies.salt), kc)} AS company_domain,
    concat(lower(first_name), '.', lower(last_name), toString(number), '@', company_domain) AS email,
    {_array(JOB_TITLES)}[1 + cityHash64({s}, number, 31) % {len(JOB_TITLES)}] AS title,
    {_array(SENIORITIES)}[1 + cityHash64({s}, number, 32) % {len(SENIORITIES)}] AS seniority,
    {ts(f"{now} - 60000 - toInt64(cityHash64({s}, number, 33) % {60 * DAY_MS})")} AS last_activity_at,
    cityHash64({s}, number, 34) % 100 < 62 AS is_subscribed,
    (cityHash64({s}, number, 35) % 10001) / 100 AS score
FROM numbers({model.size})
"""


def write_model_tables(store: ClickHouseStore, catalog: Catalog) -> int:
    """Create and fill both model tables of a workspace; returns the number of records written."""
    written = 0
    for slug in ("companies", "contacts"):
        model = catalog.models[slug]
        store.execute(model_table_ddl(store.database, model.table, slug))
        names = ", ".join(f"`{name}`" for name, _, _, _ in MODEL_COLUMNS[slug])
        select = model_table_select(catalog, slug)
        store.execute(f"INSERT INTO {store.table(model.table)} ({names}) SELECT {names} FROM ({select})")
        written += model.size
    return written


# -- derived entity facts --------------------------------------------------------------------------


def ch_to_iso(text: str | None) -> str | None:
    """ClickHouse ``2026-07-22 00:20:41.999`` as ``2026-07-22T00:20:41.999Z``."""
    if text is None:
        return None
    date, _, clock = text.partition(" ")
    if "." not in clock:
        clock += ".000"
    return f"{date}T{clock}Z"


def last_batches(store: ClickHouseStore, workspace_uuid: str) -> dict[str, dict[str, Any] | None]:
    """``Workflow.lastBatch`` per workflow uuid, from the current batch rows."""
    rows = store.rows(
        f"""
SELECT toString(workflow_uuid) AS wf, toString(argMax(uuid, (created_at, uuid))) AS b_uuid,
    argMax(status, (created_at, uuid)) AS b_status, argMax(runs_status, (created_at, uuid)) AS b_runs_status,
    argMax(error_message, (created_at, uuid)) AS b_error, toString(max(created_at)) AS b_created,
    toString(argMax(finished_at, (created_at, uuid))) AS b_finished
FROM {store.table("batches")} FINAL WHERE workspace_uuid = toUUID('{workspace_uuid}')
GROUP BY workflow_uuid"""
    )
    return {
        str(row["wf"]): {
            "uuid": row["b_uuid"],
            "status": row["b_status"],
            "runsStatus": row["b_runs_status"],
            "errorMessage": row["b_error"],
            "createdAt": ch_to_iso(row["b_created"]),
            "finishedAt": ch_to_iso(row["b_finished"]),
        }
        for row in rows
    }


def derive(store: ClickHouseStore, catalog: Catalog) -> Derived:
    """Facts the entity bodies repeat: segment counts, last emission, last batches."""
    derived = Derived()
    for model in catalog.models.values():
        value = store.scalar(f"SELECT toUnixTimestamp64Milli(max(_emitted_at)) FROM {store.table(model.table)}")
        if value is not None and int(value) > 0:
            derived.last_emitted_ms[model.uuid] = int(value)
    by_uuid = {m.uuid: m for m in catalog.models.values()}
    for segment in catalog.segments:
        model = by_uuid[segment.model_uuid]
        count = int(store.scalar(f"SELECT count() FROM {store.table(model.table)} WHERE {segment.template.sql}") or 0)
        if segment.template.limit is not None:
            count = min(count, segment.template.limit)
        derived.segment_counts[segment.uuid] = count
    derived.last_batches = dict(last_batches(store, catalog.workspace.uuid))
    return derived


def entity_row(entity: Entity) -> dict[str, Any]:
    """The ``entities`` row of one entity (body as compact JSON text)."""
    return {
        "workspace_uuid": entity.workspace_uuid,
        "kind": entity.kind,
        "uuid": entity.uuid,
        "parent_uuid": entity.parent_uuid,
        "created_at": ch_time(entity.created_ms),
        "body": orjson.dumps(entity.body).decode(),
    }


def write_entities(store: ClickHouseStore, catalog: Catalog, derived: Derived) -> int:
    """Write every entity of the workspace (a newer write of the same uuid replaces the older)."""
    return insert_json_rows(store, store.table("entities"), (entity_row(e) for e in entities(catalog, derived)))


def refresh_workflows(store: ClickHouseStore, catalog: Catalog) -> int:
    """Rewrite the workflow bodies whose ``lastBatch`` changed; returns how many were rewritten."""
    batches = last_batches(store, catalog.workspace.uuid)
    rows = store.rows(
        f"SELECT toString(uuid) AS uuid, body FROM {store.table('entities')} FINAL "
        f"WHERE workspace_uuid = toUUID('{catalog.workspace.uuid}') AND kind = 'workflow'"
    )
    changed: list[dict[str, Any]] = []
    created = {f.workflow_uuid: f.created_ms for f in catalog.flows}
    for row in rows:
        body = orjson.loads(row["body"])
        fresh = batches.get(str(row["uuid"]))
        if body.get("lastBatch") != fresh:
            body["lastBatch"] = fresh
            changed.append(
                entity_row(
                    Entity(catalog.workspace.uuid, "workflow", str(row["uuid"]), None, created[row["uuid"]], body)
                )
            )
    return insert_json_rows(store, store.table("entities"), changed)


# -- generation ------------------------------------------------------------------------------------


def build_catalogs(workspaces: Sequence[Workspace], *, seed: int, spec: ScaleSpec, now_ms: int) -> list[Catalog]:
    """The catalogue of every workspace (sizes per ``workspace_sizes``)."""
    out = []
    for ws in workspaces:
        sizes = workspace_sizes(spec, ws.index)
        out.append(build_catalog(ws, seed, now_ms, companies=sizes.companies, contacts=sizes.contacts))
    return out


def count_rows(store: ClickHouseStore, table: str, where: str = "1") -> int:
    """Rows of a physical table (all versions)."""
    return int(store.scalar(f"SELECT count() FROM {store.table(table)} WHERE {where}") or 0)


def generate(  # noqa: PLR0915 (the tables in the order they reference each other)
    store: ClickHouseStore, workspaces: list[Workspace], *, seed: int, scale: str, now: datetime
) -> GenerationReport:
    """Fill an empty store with the seeded data of ``workspaces`` at ``scale``, all before ``now``.

    The first workspace gets the full scale, the others about a tenth. Raises ValueError for an
    unknown scale or a store that already holds generated data.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r} (choose from {', '.join(SCALES)})")
    spec = SCALES[scale]
    now_ms = to_ms(now)
    report = GenerationReport(scale=scale, seed=seed, now=iso(now_ms))
    started = time.perf_counter()
    mark = started

    def step(name: str) -> None:
        nonlocal mark
        moment = time.perf_counter()
        report.seconds[name] = round(moment - mark, 3)
        mark = moment

    ensure_aux_tables(store)
    if count_rows(store, "gen_groups") > 0 or count_rows(store, "runs") > 0:
        raise ValueError(f"store {store.database} already holds generated data")
    for ws in workspaces:
        store.ensure_workspace(ws.uuid)
    catalogs = build_catalogs(workspaces, seed=seed, spec=spec, now_ms=now_ms)
    step("catalog")

    records_written = 0
    for catalog in catalogs:
        records_written += write_model_tables(store, catalog)
    report.rows["model_records"] = records_written
    step("models")

    insert_json_rows(store, store.table("gen_paths"), path_rows(catalogs))
    groups: list[Group] = []
    for catalog in catalogs:
        sizes = workspace_sizes(spec, catalog.workspace.index)
        groups.extend(plan_generation(catalog, sizes, seed=seed, now_ms=now_ms))
    total = 0
    for group in groups:
        group.first_index = total
        total += group.cnt
    report.rows["groups"] = insert_json_rows(store, store.table("gen_groups"), (g.row() for g in groups))
    step("plan")

    if total > 0:
        select = runs_select(
            store, seed=seed, at_ms=observed_at(now_ms), source=generation_source(store, total), with_deletes=True
        )
        insert_runs(store, store.table("runs"), select)
    report.rows["runs"] = count_rows(store, "runs")
    step("runs")

    span_cols = ", ".join(f"`{c}`" for c in SPAN_COLUMNS)
    store.execute(f"INSERT INTO {store.table('spans')} ({span_cols}) {spans_select(store.table('runs'))}{BULK}")
    report.rows["spans"] = count_rows(store, "spans")
    step("spans")

    rec_cols = ", ".join(f"`{c}`" for c in record_insert_columns())
    runs_all = f"SELECT * FROM {store.table('runs')}"
    store.execute(f"INSERT INTO {store.table('records')} ({rec_cols}) {records_select(runs_all)}{BULK}")
    report.rows["records"] = count_rows(store, "records")
    step("records")

    batch_cols = ", ".join(f"`{c}`" for c in BATCH_COLUMNS)
    batches = batches_select(store, runs_all, f"epoch = 0 AND start_ms < {now_ms}")
    store.execute(f"INSERT INTO {store.table('batches')} ({batch_cols}) {batches}{BULK}")
    report.rows["batches"] = count_rows(store, "batches")
    step("batches")

    entity_count = 0
    for catalog in catalogs:
        entity_count += write_entities(store, catalog, derive(store, catalog))
    report.rows["entities"] = entity_count
    set_meta(
        store,
        {
            "now": iso(now_ms),
            "generated_now": iso(now_ms),
            "seed": str(seed),
            "scale": scale,
            "epoch": "0",
            "workspaces": str(len(workspaces)),
            "workspace_uuids": ",".join(ws.uuid for ws in workspaces),
        },
    )
    step("entities")
    report.total_seconds = round(time.perf_counter() - started, 3)
    return report
