"""Loaded files are deleted by default (dlt keeps them for ever), and a user's own choice is kept."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cargo_elt.source import disk


@pytest.fixture()
def no_setting() -> Iterator[None]:
    """No value in dlt's in-memory config before and after the test."""
    import dlt

    dlt.config[disk.LOADED_FILES_SETTING] = None
    yield
    dlt.config[disk.LOADED_FILES_SETTING] = None


def test_loaded_files_are_deleted_by_default(no_setting: None) -> None:
    import dlt

    assert dlt.config.get(disk.LOADED_FILES_SETTING) is None
    disk.delete_loaded_files()
    assert dlt.config.get(disk.LOADED_FILES_SETTING) is True


def test_a_user_who_keeps_them_is_obeyed(no_setting: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import dlt

    monkeypatch.setenv("LOAD__DELETE_COMPLETED_JOBS", "false")
    disk.delete_loaded_files()
    assert str(dlt.config.get(disk.LOADED_FILES_SETTING)).lower() == "false"
