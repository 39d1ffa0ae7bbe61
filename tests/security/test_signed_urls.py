"""Signed download URLs: they expire, and no edit turns one into a URL for another file or workspace.

Over real HTTP against an emulator serving the two-workspace fixture of the download tests. Each
forgery starts from a genuine URL of workspace one and changes one thing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest

from cargo_elt.emulator.downloads import _decode_id, _encode_id, _signature, sign_file_url
from tests.integration.api_support import Served, served_fixture


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with served_fixture() as running:
        yield running


def signed(served: Served, *, check: bool = True) -> str:
    response = served.api.post("/orchestration/runs/download", json={"workflowUuid": served.fixture.workflow})
    assert response.status_code == 200, response.text
    url = response.json()["url"]
    assert isinstance(url, str)
    if check:
        assert httpx.get(url, timeout=30).status_code == 200, "the genuine URL must work"
    return url


def parts(url: str) -> tuple[str, str, int, str]:
    """(prefix up to the id, file id, expires, signature)."""
    split = urlsplit(url)
    query = parse_qs(split.query)
    prefix, _, file_id = split.path.rpartition("/")
    return f"{split.scheme}://{split.netloc}{prefix}/", file_id, int(query["expires"][0]), query["signature"][0]


def url_of(prefix: str, file_id: str, expires: object, signature: str) -> str:
    return f"{prefix}{file_id}?expires={expires}&signature={signature}"


def refused(url: str) -> httpx.Response:
    response = httpx.get(url, timeout=30)
    assert response.status_code in (403, 404), f"{response.status_code} for a forged URL {url}"
    if response.status_code == 403:
        assert response.headers["content-type"] == "application/xml"
    assert b"_uuid" not in response.content, "a refusal must not carry file content"
    return response


def test_the_file_id_cannot_be_pointed_at_another_workspace(served: Served) -> None:
    """The id is the file's spec: decode it, swap in the other workspace, re-encode, keep the signature."""
    prefix, file_id, expires, signature = parts(signed(served))
    genuine = _decode_id(file_id)
    assert genuine is not None and genuine.workspace_uuid == served.fixture.ws.uuid
    forged_spec = dataclasses.replace(genuine, workspace_uuid=served.fixture.other.uuid)
    forged = _encode_id(forged_spec, expires)
    assert forged != file_id
    assert "<Code>SignatureDoesNotMatch</Code>" in refused(url_of(prefix, forged, expires, signature)).text
    # control: the same spec signed with the server's key is served, so only the signature stopped it
    assert httpx.get(sign_file_url(served.state, forged_spec), timeout=30).status_code == 200


def test_another_workspaces_file_id_does_not_take_this_signature(served: Served) -> None:
    prefix, file_id, expires, signature = parts(signed(served))
    genuine = _decode_id(file_id)
    assert genuine is not None
    theirs = sign_file_url(served.state, dataclasses.replace(genuine, workspace_uuid=served.fixture.other.uuid))
    _, their_id, _, _ = parts(theirs)
    assert "SignatureDoesNotMatch" in refused(url_of(prefix, their_id, expires, signature)).text


@pytest.mark.parametrize(
    "change",
    ["flip a hex digit", "upper case", "truncate", "append", "empty", "another URL's signature", "unicode digit"],
)
def test_an_altered_signature_is_refused(served: Served, change: str) -> None:
    prefix, file_id, expires, signature = parts(signed(served))
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    other_signature = parts(signed(served))[3] if change == "another URL's signature" else ""
    altered = {
        "flip a hex digit": flipped,
        "upper case": signature.upper(),
        "truncate": signature[:-1],
        "append": signature + "0",
        "empty": "",
        "another URL's signature": _signature(served.state, file_id + "x", expires) if not other_signature else flipped,
        "unicode digit": quote(signature[:-1] + "\uff10"),
    }[change]
    assert altered != signature
    refused(url_of(prefix, file_id, expires, altered))


@pytest.mark.parametrize("expires", ["+1", "1e12", "-1", "0x10", "", "99999999999999999999"])
def test_an_altered_expiry_is_refused(served: Served, expires: str) -> None:
    prefix, file_id, original, signature = parts(signed(served))
    value = {"+1": original + 1}.get(expires, expires)
    refused(url_of(prefix, file_id, value, signature))


def test_an_altered_file_id_is_refused(served: Served) -> None:
    prefix, file_id, expires, signature = parts(signed(served))
    for forged in (file_id[:-1], file_id + "A", "s" + file_id[1:], "../" + file_id, file_id.upper()):
        if forged != file_id:
            refused(url_of(prefix, quote(forged, safe=""), expires, signature))


def test_a_url_expires_and_cannot_be_replayed(served: Served) -> None:
    """With the emulator's TTL setting below zero a URL is born expired (no waiting on the clock):
    refused as expired, and for good (replays included)."""
    admin = f"{served.base_url}/_emulator/settings"
    before = httpx.post(admin, json={}, timeout=30)
    if before.status_code == 404:
        served.state.signed_url_ttl_s = -5  # this fixture serves no admin routes: set the same field directly
    else:
        assert httpx.post(admin, json={"signedUrlTtl": -5}, timeout=30).status_code == 200
    try:
        url = signed(served, check=False)
        _, _, expires, _ = parts(url)
        assert int(expires) < time.time(), "the URL should be signed already expired"
        for _ in range(2):
            response = refused(url)
            assert response.status_code == 403 and "<Message>Request has expired</Message>" in response.text
    finally:
        served.state.signed_url_ttl_s = 900


def test_a_url_of_another_emulator_is_refused(served: Served) -> None:
    """Another instance has its own signing key: its URLs are worthless here."""
    from cargo_elt.emulator.server import EmulatorOptions, running_emulator

    _, file_id, _, _ = parts(signed(served))
    with running_emulator(EmulatorOptions(port=0, seed=2, scale="tiny", workspaces=1)) as other:
        genuine = _decode_id(file_id)
        assert genuine is not None
        foreign = sign_file_url(other.state, genuine)
    prefix, foreign_id, expires, signature = parts(foreign)
    here = f"{served.base_url}/_files/"
    assert "SignatureDoesNotMatch" in refused(url_of(here, foreign_id, expires, signature)).text
    assert file_id != foreign_id or prefix != here
