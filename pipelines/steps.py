"""A sync in steps: ``pipeline.run`` again while the Cargo source says a table's read is unfinished.

The source reads at most a step's budget per extraction (``sources.cargo.step_rows`` /
``step_seconds``, ``sources/cargo/steps.py``) and keeps where each unfinished read resumes in its
state, which dlt commits with the load: every ``pipeline.run`` is one committed step, an exact prefix
of each table's range. This runner is only the loop: it runs the same source object again (so the
windows planned at the first step are reused), with only the tables still pending selected, until
none is. dlt's own mechanisms do the rest (several runs of one source; its state and load packages).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PHASES = ("extract", "normalize", "load")


@dataclass
class StepsRun:
    """What a run in steps did: its steps, their load ids, and the seconds of each dlt phase summed."""

    steps: int = 0
    load_ids: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))


def run_in_steps(
    pipeline: Any,
    source: Any,
    stats: Any,
    *,
    refresh: str | None = None,
    on_step: Callable[[int, list[str]], None] | None = None,
    run: StepsRun | None = None,
) -> StepsRun:
    """Run ``source`` through ``pipeline`` until no table is pending (``stats.pending_tables()``).

    ``refresh`` applies to the first step only. ``on_step(step, pending)`` is called after each
    committed step. ``run`` (optional) is filled as steps commit, so a caller that catches a failure
    still knows the load ids of the steps committed before it.
    """
    run = run if run is not None else StepsRun()
    first = True

    def run_step(selected: Any) -> None:
        nonlocal first
        info = pipeline.run(selected, refresh=refresh) if refresh and first else pipeline.run(selected)
        first = False
        run.steps += 1
        run.load_ids.extend(info.loads_ids)
        _add_phase_seconds(pipeline.last_trace, run.seconds)

    each_step(source, stats, run_step, on_step)
    return run


def each_step(
    source: Any,
    stats: Any,
    run_step: Callable[[Any], None],
    on_step: Callable[[int, list[str]], None] | None = None,
) -> int:
    """The loop itself: ``run_step`` (one committed ``pipeline.run``, however the caller runs it: the CLI
    on its pipeline, the Airflow DAG through dlt's task body) on ``source``, then on the same source with
    only the tables ``stats`` says are pending, until none is. Returns the number of steps."""
    selected = source
    step = 0
    while True:
        run_step(selected)
        step += 1
        stats.steps_committed += 1
        pending = list(stats.pending_tables())
        if on_step is not None:
            on_step(step, pending)
        if not pending:
            return step
        selected = source.with_resources(*pending)


def _add_phase_seconds(trace: Any, seconds: dict[str, float]) -> None:
    """Add the extract, normalize and load times of dlt's last run trace to ``seconds``."""
    for step in getattr(trace, "steps", None) or []:
        if step.step in seconds and step.finished_at is not None:
            seconds[step.step] += (step.finished_at - step.started_at).total_seconds()
