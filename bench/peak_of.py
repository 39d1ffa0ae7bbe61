"""Run a command and record the peak resident memory of its largest process.

``python bench/peak_of.py OUT.json -- COMMAND...`` runs COMMAND with this process's standard streams
and writes ``{"peak_rss_mb": ...}`` to OUT.json (the standard library only: it runs from any
directory, as a file). Why a process of its own: ``RUSAGE_CHILDREN`` of a long-lived benchmark is the
largest of every child it ever waited for (the emulator's data generator included), so only a fresh
parent sees one command's processes alone. The figure is one process's peak, not the sum of the
processes that ran at once: for ``--workers N`` it is what one worker needs.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if len(arguments) < 3 or arguments[1] != "--":
        print("usage: python bench/peak_of.py OUT.json -- COMMAND...", file=sys.stderr)
        return 2
    out, command = Path(arguments[0]), arguments[2:]
    returncode = subprocess.run(command, check=False).returncode
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out.write_text(json.dumps({"peak_rss_mb": peak_mb}))
    return returncode


if __name__ == "__main__":
    raise SystemExit(main())
