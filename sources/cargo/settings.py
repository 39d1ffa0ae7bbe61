"""Constants of the Cargo source: the API's documented caps and the defaults derived from them.

Everything numeric that the planner, the fetcher or the client relies on lives here, so that a cap
measured differently on the live API is a one-line change. Caps come from REFERENCE.md section 4.3.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

# -- the API ---------------------------------------------------------------------------------------

DEFAULT_BASE_URL: Final = "https://api.getcargo.io"
"""Production host; the client appends ``/v1`` itself (REFERENCE.md 1.1)."""

API_VERSION_PREFIX: Final = "/v1"
QUERY_ENDPOINT: Final = "orchestration/query"
"""``POST {base}/v1/orchestration/query`` with ``{"query": sql}``."""

ORIGIN: Final = "cargo-elt"
"""Sent as ``x-cargo-origin`` so Cargo can tell this connector's traffic apart."""

API_TOKEN_SETTING: Final = "sources.cargo.api_token"
API_TOKEN_ENV: Final = "SOURCES__CARGO__API_TOKEN"
"""Where dlt looks for the token; named in authentication errors so the user knows what to fix."""

# -- server-side caps of orchestration/query (REFERENCE.md 4.3) -------------------------------------

MAX_RESULT_ROWS: Final = 10_000
MAX_ROWS_TO_READ: Final = 10_000_000
MAX_EXECUTION_TIME_S: Final = 30
MAX_COLUMNS_TO_READ: Final = 50

# -- planning and paging ----------------------------------------------------------------------------

PAGE_LIMIT: Final = MAX_RESULT_ROWS
"""``LIMIT`` of a data page. ClickHouse refuses only results *above* ``max_result_rows``."""

MIN_PAGE_LIMIT: Final = 500
"""Smallest page the fetcher shrinks to after a result-cap error before giving up."""

DEFAULT_WINDOW_TARGET_ROWS: Final = 39_500
"""Rows a planned window should hold at most: four pages, read one after the other by keyset.

A window costs ``rows // 10_000 + 1`` page queries, so the only waste is its last page's empty part.
Windows of one page (9,500, the first design) waste that part on every page and need finer
histograms to pack well; measured on the emulator's 5.1 M bursty spans (offline replay of the
planner, ``docs/PERFORMANCE.md``): one-page windows gave 1.14-1.17x the ideal page count with 11-15
refinement histograms, four-page windows 1.05x with 4. The 500 rows under 40,000 leave room for
rows that arrive between planning and reading; windows stay far under the scan cap, and a large
range still makes dozens of windows for the parallel readers.
"""

DEFAULT_WINDOW_SCAN_ROWS: Final = 8_000_000
"""Rows a window may span before filtering (changed-rows reads): under the 10 M scan cap with room
for ClickHouse reading whole granules at both ends of a range."""

HISTOGRAM_MAX_BUCKETS: Final = 9_000
"""Most buckets one histogram query may return: under the 10,000-row result cap with room for the
bucket epoch alignment adds at each end. The finer the first histogram, the fewer refinements."""

HISTOGRAM_BUCKET_FRACTION: Final = 16
"""Planning refines buckets until each holds at most ``target_rows / 16`` rows, which bounds the
packing loss (a window closes early by less than one bucket) to about 6 %."""

HISTOGRAM_MAX_REFINE_DEPTH: Final = 1
"""How many times a dense stretch is re-histogrammed at a finer step: bounds planning queries."""

HISTOGRAM_REFINE_PAGES_PER_QUERY: Final = 100
"""A plan may spend one refinement histogram per this many expected pages (``fetch.refinement_budget``).

A refinement costs a query and saves a page or a few, and only long plans have dense stretches worth
it. ``python -m bench.planner_replay --scale big`` (each histogram a real query): spans, 511 ideal
pages, planned into 547 pages with no refinement, 542 with one, 535 with two and 536 with three or
more (nothing dense is left to refine); runs 115 -> 113 and records 109 -> 106 with one. This rule
gives spans 5, runs and records 1: 1.046x the ideal pages for 12 planning queries (1.6 %), where a
floor of 4 refinements per table had cost 27 at that scale."""

EXTRACT_FILE_MAX_ROWS: Final = 1_000_000
"""Rows per extract file that ``memory.bound_extract_files`` gives dlt by default: the parquet
writer's metadata grows with the row groups of the open file (about 37 KB per page of spans)."""

MIN_WINDOW: Final = timedelta(milliseconds=1)
"""The time columns are ``DateTime64(3)``: a window narrower than one millisecond cannot be split."""

# -- incremental defaults (used by the resources) --------------------------------------------------

DEFAULT_MAX_LOOKBACK: Final = timedelta(days=7)
"""Changed rows are looked for at most this far back, so runs stuck in ``pending`` stay cheap."""

DEFAULT_OVERLAP: Final = timedelta(minutes=5)
"""Re-read behind the frontier and ``max_updated``: ClickHouse inserts can become visible late."""

DEFAULT_SETTLE: Final = timedelta(minutes=2)
"""New rows are read up to ``now - settle``, not ``now``: the newest seconds are still arriving."""

DEFAULT_CONCURRENCY: Final = 4
"""Window fetches in flight at once; also the size of the HTTP connection pool."""

DEFAULT_LOCK_WAIT_SECONDS: Final = 300.0
"""How long a second sync waits for the first before giving up (``--lock-wait``,
``sources.cargo.lock_wait_seconds``): long enough for an hourly schedule to ride out a slow
incremental sync, short enough that a stuck one is reported within the hour. 0 refuses at once."""

# -- HTTP transport ---------------------------------------------------------------------------------

CONNECT_TIMEOUT_S: Final = 10.0
READ_TIMEOUT_S: Final = 60.0
"""Above the server's 30 s query cap, so a slow query ends with the server's own 159 error rather
than a client timeout that would hide which query was too slow."""

WRITE_TIMEOUT_S: Final = 30.0
POOL_TIMEOUT_S: Final = 60.0

RETRY_MAX_ATTEMPTS: Final = 8
RETRY_MAX_TOTAL_S: Final = 300.0
"""Budget of one query, sleeping included; past it the client raises ``CargoRetryBudgetExceeded``."""

RETRY_INITIAL_BACKOFF_S: Final = 1.0
RETRY_MAX_BACKOFF_S: Final = 60.0
RETRY_JITTER_S: Final = 1.0

RETRYABLE_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
"""Throttling, gateway and proxy failures (52x: CDN edge errors). A ClickHouse ``Code:`` in the body
takes precedence: a 500 carrying code 158 is a cap, not a hiccup."""

RETRYABLE_CLICKHOUSE_CODES: Final = frozenset(
    {
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        279,  # ALL_CONNECTION_TRIES_FAILED
        439,  # CANNOT_SCHEDULE_TASK
    }
)
"""ClickHouse errors about the server's load, not the query: the same query can succeed later."""

ERROR_QUERY_PREVIEW_CHARS: Final = 2_000
"""How much of a failed query an error message repeats."""
