"""The server's clock, read through the query endpoint: what decides which days are closed.

Time comes from the server: a day is closed when *Cargo's* clock says so, never the clock of the
machine the sync runs on (which may be minutes or days off). One query, ``SELECT now()``, asked as
epoch seconds so the answer does not depend on the server's time zone setting.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from .errors import CargoProtocolError

SERVER_NOW_SQL = "SELECT toUnixTimestamp(now()) AS now"


class Queries(Protocol):
    """Anything that runs SQL on ``orchestration/query`` (a ``CargoClient``)."""

    def query(self, sql: str) -> list[dict[str, object]]: ...


def server_now(client: Queries) -> datetime:
    """Cargo's current time (UTC, whole seconds), from ``SELECT now()`` on the query endpoint."""
    rows = client.query(SERVER_NOW_SQL)
    value = rows[0].get("now") if rows else None
    try:
        seconds = int(str(value))
    except ValueError:
        raise CargoProtocolError(f"SELECT now() answered {value!r}, not a time") from None
    return datetime.fromtimestamp(seconds, UTC)
