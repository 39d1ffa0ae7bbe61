"""The ``--faults`` spec parser and the seeded draw, with no server."""

from __future__ import annotations

import pytest

from cargo_elt.emulator.faults import FaultInjector, FaultSpecError, parse_fault_spec


def test_spec_from_the_docs_parses() -> None:
    rates = parse_fault_spec("429=0.05,500=0.05,503=0.03,reset=0.02,truncate=0.01,slow=0.05")
    assert rates == {"429": 0.05, "500": 0.05, "503": 0.03, "reset": 0.02, "truncate": 0.01, "slow": 0.05}


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("404=0.1", "KIND=RATE"),
        ("429", "KIND=RATE"),
        ("429=x", "bad rate"),
        ("429=2", "outside"),
        ("429=0.6,500=0.6", "more than 1"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, fragment: str) -> None:
    with pytest.raises(FaultSpecError, match=fragment):
        parse_fault_spec(spec)


def test_draws_are_seeded() -> None:
    a = FaultInjector(rates={"429": 0.3, "reset": 0.3}, seed=4)
    b = FaultInjector(rates={"429": 0.3, "reset": 0.3}, seed=4)
    assert [a.draw() for _ in range(100)] == [b.draw() for _ in range(100)]
    assert {a.draw() for _ in range(200)} == {"429", "reset", None}
