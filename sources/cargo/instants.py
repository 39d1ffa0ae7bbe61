"""The one parser of the dates users write: a date or an ISO datetime, in UTC.

``start_date``, ``since``, ``until`` (config, command line, an Airflow run's conf) and the operands of
Cargo's date filter conditions are all read here, so they all mean the same: ``2026-05-01`` is
midnight UTC, ``2026-05-01T10:00:00Z`` and ``2026-05-01T12:00:00+02:00`` are the same instant, and a
datetime without a zone is UTC (never this machine's zone). Values Cargo sends are parsed elsewhere
(``planner.parse_timestamp``): they have Cargo's formats, not the user's.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

__all__ = ["DATE_FORMS", "is_date_text", "to_instant"]

DATE_FORMS = "a date (YYYY-MM-DD) or an ISO datetime (YYYY-MM-DDTHH:MM:SSZ)"
"""What a date setting accepts, for messages."""

_STARTS_WITH_A_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}")


def to_instant(value: str | date | datetime) -> datetime:
    """``value`` as an aware UTC datetime; ``ValueError`` when it is not a date or an ISO datetime."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        if not _STARTS_WITH_A_DAY.match(text):
            raise ValueError(f"{value!r} is not {DATE_FORMS}")
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text)
    else:
        raise ValueError(f"{value!r} is not {DATE_FORMS}")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def is_date_text(value: object) -> bool:
    """Whether ``value`` is a string ``to_instant`` reads (what Cargo's date conditions take)."""
    if not isinstance(value, str):
        return False
    try:
        to_instant(value)
    except ValueError:
        return False
    return True
