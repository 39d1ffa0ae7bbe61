"""What an operator sees of ``cargo-elt sync``: the progress bar, the log lines, the failure alert.

Real subprocesses against the emulator over HTTP, into DuckDB. The bar is drawn on a pseudo-terminal
the test reads (``--progress bar`` refuses anything else); the alert goes to a local webhook.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import termios
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.alert_receiver import alert_receiver
from tests.e2e.support import Sandbox
from tests.e2e.test_cli import Workdir, cargo_elt, output, summary_rows


@pytest.fixture(scope="module")
def small_emulator() -> Iterator[Any]:
    """Small (about 25,000 spans): enough rows that the planner plans spans into several pages."""
    from cargo_elt.emulator.server import EmulatorOptions, running_emulator

    with running_emulator(EmulatorOptions(port=0, seed=7, scale="small", workspaces=1, admin=True)) as emulator:
        yield emulator


@pytest.fixture()
def work(small_emulator: Any, tmp_path: Path) -> Workdir:
    return Workdir(tmp_path, str(small_emulator.state.workspaces[0].token))


def truth_count(emulator: Any, table: str) -> int:
    return len(Sandbox(Path("."), emulator).truth_rows(table))


# -- progress -----------------------------------------------------------------------------------------

BAR = re.compile(
    r"(?P<table>runs|spans): +(?P<percent>\d+)%\|[^|]*\| (?P<done>\d+)/(?P<planned>\d+) "
    r"\[(?P<elapsed>[\d:]+)<(?P<eta>[\d:?]+), *(?P<rate>[^,\]]*pages[^,\]]*), (?P<rows>[\d,]+) rows, "
    r"(?P<row_rate>[\d,]+) rows/s\]"
)


def run_on_a_terminal(
    command: list[str], work: Workdir, columns: int = 120, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """``command`` with stderr on a pseudo-terminal of ``columns`` columns: exit code, stdout, terminal text."""
    terminal, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    environment = work.env(**(env or {}))
    with subprocess.Popen(command, cwd=work.root, env=environment, stdout=subprocess.PIPE, stderr=side) as process:
        os.close(side)
        drawn = b""
        while True:
            try:
                chunk = os.read(terminal, 65536)
            except OSError:  # EIO: the process closed its end of the terminal
                break
            if not chunk:
                break
            drawn += chunk
        assert process.stdout is not None
        stdout = process.stdout.read().decode()
        code = process.wait(timeout=300)
    os.close(terminal)
    return code, stdout, drawn.decode(errors="replace")


def test_progress_bar_counts_planned_pages_with_rows_rate_and_eta(work: Workdir, small_emulator: Any) -> None:
    command = [*cargo_elt(), "sync", "--base-url", small_emulator.base_url, "--tables", "runs,spans"]
    code, stdout, drawn = run_on_a_terminal([*command, "--progress", "bar"], work)
    assert code == 0, f"exit {code}\n{stdout}\n{drawn}"
    frames = [m for m in BAR.finditer(drawn.replace("\r", "\n"))]
    spans = [m for m in frames if m["table"] == "spans"]
    assert spans, f"no bar with planned pages for spans in:\n{drawn[-3000:]}"
    last = spans[-1]  # drawn as the extract step ends, with the final counts
    done, planned = int(last["done"]), int(last["planned"])
    assert planned >= 3, f"spans were not planned into pages: {last[0]}"
    assert done == planned, f"on data that does not move, the plan is exact: {last[0]}"
    assert (
        int(last["rows"].replace(",", "")) == truth_count(small_emulator, "spans") == summary_rows(stdout)["spans"][0]
    )
    assert int(last["row_rate"].replace(",", "")) > 0
    assert any(m["eta"] not in ("00:00", "?") for m in spans) or len(spans) == 1, "no ETA while reading"
    assert "Load cargo" in drawn, "dlt's own bars for normalize and load are kept"


STEPS_ON_BAR = re.compile(r"spans: .*?(?P<rows>[\d,]+) rows, [\d,]+ rows/s, (?P<steps>\d+) steps? committed\]")


def test_progress_bar_shows_the_steps_committed(work: Workdir, small_emulator: Any) -> None:
    """A backfill in steps (``sources.cargo.step_rows``): the bar counts the steps committed so far, and
    each committed step gets its line."""
    step_rows = 5_000
    spans = truth_count(small_emulator, "spans")
    assert spans > 3 * step_rows, "the emulator's spans must take several steps"
    command = [*cargo_elt(), "sync", "--base-url", small_emulator.base_url, "--tables", "spans", "--progress", "bar"]
    code, stdout, drawn = run_on_a_terminal(command, work, env={"SOURCES__CARGO__STEP_ROWS": str(step_rows)})
    assert code == 0, f"exit {code}\n{stdout}\n{drawn}"
    text = drawn.replace("\r", "\n")
    committed = [int(m["steps"]) for m in STEPS_ON_BAR.finditer(text)]
    announced = [int(n) for n in re.findall(r"step (\d+) committed: [\d,]+ rows loaded so far", text)]
    assert announced == list(range(1, len(announced) + 1)) and len(announced) >= 3, text[-3000:]
    assert committed, f"no bar with the steps committed in:\n{text[-3000:]}"
    assert committed == sorted(committed) and max(committed) == len(announced) - 1, (committed, announced)
    assert summary_rows(stdout)["spans"][0] == spans


def test_planned_pages_are_the_pages_read_when_the_data_does_not_move(small_emulator: Any, tmp_path: Path) -> None:
    """The bar's totals: every fact table's expected pages (``TableStats.pages_planned``) are its page queries."""
    stats = Sandbox(tmp_path, small_emulator).sync()
    assert stats["spans"].pages_planned >= 3, "spans were not planned"
    for table, table_stats in stats.items():
        assert table_stats.pages_planned == table_stats.data_queries > 0, (table, table_stats)


def test_progress_bar_refuses_what_is_not_a_terminal(work: Workdir, small_emulator: Any) -> None:
    result = work.sync("--base-url", small_emulator.base_url, "--tables", "runs", "--progress", "bar")
    assert result.returncode == 2, output(result)
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --progress bar draws on a terminal, and stderr is not one (redirected to a file or a pipe): "
        "use --progress log for lines a log file can keep, or --progress none"
    )
    assert not work.pipeline_dir.exists(), "refused before anything was written"


# -- logs ---------------------------------------------------------------------------------------------


def add_column(emulator: Any, name: str) -> None:
    """A column the source does not know: every sync of ``runs`` then warns about it."""
    Sandbox(Path("."), emulator).admin(
        "POST", "/_emulator/schema", json={"table": "runs", "action": "add", "column": name, "type": "Nullable(Int32)"}
    )


def test_json_log_lines_carry_the_sources_warnings(work: Workdir, small_emulator: Any) -> None:
    add_column(small_emulator, "priority_json")
    result = work.sync(
        "--base-url", small_emulator.base_url, "--tables", "runs", "--progress", "none", RUNTIME__LOG_FORMAT="JSON"
    )
    assert result.returncode == 0, output(result)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, output(result)
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a log line that is not JSON: {line!r}\n{output(result)}")
    ours = [r for r in records if str(r.get("logger", "")).startswith("cargo_elt.source")]
    warned = [r for r in ours if "runs.priority_json: the server has a new column" in r["msg"]]
    assert warned, f"the source's warning is not among the JSON lines: {records}"
    assert warned[0]["level"] == "WARNING" and warned[0]["written_at"].startswith("20"), warned[0]


def test_log_level_and_text_format_apply_to_the_sources_records(work: Workdir, small_emulator: Any) -> None:
    add_column(small_emulator, "priority_text")
    args = ("--base-url", small_emulator.base_url, "--tables", "runs", "--progress", "none")
    shown = work.sync(*args)
    assert shown.returncode == 0, output(shown)
    line = next(line for line in shown.stderr.splitlines() if "runs.priority_text: the server has a new column" in line)
    # dlt's text format: time|[LEVEL]|process|thread|logger|file|function:line|message
    dlt_text = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\|\[WARNING\]\|\d+\|[^|]+\|cargo_elt\.source(\.\w+)?\|"
    assert re.match(dlt_text, line), line

    hidden = Workdir(work.root / "quiet", work.token)
    hidden.root.mkdir()
    quiet = hidden.sync(*args, RUNTIME__LOG_LEVEL="ERROR")
    assert quiet.returncode == 0, output(quiet)
    assert "priority_text" not in quiet.stderr, output(quiet)


# -- alert --------------------------------------------------------------------------------------------


def test_a_failed_sync_sends_one_alert_naming_pipeline_table_and_error(work: Workdir, small_emulator: Any) -> None:
    admin = Sandbox(Path("."), small_emulator).admin
    # every page query answers ClickHouse's timeout (code 159): runs fails once its windows reach 1 ms
    admin("POST", "/_emulator/faults", json={"spec": "timeout=1", "seed": 1, "match": " LIMIT "})
    try:
        with alert_receiver() as hook:
            result = work.sync(
                "--base-url",
                small_emulator.base_url,
                "--tables",
                "runs",
                "--progress",
                "none",
                RUNTIME__SLACK_INCOMING_HOOK=hook.url,
            )
    finally:
        admin("POST", "/_emulator/faults", json={"spec": "", "seed": 0})
    assert result.returncode == 1, output(result)
    error = next(line for line in result.stderr.splitlines() if line.startswith("error: ")).removeprefix("error: ")
    assert len(hook.messages) == 1, hook.messages
    text = hook.texts[0]
    assert "pipeline `cargo`" in text and "table `runs`" in text, text
    assert error[:200] in text and "time cap" in text, text
    assert work.token not in json.dumps(hook.messages), "the token reached the alert"


def test_bad_input_alerts_too_and_never_with_the_token(work: Workdir, small_emulator: Any) -> None:
    wrong = Workdir(work.root, f"crg_{work.token[::-1]}")  # a token Cargo refuses: exit 2
    with alert_receiver() as hook:
        result = wrong.sync("--base-url", small_emulator.base_url, RUNTIME__SLACK_INCOMING_HOOK=hook.url)
    assert result.returncode == 2, output(result)
    assert len(hook.messages) == 1 and "rejected the API token" in hook.texts[0], hook.messages
    assert wrong.token not in json.dumps(hook.messages)
