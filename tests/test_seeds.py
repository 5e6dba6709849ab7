"""kd.seeds: the collector on hand-made numbers, the markdown, and the git reading path on a throwaway
repository whose experiment refs are made by hand (no DVC, no training)."""

import json
import os
import subprocess

import numpy as np
import pytest

from kd import seeds
from kd.metrics.bootstrap import paired
from kd.errors import ConfigError

IDS = ["ex-a", "ex-b", "ex-c", "ex-d"]
# model -> seed -> rougeL of each example in IDS. Chosen so the answers are round numbers:
# baseline means 25, 26, 24 (sd 1); vanilla 28 in every seed (sd 0); teacher 35, 36, 34;
# vanilla - baseline per seed 3, 2, 4 (mean 3, sd 1).
ROUGE_L = {
    "baseline": {0: [10, 20, 30, 40], 1: [12, 18, 33, 41], 2: [11, 22, 27, 36]},
    "vanilla": {0: [14, 21, 35, 42], 1: [13, 20, 34, 45], 2: [15, 25, 31, 41]},
    "teacher": {0: [20, 30, 40, 50], 1: [21, 31, 41, 51], 2: [19, 29, 39, 49]},
}
BOOT = {"resamples": 200, "seed": 3}


def _rows(model, seed, *, split="test", ids=IDS):
    if model == "lead3":  # one decoding, the same every seed, no fact metrics
        return [{"split": split, "decoding": "lead", "id": i, "rougeL": 5.0, "rouge1": 9.0, "length": 30}
                for i in ids]
    return [{"split": split, "decoding": "beam", "id": i, "rougeL": float(v), "rouge1": v + 5.0,
             "fact_precision": 100.0, "entity_precision": 50.0 + v, "length": 12, "prediction": f"text {i}"}
            for i, v in zip(ids, ROUGE_L[model][seed])]  # a text field is not a metric, nor "skipped"


def _per_seed(seed_list=(0, 1, 2), models=("teacher", "baseline", "vanilla", "lead3")):
    # Validation rows too, which the collector must leave out of the test summary.
    return {s: {m: _rows(m, s) + _rows(m, s, split="validation", ids=["v-1"]) for m in models}
            for s in seed_list}


def test_means_and_sds_over_seeds():
    got = seeds.collect(_per_seed(), **BOOT)
    assert got["seeds"] == [0, 1, 2] and got["n_examples"] == 4
    assert list(got["models"]) == ["teacher", "baseline", "vanilla", "lead3"]
    assert got["models"]["baseline"]["beam"]["rougeL"] == {
        "per_seed": {"0": 25.0, "1": 26.0, "2": 24.0}, "mean": 25.0, "sd": 1.0}
    assert got["models"]["vanilla"]["beam"]["rougeL"]["sd"] == 0.0
    assert got["models"]["teacher"]["beam"]["rouge1"]["mean"] == 40.0
    assert got["models"]["lead3"] == {"lead": {
        key: {"per_seed": {"0": v, "1": v, "2": v}, "mean": v, "sd": 0.0}
        for key, v in (("rougeL", 5.0), ("rouge1", 9.0), ("length", 30.0))}}
    assert got["skipped"] == {}


def test_paired_differences_per_seed_and_a_two_level_bootstrap_over_seeds_and_examples():
    got = seeds.collect(_per_seed(), **BOOT)
    vs = got["vs_baseline"]["vanilla"]["beam"]["rougeL"]
    assert vs["per_seed"] == {"0": 3.0, "1": 2.0, "2": 4.0}
    assert (vs["mean"], vs["sd"]) == (3.0, 1.0)
    # By hand: each resample draws three seeds, then four examples (the same for every drawn seed).
    diff = np.array(ROUGE_L["vanilla"][0]) - np.array(ROUGE_L["baseline"][0]), \
        np.array(ROUGE_L["vanilla"][1]) - np.array(ROUGE_L["baseline"][1]), \
        np.array(ROUGE_L["vanilla"][2]) - np.array(ROUGE_L["baseline"][2])
    diff = np.array(diff, dtype=float)  # (3 seeds, 4 examples)
    rng = np.random.default_rng(BOOT["seed"])
    examples, drawn = rng.integers(0, 4, size=(200, 4)), rng.integers(0, 3, size=(200, 3))
    means = np.array([np.mean([diff[s, examples[r]].mean() for s in drawn[r]]) for r in range(200)])
    low, high = np.percentile(means, [2.5, 97.5])
    assert vs["bootstrap"] == pytest.approx({"mean_diff": 3.0, "low": low, "high": high,
                                             "share_le_0": float(np.mean(means <= 0))}, abs=1e-4)
    assert got["bootstrap"]["over"] == seeds.TWO_LEVEL == \
        "seeds and examples (two-level bootstrap: seeds, then examples, with replacement)"
    # wider than the examples-only interval of the seed-averaged differences, which leaves the seeds out
    examples_only = paired(diff.mean(axis=0), np.zeros(4), **BOOT)
    assert high - low > examples_only.high - examples_only.low
    # Which models are compared with what: students with the baseline (not itself), all with the teacher.
    assert list(got["vs_baseline"]) == ["vanilla"]
    assert list(got["vs_teacher"]) == ["baseline", "vanilla"]
    to_teacher = got["vs_teacher"]["baseline"]["beam"]["rougeL"]
    assert to_teacher["per_seed"] == {"0": -10.0, "1": -10.0, "2": -10.0} and to_teacher["sd"] == 0.0
    assert to_teacher["bootstrap"]["share_le_0"] == 1.0
    json.dumps(got)  # JSON-able as it is


def test_seeds_that_disagree_give_a_wide_interval_where_the_articles_agree():
    """Per-seed offsets of +5, -5 and 0 on identical per-article scores: the articles agree, the seeds do not.
    Every interval collect prints (Δ vs the baseline and the teacher, gap closed) must show that spread; an
    interval over examples alone, of the seed-averaged scores, is [0, 0] here and would claim certainty."""
    ids = [f"a{i}" for i in range(40)]
    articles = np.random.default_rng(2).uniform(20, 60, size=40).round(1)
    offsets = {0: 5.0, 1: -5.0, 2: 0.0}

    def rows(values):
        return [{"split": "test", "decoding": "beam", "id": i, "rougeL": float(v)} for i, v in zip(ids, values)]

    per_seed = {s: {"baseline": rows(articles), "vanilla": rows(articles + offsets[s]),
                    "teacher": rows(articles + 20.0)} for s in offsets}
    got = seeds.collect(per_seed)
    vs = got["vs_baseline"]["vanilla"]["beam"]["rougeL"]["bootstrap"]
    assert vs["mean_diff"] == pytest.approx(0.0)
    assert vs["high"] - vs["low"] > 5.0 and vs["low"] <= -3.0 and vs["high"] >= 3.0
    to_teacher = got["vs_teacher"]["vanilla"]["beam"]["rougeL"]["bootstrap"]
    assert to_teacher["high"] - to_teacher["low"] > 5.0
    gap = got["gap_closed"]["vanilla"]["beam"]["bootstrap"]
    assert gap["mean"] == pytest.approx(0.0) and gap["high"] - gap["low"] > 25.0  # +25%, -25%, 0% per seed
    seed_averaged = np.mean([articles + o for o in offsets.values()], axis=0)
    assert paired(seed_averaged, articles).high - paired(seed_averaged, articles).low == pytest.approx(0.0, abs=1e-9)
    text = seeds.markdown(got)
    assert "two-level paired bootstrap over seeds and examples" in text


def test_an_older_summary_says_its_intervals_are_over_examples_only():
    got = seeds.collect(_per_seed(), **BOOT)
    old = {**got, "bootstrap": {**got["bootstrap"], "over": "examples, of per-example differences averaged over seeds"}}
    assert seeds.two_level(got) and not seeds.two_level(old)
    assert "paired bootstrap over examples only" in seeds.markdown(old)
    assert "two-level" not in seeds.markdown(old)
    assert seeds.interval_words(old) == "paired bootstrap over articles only, training noise not included"
    assert seeds.interval_words(got) == "two-level bootstrap over seeds and articles"


def test_one_seed_has_no_spread():
    got = seeds.collect(_per_seed(seed_list=(2,)), **BOOT)
    assert got["models"]["baseline"]["beam"]["rougeL"] == {"per_seed": {"2": 24.0}, "mean": 24.0, "sd": None}
    assert got["vs_baseline"]["vanilla"]["beam"]["rougeL"]["sd"] is None
    text = seeds.markdown(got)
    assert "| baseline | 24.00 | 29.00 |" in text and "±" not in text and "Scores: corpus means." in text


def test_metric_missing_on_some_rows_is_skipped_and_reported():
    per_seed = _per_seed()
    del per_seed[1]["vanilla"][2]["entity_precision"]
    got = seeds.collect(per_seed, **BOOT)
    assert "entity_precision" not in got["models"]["vanilla"]["beam"]
    assert "entity_precision" in got["models"]["baseline"]["beam"]
    assert got["skipped"] == {"vanilla": {"beam": ["entity_precision"]}}
    assert "Skipped (a number missing on some examples): vanilla beam: entity_precision." in seeds.markdown(got)


@pytest.mark.parametrize("change, match", [
    (lambda p: p[1]["vanilla"][0].update(id="ex-z"), r"seed 1, model vanilla, decoding beam: .*missing \['ex-a'\]"),
    (lambda p: p[2]["teacher"].pop(0), r"seed 2, model teacher, decoding beam: .*\(3 vs 4 ids"),
    (lambda p: p[1].pop("vanilla"), r"seed 1 has models \['baseline', 'lead3', 'teacher'\]"),
    (lambda p: p[0]["baseline"].append(dict(p[0]["baseline"][0])),
     r"seed 0, model baseline: example 'ex-a' appears twice"),
    (lambda p: p[0]["baseline"][0].pop("decoding"), r"seed 0, model baseline: a row has no 'decoding'"),
])
def test_mismatched_examples_are_errors_that_name_seed_and_model(change, match):
    per_seed = _per_seed()
    change(per_seed)
    with pytest.raises(ValueError, match=match):
        seeds.collect(per_seed, **BOOT)


def test_missing_baseline_or_teacher_is_an_error():
    with pytest.raises(ConfigError, match="baseline model 'labels' is not among"):
        seeds.collect(_per_seed(), baseline="labels", **BOOT)
    with pytest.raises(ConfigError, match="seed 0, model teacher: no rows for split 'tst'"):
        seeds.collect(_per_seed(), split="tst", **BOOT)


def test_markdown_has_the_numbers():
    got = seeds.collect(_per_seed(), **BOOT)
    text = seeds.markdown(got)
    assert "### beam" in text and "### lead" not in text  # lead-3 is a reference row in each table
    assert ("| model | rougeL | rouge1 | fact_precision | entity_precision | Δ rougeL vs baseline "
            "| Δ rougeL vs teacher |") in text
    boot = got["vs_baseline"]["vanilla"]["beam"]["rougeL"]["bootstrap"]
    vanilla_row = next(line for line in text.splitlines() if line.startswith("| vanilla |"))
    assert vanilla_row.startswith("| vanilla | 28.00 ± 0.00 | 33.00 ± 0.00 | 100.00 ± 0.00 |")
    assert f"+3.00 [{boot['low']:+.2f}, {boot['high']:+.2f}] (0.000)" in vanilla_row
    assert "| baseline | 25.00 ± 1.00 | 30.00 ± 1.00 |" in text
    assert "| teacher | 35.00 ± 1.00 |" in text
    assert "| lead3 (lead) | 5.00 ± 0.00 | 9.00 ± 0.00 | – | – | – | – |" in text
    assert "Seeds 0, 1, 2 · split test · 4 examples" in text and "200 resamples" in text
    assert seeds.markdown(json.loads(json.dumps(got))) == text  # renders from seeds.json read back


def test_retention_compression_and_speedup():
    # as the report writes them: vanilla 10x smaller every seed, 2, 3, 4x faster
    costs = {s: {"teacher": {"compression": 1.0, "speedup": 1.0},
                 "vanilla": {"compression": 10.0, "speedup": 2.0 + s},
                 "baseline": {"compression": 10.0, "speedup": None}} for s in (0, 1, 2)}  # no speed: none, not a 0
    got = seeds.collect(_per_seed(), **BOOT, costs=costs)
    assert got["efficiency"]["vanilla"]["compression"] == {"per_seed": {"0": 10.0, "1": 10.0, "2": 10.0},
                                                           "mean": 10.0, "sd": 0.0}
    assert got["efficiency"]["vanilla"]["speedup"]["mean"] == pytest.approx(3.0)
    assert got["efficiency"]["vanilla"]["speedup"]["per_seed"] == {"0": 2.0, "1": 3.0, "2": 4.0}
    assert "speedup" not in got["efficiency"]["baseline"]
    assert seeds.retention(got, "vanilla", "beam") == pytest.approx(100 * 28 / 35)
    assert seeds.retention(got, "lead3", "lead") == pytest.approx(100 * 5 / 35)  # against the teacher's beam
    text = seeds.markdown(json.loads(json.dumps(got)))
    assert "| Δ rougeL vs teacher | rougeL % of teacher | gap closed | compression | speedup |" in text
    vanilla_row = next(line for line in text.splitlines() if line.startswith("| vanilla |"))
    # [18, 43] over seeds and examples; over examples alone, of the seed-averaged scores, it was [23, 33]
    assert vanilla_row.endswith("| 80.0% | 30% [18, 43] | 10.00 ± 0.00x | 3.00 ± 1.00x |")
    baseline_row = next(line for line in text.splitlines() if line.startswith("| baseline |"))
    assert baseline_row.endswith("| 71.4% | – | 10.00 ± 0.00x | – |")
    # the share of the teacher's lead (35 - 25) that vanilla (28) closes: 30%, per seed 3/10, 2/10, 4/10
    assert got["gap_closed"]["vanilla"]["beam"]["per_seed"] == {"0": 30.0, "1": 20.0, "2": 40.0}
    assert got["gap_closed"]["vanilla"]["beam"]["bootstrap"]["mean"] == pytest.approx(30.0)
    assert "baseline" not in got["gap_closed"]
    teacher_row = next(line for line in text.splitlines() if line.startswith("| teacher |"))
    assert teacher_row.endswith("| 100.0% | – | 1.00 ± 0.00x | 1.00 ± 0.00x |")
    # without sizes (an old seeds.json) the columns are simply absent
    assert "compression" not in seeds.markdown(seeds.collect(_per_seed(), **BOOT))
    assert "### served" not in text  # no seed timed a student greedy


def test_served_table_gives_the_mean_and_the_slowest_seed():
    # the report's served fields: vanilla greedy 6, 7.5, 9x faster than the beam teacher, keeping 97-99%
    costs = {s: {"teacher": {"speedup": 1.0},
                 "vanilla": {"speedup": 3.0, "speedup_greedy": 6.0 + 1.5 * s, "retention_greedy": 97.0 + s}}
             for s in (0, 1, 2)}
    got = seeds.collect(_per_seed(), **BOOT, costs=costs)
    assert got["efficiency"]["vanilla"]["speedup_greedy"]["per_seed"] == {"0": 6.0, "1": 7.5, "2": 9.0}
    text = seeds.markdown(json.loads(json.dumps(got)))
    served = text.split("### served")[1].splitlines()
    row = next(line for line in served if line.startswith("| vanilla |"))
    greedy = got["models"]["vanilla"].get("greedy", {}).get("rougeL")  # "–" where greedy was not scored
    assert row == f"| vanilla | {seeds._fmt_spread(greedy)} | 98.0 ± 1.0% | 7.50 ± 1.50x | 6.00x |"
    assert not any(line.startswith("| teacher |") for line in served)


def test_parse_experiment_ref_skips_dvc_bookkeeping():
    sha = "ab" + "c" * 38
    assert seeds.parse_experiment_ref(f"refs/exps/ab/{'c' * 38}/seed-0") == seeds.Experiment(
        ref=f"refs/exps/ab/{'c' * 38}/seed-0", baseline=sha, name="seed-0")
    for ref in ("refs/exps/stash", "refs/exps/celery/stash", "refs/exps/exec/EXEC_BRANCH",
                "refs/exps/apply/ORIG_HEAD", "refs/heads/main"):
        assert seeds.parse_experiment_ref(ref) is None


def test_find_experiment_only_on_the_baseline():
    head, old = "1" * 40, "2" * 40
    refs = [f"refs/exps/22/{'2' * 38}/seed-0", f"refs/exps/11/{'1' * 38}/seed-0", f"refs/exps/22/{'2' * 38}/seed-1"]
    assert seeds.find_experiment(refs, "seed-0", baseline=head).baseline == head
    assert seeds.find_experiment(refs, "seed-1", baseline=old).ref == refs[2]
    where = r"no experiment 'seed-1' on baseline 1111111; it exists on baseline\(s\) 2222222 \(pass --rev\)"
    with pytest.raises(ConfigError, match=where):
        seeds.find_experiment(refs, "seed-1", baseline=head)
    with pytest.raises(ConfigError, match=r"no experiment 'seed-2' on baseline 1111111$"):
        seeds.find_experiment(refs, "seed-2", baseline=head)


# --- the reading path, end to end on a real git repository ------------------------------------

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def _git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}).stdout.strip()


def _experiment(repo, baseline, seed, models=("teacher", "baseline", "vanilla", "lead3"), vanilla=None, report=None,
                student_baseline=None):
    """Commit seed's example files on top of `baseline` and point an experiment ref at it, the way
    `dvc exp run -n seed-<N>` leaves it; the workspace and HEAD stay on `baseline`. `vanilla` adds keys to
    vanilla's training summary, `report` to its entry in the report's results; `student_baseline` is the
    baseline student's training summary (none by default)."""
    _git(repo, "checkout", "-q", "--detach", baseline)
    examples = repo / "benchmark_results" / "examples"
    examples.mkdir(parents=True, exist_ok=True)
    for model in models:
        (examples / f"{model}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows(model, seed)))
    for run, seconds in (("teacher", 100.0 + seed), ("student_vanilla", 10.0 * (seed + 1))):  # training cost
        (repo / "dvclive" / run).mkdir(parents=True, exist_ok=True)
        extra = (vanilla or {}) if run == "student_vanilla" else {}
        (repo / "dvclive" / run / "metrics.json").write_text(json.dumps({"train_seconds": seconds,
                                                                         "train_tokens": 1000, **extra}))
    if student_baseline is not None:
        (repo / "dvclive" / "student_baseline").mkdir(parents=True, exist_ok=True)
        (repo / "dvclive" / "student_baseline" / "metrics.json").write_text(json.dumps(student_baseline))
    results = {"teacher": {"params": 1000, "compression": 1.0, "speedup": 1.0},
               "vanilla": {"params": 100, "compression": 10.0, "speedup": 2.5, **(report or {})},
               "lead3": {"kind": "lead", "compression": None}}  # the report stage's results
    (repo / "benchmark_results" / "benchmark_results.json").write_text(json.dumps(results))
    _git(repo, "add", "benchmark_results", "dvclive")
    _git(repo, "commit", "-q", "-m", f"dvc: commit experiment seed-{seed}")
    commit = _git(repo, "rev-parse", "HEAD")
    _git(repo, "update-ref", f"refs/exps/{baseline[:2]}/{baseline[2:]}/seed-{seed}", commit)
    _git(repo, "checkout", "-q", "main")
    return commit


@pytest.fixture
def repo(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "params.yaml").write_text("train:\n  seed: 0\n")
    _git(repo, "add", "params.yaml")
    _git(repo, "commit", "-q", "-m", "baseline")
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(repo)
    return repo


def test_collect_cli_reads_the_experiments_from_git(repo, capsys):
    head = _git(repo, "rev-parse", "HEAD")
    commits = {s: _experiment(repo, head, s) for s in (0, 1, 2)}
    _git(repo, "update-ref", "refs/exps/stash", commits[0])  # DVC's own refs are not experiments
    assert seeds.read_examples(repo, f"refs/exps/{head[:2]}/{head[2:]}/seed-1")["vanilla"] == _rows("vanilla", 1)

    assert seeds.main(["collect", "--seeds", "0", "1", "2", "--out-dir", "out", "--resamples", "200",
                       "--bootstrap-seed", "3"]) == 0
    written = json.loads((repo / "out" / "seeds.json").read_text())
    costs = {s: {"teacher": {"train_seconds": 100.0 + s, "train_tokens": 1000, "compression": 1.0, "speedup": 1.0},
                 "vanilla": {"train_seconds": 10.0 * (s + 1), "train_tokens": 1000, "compression": 10.0,
                             "speedup": 2.5}} for s in (0, 1, 2)}
    assert {k: v for k, v in written.items() if k not in ("baseline_commit", "experiments")} == \
        seeds.collect(_per_seed(), **BOOT, costs=costs)
    # the training cost of the models that have a training summary (not the baseline here, not lead-3)
    assert written["cost"]["vanilla"]["train_seconds"] == {"per_seed": {"0": 10.0, "1": 20.0, "2": 30.0},
                                                           "mean": 20.0, "sd": 10.0}
    assert set(written["cost"]) == {"teacher", "vanilla"}
    assert written["efficiency"]["vanilla"]["speedup"]["mean"] == 2.5  # from benchmark_results.json
    assert written["efficiency"]["vanilla"]["compression"]["mean"] == 10.0
    assert written["baseline_commit"] == head
    assert written["experiments"]["1"] == {"name": "seed-1", "ref": f"refs/exps/{head[:2]}/{head[2:]}/seed-1",
                                           "commit": commits[1]}
    assert (repo / "out" / "seeds.md").read_text() == seeds.markdown(written)
    assert "train_s |" in seeds.markdown(written) and " 20 ± 10 |" in seeds.markdown(written)
    assert not (repo / "benchmark_results").exists()  # read from the refs, the workspace untouched
    assert "wrote out/seeds.json" in capsys.readouterr().out


def test_collect_cli_names_the_missing_seed_and_other_baselines(repo, capsys):
    old = _git(repo, "rev-parse", "HEAD")
    _experiment(repo, old, 0)
    _experiment(repo, old, 1)
    (repo / "params.yaml").write_text("train:\n  seed: 0\n  epochs: 2\n")
    _git(repo, "commit", "-q", "-am", "newer code")
    head = _git(repo, "rev-parse", "HEAD")
    _experiment(repo, head, 0)

    assert seeds.main(["collect", "--seeds", "0", "1", "--out-dir", "out"]) == 2
    err = capsys.readouterr().err
    assert f"no experiment 'seed-1' on baseline {head[:7]}; it exists on baseline(s) {old[:7]} (pass --rev)" in err
    assert not (repo / "out").exists()
    assert seeds.main(["collect", "--seeds", "0", "1", "--out-dir", "out", "--rev", old[:10]]) == 0
    assert json.loads((repo / "out" / "seeds.json").read_text())["baseline_commit"] == old
    assert seeds.main(["collect", "--seeds", "0", "--rev", "nope"]) == 2
    assert "'nope' is not a commit" in capsys.readouterr().err


def test_collect_cli_bad_file_names_ref_and_line(repo, capsys):
    head = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "-q", "--detach", head)
    examples = repo / "benchmark_results" / "examples"
    examples.mkdir(parents=True)
    (examples / "teacher.jsonl").write_text(json.dumps(_rows("teacher", 0)[0]) + "\n{oops\n")
    _git(repo, "add", "benchmark_results")
    _git(repo, "commit", "-q", "-m", "exp")
    ref = f"refs/exps/{head[:2]}/{head[2:]}/seed-0"
    _git(repo, "update-ref", ref, _git(repo, "rev-parse", "HEAD"))
    _git(repo, "checkout", "-q", "main")
    assert seeds.main(["collect", "--seeds", "0", "--out-dir", "out"]) == 2
    assert f"{ref}:benchmark_results/examples/teacher.jsonl:2: malformed JSON" in capsys.readouterr().err


# --- the run subcommand: the dvc commands it issues ---------------------------------------------

def test_run_issues_one_named_experiment_per_seed(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(seeds.subprocess, "run", lambda cmd: calls.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    assert seeds.main(["run", "--seeds", "0", "3"]) == 0
    assert calls == [["dvc", "exp", "run", "--temp", "-S", "student.seed=0", "-n", "seed-0"],
                     ["dvc", "exp", "run", "--temp", "-S", "student.seed=3", "-n", "seed-3"]]
    calls.clear()
    assert seeds.main(["run", "--seeds", "1", "--queue"]) == 0
    assert calls == [["dvc", "exp", "run", "--queue", "-S", "student.seed=1", "-n", "seed-1"]]
    out = capsys.readouterr().out
    assert "dvc queue start" in out and "dvc queue status" in out and "python -m kd.seeds collect --seeds 1" in out
    calls.clear()
    assert seeds.main(["run", "--seeds", "2", "--teacher-too"]) == 0  # the teacher retrained with each seed
    assert calls == [["dvc", "exp", "run", "--temp", "-S", "train.seed=2", "-n", "seed-2"]]


def test_run_stops_at_the_first_failing_seed(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(seeds.subprocess, "run", lambda cmd: calls.append(cmd) or subprocess.CompletedProcess(cmd, 1))
    assert seeds.main(["run", "--seeds", "0", "1"]) == 1
    assert len(calls) == 1 and "seed 0 failed (exit 1)" in capsys.readouterr().err


def test_collect_can_take_one_seed_from_the_committed_run_itself(repo):
    """`--committed-seed 0`: the commit's own results are seed 0 (no experiment re-running what it holds),
    the other seeds are experiments on that commit; the summary is the one three experiments give."""
    head = _git(repo, "rev-parse", "HEAD")
    seed0 = _experiment(repo, head, 0)
    _git(repo, "merge", "-q", "--ff-only", seed0)  # main now holds seed 0's run, as a workspace `dvc repro` commit
    for s in (1, 2):
        _experiment(repo, seed0, s)
    assert seeds.main(["collect", "--seeds", "0", "1", "2", "--out-dir", "out", "--committed-seed", "0",
                       "--resamples", "200", "--bootstrap-seed", "3"]) == 0
    written = json.loads((repo / "out" / "seeds.json").read_text())
    assert written["experiments"]["0"] == {"name": "HEAD (committed run)", "ref": seed0, "commit": seed0}
    assert written["models"] == seeds.collect(_per_seed(), **BOOT)["models"]
    assert seeds.main(["collect", "--seeds", "0", "1", "2", "--out-dir", "out2"]) == 2  # seed-0 is no experiment here


# --- training cost, thread counts and convergence ----------------------------------------------

def _summary(seed, **extra):
    """A student's training summary as the distill stage writes it, with `extra` keys changed."""
    return {"train_seconds": 100.0 + 10 * seed, "train_tokens": 1000, "best_step": 800 + 100 * seed, "steps": 1000,
            "step_cap": 1000, "stopped_early": False, "converged": True, "examples_seen": 16000,
            "teacher_seconds": 0.0, "threads": 2, **extra}


def test_runs_trained_with_different_thread_counts_are_not_combined():
    costs = {s: {"baseline": _summary(s), "vanilla": _summary(s), "teacher": {"threads": 8}} for s in (0, 1, 2)}
    assert seeds.collect(_per_seed(), **BOOT, costs=costs)["threads"] == 2  # the teacher's own count is not checked
    costs[1]["vanilla"]["threads"] = 4
    del costs[2]["baseline"]["threads"]  # an older summary: unrecorded, which is no number
    with pytest.raises(ConfigError) as error:
        seeds.collect(_per_seed(), **BOOT, costs=costs)
    assert ("seeds 0, 1, 2: their students trained with different torch thread counts" in str(error.value)
            and "2 threads: seed 0 (baseline, vanilla), seed 1 (baseline), seed 2 (vanilla); "
                "4 threads: seed 1 (vanilla); unrecorded: seed 2 (baseline); rerun them with the same train.threads"
            in str(error.value))
    # none recorded (every seed an older run): nothing to compare, and no count claimed
    old = {s: {"baseline": {"train_seconds": 1.0}, "vanilla": {"train_seconds": 2.0}} for s in (0, 1, 2)}
    assert seeds.collect(_per_seed(), **BOOT, costs=old)["threads"] is None


def test_cost_table_means_over_seeds_and_marks_a_student_that_did_not_converge():
    costs = {s: {"vanilla": {**_summary(s, converged=s != 1), "charged_teacher_seconds": 60.0 + s},
                 "baseline": {"threads": 2},  # an older summary: no cost recorded
                 "teacher": {"train_seconds": 400.0}} for s in (0, 1, 2)}
    got = seeds.collect(_per_seed(), **BOOT, costs=costs)
    assert got["cost"]["vanilla"]["best_step"] == {"per_seed": {"0": 800.0, "1": 900.0, "2": 1000.0},
                                                   "mean": 900.0, "sd": 100.0}
    assert got["cost"]["vanilla"]["charged_teacher_seconds"]["mean"] == 61.0
    assert got["converged"] == {"vanilla": {"0": True, "1": False, "2": True}}
    text = seeds.markdown(json.loads(json.dumps(got)))
    cost = text.split("### training cost")[1].splitlines()
    assert "| model | best step | steps | examples seen | train_s | teacher_s |" in cost
    assert "| vanilla† | 900 ± 100 | 1,000 ± 0 | 16,000 ± 0 | 110 ± 10 | 61 ± 1 |" in cost
    assert "| baseline | – | – | – | – | – |" in cost
    assert "| teacher | – | – | – | 400 ± 0 | – |" in cost
    assert "every student trained with 2 torch threads" in text
    assert any(line.startswith("| vanilla† | 28.00 ± 0.00 |") for line in text.splitlines())  # every table
    assert ("† not converged: reached its step cap while still improving on validation (vanilla: seed 1)."
            in text)
    assert "†" not in seeds.markdown(seeds.collect(_per_seed(), **BOOT))


def test_collect_cli_reads_threads_convergence_and_charged_teacher_work_from_each_experiment(repo, capsys):
    head = _git(repo, "rev-parse", "HEAD")
    for s in (0, 1):
        _experiment(repo, head, s, vanilla={"threads": 2, "converged": s == 0, "best_step": 500, "steps": 900},
                    report={"charged_teacher_seconds": 30.0}, student_baseline={"threads": 2})
    assert seeds.main(["collect", "--seeds", "0", "1", "--out-dir", "out", "--resamples", "50"]) == 0
    written = json.loads((repo / "out" / "seeds.json").read_text())
    assert written["converged"] == {"vanilla": {"0": True, "1": False}}
    assert written["cost"]["vanilla"]["steps"]["mean"] == 900 and written["cost"]["vanilla"]["best_step"]["sd"] == 0
    assert written["cost"]["vanilla"]["charged_teacher_seconds"]["mean"] == 30.0
    # seed 2's baseline has no summary: unrecorded, against the 2 threads of every other student
    _experiment(repo, head, 2, vanilla={"threads": 2})
    assert seeds.main(["collect", "--seeds", "0", "1", "2", "--out-dir", "out2"]) == 2
    err = capsys.readouterr().err
    assert "different torch thread counts" in err and "unrecorded: seed 2 (baseline)" in err
    assert not (repo / "out2").exists()
