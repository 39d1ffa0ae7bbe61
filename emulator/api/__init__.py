"""Cargo's REST endpoints (everything but ``orchestration/query``) and the signed-file routes.

``V1_ROUTES`` are mounted under ``/v1`` behind bearer auth (the app sets ``request.state.workspace``);
``FILE_ROUTES`` serve signed download URLs without auth, as presigned object-storage URLs do.
Static paths come before ``{uuid}`` paths so ``.../list`` is never read as a UUID.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from ..downloads import FILE_ROUTES
from . import exports as _exports  # registers the export file producers
from .batches import batches_create, batches_download, batches_get, batches_list
from .common import endpoint
from .definitions import (
    connectors_list,
    get_one,
    list_of,
    plays_list,
    releases_deployed,
    releases_list,
    user_current,
    workspace_current,
    workspace_user_current,
    workspaces_list,
)
from .runs import (
    records_count,
    records_list,
    runs_count,
    runs_download,
    runs_download_outputs,
    runs_get,
    runs_list,
    runs_metrics,
    spans_count,
    spans_list,
)
from .segments import segments_download, segments_fetch

_ = _exports

GET = ["GET"]
POST = ["POST"]

V1_ROUTES: list[BaseRoute] = [
    # orchestration: runs, records, spans
    Route("/orchestration/runs/list", endpoint(runs_list), methods=POST),
    Route("/orchestration/runs/count", endpoint(runs_count), methods=POST),
    Route("/orchestration/runs/metrics", endpoint(runs_metrics), methods=POST),
    Route("/orchestration/runs/download", endpoint(runs_download), methods=POST),
    Route("/orchestration/runs/download-outputs", endpoint(runs_download_outputs), methods=POST),
    Route("/orchestration/runs/{uuid}", endpoint(runs_get), methods=GET),
    Route("/orchestration/records/list", endpoint(records_list), methods=POST),
    Route("/orchestration/records/count", endpoint(records_count), methods=POST),
    Route("/orchestration/spans/list", endpoint(spans_list), methods=POST),
    Route("/orchestration/spans/count", endpoint(spans_count), methods=POST),
    # batches
    Route("/orchestration/batches", endpoint(batches_create), methods=POST),
    Route("/orchestration/batches/list", endpoint(batches_list), methods=GET),
    Route("/orchestration/batches/{uuid}/download", endpoint(batches_download), methods=POST),
    Route("/orchestration/batches/{uuid}", endpoint(batches_get), methods=GET),
    # definitions
    Route("/orchestration/releases/list", endpoint(releases_list), methods=GET),
    Route("/orchestration/releases/deployed", endpoint(releases_deployed), methods=GET),
    Route("/orchestration/releases/{uuid}", endpoint(get_one("release", "release", "releaseNotFound")), methods=GET),
    Route("/orchestration/workflows/list", endpoint(list_of("workflow", "workflows")), methods=GET),
    Route("/orchestration/plays/list", endpoint(plays_list), methods=GET),
    Route("/orchestration/plays/{uuid}", endpoint(get_one("play", "play", "playNotFound")), methods=GET),
    Route("/orchestration/tools/list", endpoint(list_of("tool", "tools")), methods=GET),
    Route("/orchestration/tools/{uuid}", endpoint(get_one("tool", "tool", "toolNotFound")), methods=GET),
    Route("/ai/agents/list", endpoint(list_of("agent", "agents")), methods=GET),
    Route("/ai/agents/{uuid}", endpoint(get_one("agent", "agent", "agentNotFound")), methods=GET),
    Route("/connection/connectors/list", endpoint(connectors_list), methods=GET),
    Route(
        "/connection/connectors/{uuid}",
        endpoint(get_one("connector", "connector", "connectorNotFound")),
        methods=GET,
    ),
    # storage
    Route("/storage/datasets/list", endpoint(list_of("dataset", "datasets")), methods=GET),
    Route("/storage/datasets/{uuid}", endpoint(get_one("dataset", "dataset", "datasetNotFound")), methods=GET),
    Route("/storage/models/list", endpoint(list_of("model", "models")), methods=GET),
    Route("/storage/models/{uuid}", endpoint(get_one("model", "model", "modelNotFound")), methods=GET),
    # segmentation
    Route("/segmentation/segments/list", endpoint(list_of("segment", "segments")), methods=GET),
    Route("/segmentation/segments/fetch", endpoint(segments_fetch), methods=POST),
    Route("/segmentation/segments/download", endpoint(segments_download), methods=POST),
    Route("/segmentation/segments/{uuid}", endpoint(get_one("segment", "segment", "segmentNotFound")), methods=GET),
    # identity
    Route("/workspaceManagement/workspaces/current", endpoint(workspace_current), methods=GET),
    Route("/workspaceManagement/workspaces/list", endpoint(workspaces_list), methods=GET),
    Route("/workspaceManagement/users/current", endpoint(workspace_user_current), methods=GET),
    Route("/userManagement/users/current", endpoint(user_current), methods=GET),
]

__all__ = ["FILE_ROUTES", "V1_ROUTES"]
