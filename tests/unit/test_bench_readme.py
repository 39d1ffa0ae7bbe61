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
