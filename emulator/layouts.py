"""Export layouts the emulator can serve besides its own, to see how a connector copes with another Cargo.

REFERENCE.md 7 leaves the export files' layouts open ([I]); the emulator's own choice is a JSON array
with ``_``-prefixed keys for run outputs, a CSV with an ``output`` column for batches, plain CSV shards
for segments, nothing compressed. These switches make it serve the other plausible layouts, and broken
ones, as admin settings (``POST /_emulator/settings``) or ``cargo-elt emulator serve --export-layout``:

=====================  ==================================================================================
``runOutputsFormat``   ``array`` (default), ``ndjson``, ``csv``: what a ``format: "json"`` run-outputs
                       export holds (``csv``: a server that ignores the format asked for)
``runOutputsKeys``     ``underscore`` (default, ``_created_at``), ``camel`` (``createdAt``), ``snake``
                       (``created_at``): how the run-outputs keys are spelled
``gzipExports``        ``true``: run-outputs, batch and segment files are gzip-compressed (their names
                       and media types unchanged: a client must look at the bytes)
``batchOutputColumn``  the batch file's output column (default ``output``; ``{slug}``: the output
                       node's slug)
``malformedExports``   kinds (``run-outputs``, ``batch``, ``segment``) whose files are an HTML error
                       page instead
``defectiveRows``      N > 0: every N-th row written to run-outputs files, and every N-th to batch files
                       (counted across files, since ``DELETE /_emulator/files``), cannot be read: no
                       creation time; one cell short
=====================  ==================================================================================

Every file served is noted (``GET /_emulator/files``: kind, layout, rows written, rows made defective,
and for run outputs ``runsDigest``, the sum of ``uuid_digest`` over the runs written readable), so a
test can compare what a sync loaded with what was written without the emulator keeping every uuid.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

RUN_OUTPUT_FORMATS = ("array", "ndjson", "csv")
KEY_STYLES = ("underscore", "camel", "snake")
EXPORT_KINDS = ("run-outputs", "batch", "segment")
MALFORMED_BODY = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>502 Bad Gateway</h1><p>The export could not be produced.</p></body></html>\n"
)
"""What a malformed export holds: the error page of a proxy in front of the file storage."""

SERVED_FILES_KEPT = 2_000
"""Served files remembered for ``GET /_emulator/files`` (the oldest are forgotten)."""

DIGEST_MODULUS = 1 << 61


def uuid_digest(uuid: str) -> int:
    """A run's share of a file's ``runsDigest``: the uuid's first 60 bits (sums compare sets of runs)."""
    return int(uuid.replace("-", "")[:15], 16)


@dataclass(frozen=True)
class ExportLayout:
    """The export layout switches (see the module docstring); the defaults are the emulator's own layout."""

    run_outputs_format: str = "array"
    run_outputs_keys: str = "underscore"
    gzip_exports: bool = False
    batch_output_column: str = "output"
    malformed_exports: tuple[str, ...] = ()
    defective_rows: int = 0

    def to_json(self) -> dict[str, Any]:
        return {_CAMEL[f.name]: getattr(self, f.name) for f in fields(self)}

    def key(self, name: str) -> str:
        """A run-outputs key (``_created_at`` in the emulator's own layout) in this layout's spelling."""
        if self.run_outputs_keys == "underscore" or not name.startswith("_"):
            return name
        bare = name[1:]
        if self.run_outputs_keys == "snake":
            return bare
        head, *rest = bare.split("_")
        return head + "".join(part.capitalize() for part in rest)

    def output_column(self, slug: str | None) -> str:
        return self.batch_output_column.replace("{slug}", slug or "output")


_CAMEL = {
    "run_outputs_format": "runOutputsFormat",
    "run_outputs_keys": "runOutputsKeys",
    "gzip_exports": "gzipExports",
    "batch_output_column": "batchOutputColumn",
    "malformed_exports": "malformedExports",
    "defective_rows": "defectiveRows",
}
SETTING_NAMES = frozenset(_CAMEL.values())


def updated(layout: ExportLayout, settings: Mapping[str, Any]) -> ExportLayout:
    """``layout`` with the given camelCase settings changed; ``ValueError`` names a bad one."""
    changes: dict[str, Any] = {}
    for attribute, name in _CAMEL.items():
        if name not in settings:
            continue
        value = settings[name]
        if name == "runOutputsFormat" and value not in RUN_OUTPUT_FORMATS:
            raise ValueError(f"{name} must be one of {', '.join(RUN_OUTPUT_FORMATS)}, not {value!r}")
        if name == "runOutputsKeys" and value not in KEY_STYLES:
            raise ValueError(f"{name} must be one of {', '.join(KEY_STYLES)}, not {value!r}")
        if name == "gzipExports":
            value = _boolean(name, value)
        if name == "batchOutputColumn" and (not isinstance(value, str) or not value.strip()):
            raise ValueError(f"{name} must be a column name, not {value!r}")
        if name == "malformedExports":
            kinds = [value] if isinstance(value, str) else value
            if not isinstance(kinds, list | tuple) or any(k not in EXPORT_KINDS for k in kinds):
                raise ValueError(f"{name} must list kinds among {', '.join(EXPORT_KINDS)}, not {value!r}")
            value = tuple(kinds)
        if name == "defectiveRows":
            value = int(value) if isinstance(value, int | str) and str(value).isdigit() else -1
            if value < 0:
                raise ValueError(f"{name} must be a whole number, 0 or more")
        changes[attribute] = value
    return replace(layout, **changes)


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    raise ValueError(f"{name} must be true or false, not {value!r}")


def parse_layout_option(text: str) -> ExportLayout:
    """``--export-layout runOutputsFormat=ndjson,gzipExports=true,malformedExports=batch+segment``."""
    settings: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or name not in SETTING_NAMES:
            raise ValueError(
                f"--export-layout: {part!r} is not NAME=VALUE with NAME among {', '.join(sorted(SETTING_NAMES))}"
            )
        settings[name] = [k for k in value.split("+") if k] if name == "malformedExports" else value
    return updated(ExportLayout(), settings)


@dataclass
class ServedFiles:
    """What was written into each export file served (for tests comparing it with what was loaded)."""

    entries: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=SERVED_FILES_KEPT))
    rows_written: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.entries.append(entry)

    def listed(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.entries)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
            self.rows_written.clear()

    def next_row_defective(self, kind: str, every: int) -> bool:
        """Count a row written to a file of ``kind``; whether it is the ``every``-th (made unreadable)."""
        with self.lock:
            count = self.rows_written.get(kind, 0) + 1
            self.rows_written[kind] = count
        return every > 0 and count % every == 0


def noted(chunks: Iterator[bytes], served: ServedFiles, entry: dict[str, Any]) -> Iterator[bytes]:
    """``chunks``, noting ``entry`` once the whole file has been produced (its counts are final then)."""
    yield from chunks
    served.note(entry)
