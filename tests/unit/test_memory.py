"""The allocator helpers: they must work on this glibc machine, and never fail where they cannot."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pytest

from cargo_elt.source import memory
from cargo_elt.source.settings import EXTRACT_FILE_MAX_ROWS


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


@pytest.fixture()
def no_file_limit() -> Iterator[None]:
    """No extract file limit in dlt's in-memory config before and after the test."""
    import dlt

    dlt.config[memory.EXTRACT_FILE_SETTINGS[0]] = None
    yield
    dlt.config[memory.EXTRACT_FILE_SETTINGS[0]] = None


def test_extract_files_get_a_row_limit_by_default(no_file_limit: None) -> None:
    import dlt

    assert dlt.config.get(memory.EXTRACT_FILE_SETTINGS[0]) is None
    memory.bound_extract_files()
    assert dlt.config.get(memory.EXTRACT_FILE_SETTINGS[0]) == EXTRACT_FILE_MAX_ROWS


@pytest.mark.parametrize(
    "variable",
    [
        "SOURCES__CARGO__DATA_WRITER__FILE_MAX_ITEMS",
        "SOURCES__DATA_WRITER__FILE_MAX_ITEMS",
        "DATA_WRITER__FILE_MAX_ITEMS",
    ],
)
def test_a_limit_the_user_set_is_kept(variable: str, no_file_limit: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import dlt

    monkeypatch.setenv(variable, "5000")
    memory.bound_extract_files()
    # nothing was written: the source's own key still resolves from the user's setting, or not at all
    expected = "5000" if variable.startswith("SOURCES__CARGO__") else None
    found = dlt.config.get(memory.EXTRACT_FILE_SETTINGS[0])
    assert (str(found) if found is not None else None) == expected
