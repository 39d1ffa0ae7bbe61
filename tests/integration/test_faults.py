"""Fault injection over real HTTP: each kind looks like it does on a real network, at its rate."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator

import httpx
import pytest

Api = Callable[..., httpx.Client]


@pytest.fixture()
def faults(emulator: object) -> Iterator[Callable[[str, int], None]]:
    """Set fault rates on the shared emulator for one test, and always clear them afterwards."""
    base = emulator.base_url  # type: ignore[attr-defined]

    def configure(spec: str, seed: int) -> None:
        httpx.post(f"{base}/_emulator/faults", json={"spec": spec, "seed": seed}).raise_for_status()

    yield configure
    configure("", 0)


def classify(client: httpx.Client) -> str:
    try:
        response = client.post("/orchestration/query", json={"query": "SELECT uuid, record_title FROM runs LIMIT 200"})
    except httpx.RemoteProtocolError:
        return "broken"  # closed mid-body (truncate) or before any answer (reset)
    except (httpx.ReadError, httpx.ConnectError, httpx.WriteError):
        return "broken"
    if response.status_code == 200:
        return "ok"
    return str(response.status_code)


def test_fault_rates_are_met_within_tolerance(api: Api, faults: Callable[[str, int], None]) -> None:
    faults("429=0.10,500=0.05,502=0.05,503=0.05,reset=0.05,truncate=0.05", 11)
    n = 400
    seen: Counter[str] = Counter()
    base = api()
    # No keep-alive: every request gets a fresh connection, as a reset one cannot be reused.
    with httpx.Client(
        base_url=base.base_url, headers=base.headers, limits=httpx.Limits(max_keepalive_connections=0)
    ) as c:
        for _ in range(n):
            seen[classify(c)] += 1
    expected = {"429": 0.10, "500": 0.05, "502": 0.05, "503": 0.05, "broken": 0.10, "ok": 0.60}
    for kind, rate in expected.items():
        sigma = math.sqrt(n * rate * (1 - rate))
        assert abs(seen[kind] - n * rate) <= 4 * sigma, (kind, seen)


def test_429_carries_retry_after_and_empty_body(api: Api, faults: Callable[[str, int], None]) -> None:
    faults("429=1", 1)
    response = api().post("/orchestration/query", json={"query": "SELECT 1"})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert response.content == b""


def test_truncated_body_is_cut_after_headers_promised_more(api: Api, faults: Callable[[str, int], None]) -> None:
    faults("truncate=1", 1)
    with pytest.raises(httpx.RemoteProtocolError):
        api().post("/orchestration/query", json={"query": "SELECT uuid FROM runs LIMIT 100"})


def test_reset_drops_the_connection_without_an_answer(api: Api, faults: Callable[[str, int], None]) -> None:
    faults("reset=1", 1)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        api().post("/orchestration/query", json={"query": "SELECT 1"})


def test_same_seed_replays_the_same_faults(api: Api, faults: Callable[[str, int], None]) -> None:
    def sequence() -> list[str]:
        faults("429=0.2,503=0.2", 5)
        with api() as client:
            return [classify(client) for _ in range(40)]

    assert sequence() == sequence()


def test_admin_calls_never_get_faults(emulator: object, faults: Callable[[str, int], None]) -> None:
    faults("503=1", 1)
    response = httpx.get(f"{emulator.base_url}/_emulator/workspaces")  # type: ignore[attr-defined]
    assert response.status_code == 200
