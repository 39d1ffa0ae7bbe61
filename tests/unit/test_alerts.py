"""The failure alert (``pipelines/alerts.py``) against a local webhook over real HTTP."""

from __future__ import annotations

import logging
import socket

import pytest

from cargo_elt.pipelines.alerts import MAX_ERROR_CHARS, failure_message, send_failure_alert
from tests.alert_receiver import alert_receiver

TOKEN = "crg_live_0123456789abcdefALERTTOKEN"


def test_the_message_names_pipeline_table_host_and_error_without_secrets() -> None:
    text = failure_message("cargo", "spans", f"HTTP 500 for Bearer {TOKEN} and {TOKEN[:12]}", [TOKEN[:12], TOKEN])
    assert "pipeline `cargo`" in text and "table `spans`" in text and f"`{socket.gethostname()}`" in text
    assert "HTTP 500 for Bearer ***" in text
    assert TOKEN not in text and TOKEN[:12] not in text, "secrets are replaced, the longest first"
    long = failure_message("cargo", None, "x" * 10_000)
    assert "no table" in long and long.endswith("...") and long.count("x") == MAX_ERROR_CHARS - 3


def test_a_configured_hook_receives_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    with alert_receiver() as hook:
        monkeypatch.setenv("RUNTIME__SLACK_INCOMING_HOOK", hook.url)
        sent = send_failure_alert("cargo", "runs", f"the sync failed reading runs: {TOKEN} refused", [TOKEN])
    assert sent
    assert len(hook.messages) == 1
    message = hook.messages[0]
    assert message["mrkdwn"] is True
    assert "pipeline `cargo`" in message["text"] and "table `runs`" in message["text"]
    assert "the sync failed reading runs: *** refused" in message["text"]
    assert TOKEN not in str(message) and hook.url not in str(message)


def test_no_hook_no_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNTIME__SLACK_INCOMING_HOOK", raising=False)
    with alert_receiver() as hook:
        assert not send_failure_alert("cargo", "runs", "boom")
    assert hook.messages == []


def test_a_hook_that_refuses_is_a_warning_not_a_failure(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with alert_receiver(status=404) as hook:
        monkeypatch.setenv("RUNTIME__SLACK_INCOMING_HOOK", hook.url)
        with caplog.at_level(logging.WARNING):
            assert not send_failure_alert("cargo", "runs", "boom")
    assert len(hook.messages) == 1
    assert "was not delivered (HTTPError)" in caplog.text
    assert hook.url not in caplog.text, "the hook's URL is a secret"
