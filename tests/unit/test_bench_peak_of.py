"""``bench/peak_of.py`` reports one command's own peak memory and passes its exit status on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PEAK_OF = Path(__file__).resolve().parents[2] / "bench" / "peak_of.py"


def test_the_peak_is_the_commands_own_and_its_exit_status_is_kept(tmp_path: Path) -> None:
    out = tmp_path / "peak.json"
    allocate = "import sys; block = bytearray(150 * 2**20); block[::4096] = b'x' * len(block[::4096]); sys.exit(3)"
    done = subprocess.run([sys.executable, str(PEAK_OF), str(out), "--", sys.executable, "-c", allocate], check=False)
    assert done.returncode == 3
    peak = json.loads(out.read_text())["peak_rss_mb"]
    assert 150 <= peak < 400, peak  # the 150 MB block it touched, and not a larger earlier child's


def test_a_command_line_without_the_separator_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(PEAK_OF), str(tmp_path / "x.json"), "true"], check=False, capture_output=True, text=True
    )
    assert done.returncode == 2 and "usage" in done.stderr
    assert not (tmp_path / "x.json").exists()
