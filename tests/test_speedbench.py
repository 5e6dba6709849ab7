"""tools.speedbench: the pure helpers, and one end-to-end run of --quick (timings are not judged)."""

from __future__ import annotations

import argparse
import json

from tools import speedbench


def test_best_of_warms_up_alternates_and_keeps_the_minimum():
    calls = []

    def run(name, costs):
        it = iter(costs)

        def go(work):
            calls.append((name, work))
            return next(it)

        return go

    best = speedbench.best_of({"a": run("a", [9.0, 3.0, 2.0]), "b": run("b", [{"s": 9.0}, {"s": 1.0}, {"s": 4.0}])},
                              "W", repeats=2, warmup_work="w")
    assert calls == [("a", "w"), ("b", "w"), ("a", "W"), ("b", "W"), ("b", "W"), ("a", "W")]
    assert best == {"a": 2.0, "b": {"s": 1.0}}


def test_table_line_reports_missed_targets_and_missing_measurements():
    assert speedbench.table_line("x", "train_ours_over_hf", 1.07).endswith("1.07 (target >= 1.0) ok")
    assert speedbench.table_line("x", "train_ours_over_hf", 0.9).endswith("(target >= 1.0) MISSED")
    assert speedbench.table_line("x", "kd_cached_over_plain", None).endswith("n/a (target <= 1.2) not measured")
    assert speedbench.table_line("x", "kd_cached_over_plain", 1.3).endswith("(target <= 1.2) MISSED")
    assert speedbench.table_line("x", "kd_live_over_plain", 2.0).endswith("2.00 (info)")


def test_quick_run_end_to_end(tmp_path):
    parser = argparse.ArgumentParser()
    speedbench.add_arguments(parser)
    out = tmp_path / "speed.json"
    args = parser.parse_args(["--quick", "--steps", "2", "--repeats", "1", "--out", str(out)])
    result = speedbench.run(args)
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    for key in ("train_ours_tokens_per_s", "train_hf_tokens_per_s", "train_ours_over_hf",
                "train_ours_step_tokens_per_s", "train_hf_step_tokens_per_s", "train_step_ours_over_hf",
                "kd_plain_s_per_epoch", "kd_live_s_per_epoch", "kd_live_over_plain",
                "kd_cached_s_per_epoch", "kd_cached_over_plain", "kd_cached_over_live", "kd_cache_write_s_per_epoch",
                "gen_greedy_teacher_samples_per_s", "gen_greedy_student_samples_per_s",
                "gen_greedy_student_over_teacher", "gen_beam_teacher_samples_per_s",
                "gen_beam_student_samples_per_s", "gen_beam_student_over_teacher"):
        assert saved[key] > 0, key
    assert saved["kd_cache_top_k"] == 64
    assert saved["ok"] == (saved["missed"] == [])
    assert all(not isinstance(v, (dict, list)) for k, v in saved.items() if k != "missed")  # flat
