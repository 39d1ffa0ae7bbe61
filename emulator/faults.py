"""Seeded fault injection: throttling, server errors, dropped connections, truncated and slow answers.

A connector that runs unattended meets all of these; the emulator produces them at chosen rates so
the connector's retries can be tested. The random draws come from one seeded generator, so a run with
the same seed and the same request order sees the same faults (a failing case can be replayed).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

FAULT_KINDS = ("429", "500", "502", "503", "reset", "truncate", "slow", "timeout")
"""Spec keys: HTTP statuses answered at once, ``reset`` (TCP connection aborted before any answer),
``truncate`` (the body is cut short after the headers promised more), ``slow`` (a delay first) and
``timeout`` (the query answers ClickHouse's time cap, code 159, as a query over 30 s would)."""

TIMEOUT_MESSAGE = "Code: 159. DB::Exception: Timeout exceeded: elapsed 30.001 seconds, maximum: 30. (TIMEOUT_EXCEEDED)"

DEFAULT_RETRY_AFTER_S = 1
DEFAULT_SLOW_S = 1.5


class FaultSpecError(ValueError):
    """The ``--faults`` spec could not be understood."""


def parse_fault_spec(spec: str) -> dict[str, float]:
    """Parse ``429=0.05,500=0.05,reset=0.02`` into rates, refusing unknown kinds and bad numbers."""
    rates: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        kind, sep, value = part.partition("=")
        kind = kind.strip()
        if not sep or kind not in FAULT_KINDS:
            raise FaultSpecError(
                f"bad fault {part!r} in --faults: expected KIND=RATE with KIND one of {', '.join(FAULT_KINDS)}"
            )
        try:
            rate = float(value)
        except ValueError:
            raise FaultSpecError(f"bad rate {value!r} for {kind} in --faults: expected a number 0..1") from None
        if not 0.0 <= rate <= 1.0:
            raise FaultSpecError(f"rate {rate} for {kind} in --faults is outside 0..1")
        rates[kind] = rate
    if sum(rates.values()) > 1.0:
        raise FaultSpecError(f"fault rates in --faults add up to {sum(rates.values()):.2f}, more than 1")
    return rates


@dataclass
class FaultInjector:
    """Draws at most one fault per request from the configured rates."""

    rates: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    retry_after_s: int = DEFAULT_RETRY_AFTER_S
    slow_s: float = DEFAULT_SLOW_S
    match: str = ""
    """When set, faults are drawn only for requests whose body contains this text (e.g. ``LIMIT``:
    page queries only), so a test can fail one kind of query and let the others through."""
    counts: dict[str, int] = field(default_factory=dict)
    _rng: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def configure(
        self,
        rates: dict[str, float],
        seed: int | None = None,
        *,
        retry_after_s: int | None = None,
        slow_s: float | None = None,
        match: str | None = None,
    ) -> None:
        """Replace the rates (and optionally reseed, the Retry-After, the delay, the body filter)."""
        with self._lock:
            self.rates = dict(rates)
            self.retry_after_s = DEFAULT_RETRY_AFTER_S if retry_after_s is None else retry_after_s
            self.slow_s = DEFAULT_SLOW_S if slow_s is None else slow_s
            self.match = match or ""
            if seed is not None:
                self.seed = seed
                self._rng = random.Random(seed)
            self.counts = {}

    def draw(self) -> str | None:
        """The fault to inject into the next request, or None."""
        with self._lock:
            if not self.rates:
                return None
            point = self._rng.random()
            total = 0.0
            for kind in FAULT_KINDS:
                total += self.rates.get(kind, 0.0)
                if point < total:
                    self.counts[kind] = self.counts.get(kind, 0) + 1
                    return kind
            self.counts["none"] = self.counts.get("none", 0) + 1
            return None
