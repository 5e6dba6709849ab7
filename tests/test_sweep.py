"""kd.sweep: the sweep table is generated from the experiments' own commits, validation only, and a
model an experiment did not retrain is never shown as its result."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from kd import sweep
from kd.errors import ConfigError


def quality(rl: float, *, params: int = 100) -> dict:
    block = {"rougeL": rl, "rouge1": rl + 5, "fact_precision": 50.0}
    return {"params": params, "validation": {"beam": block, "greedy": {**block, "rougeL": rl - 1}},
            "test": {"beam": {**block, "rougeL": 99.0}}}


def test_changed_params_lists_only_differences_with_dotted_keys():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 2, "gone": {"x": 1}}
    exp = {"a": {"b": 1, "c": [1, 3]}, "d": 3, "new": {"y": True}}
    assert sweep.changed_params(base, exp) == {"a.c": [1, 3], "d": 3, "gone.x": None, "new.y": True}
    assert sweep.changed_params(base, base) == {}
    # a loss added to a recipe that had none (`-S +kd.students.s.losses.attention.weight=1.0`): the
    # empty mapping it filled is not a removal, and emptying it again shows as the mapping emptied
    recipe, combo = {"s": {"losses": {}}}, {"s": {"losses": {"attention": {"weight": 1.0}}}}
    assert sweep.changed_params(recipe, combo) == {"s.losses.attention.weight": 1.0}
    assert sweep.changed_params(combo, recipe) == {"s.losses.attention.weight": None}
    assert sweep.changed_params({"s": {"losses": {}}}, {"s": {"losses": None}}) == {"s.losses": None}


def test_rows_mark_models_the_experiment_did_not_retrain_and_keep_validation_only():
    base = {"teacher": quality(40.0), "baseline": quality(30.0)}
    exp = {"teacher": quality(40.0), "baseline": quality(31.5)}
    rows = sweep.rows("sw-x", {"train.lr": 0.1}, exp, base)
    by_model = {r["model"]: r for r in rows}
    assert by_model["baseline"]["rerun"] and not by_model["teacher"]["rerun"]
    assert by_model["baseline"]["validation"]["beam"]["rougeL"] == 31.5
    assert "test" not in by_model["baseline"]  # nothing in a sweep table may be chosen on test


def test_markdown_collapses_models_not_rerun_and_shows_the_changes():
    base = {"teacher": quality(40.0), "baseline": quality(30.0), "lead3": {
        "params": None, "validation": {"lead": {"rougeL": 20.0, "rouge1": 25.0, "fact_precision": 90.0}}}}
    exp = {**base, "baseline": quality(31.5)}
    result = {"baseline_commit": "0" * 40, "n_experiments": 1, "order": ["base", "sw-x"],
              "rows": sweep.rows("base", {}, base, base) + sweep.rows("sw-x", {"train.lr": 0.1}, exp, base)}
    text = sweep.markdown(result)
    assert "| sw-x | `train.lr=0.1` | baseline | 31.50 | 30.50 | 36.50 | 50.00 | 100 | – |" in text
    assert "= base: lead3, teacher" in text
    assert "| base | 〃 | lead3 | 20.00 | 20.00 | 25.00 | 90.00 | – | – |" in text  # lead-3's own decoding


def test_speedup_is_each_models_ratio_from_the_experiments_report():
    speed = {"teacher": 1.0, "baseline": 2.5}
    base = {"teacher": quality(40.0), "baseline": quality(30.0)}
    rows = sweep.rows("sw-x", {"train.lr": 0.1}, {**base, "baseline": quality(31.0)}, base, speed)
    assert {r["model"]: r["speedup"] for r in rows} == {"baseline": 2.5, "teacher": 1.0}
    text = sweep.markdown({"baseline_commit": "0" * 40, "n_experiments": 1, "order": ["sw-x"], "rows": rows})
    assert "| sw-x | `train.lr=0.1` | baseline | 31.00 | 30.00 | 36.00 | 50.00 | 100 | 2.50x |" in text


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def commit(repo, params: dict, qualities: dict, message: str, speed: dict | None = None) -> str:
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    qdir = repo / "benchmark_results" / "quality"
    qdir.mkdir(parents=True, exist_ok=True)
    if speed is not None:
        (repo / "benchmark_results" / "benchmark_results.json").write_text(json.dumps(speed))
    for model, q in qualities.items():
        (qdir / f"{model}.json").write_text(json.dumps(q))
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


def test_collect_reads_experiment_refs_of_the_baseline_commit_only(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    base_q = {"teacher": quality(40.0), "baseline": quality(30.0)}
    base = commit(repo, {"train": {"lr": 0.01}}, base_q, "base")
    speed = {"teacher": {"speedup": 1.0}, "baseline": {"speedup": 2.5}, "lead3": {"speedup": None}}
    exp = commit(repo, {"train": {"lr": 0.02}}, {**base_q, "baseline": quality(33.0)}, "exp", speed)
    git(repo, "update-ref", f"refs/exps/{base[:2]}/{base[2:]}/sw-lr", exp)
    git(repo, "update-ref", f"refs/exps/{base[:2]}/{base[2:]}/other", exp)
    git(repo, "update-ref", f"refs/exps/{exp[:2]}/{exp[2:]}/sw-elsewhere", exp)  # another baseline
    git(repo, "reset", "-q", "--hard", base)

    result = sweep.collect(repo, rev="HEAD", prefixes=["sw-"])
    assert result["order"] == ["base", "sw-lr"]
    row = next(r for r in result["rows"] if r["experiment"] == "sw-lr" and r["model"] == "baseline")
    assert row["changed"] == {"train.lr": 0.02} and row["validation"]["beam"]["rougeL"] == 33.0
    assert row["speedup"] == 2.5  # from the experiment's own report; the base commit has none
    assert all(r["speedup"] is None for r in result["rows"] if r["experiment"] == "base")
    with pytest.raises(ConfigError, match="no experiments named nope"):
        sweep.collect(repo, rev="HEAD", prefixes=["nope"])


def test_later_baselines_with_the_same_results_join_the_table(tmp_path):
    """--also-rev: experiments queued on a later commit that changed no result join the first baseline's
    table, their changes against their own baseline's params; a commit whose results differ is refused."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    base_q = {"teacher": quality(40.0), "baseline": quality(30.0)}
    base = commit(repo, {"train": {"lr": 0.01}}, base_q, "base")
    docs = commit(repo, {"train": {"lr": 0.01, "new_option": False}}, base_q, "a new option, off")
    exp = commit(repo, {"train": {"lr": 0.02, "new_option": False}}, {**base_q, "teacher": quality(45.0)}, "exp")
    git(repo, "update-ref", f"refs/exps/{docs[:2]}/{docs[2:]}/sw-later", exp)
    other = commit(repo, {"train": {"lr": 0.01}}, {**base_q, "baseline": quality(31.0)}, "new results")

    with pytest.raises(ConfigError, match="no experiments named sw-"):
        sweep.collect(repo, rev=base, prefixes=["sw-"])
    result = sweep.collect(repo, rev=base, prefixes=["sw-"], also_revs=[docs])
    assert result["order"] == ["base", "sw-later"] and result["also_baselines"] == [docs]
    row = next(r for r in result["rows"] if r["experiment"] == "sw-later" and r["model"] == "teacher")
    assert row["changed"] == {"train.lr": 0.02} and row["rerun"]  # new_option is not a change: its base has it
    assert f"baseline commit {base[:7]} (and {docs[:7]}, same results)" in sweep.markdown(result)
    with pytest.raises(ConfigError, match=f"{other[:7]}'s committed results differ"):
        sweep.collect(repo, rev=base, prefixes=["sw-"], also_revs=[docs, other])
