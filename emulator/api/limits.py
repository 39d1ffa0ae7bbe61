"""Every page size, cap and lifetime the emulator's REST endpoints enforce, in one place.

Most of these are not published by Cargo (REFERENCE.md section 8 and open question 6); the values
below are our inference ([I]) unless marked [D]. Keeping them here means a correction, once someone
observes the live API, is a one-line change, and tests can import the same numbers they assert.
"""

from __future__ import annotations

RUNS_LIST_DEFAULT_LIMIT = 20
"""[I] Page size of ``orchestration/runs/list`` when ``limit`` is omitted."""

RUNS_LIST_MAX_LIMIT = 100
"""[D-indirect] Cargo's docs call 100 rows "its page"; a larger ``limit`` is refused (400 ``too_big``)."""

RECORDS_LIST_DEFAULT_LIMIT = 20
"""[I] Page size of ``orchestration/records/list`` when ``limit`` is omitted."""

RECORDS_LIST_MAX_LIMIT = 100
"""[I] Largest ``limit`` of ``orchestration/records/list`` (same as runs)."""

SPANS_LIST_DEFAULT_LIMIT = 20
"""[I] Page size of ``orchestration/spans/list`` when ``limit`` is omitted."""

SPANS_LIST_MAX_LIMIT = 100
"""[I] "``traceUuid`` raises the maximum to 1000" implies a lower normal maximum; 100 is our guess."""

SPANS_LIST_TRACE_MAX_LIMIT = 1000
"""[D] Largest ``limit`` of ``orchestration/spans/list`` when ``traceUuid`` is given."""

BATCHES_LIST_DEFAULT_LIMIT = 20
"""[I] Page size of ``orchestration/batches/list`` when ``limit`` is omitted."""

BATCHES_LIST_MAX_LIMIT = 100
"""[I] Largest ``limit`` of ``orchestration/batches/list``."""

RELEASES_LIST_DEFAULT_LIMIT = 20
"""[I] Page size of ``orchestration/releases/list`` when ``limit`` is omitted."""

RELEASES_LIST_MAX_LIMIT = 100
"""[I] Largest ``limit`` of ``orchestration/releases/list``."""

SEGMENT_FETCH_DEFAULT_LIMIT = 100
"""[I] Page size (``fetchingLimit``) of ``segmentation/segments/fetch`` when omitted."""

SEGMENT_FETCH_MAX_LIMIT = 1000
"""[I] Largest ``fetchingLimit`` of ``segmentation/segments/fetch``."""

DOWNLOAD_OUTPUTS_MAX_ROWS = 10_000
"""[D] ``runs/download-outputs`` exports at most this many runs, else 400 ``tooManyRuns``."""

SIGNED_URL_TTL_S = 900
"""[I] Lifetime of a signed download URL when the emulator state does not set ``signed_url_ttl_s``."""

EXPORT_PAGE_ROWS = 1000
"""Rows read from ClickHouse per step while streaming an export file (memory stays bounded)."""

HIDE_DELETED_RUNS = True
"""[I] Run lists, counts and exports leave out soft-deleted runs (``deleted_at`` set); ``runs/{uuid}``
still answers for them (with ``deletedAt``), and SQL still sees them."""

SEGMENT_DOWNLOAD_SHARD_ROWS = 250_000
"""[I] Rows per file of ``segmentation/segments/download`` (``{urls: [...]}``, one URL per shard). Cargo's
warehouse exports return several files for large results; a client must read every URL."""

SEGMENT_EXPORT_PAGE_ROWS = 5000
"""Rows read per keyset step while streaming a segment shard in ``_id`` order (the table's sort key, so
each step reads only its own rows); memory stays bounded by one page."""

SEGMENT_EXPORT_SORTED_PAGE_ROWS = 25_000
"""Rows per keyset step when the segment has a ``sort``: each step then scans the whole matching set
(about a second for a million rows), so fewer, larger pages; still a bounded few MB of CSV text."""
