"""The README's performance figures are the benchmarks' own output (``bench/results``), rendered, not retyped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import readme


def test_the_readme_shows_the_newest_benchmark_results() -> None:
    assert readme.newest("compare_*.json") is not None, "bench/results holds no bench.compare output"
    text = readme.README.read_text()
    assert readme.replace_block(text, readme.render()) == text, (
        "README.md's performance figures differ from bench/results: run `python -m bench.readme --write`"
    )


def test_every_target_and_its_verdict_is_shown() -> None:
    path = readme.newest("compare_*.json")
    assert path is not None
    data = json.loads(path.read_text())
    block = readme.render(compare=path)
    for scale in data["scales"]:
        for check in scale["checks"]:
            assert check["target"] in block
            assert f"{check['value']} {'PASS' if check['ok'] else '**MISS**'}" in block


def test_results_without_their_run_are_refused_by_name(tmp_path: Path) -> None:
    bare = tmp_path / "compare_old.json"
    bare.write_text(json.dumps([{"scale": "small"}]))
    with pytest.raises(readme.ResultsError, match=r"compare_old\.json: no run, scales"):
        readme.render(compare=bare, large=None)


def test_a_readme_without_the_markers_is_refused() -> None:
    with pytest.raises(readme.ResultsError, match="no generated block"):
        readme.replace_block("# no markers here\n", readme.render())


def test_the_overlap_bound_is_the_extract_over_the_cpu_work_per_core() -> None:
    from bench.compare import Measured, overlapped_at_best

    def run(client_cpu: float, server_cpu: float, cores: int = 2) -> Measured:
        payload = {"cpu_seconds": client_cpu, "cores": cores}
        return Measured(rows=1, wall=130.0, requests=1, rss=1.0, extract=100.0, payload=payload, server_cpu=server_cpu)

    assert overlapped_at_best(run(client_cpu=90.0, server_cpu=90.0)) == 1.0  # CPU to spare: the extract bounds
    assert overlapped_at_best(run(client_cpu=150.0, server_cpu=90.0)) == pytest.approx(100 / 120)
    assert overlapped_at_best(run(client_cpu=150.0, server_cpu=90.0, cores=4)) == 1.0
    unmeasured = Measured(rows=1, wall=130.0, requests=1, rss=1.0, extract=100.0, payload={})
    assert readme._ratio(overlapped_at_best(unmeasured)) == "n/a"


def _fan_out_file(folder: Path, name: str, date: str, latency: float, speedups: list[float]) -> Path:
    run = {"date": date, "cores": 2, "machine": "x86_64", "command": f"bench {name}", "scale": "medium"}
    run |= {"latency": latency, "repeats": 1, "concurrency": 4}
    figures = [
        {"workers": 2**i, "chunks": 2**i, "rows": 1000, "wall": 10 / s, "rate": 100 * s, "speedup": s}
        | {"client_cpu": 1.0, "server_cpu": 2.0, "busy": 0.3, "loads": 0.5, "wait": 0.0, "peak": 321.0}
        for i, s in enumerate(speedups)
    ]
    path = folder / f"backfill_workers_{name}.json"
    per_page = {"client_cpu_seconds": 0.07, "server_cpu_seconds": 0.1}
    path.write_text(json.dumps({"run": run, "per_page": per_page, "figures": figures}))
    return path


def test_the_fan_out_table_shows_the_newest_dates_files_by_latency(tmp_path: Path) -> None:
    _fan_out_file(tmp_path, "old", "2026-01-01", 0.0, [1.0, 9.99])
    _fan_out_file(tmp_path, "slow", "2026-02-02", 1.0, [1.0, 1.37])
    _fan_out_file(tmp_path, "fast", "2026-02-02", 0.0, [1.0, 0.93, 0.74])
    chosen = readme.newest_fan_out(tmp_path)
    assert sorted(p.name for p in chosen) == ["backfill_workers_fast.json", "backfill_workers_slow.json"]
    block = "\n".join(readme.render_fan_out(chosen))
    assert "9.99x" not in block  # an older date's figures are not mixed in
    rows = [line for line in block.splitlines() if line.startswith("| 0 |") or line.startswith("| 1 |")]
    assert [row.split(" | ")[6] for row in rows] == ["1.00x", "0.93x", "0.74x", "1.00x", "1.37x"]
    assert block.index("`bench fast`") < block.index("`bench slow`")


def test_the_readme_shows_the_newest_fan_out_figures() -> None:
    chosen = readme.newest_fan_out()
    assert chosen, "bench/results holds no bench.backfill_workers output"
    text = readme.README.read_text()
    for path in chosen:
        data = json.loads(path.read_text())
        assert f"`{data['run']['command']}`" in text
        for figures in data["figures"]:
            assert f" {figures['speedup']:.2f}x " in text
