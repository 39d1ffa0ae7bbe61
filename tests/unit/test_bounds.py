"""Every bound of a sync from Cargo's clock and the user's dates (``sources/cargo/bounds.py``)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from cargo_elt.source.bounds import DEFAULT_BACKFILL, resolve_bounds
from cargo_elt.source.errors import CargoConfigurationError

NOW = datetime(2026, 11, 1, 12, 0, 0, 123456, tzinfo=UTC)
"""Cargo's clock (whole milliseconds are kept, microseconds cut)."""
SETTLE = timedelta(minutes=2)
MS_NOW = NOW.replace(microsecond=123000)


def test_an_incremental_sync_reads_from_90_days_before_cargos_now_to_now_minus_settle() -> None:
    bounds = resolve_bounds(NOW, start_date=None, since=None, until=None, settle=SETTLE)
    assert bounds.server_now == MS_NOW
    assert (bounds.start, bounds.until, bounds.chunk) == (MS_NOW - DEFAULT_BACKFILL, MS_NOW - SETTLE, False)


def test_start_date_is_where_the_first_sync_starts() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert resolve_bounds(NOW, start_date=start, since=None, until=None, settle=SETTLE).start == start


@pytest.mark.parametrize("start", [MS_NOW, MS_NOW + timedelta(days=1)])
def test_a_start_date_not_before_cargos_now_is_refused_naming_cargos_clock(start: datetime) -> None:
    with pytest.raises(CargoConfigurationError, match=r"start_date .* is not in the past: Cargo's clock reads 2026-11"):
        resolve_bounds(NOW, start_date=start, since=None, until=None, settle=SETTLE)


def test_a_chunk_reads_since_to_until_or_to_now_minus_settle() -> None:
    since, until = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 2, tzinfo=UTC)
    chunk = resolve_bounds(NOW, start_date=None, since=since, until=until, settle=SETTLE)
    assert (chunk.start, chunk.until, chunk.chunk) == (since, until, True)
    open_ended = resolve_bounds(NOW, start_date=None, since=since, until=None, settle=SETTLE)
    assert open_ended.until == MS_NOW - SETTLE


def test_since_after_cargos_now_is_refused_even_when_this_machine_is_later() -> None:
    since = MS_NOW + timedelta(hours=1)  # in this machine's past (2026-12), in Cargo's future
    with pytest.raises(CargoConfigurationError, match=r"since .* is in the future: Cargo's clock reads"):
        resolve_bounds(NOW, start_date=None, since=since, until=None, settle=SETTLE)


def test_until_without_since_and_until_before_since_are_refused() -> None:
    with pytest.raises(CargoConfigurationError, match="until needs since"):
        resolve_bounds(NOW, start_date=None, since=None, until=NOW - timedelta(days=1), settle=SETTLE)
    with pytest.raises(CargoConfigurationError, match="must be after since"):
        resolve_bounds(NOW, start_date=None, since=MS_NOW - timedelta(seconds=60), until=None, settle=SETTLE)


def test_a_chunk_ending_after_cargos_now_minus_settle_is_read_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="cargo_elt.source.bounds")
    since = MS_NOW - timedelta(hours=1)
    resolve_bounds(NOW, start_date=None, since=since, until=MS_NOW + timedelta(hours=1), settle=SETTLE)
    assert any("later than Cargo's clock" in r.getMessage() for r in caplog.records)
    caplog.clear()
    resolve_bounds(NOW, start_date=None, since=since, until=MS_NOW - SETTLE, settle=SETTLE)
    assert not caplog.records
