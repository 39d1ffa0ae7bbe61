"""Giving freed memory back to the system, and an allocator setting for processes we own.

A backfill reads pages of several megabytes on a few threads at once. glibc keeps what those
threads freed in per-thread arenas, and arrow's allocator keeps its own pools, so the process's
resident size after an extract stays near its peak, and the load that follows (DuckDB, in the same
process) adds to it. Measured on 5.1 M spans (``docs/PERFORMANCE.md``): 397 MB resident after the
extract, 280 MB after ``release_free_memory``; with ``tune_allocator`` the extract peaked at 435 MB
instead of 595 MB.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

import dlt
import pyarrow as pa

from .settings import EXTRACT_FILE_MAX_ROWS

logger = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 128 * 1024
"""Allocations above this get their own mapping, returned to the system when freed (glibc's
default starts here too, then raises itself up to 32 MB after the first large free)."""

ARENA_MAX = 2
"""Malloc arenas shared by the reader threads (glibc's default is 8 per core)."""


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """glibc, looked up once (``find_library`` runs ``ldconfig``), or ``None`` elsewhere."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def release_free_memory() -> None:
    """Return memory that is free but still held (arrow's pool, glibc's heaps) to the system."""
    pa.default_memory_pool().release_unused()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def tune_allocator() -> bool:
    """Fewer arenas and a fixed mmap threshold for glibc's malloc, for the whole process, and arrow's
    buffers from that same allocator.

    Only for processes this project starts (the CLI, the benchmarks): a library should not change
    its host's allocator. Returns whether the settings were applied (glibc only).

    Arrow's default pool (mimalloc in the wheels used here) keeps what it freed in its own segments:
    after the extract of ``medium``'s fact tables, 292-302 MB stayed resident against 196 MB with the
    system allocator, whose large blocks (page buffers) are mappings of their own, returned on free
    under the fixed threshold; the extract's peak was 445-457 MB against 534-569 MB, same CPU
    (docs/PERFORMANCE.md, section D).
    """
    libc = _libc()
    if libc is None:
        return False
    pa.set_memory_pool(pa.system_memory_pool())
    applied = bool(libc.mallopt(_M_ARENA_MAX, ARENA_MAX)) and bool(
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    )
    logger.debug("glibc malloc tuned: %s", applied)
    return applied


EXTRACT_FILE_SETTINGS = (
    "sources.cargo.data_writer.file_max_items",
    "sources.data_writer.file_max_items",
    "data_writer.file_max_items",
)
"""Where dlt looks for the row limit of this source's extract files, most specific first.

``[extract.data_writer]`` is not among them: dlt resolves the writer of a source's extract under
the source's section (checked with dlt 1.31)."""


def bound_extract_files(rows: int = EXTRACT_FILE_MAX_ROWS) -> None:
    """Have dlt start a new extract file every ``rows`` rows of a table, unless the user set a limit.

    dlt writes each table's pages into one parquet file per extract, and the parquet writer holds
    every row group's metadata (column statistics included) until the file is closed: about 37 KB
    per 10,000-row page of ``spans``, so 86 MB by 22 M spans and growing with the backfill. A new
    file every million rows keeps that under 4 MB per table. The default goes in the source's own
    section, in memory only; a value in the environment or a toml file wins.
    """
    if any(dlt.config.get(key) is not None for key in EXTRACT_FILE_SETTINGS):
        return
    dlt.config[EXTRACT_FILE_SETTINGS[0]] = rows
