"""The allocator helpers: they must work on this glibc machine, and never fail where they cannot."""

from __future__ import annotations

import pyarrow as pa
import pytest

from sources.cargo import memory


def test_freed_arrow_memory_goes_back_and_the_helpers_report_glibc() -> None:
    table = pa.table({"x": pa.array(range(2_000_000))})
    assert pa.total_allocated_bytes() >= 16_000_000
    del table
    memory.release_free_memory()  # must not raise, and leaves nothing allocated by the table
    assert pa.total_allocated_bytes() < 16_000_000
    assert memory.tune_allocator() is True  # glibc here: the settings are accepted


def test_without_glibc_the_helpers_do_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory.ctypes.util, "find_library", lambda name: None)
    memory._libc.cache_clear()
    try:
        assert memory.tune_allocator() is False
        memory.release_free_memory()
    finally:
        memory._libc.cache_clear()  # the next caller looks glibc up again
