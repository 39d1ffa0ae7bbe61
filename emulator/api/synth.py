"""Deterministic node inputs and outputs: what Cargo keeps in per-run S3 objects, synthesized.

Cargo's fact tables carry no node payloads; they exist only in ``runContext`` /
``runComputedConfigs`` (run get) and in the export files (REFERENCE.md 4.1, 7). The emulator stores
no payloads either: it derives them on request from the run's identity with a seeded hash, so the
same run always shows the same outputs (a connector can be tested for idempotence) and nothing has
to be stored per run:

* the first executed node's output is the record itself (the model row when the workflow belongs to
  a play whose model has the record, else ``{id, title}``);
* other successful nodes get a small object shaped by their kind (agents nest theirs under
  ``answer``, as the docs describe); failed and pending nodes have no output;
* a node's computed config is its release config with ``{{ ... }}`` references resolved against
  the outputs before it; the first node's is the record when its config is empty.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Mapping
from typing import Any

_TEMPLATE = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")


def _rng(seed: int, *parts: object) -> random.Random:
    digest = hashlib.sha256("/".join(str(p) for p in (seed, *parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def node_output(seed: int, run_uuid: str, execution: Mapping[str, Any]) -> dict[str, Any]:
    """The output of one successful, non-first execution."""
    slug = str(execution.get("nodeSlug", ""))
    kind = execution.get("nodeKind", "native")
    rng = _rng(seed, run_uuid, slug)
    title = execution.get("title")
    score = rng.randint(0, 100)
    if kind == "agent":
        return {
            "answer": {"summary": title or f"{slug} answer", "score": score, "confidence": round(rng.random(), 3)},
            "messageUuid": execution.get("nodeMessageUuid"),
        }
    if kind == "connector":
        return {
            "data": {
                "id": f"{execution.get('nodeIntegrationSlug') or 'provider'}_{rng.getrandbits(40):010x}",
                "title": title,
                "score": score,
                "found": rng.random() < 0.8,
            },
            "integrationSlug": execution.get("nodeIntegrationSlug"),
            "actionSlug": execution.get("nodeActionSlug"),
        }
    if kind == "tool":
        return {"output": {"title": title, "score": score}, "runUuid": execution.get("nodeRunUuid")}
    action = str(execution.get("nodeActionSlug") or "")
    if action in ("branch", "filter", "if", "condition"):
        return {"matched": execution.get("nodeChildIndex") in (0, None)}
    return {"title": title, "value": score}


def run_context(seed: int, run: Mapping[str, Any], first_output: Mapping[str, Any]) -> dict[str, Any]:
    """``runContext``: the output of each successful execution, keyed by node slug."""
    context: dict[str, Any] = {}
    executions = [e for e in run.get("executions", []) if isinstance(e, Mapping)]
    for index, execution in enumerate(executions):
        if execution.get("status") != "success":
            continue
        slug = str(execution.get("nodeSlug"))
        context[slug] = dict(first_output) if index == 0 else node_output(seed, str(run.get("uuid")), execution)
    return context


def _lookup(context: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    parts = [p for p in re.split(r"[.\[\]]+", path) if p]
    if parts and parts[0] == "nodes":
        parts = parts[1:]
    current: Any = context
    for part in parts:
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return False, None
    return bool(parts), current


def resolve(config: Any, context: Mapping[str, Any]) -> Any:
    """``config`` with ``{{ node.path }}`` references replaced by values from ``context``.

    A string that is exactly one reference takes the referenced value itself (any JSON type);
    references inside longer text are spliced in as text; unknown references resolve to ``""``.
    """
    if isinstance(config, Mapping):
        return {key: resolve(value, context) for key, value in config.items()}
    if isinstance(config, list):
        return [resolve(item, context) for item in config]
    if not isinstance(config, str) or "{{" not in config:
        return config
    whole = _TEMPLATE.fullmatch(config.strip())
    if whole:
        found, value = _lookup(context, whole.group(1))
        return value if found else ""

    def splice(match: re.Match[str]) -> str:
        found, value = _lookup(context, match.group(1))
        return "" if not found or value is None else str(value)

    return _TEMPLATE.sub(splice, config)


def computed_configs(
    run: Mapping[str, Any],
    node_configs: Mapping[str, Any],
    context: Mapping[str, Any],
    first_output: Mapping[str, Any],
) -> dict[str, Any]:
    """``runComputedConfigs``: each executed node's resolved config, keyed by node slug."""
    result: dict[str, Any] = {}
    executions = [e for e in run.get("executions", []) if isinstance(e, Mapping)]
    for index, execution in enumerate(executions):
        slug = str(execution.get("nodeSlug"))
        config = resolve(node_configs.get(slug) or {}, context)
        if index == 0 and not config:
            config = dict(first_output)
        result[slug] = config
    return result


def last_executed_slug(run: Mapping[str, Any]) -> str | None:
    """The slug of the run's last execution (the default output node of exports)."""
    executions = [e for e in run.get("executions", []) if isinstance(e, Mapping)]
    return str(executions[-1].get("nodeSlug")) if executions else None
