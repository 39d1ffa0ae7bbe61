"""``cargo-elt report``: a static HTML page of charts and tables from the marts, on any warehouse.

The marts are read through the pipeline the sync used (``pipeline.sql_client()``), so the warehouse's
credentials come from the same ``.dlt`` configuration; the page is written to one file that opens
without a network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..sync import UserInputError, _destination_secrets, _redact, _short
from ..warehouse import WarehouseRequest, open_pipeline
from .data import ReportData, read_report_data
from .page import render_page

DEFAULT_REPORT = "cargo_report.html"
DEFAULT_DAYS = 30
MAX_DAYS = 366


class ReportFailed(Exception):
    """The marts could not be read (exit 1): the message says which and what to run."""


@dataclass
class ReportRequest(WarehouseRequest):
    """What one ``cargo-elt report`` was asked to do."""

    out: str = DEFAULT_REPORT
    days: int = DEFAULT_DAYS


def build_report(request: ReportRequest) -> tuple[Path, ReportData]:
    """Read the marts, write the page; returns its absolute path and what it shows."""
    if not 1 <= request.days <= MAX_DAYS:
        raise UserInputError(f"--days {request.days} is out of range: give 1 to {MAX_DAYS}")
    out = Path(os.path.abspath(request.out))
    if not out.parent.is_dir():
        raise UserInputError(f"--out {request.out}: the directory {out.parent} does not exist")
    pipeline = open_pipeline(request)
    try:
        with pipeline.sql_client() as client:
            data = read_report_data(client, request.destination, request.dataset, request.days)
    except UserInputError:
        raise
    except Exception as exc:
        message = _short(str(exc) or type(exc).__name__, 400)
        raise ReportFailed(
            _redact(
                f"cannot read the marts in {request.destination} (dataset {request.dataset}): {message}. "
                "Build them first with `cargo-elt models` (same --destination, --dataset, --pipeline-name)",
                _destination_secrets(request.destination),
            )
        ) from None
    out.write_text(render_page(data, datetime.now(UTC)), encoding="utf-8")
    return out, data
