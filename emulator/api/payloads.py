"""Request schemas of the emulated endpoints, field for field from ``@cargo-ai/api`` 1.0.57.

Field names are the wire names (camelCase) so that validation issues carry Cargo's paths. Field
order follows the client's type declarations, which is the order zod reports issues in. Every
payload is strict (REFERENCE.md section 3: "assume all payloads are strict"); filter objects are
lenient because Cargo silently drops unknown filter keys (section 6.2).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from ..validation import LenientPayload, StrictPayload, Timestamp
from .limits import (
    BATCHES_LIST_MAX_LIMIT,
    RECORDS_LIST_MAX_LIMIT,
    RELEASES_LIST_MAX_LIMIT,
    RUNS_LIST_MAX_LIMIT,
    SEGMENT_FETCH_MAX_LIMIT,
    SPANS_LIST_TRACE_MAX_LIMIT,
)

RunStatus = Literal["idle", "pending", "running", "success", "error", "cancelling", "cancelled", "skipped"]
RecordStatus = Literal["pending", "running", "success", "error", "cancelled", "cancelling"]
ExecutionStatus = Literal["pending", "success", "error"]
BatchStatus = Literal[
    "pending", "syncing", "skipped", "querying", "running", "success", "cancelling", "error", "cancelled"
]
BatchDataKind = Literal[
    "segment", "change", "filter", "recordIds", "watchedRecords", "records", "file", "runs", "group", "schedule", "form"
]
ReleaseStatus = Literal["draft", "deployed", "archived"]
NodeKind = Literal["native", "connector", "tool", "agent"]
ScheduleType = Literal["cron", "dbt", "realtime", "dependency", "watch"]
Conjonction = Literal["and", "or"]

Offset = Annotated[int, Field(ge=0)]


RunsLimit = Annotated[int, Field(ge=1, le=RUNS_LIST_MAX_LIMIT)]
RecordsLimit = Annotated[int, Field(ge=1, le=RECORDS_LIST_MAX_LIMIT)]
SpansLimit = Annotated[int, Field(ge=1, le=SPANS_LIST_TRACE_MAX_LIMIT)]
BatchesLimit = Annotated[int, Field(ge=1, le=BATCHES_LIST_MAX_LIMIT)]
ReleasesLimit = Annotated[int, Field(ge=1, le=RELEASES_LIST_MAX_LIMIT)]
FetchLimit = Annotated[int, Field(ge=1, le=SEGMENT_FETCH_MAX_LIMIT)]
ExportLimit = Annotated[int, Field(ge=1)]


# -- filters ---------------------------------------------------------------------------------------


class NodeCondition(LenientPayload):
    """``ExecutionsFilterConditionNode``."""

    kind: Literal["node"]
    nodeSlug: str
    status: Literal["absent", "pending", "success", "error"]
    value: str | None = None


class ExecutionsFilterGroup(LenientPayload):
    conjonction: Conjonction | None = None
    conditions: list[NodeCondition]


class ExecutionsFilter(LenientPayload):
    """``ExecutionsFilter``; a missing ``conjonction`` is kept as None and then matches nothing."""

    conjonction: Conjonction | None = None
    groups: list[ExecutionsFilterGroup]


class FilterGroup(LenientPayload):
    """A segment filter group; conditions are checked when the filter is evaluated."""

    conjonction: Conjonction | None = None
    conditions: list[dict[str, Any]]


class SegmentFilter(LenientPayload):
    """``Filter`` of segments (REFERENCE.md 6.2)."""

    conjonction: Conjonction | None = None
    groups: list[FilterGroup]


class SortItem(StrictPayload):
    columnSlug: str
    kind: Literal["asc", "desc"]


# -- runs ------------------------------------------------------------------------------------------


class RunsCountPayload(StrictPayload):
    """``CountRunsPayload``."""

    workflowUuid: str | None = None
    userUuid: str | None = None
    batchUuid: str | None = None
    releaseUuid: str | None = None
    statuses: list[RunStatus] | None = None
    parentBatchUuid: str | None = None
    parentUuid: str | None = None
    parentNodeUuid: str | None = None
    isGroupParent: bool | None = None
    recordId: str | None = None
    recordTitle: str | None = None
    recordTitleOrId: str | None = None
    isFinished: bool | None = None
    executionsFilter: ExecutionsFilter | None = None
    createdAfter: Timestamp | None = None
    createdBefore: Timestamp | None = None
    updatedAfter: Timestamp | None = None
    updatedBefore: Timestamp | None = None


class RunsListPayload(RunsCountPayload):
    """``ListRunsPayload``."""

    limit: RunsLimit | None = None
    offset: Offset | None = None


class RunsDownloadPayload(StrictPayload):
    """``DownloadRunsPayload`` minus ``isFinished``, which Cargo refuses (REFERENCE.md 3.3 [C])."""

    workflowUuid: str
    uuids: list[str] | None = None
    batchUuid: str | None = None
    releaseUuid: str | None = None
    statuses: list[RunStatus] | None = None
    parentBatchUuid: str | None = None
    parentUuid: str | None = None
    parentNodeUuid: str | None = None
    isGroupParent: bool | None = None
    recordId: str | None = None
    recordTitle: str | None = None
    recordTitleOrId: str | None = None
    executionsFilter: ExecutionsFilter | None = None
    createdAfter: Timestamp | None = None
    createdBefore: Timestamp | None = None
    updatedAfter: Timestamp | None = None
    updatedBefore: Timestamp | None = None


class RunsDownloadOutputsPayload(StrictPayload):
    """``DownloadRunOutputsPayload``."""

    workflowUuid: str
    outputNodeSlug: str | None = None
    format: Literal["csv", "json"] | None = None
    batchUuid: str | None = None
    releaseUuid: str | None = None
    statuses: list[RunStatus] | None = None
    parentBatchUuid: str | None = None
    parentUuid: str | None = None
    parentNodeUuid: str | None = None
    isGroupParent: bool | None = None
    recordId: str | None = None
    recordTitle: str | None = None
    recordTitleOrId: str | None = None
    isFinished: bool | None = None
    executionsFilter: ExecutionsFilter | None = None
    createdAfter: Timestamp | None = None
    createdBefore: Timestamp | None = None
    limit: ExportLimit | None = None
    offset: Offset | None = None


class RunsMetricsPayload(StrictPayload):
    """``GetRunMetricsPayload``."""

    workflowUuid: str
    releaseUuid: str | None = None
    batchUuid: str | None = None
    createdAfter: Timestamp | None = None
    createdBefore: Timestamp | None = None


# -- records ---------------------------------------------------------------------------------------


class RecordsCountPayload(StrictPayload):
    """``CountRecordsPayload``."""

    workflowUuid: str | None = None
    userUuid: str | None = None
    ids: list[str] | None = None
    title: str | None = None
    titleOrId: str | None = None
    releaseUuid: str | None = None
    batchUuid: str | None = None
    statuses: list[RecordStatus] | None = None
    parentBatchUuid: str | None = None
    parentRunUuid: str | None = None
    parentNodeUuid: str | None = None
    isGroupParent: bool | None = None
    executionsFilter: ExecutionsFilter | None = None
    createdAfter: Timestamp | None = None
    createdBefore: Timestamp | None = None
    updatedAfter: Timestamp | None = None
    updatedBefore: Timestamp | None = None


class RecordsListPayload(RecordsCountPayload):
    """``ListRecordsPayload``."""

    limit: RecordsLimit | None = None
    offset: Offset | None = None


# -- spans -----------------------------------------------------------------------------------------


class SpansCountPayload(StrictPayload):
    """``CountSpansPayload`` (``executionStartedAfter`` is required)."""

    workflowUuid: str | None = None
    userUuid: str | None = None
    batchUuid: str | None = None
    traceUuid: str | None = None
    runUuid: str | None = None
    recordId: str | None = None
    recordTitle: str | None = None
    recordTitleOrId: str | None = None
    parentRunUuid: str | None = None
    parentNodeUuid: str | None = None
    parentAgentUuid: str | None = None
    nodeUuid: str | None = None
    nodeKind: NodeKind | None = None
    nodeSlug: str | None = None
    nodeIntegrationSlug: str | None = None
    nodeConnectorUuid: str | None = None
    nodeActionSlug: str | None = None
    nodeToolUuid: str | None = None
    nodeAgentUuid: str | None = None
    nodeReleaseUuid: str | None = None
    executionTitle: str | None = None
    executionTitleOrErrorMessage: str | None = None
    executionStatuses: list[ExecutionStatus] | None = None
    executionStartedAfter: Timestamp
    executionStartedBefore: Timestamp | None = None


class SpansListPayload(SpansCountPayload):
    """``ListSpansPayload``; the 100-row maximum without ``traceUuid`` is checked by the handler."""

    limit: SpansLimit | None = None
    offset: Offset | None = None


# -- batches, releases, plays, connectors (query strings) -----------------------------------------


class BatchesListParams(StrictPayload):
    """``ListBatchesPayload`` (sent as a query string)."""

    workflowUuids: list[str] | None = None
    releaseUuid: str | None = None
    parentBatchUuid: str | None = None
    parentRunUuid: str | None = None
    parentNodeUuid: str | None = None
    statuses: list[BatchStatus] | None = None
    hasRuns: bool | None = None
    isSkipped: bool | None = None
    isFinished: bool | None = None
    includedDataKinds: list[BatchDataKind] | None = None
    excludedDataKinds: list[BatchDataKind] | None = None
    limit: BatchesLimit | None = None
    offset: Offset | None = None


class BatchDownloadPayload(StrictPayload):
    """``DownloadBatchPayload`` minus the path's ``uuid``."""

    outputNodeSlug: str | None = None


CreateBatchDataKind = Literal["segment", "change", "file", "filter", "runs", "recordIds", "records", "schedule", "form"]
"""The ``data.kind`` values ``CreateBatchPayload`` accepts (its union, in the client's order)."""


class BatchCreatePayload(StrictPayload):
    """``CreateBatchPayload``; ``data`` is a union on ``kind``, checked per kind by the handler."""

    workflowUuid: str | None = None
    releaseUuid: str | None = None
    nodes: list[dict[str, Any]] | None = None
    data: dict[str, Any]


class RecordIdsBatchData(StrictPayload):
    """``CreateBatchPayload.data`` of kind ``recordIds`` (REFERENCE.md 5.4: ``modelUuid``, ``ids``)."""

    kind: Literal["recordIds"]
    modelUuid: str
    ids: list[str]


class ReleasesListParams(StrictPayload):
    """``ListReleasesPayload``."""

    workflowUuid: str | None = None
    userUuid: str | None = None
    statuses: list[ReleaseStatus] | None = None
    limit: ReleasesLimit | None = None
    offset: Offset | None = None


class DeployedReleaseParams(StrictPayload):
    """``GetDeployedReleasePayload``."""

    workflowUuid: str


class PlaysListParams(StrictPayload):
    """``ListPlaysPayload``."""

    isEnabled: bool | None = None
    modelUuid: str | None = None
    segmentUuid: str | None = None
    scheduleType: ScheduleType | None = None


class ConnectorsListParams(StrictPayload):
    """``ListConnectorsPayload``."""

    integrationSlug: str | None = None


# -- segmentation ----------------------------------------------------------------------------------


class SegmentDownloadPayload(StrictPayload):
    """``DownloadSegmentPayload``."""

    filter: SegmentFilter
    sort: list[SortItem] | None = None
    limit: ExportLimit | None = None
    modelUuid: str


class SegmentFetchPayload(StrictPayload):
    """``FetchSegmentPayload``."""

    modelUuid: str
    filter: SegmentFilter
    sort: list[SortItem] | None = None
    limit: ExportLimit | None = None
    fetchingLimit: FetchLimit | None = None
    fetchingOffset: Offset | None = None
    enrich: bool | None = None
    sync: bool | None = None
