"""Catalogue endpoints: workflows, releases, plays, tools, agents, connectors, datasets, models,
and the identity calls (current workspace / user).

These serve the generator's entity bodies unchanged (they already are Cargo's API JSON), wrapped as
REFERENCE.md sections 2, 3.8-3.9 and 6.3 say. Soft-deleted entities (``deletedAt`` set) are left
out of lists but still answer a get ([I], as Cargo's UI keeps links to deleted items working).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from ..workspaces import Workspace, seeded_uuid
from . import catalog
from .catalog import Entity
from .common import Call, not_found, ok
from .limits import RELEASES_LIST_DEFAULT_LIMIT
from .payloads import ConnectorsListParams, DeployedReleaseParams, PlaysListParams, ReleasesListParams


def _live(entities: list[Entity]) -> list[dict[str, Any]]:
    return [e.body for e in entities if not e.body.get("deletedAt")]


def list_of(kind: str, wrapper: str) -> Callable[[Call], Response]:
    """A parameterless ``GET .../list`` answering ``{<wrapper>: [...]}``."""

    def handler(call: Call) -> Response:
        return ok({wrapper: _live(catalog.list_entities(call.store, call.ws, kind))})

    handler.__name__ = f"{kind}_list"
    handler.__doc__ = f"``GET`` list of {kind} entities -> ``{{{wrapper}}}``."
    return handler


def get_one(kind: str, wrapper: str, reason: str) -> Callable[[Call], Response]:
    """A ``GET .../{uuid}`` answering ``{<wrapper>: {...}}`` or 404 ``<reason>``."""

    def handler(call: Call) -> Response:
        found = catalog.get_entity(call.store, call.ws, kind, call.path_params["uuid"])
        if found is None:
            raise not_found(reason)
        return ok({wrapper: found.body})

    handler.__name__ = f"{kind}_get"
    handler.__doc__ = f"``GET`` one {kind} -> ``{{{wrapper}}}`` (404 ``{reason}``)."
    return handler


def releases_list(call: Call) -> Response:
    """``GET orchestration/releases/list`` -> ``{releases}``, newest first, paged by limit/offset."""
    p = call.params(ReleasesListParams)
    releases = catalog.list_entities(call.store, call.ws, "release", parent_uuid=p.workflowUuid)
    bodies = [r.body for r in reversed(releases)]
    if p.userUuid is not None:
        bodies = [b for b in bodies if b.get("userUuid") == p.userUuid]
    if p.statuses is not None:
        bodies = [b for b in bodies if b.get("status") in p.statuses]
    offset = p.offset or 0
    limit = p.limit if p.limit is not None else RELEASES_LIST_DEFAULT_LIMIT
    return ok({"releases": bodies[offset : offset + limit]})


def releases_deployed(call: Call) -> Response:
    """``GET orchestration/releases/deployed?workflowUuid=`` -> ``{release}`` (404 ``releaseNotFound``)."""
    p = call.params(DeployedReleaseParams)
    release = catalog.deployed_release(call.store, call.ws, p.workflowUuid)
    if release is None:
        raise not_found("releaseNotFound")
    return ok({"release": release.body})


def plays_list(call: Call) -> Response:
    """``GET orchestration/plays/list`` -> ``{plays}`` filtered by isEnabled/modelUuid/segmentUuid/scheduleType."""
    p = call.params(PlaysListParams)
    plays = _live(catalog.list_entities(call.store, call.ws, "play"))
    if p.isEnabled is not None:
        plays = [b for b in plays if bool(b.get("isEnabled")) == p.isEnabled]
    if p.modelUuid is not None:
        plays = [b for b in plays if b.get("modelUuid") == p.modelUuid]
    if p.segmentUuid is not None:
        plays = [b for b in plays if b.get("segmentUuid") == p.segmentUuid]
    if p.scheduleType is not None:
        plays = [
            b for b in plays if isinstance(b.get("schedule"), dict) and b["schedule"].get("type") == p.scheduleType
        ]
    return ok({"plays": plays})


def connectors_list(call: Call) -> Response:
    """``GET connection/connectors/list?integrationSlug=`` -> ``{connectors}``."""
    p = call.params(ConnectorsListParams)
    connectors = _live(catalog.list_entities(call.store, call.ws, "connector"))
    if p.integrationSlug is not None:
        connectors = [c for c in connectors if c.get("integrationSlug") == p.integrationSlug]
    return ok({"connectors": connectors})


# -- identity --------------------------------------------------------------------------------------

USER_KEYS = (
    "uuid",
    "email",
    "firstName",
    "lastName",
    "picture",
    "lastSignInAt",
    "createdAt",
    "updatedAt",
    "webExtensionData",
)
"""The ``User`` type of ``userManagement`` (REFERENCE.md section 2)."""

READ_ACTIONS = [
    "orchestration:read",
    "segmentation:read",
    "storage:read",
    "observability:read",
    "connection:read",
    "ai:read",
    "workspaceManagement:read",
]


def _created_at(call: Call) -> str:
    """A stable creation time for synthesized identity objects (the catalogue's oldest entity)."""
    for kind in ("workflow", "model", "dataset"):
        entities = catalog.list_entities(call.store, call.ws, kind)
        if entities:
            created = entities[0].created_at.replace(" ", "T")
            return (created if "." in created else created + ".000") + "Z"
    return "2025-01-01T00:00:00.000Z"


def _workspace_body(call: Call) -> dict[str, Any]:
    found = catalog.get_entity(call.store, call.ws, "workspace", call.ws)
    if found is not None:
        return found.body
    ws: Workspace = call.workspace
    created = _created_at(call)
    return {
        "uuid": ws.uuid,
        "name": ws.name,
        "allowedEmailDomains": ["example.com"],
        "syncs": [],
        "temporalNamespace": "cargo-default",
        "temporalTaskQueuePrefix": None,
        "maxConcurrentRuns": 10,
        "openAiVectorStoreId": None,
        "createdAt": created,
        "updatedAt": created,
        "logoUrl": None,
        "metadata": None,
        "chromeExtensionMasterAgentUuid": None,
        "chromeExtensionAvailableAgentUuids": None,
        "defaultRoleUuid": None,
        "allowedLoginProviders": None,
        "ssoIdentifier": None,
        "quotaBuckets": {},
    }


def _user_body(call: Call) -> dict[str, Any]:
    ws = call.workspace
    found = catalog.get_entity(call.store, call.ws, "user", ws.user_uuid)
    if found is None:
        users = catalog.list_entities(call.store, call.ws, "user")
        found = users[0] if users else None
    if found is not None:
        return dict(found.body)
    created = _created_at(call)
    return {
        "uuid": ws.user_uuid,
        "email": ws.user_email,
        "firstName": None,
        "lastName": None,
        "picture": None,
        "lastSignInAt": None,
        "createdAt": created,
        "updatedAt": created,
        "webExtensionData": None,
    }


def workspace_current(call: Call) -> Response:
    """``GET workspaceManagement/workspaces/current`` -> ``{workspace}``."""
    return ok({"workspace": _workspace_body(call)})


def workspaces_list(call: Call) -> Response:
    """``GET workspaceManagement/workspaces/list`` -> ``{workspaces}`` (a token sees its own workspace)."""
    return ok({"workspaces": [_workspace_body(call)]})


def user_current(call: Call) -> Response:
    """``GET userManagement/users/current`` -> ``{user}`` (the plain ``User`` type)."""
    body = _user_body(call)
    return ok({"user": {key: body.get(key) for key in USER_KEYS}})


def workspace_user_current(call: Call) -> Response:
    """``GET workspaceManagement/users/current`` -> ``{user}``: user + ``workspaceUuid``, ``permissions``, ``role``."""
    body = _user_body(call)
    user: dict[str, Any] = {key: body.get(key) for key in USER_KEYS}
    permissions = body.get("permissions")
    if not isinstance(permissions, list):
        permissions = [{"effect": "allow", "resources": None, "actions": READ_ACTIONS}]
    user["workspaceUuid"] = call.ws
    user["permissions"] = permissions
    user["role"] = _role(call, body.get("role"), permissions, user.get("createdAt"))
    return ok({"user": user})


def _role(call: Call, role: Any, permissions: list[Any], created_at: Any) -> dict[str, Any] | None:
    """The ``Role`` object (``uuid``, ``workspaceUuid``, ``slug``, ``permissions``, ``createdAt``) or null.

    A catalogue that names the role by its slug only (``"admin"``) gets the object built around it,
    so the wire shape stays the type's.
    """
    if isinstance(role, dict) or role is None:
        return role
    slug = str(role)
    return {
        "uuid": seeded_uuid("role", call.ws, slug),
        "workspaceUuid": call.ws,
        "slug": slug,
        "permissions": permissions,
        "createdAt": created_at,
    }
