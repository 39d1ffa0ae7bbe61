"""``run_metrics``: per-node run counters of each workflow (``runs/metrics``), kept as snapshots.

The endpoint answers totals as of now, not per period, so each sync appends one snapshot per
``(workflow, release, node)`` stamped with the sync time: the trend of error rates and credits is
the difference between snapshots. With ``per_release`` the counters are also asked per release of
each workflow (one more call per release).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import dlt
import pyarrow as pa
from dlt.common.schema.typing import TTableSchemaColumns
from dlt.extract.resource import DltResource

from .arrow import to_arrow
from .catalogue import DIMENSIONS, list_entities
from .client import CargoClient
from .errors import CargoProtocolError
from .extract import TableStats

Row = dict[str, Any]

COUNTERS = (
    "totalExecutionsCount",
    "idleExecutionsCount",
    "pendingExecutionsCount",
    "runningExecutionsCount",
    "successExecutionsCount",
    "errorExecutionsCount",
    "cancellingExecutionsCount",
    "cancelledExecutionsCount",
    "skippedExecutionsCount",
    "creditsUsedCount",
)
"""[D] RunMetric's counters (REFERENCE.md 5.7); a counter the server leaves out loads as null."""


def snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


RUN_METRIC_COLUMNS: TTableSchemaColumns = {
    "snapshot_at": {"name": "snapshot_at", "data_type": "timestamp", "timezone": True, "nullable": False},
    "workflow_uuid": {"name": "workflow_uuid", "data_type": "text", "nullable": False},
    "release_uuid": {"name": "release_uuid", "data_type": "text"},
    "node_uuid": {"name": "node_uuid", "data_type": "text", "nullable": False},
    **{snake(c): {"name": snake(c), "data_type": "double" if c == "creditsUsedCount" else "bigint"} for c in COUNTERS},
}


def metric_rows(
    body: Mapping[str, Any], workflow_uuid: str, release_uuid: str | None, at: datetime, stats: TableStats | None = None
) -> list[Row]:
    """One row per node metric; a metric without a node uuid cannot be keyed: counted in ``stats`` as
    skipped (or an error without ``stats``)."""
    metrics = body.get("runMetrics", ())
    metrics = [] if metrics is None else metrics  # null: no runs yet, like []
    if not isinstance(metrics, list):
        raise CargoProtocolError(
            f"orchestration/runs/metrics answered without a 'runMetrics' list: keys {sorted(body)[:10]}"
        )
    rows = []
    for index, metric in enumerate(metrics):
        if not isinstance(metric, Mapping) or not isinstance(metric.get("nodeUuid"), str):
            where = f"workflow {workflow_uuid}" + (f", release {release_uuid}" if release_uuid else "")
            where += f", runMetrics[{index}]"
            if stats is None:
                raise CargoProtocolError(f"run_metrics: an entry without a nodeUuid ({where})")
            stats.skip(1, "a run metric without a nodeUuid", where)
            continue
        row: Row = {
            "snapshot_at": at,
            "workflow_uuid": workflow_uuid,
            "release_uuid": release_uuid,
            "node_uuid": metric["nodeUuid"],
        }
        for counter in COUNTERS:
            row[snake(counter)] = metric.get(counter)
        rows.append(row)
    return rows


def run_metrics_resource(open_client: Callable[[], CargoClient], per_release: bool, stats: TableStats) -> DltResource:
    """``run_metrics``: appended snapshots, one row per workflow node (and per release if asked)."""

    def run_metrics() -> Iterator[pa.Table]:
        at = datetime.now(UTC)
        started = time.monotonic()
        with open_client() as client:
            releases: dict[str, list[str]] = {}
            if per_release:
                for release in list_entities(client, DIMENSIONS["releases"], _lost_scope(stats)):
                    releases.setdefault(str(release.get("workflowUuid")), []).append(str(release["uuid"]))
            for workflow in list_entities(client, DIMENSIONS["workflows"], _lost_scope(stats)):
                workflow_uuid = str(workflow["uuid"])
                scopes: list[str | None] = [None, *releases.get(workflow_uuid, [])]
                for release_uuid in scopes:
                    payload: dict[str, Any] = {"workflowUuid": workflow_uuid}
                    if release_uuid is not None:
                        payload["releaseUuid"] = release_uuid
                    rows = metric_rows(
                        client.call("POST", "orchestration/runs/metrics", payload),
                        workflow_uuid,
                        release_uuid,
                        at,
                        stats,
                    )
                    stats.add(data_queries=1)
                    stats.add(rows=len(rows))
                    if rows:
                        yield to_arrow(rows, RUN_METRIC_COLUMNS)
        stats.add(seconds=time.monotonic() - started)
        stats.enforce_skip_limit()

    return dlt.resource(run_metrics, name="run_metrics", write_disposition="append", columns=RUN_METRIC_COLUMNS)


def _lost_scope(stats: TableStats) -> Callable[[int, str, str], None]:
    """A listed workflow or release without a uuid: its metrics cannot be asked for (one skip each)."""

    def skip(rows: int, reason: str, where: str) -> None:
        stats.skip(rows, f"{reason}: its metrics cannot be read", where)

    return skip
