"""Workspaces the emulator serves: identity, API token and the user behind the token."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

WORKSPACE_NAMES = ("Acme RevOps", "Globex Growth", "Initech Sales", "Umbrella GTM", "Hooli Outbound")


def seeded_uuid(*parts: object) -> str:
    """A UUID (v4 layout) derived from ``parts``: the same parts always give the same UUID."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


@dataclass(frozen=True)
class Workspace:
    """One workspace and the API token that reads it."""

    index: int
    uuid: str
    name: str
    token: str
    user_uuid: str
    user_email: str


def make_workspaces(seed: int, count: int, tokens: Sequence[str] = ()) -> list[Workspace]:
    """Workspaces one to ``count``; ``tokens`` fixes the tokens of the first ones, in order."""
    if count < 1:
        raise ValueError("at least one workspace is needed (--workspaces)")
    if len(tokens) > count:
        raise ValueError(f"{len(tokens)} tokens given for {count} workspaces (--token / --workspaces)")
    result = []
    for index in range(count):
        ws_uuid = seeded_uuid("workspace", seed, index)
        token = (
            tokens[index]
            if index < len(tokens)
            else "crg_" + hashlib.sha256(f"token/{seed}/{index}".encode()).hexdigest()[:40]
        )
        name = WORKSPACE_NAMES[index % len(WORKSPACE_NAMES)] + ("" if index < len(WORKSPACE_NAMES) else f" {index}")
        result.append(
            Workspace(
                index=index,
                uuid=ws_uuid,
                name=name,
                token=token,
                user_uuid=seeded_uuid("user", seed, index),
                user_email=f"ops{index + 1}@example.com",
            )
        )
    return result
