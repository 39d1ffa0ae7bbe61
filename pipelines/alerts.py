"""One alert per failed sync, to dlt's ``runtime.slack_incoming_hook`` when it is configured.

dlt reads the hook (a secret: ``[runtime] slack_incoming_hook`` in ``.dlt/secrets.toml`` or
``RUNTIME__SLACK_INCOMING_HOOK``) but sends nothing on failure by itself. ``cargo-elt sync`` (any
non-zero exit) and the DAG's ``on_failure_callback`` (a task that failed for good, after its retries)
post one message naming the pipeline, the table and the error, through dlt's ``send_slack_message``.

The error is redacted of the Cargo token and the destination's secrets before it leaves the machine,
whatever put them there; an alert that cannot be delivered is a WARNING, never a second failure.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Sequence

logger = logging.getLogger(__name__)

ALERT_TIMEOUT_S = 30.0
"""How long a failed sync waits for the hook to take its alert before exiting anyway."""

MAX_ERROR_CHARS = 1_500
"""Slack shows a message whole up to a few thousand characters; the error is cut to keep it one screen."""


def slack_hook() -> str | None:
    """The configured ``runtime.slack_incoming_hook``, resolved as dlt resolves it, or ``None``."""
    from dlt.common.configuration import resolve_configuration
    from dlt.common.configuration.specs import RuntimeConfiguration

    try:
        hook = resolve_configuration(RuntimeConfiguration()).slack_incoming_hook
    except Exception as exc:  # a broken [runtime] section must not hide the sync's own error
        logger.warning("runtime settings unreadable, no failure alert sent (%s)", type(exc).__name__)
        return None
    return str(hook) if hook else None


def failure_message(pipeline: str, table: str | None, error: str, secrets: Sequence[str] = ()) -> str:
    """The alert's text (Slack markdown): pipeline, table, host and the error, secrets replaced by ``***``."""
    for secret in sorted({s for s in secrets if s and s.strip()}, key=len, reverse=True):
        error = error.replace(secret, "***")
    if len(error) > MAX_ERROR_CHARS:
        error = error[: MAX_ERROR_CHARS - 3] + "..."
    where = f"table `{table}`" if table else "no table (before or after the tables were read)"
    return (
        f":rotating_light: cargo-elt: the sync of pipeline `{pipeline}` failed on {where}, "
        f"host `{socket.gethostname()}`:\n>{error}"
    )


def send_failure_alert(pipeline: str, table: str | None, error: str, secrets: Sequence[str] = ()) -> bool:
    """Post the failure to ``runtime.slack_incoming_hook`` if one is configured; whether it was sent."""
    hook = slack_hook()
    if hook is None:
        return False
    from dlt.common.runtime.slack import send_slack_message

    message = failure_message(pipeline, table, error, [*secrets, hook])
    problem: list[str] = []

    def send() -> None:
        try:
            send_slack_message(hook, message)
        except Exception as exc:
            problem.append(type(exc).__name__)  # the hook's URL is itself a secret: the kind only

    # dlt posts with no timeout: a hook that never answers must not hold a failed cron job forever
    sender = threading.Thread(target=send, name="cargo-failure-alert", daemon=True)
    sender.start()
    sender.join(ALERT_TIMEOUT_S)
    if sender.is_alive():
        problem.append(f"no answer within {ALERT_TIMEOUT_S:g} s")
    if problem:
        logger.warning("the failure alert to runtime.slack_incoming_hook was not delivered (%s)", problem[0])
        return False
    return True
