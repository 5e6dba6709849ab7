"""The serving bench (tools.servebench): its pure helpers, and the whole command on tiny shapes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT
from tools.servebench import REAL, TINY, Group, percentile, ratio, rotated


def test_percentile_interpolates_between_sorted_values():
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95) == pytest.approx(4.8)
    assert percentile([7.0], 95) == 7.0


def test_rounds_rotate_so_no_cell_always_goes_first():
    cells = ["a", "b", "c"]
    assert [rotated(cells, r)[0] for r in range(4)] == ["a", "b", "c", "a"]
    assert sorted(rotated(cells, 2)) == cells


def test_ratio_is_the_median_of_each_rounds_ratio():
    g = Group(new_tokens=56, batch=1, rounds=[{"t": 4.0, "s": 1.0}, {"t": 6.0, "s": 2.0}, {"t": 10.0, "s": 1.0}])
    assert ratio(g, "t", "s") == 4.0  # per round 4, 3, 10: the median, not 20 / 4
    assert ratio(g, "t", "missing") is None


def test_the_big_teacher_is_only_in_the_first_lengths_fp32_batch_one_cells():
    cells = {(c.model, c.precision, c.decoding) for c in REAL.cells("cpu", 56, 1)}
    assert ("t5-large", "fp32", "beam4") in cells and ("t5-large", "int8", "greedy") not in cells
    assert ("t5-small", "int8", "greedy") in cells
    for n, batch in ((128, 1), (56, 16), (128, 16)):
        assert not any(c.model == "t5-large" for c in REAL.cells("cpu", n, batch))
    assert {c.precision for c in REAL.cells("cuda", 56, 1)} == {"fp32", "bf16"}


def test_the_trimmed_plan_keeps_the_served_and_like_for_like_cells():
    assert REAL.batches(56) == (1, 16) and REAL.batches(128) == (1,)  # no serving batch at 128 tokens
    batch16 = {(c.model, c.precision, c.decoding) for c in REAL.cells("cpu", 56, 16)}
    assert ("t5-small", "int8", "greedy") in batch16 and ("t5-base", "fp32", "beam4") in batch16
    assert ("t5-small", "int8", "beam4") not in batch16  # int8 is served greedy
    long = {(c.model, c.precision, c.decoding) for c in REAL.cells("cpu", 128, 1)}
    assert ("t5-base", "fp32", "beam4") in long and ("t5-small", "fp32", "greedy") in long  # the served ratio
    assert ("t5-small", "fp32", "beam4") not in long and ("t5-base", "int8", "beam4") not in long
    assert len(REAL.left_out()) == 4
    from dataclasses import replace

    full = replace(REAL, big=(), trimmed=False)
    assert full.batches(128) == (1, 16) and len(full.cells("cpu", 128, 16)) == 4 * 2 * 2


def test_serve_bench_runs_end_to_end_on_tiny_shapes(tmp_path):
    """The command as documented, tiny: every cell, the ratios, each model's facts from its own process,
    and the docs table renders from its JSON."""
    out = tmp_path / "serve.json"
    done = subprocess.run([sys.executable, "-m", "tools.bench", "serve", "--tiny", "--int8-paths", "torch-dynamic",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["host"]["torch_threads"] == 2 and r["plan"]["rounds"] == 3
    assert {"cpu", "logical_cores", "torch", "transformers", "date"} <= set(r["host"])  # kd's host block
    expected = sum(len(TINY.cells("cpu", n, b)) for n in TINY.new_tokens for b in TINY.batches(n))
    assert len(r["cells"]) == expected
    assert all(c["p95_s"] >= c["p50_s"] > 0 and c["n_articles"] == 6 for c in r["cells"] if c["batch"] == 1)
    assert all(c["articles_per_s"] > 0 for c in r["cells"] if c["batch"] > 1)
    served = r["ratios"]["6 tokens, batch 1"]["served"]
    assert {"t5-small int8 greedy vs t5-base fp32 beam4", "t5-small fp32 greedy vs t5-large fp32 beam4"} <= set(served)
    assert set(r["models"]["t5-large"]) == {"fp32"} and set(r["models"]["t5-small"]) == {"fp32", "int8"}
    facts = r["models"]["t5-base"]["fp32"]
    assert facts["disk_bytes"] > 4 * facts["parameters"] * 0.9 and facts["peak_rss_mb"] > 0 and facts["load_s"] > 0
    assert set(r["int8_paths"]["speedup_over_fp32"]) == {"t5-small torch-dynamic", "t5-base torch-dynamic"}
    greedy = r["greedy_paths"]
    assert greedy["identical_ids"] is True and greedy["lean_speedup"] > 0 and greedy["model"] == "t5-small"

    from tools.readme import serve_table

    table = serve_table(out)
    assert "Latency, one article at a time, 6-token summaries" in table and "t5-small int8 greedy vs t5-base" in table
    assert "Greedy decoding paths" in table and "token ids identical: yes" in table
