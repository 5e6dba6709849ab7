"""tools.regimes: every planned run is a valid recipe of this params.yaml, the pool file, and the collector
on hand-made numbers (no training)."""

import json
import math
from pathlib import Path

import pytest
import yaml

from kd.params import section_from
from kd.students.recipe import resolve
from tools import regimes

ROOT = Path(__file__).resolve().parents[1]


def _params():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_every_planned_run_resolves_with_its_seed():
    base = _params()
    runs = regimes.plan(base)
    assert {r.group for r in runs} == {"teacher", "labels", "teacher_text", "pool", "check"}
    # Each seed trains both regimes' rows, the reference rows included.
    for seed in regimes.SEEDS:
        names = {r.recipe for r in runs if r.seed == seed and r.group in ("labels", "teacher_text")}
        assert names == {"baseline", "vanilla", "feature", "attention", "gkd",
                         "seqkd", "seqkd_logit", "seqkd_feature", "seqkd_attention", "seqkd_gkd"}
    assert sorted({r.seed for r in runs if r.group in ("labels", "teacher_text")}) == list(regimes.SEEDS)
    assert sorted(r.pool for r in runs if r.group == "pool") == list(regimes.POOL_SIZES)
    for run in runs:
        if run.group == "teacher":
            continue
        settings = dict(run.settings)
        if run.group == "pool":
            settings["targets"] = "/tmp/pool.jsonl"
        params = regimes.run_params(base, run, settings)
        recipe = resolve(run.recipe, section_from(params, "kd"), section_from(params, "student"),
                         section_from(params, "train"))
        assert recipe.train.seed == run.seed
        if run.group == "labels":
            assert recipe.targets == "data/tokenized" and (run.recipe == "baseline") == (not recipe.losses)
        else:
            assert recipe.summaries and recipe.with_references and set(recipe.target_splits) == {"train", "unlabeled"}
    assert "seqkd_gkd" not in base["kd"]["students"]  # run_params copies: the base is untouched


def test_the_live_check_differs_from_the_default_only_in_its_teacher_pass():
    base = _params()
    live = next(r for r in regimes.plan(base) if r.group == "check")
    default = base["kd"]["students"]["seqkd_logit"]
    assert default["teacher_pass"] == "once" and live.settings["teacher_pass"] == "live"
    assert {k: v for k, v in live.settings.items() if k != "teacher_pass"} == \
        {k: v for k, v in default.items() if k != "teacher_pass"}


def test_pool_file_has_every_labelled_article_and_the_first_n_unlabeled(tmp_path):
    for split, n in (("train", 3), ("unlabeled", 5)):
        rows = [{"id": f"{split}-{i}", "labels": [[1, 2]], "summaries": [f"{split} text {i}", "second beam"]}
                for i in range(n)]
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = regimes.pool_file(tmp_path, 2, tmp_path / "pool.jsonl")
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["id"] for x in lines] == ["train-0", "train-1", "train-2", "unlabeled-0", "unlabeled-1"]
    assert lines[3]["summary"] == "unlabeled text 0"  # the first (best) summary of each article
    with pytest.raises(SystemExit, match="fewer than 9"):
        regimes.pool_file(tmp_path, 9, tmp_path / "pool.jsonl")


def test_t_interval():
    stat = regimes.t_interval([1.0, 2.0, 3.0])
    half = 4.303 / math.sqrt(3)
    assert stat["mean"] == 2.0 and stat["sd"] == 1.0
    assert stat["low"] == pytest.approx(2 - half, abs=1e-4) and stat["high"] == pytest.approx(2 + half, abs=1e-4)
    assert regimes.t_interval([5.0])["low"] is None


def _record(recipe, seed, test, validation, group="labels", pool=None, best=100, converged=True, teacher="t1",
            threads=2):
    q = {"beam": {"rougeL": test, "fact_precision": 50.0}}
    return {"run": f"{recipe}-s{seed}", "recipe": recipe, "seed": seed, "group": group, "pool": pool,
            "teacher": teacher, "quality": {"test": q, "validation": {"greedy": {"rougeL": validation}}},
            "settings": {"targets": "data/tokenized" if group == "labels" else "data/teacher_targets",
                         "teacher_input": "models/teacher"},
            "cost": {"best_step": best, "steps": 200, "examples_seen": 1600, "train_seconds": 10.0,
                     "converged": converged, "threads": threads, "teacher_seconds": 0.0}}


def _records():
    rows = [_record("baseline", s, v, 0) for s, v in ((0, 60), (1, 70), (2, 50))]
    rows += [_record("vanilla", s, v, 0) for s, v in ((0, 62), (1, 71), (2, 53))]  # baseline + 2, 1, 3
    rows += [_record("seqkd", s, v, 80 if s == 0 else 0, "teacher_text", converged=False)
             for s, v in ((0, 85), (1, 86), (2, 87))]
    rows += [_record("seqkd_logit", s, v, 81.0 if s == 0 else 0, "teacher_text") for s, v in ((0, 86), (1, 87), (2, 88))]
    rows += [_record("seqkd_pool1000", 0, 0, 75, "pool", 1000), _record("seqkd_logit_live", 0, 0, 81.3, "check")]
    rows.append({**_record("teacher", 0, 90, 91, "teacher"), "cost": {}})
    return rows


def test_collect_pairs_each_regime_with_its_reference_by_seed():
    result = regimes.collect(_records(), teacher_stages={"teacher_generate": 240.0, "teacher_outputs": 5.0})
    by_loss = {row["loss"]: row for row in result["regimes"]}
    logit = by_loss["logit"]
    assert logit["labels_only"]["score"]["mean"] == pytest.approx(62)
    # The spread of the baseline and vanilla per seed is large (sd 10), their paired difference's small.
    assert logit["labels_only"]["vs_reference"]["mean"] == pytest.approx(2.0)
    assert logit["labels_only"]["vs_reference"]["sd"] == pytest.approx(1.0)
    assert logit["teacher_text"]["vs_reference"]["mean"] == pytest.approx(1.0)
    assert logit["teacher_text"]["vs_reference"]["sd"] == 0.0
    assert by_loss["gkd"]["labels_only"] is None and by_loss["gkd"]["teacher_text"] is None  # not run yet
    assert by_loss["none (cross-entropy only)"]["teacher_text"]["converged"] is False
    # seqkd reads the teacher's summaries: charged the teacher_generate stage; the control nothing.
    assert by_loss["none (cross-entropy only)"]["teacher_text"]["charged_teacher_seconds"] == 240.0
    assert by_loss["none (cross-entropy only)"]["labels_only"]["charged_teacher_seconds"] == 0.0
    assert [p["unlabeled"] for p in result["pool"]] == [1000, regimes.FULL_POOL]
    assert result["pool"][1]["validation"] == 80  # seqkd's seed 0 is the full pool's point
    assert result["teacher_score"] == 90 and result["teacher"] == "t1" and result["seeds"] == [0, 1, 2]
    check = result["once_vs_live"]
    assert check["difference"] == pytest.approx(-0.3) and check["within"] is True and check["keeps_cache"] is True
    md = regimes.markdown(result)
    assert "| seqkd † | 100 | 200 | 1,600 | 10 | 240 |" in md
    partial = regimes.markdown(regimes.collect([r for r in _records() if not (r["recipe"] == "vanilla" and r["seed"] == 2)]))
    assert "(2 seeds)" in partial and "(2 seeds)" not in md
    assert "62.00 [" in md and "+2.00 [" in md and "| 8,000 | 80.00 †" in md and "within 0.5" in md


def test_the_sentences_follow_the_numbers():
    result = regimes.collect(_records())
    said = regimes.says(result)
    # seqkd_logit is seqkd + 1 in every seed (sd 0): its interval lies above 0, and the sentence says so;
    # vanilla is baseline + 2, 1, 3: an interval over three seeds that includes 0.
    assert "With the teacher's text, logit's Δ lies above 0" in said[1]
    assert said[2].startswith("With the labels only, no loss moves `baseline` beyond training noise") and "logit +2.00" in said[2]
    assert "rises by 5.00 from 1,000 to 8,000" in said[3]  # pool: 75 at 1k, seqkd seed 0's 80 at 8k
    assert said[4].startswith("1 of 4 students reached their step cap") and said[4].endswith(": seqkd.")
    flat = [r for r in _records() if r["group"] != "pool"] + [_record("seqkd_pool1000", 0, 0, 80.2, "pool", 1000)]
    assert "does not rise with the pool" in regimes.says(regimes.collect(flat))[3]
    lower = [r for r in _records() if r["recipe"] != "seqkd_logit"]
    lower += [_record("seqkd_logit", s, v, 0, "teacher_text") for s, v in ((0, 83), (1, 84), (2, 85))]  # seqkd - 2
    assert "logit's Δ lies below 0" in regimes.says(regimes.collect(lower))[1]
    assert "- " + said[0] in regimes.markdown(result)


def test_collect_says_when_once_is_not_within_tolerance():
    rows = [_record("seqkd_logit", 0, 80, 80.0, "teacher_text"), _record("seqkd_logit_live", 0, 0, 81.0, "check")]
    result = regimes.collect(rows)
    assert result["once_vs_live"]["within"] is False and result["once_vs_live"]["keeps_cache"] is False
    assert "not within 0.5" in regimes.markdown(result) and "should use the live teacher" in regimes.markdown(result)


def test_a_cache_that_scores_higher_is_kept_though_not_within_tolerance():
    rows = [_record("seqkd_logit", 0, 80, 82.0, "teacher_text"), _record("seqkd_logit_live", 0, 0, 80.0, "check")]
    check = regimes.collect(rows)["once_vs_live"]
    assert check["within"] is False and check["keeps_cache"] is True


@pytest.mark.parametrize("bad", [{"teacher": "t2"}, {"threads": 1}])
def test_collect_refuses_runs_of_another_teacher_or_thread_count(bad):
    other = _record("vanilla", 0, 60, 0, teacher=bad.get("teacher", "t1"), threads=bad.get("threads", 2))
    with pytest.raises(SystemExit, match="different"):
        regimes.collect([_record("baseline", 0, 60, 0), other])


def test_teacher_fingerprint_follows_the_weights(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    first = regimes.teacher_fingerprint(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"other weights")
    assert regimes.teacher_fingerprint(tmp_path) != first
    with pytest.raises(SystemExit, match="no weights"):
        regimes.teacher_fingerprint(tmp_path / "missing")
