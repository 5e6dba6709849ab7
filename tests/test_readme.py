"""The README's results tables are the committed results files, rendered (python -m tools.readme)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from conftest import ROOT

from tools.readme import (DOCUMENTS, cnndm_table, markers, real_job_table, render, render_all, results_profile,
                          results_table, summary_section, verdict_section)


def test_readme_tables_match_the_committed_results():
    out = subprocess.run([sys.executable, "-m", "tools.readme", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_render_replaces_only_the_marked_section():
    start, end = markers("results")
    text = f"intro\n{start}\nold\n{end}\noutro\n"
    assert render(text, "results", "| new |\n") == f"intro\n{start}\n| new |\n{end}\noutro\n"


def test_a_changed_result_fails_the_check(tmp_path):
    """The check compares numbers, not just the presence of a table: edit one score, it fails."""
    results = json.loads((ROOT / "benchmark_results" / "benchmark_results.json").read_text())
    table = results_table(ROOT / "benchmark_results" / "benchmark_results.json")
    results["teacher"]["test"]["beam"]["rougeL"] += 1.0
    (tmp_path / "r.json").write_text(json.dumps(results))
    assert results_table(tmp_path / "r.json") != table
    lead = {"test": {"lead": {"n_examples": 3, "rouge1": 40.0, "rouge1_low": 39.0, "rouge1_high": 41.0,
                              "entity_precision": 100.0}}}
    (tmp_path / "lead3.json").write_text(json.dumps(lead))
    assert "| test | 3 | 40.00 [39.00, 41.00] |" in cnndm_table(tmp_path / "lead3.json")


def _git(cwd, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                   capture_output=True)


def _repo_with_documents(tmp_path):
    """A git repo holding the committed results and every document, rendered from those results (so the test
    holds in a tree whose own run rewrote them too); returns the README's text."""
    shutil.copytree(ROOT / "benchmark_results", tmp_path / "benchmark_results")
    for doc in DOCUMENTS:
        (tmp_path / doc).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / doc).write_text(render_all((ROOT / doc).read_text(), tmp_path / "benchmark_results"))
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", *map(str, DOCUMENTS), "benchmark_results")
    _git(tmp_path, "commit", "-q", "-m", "results")
    return (tmp_path / "README.md").read_text()


def _check(cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "tools.readme", "--check"], cwd=cwd, env=env,
                          capture_output=True, text=True)


def test_the_check_accepts_the_committed_results_after_a_rerun(tmp_path):
    """After `dvc repro` rewrites the run's timings in the working tree, the README still shows the committed
    run and passes; a README that matches neither the committed nor the working tree's results fails."""
    readme = _repo_with_documents(tmp_path)

    def check():
        return _check(tmp_path)

    assert check().returncode == 0
    results_file = tmp_path / "benchmark_results" / "benchmark_results.json"
    results = json.loads(results_file.read_text())
    results["teacher"]["test"]["beam"]["rougeL"] += 1.0  # a rerun elsewhere: the working tree differs
    results_file.write_text(json.dumps(results))
    assert check().returncode == 0, "the README shows the committed run"
    start, _ = markers("summary")
    (tmp_path / "README.md").write_text(readme.replace(start, start + "\n| typed by hand |"))
    failed = check()
    assert failed.returncode == 1 and "differs" in failed.stderr


def test_the_docs_pages_are_checked_too(tmp_path):
    """docs/results.md's full tables are generated like the README's: a hand edit there fails the check, and so
    does a document that lost one of its sections."""
    _repo_with_documents(tmp_path)
    results = tmp_path / "docs" / "results.md"
    text = results.read_text()
    start, end = markers("seeds")
    results.write_text(text.replace(start, start + "\n| typed by hand |"))
    failed = _check(tmp_path)
    assert failed.returncode == 1 and "docs/results.md" in failed.stderr
    head, rest = text.split(start, 1)
    results.write_text(head + rest.split(end, 1)[1])
    failed = _check(tmp_path)
    assert failed.returncode == 1 and "no markers for section(s) seeds" in failed.stderr


def test_the_summary_names_the_student_best_on_validation_and_its_served_retention(tmp_path):
    """The README's sentences on which student to use come from the seeds summaries: the best on validation
    (greedy, as it is served; here `attention`, while `seqkd` leads on test), and its share of the teacher's
    beam rougeL (mean and lowest seed), fact_precision and fact_recall on test, computed from the per-seed
    scores; with the sizes, the compression."""
    paths = _synthetic_seeds(tmp_path)
    r = json.loads(paths["test"].read_text())
    sizes = tmp_path / "results.json"
    sizes.write_text(json.dumps({"teacher": {"params": 1200}, **{m: {"params": 100} for m in r["models"]}} |
                                {"teacher": {"params": 1200}}))
    text = summary_section(paths["test"], sizes, paths["validation"])
    mine, teacher = r["models"]["attention"]["greedy"], r["models"]["teacher"]["beam"]
    kept = 100 * mine["rougeL"]["mean"] / teacher["rougeL"]["mean"]
    lowest = min(100 * mine["rougeL"]["per_seed"][s] / teacher["rougeL"]["per_seed"][s] for s in ("0", "1", "2"))
    precision = 100 * mine["fact_precision"]["mean"] / teacher["fact_precision"]["mean"]
    recall = 100 * mine["fact_recall"]["mean"] / teacher["fact_recall"]["mean"]
    assert "`attention` is the best student on validation" in text
    assert (f"Served greedily, `attention` (the best student on validation) keeps {kept:.1f}% of the teacher's beam "
            f"rougeL on test (mean over seeds 0, 1, 2; lowest seed {lowest:.1f}%), {precision:.1f}% of its "
            f"fact_precision and {recall:.1f}% of its fact_recall, with 12.0x fewer parameters.") in text
    assert f"- **Served:** Served greedily, `attention`" in verdict_section(paths["test"], paths["validation"], sizes)
    # without validation seeds the choice falls to test, and says so
    assert "`seqkd` (the best student on test, no validation seeds collected)" in summary_section(
        paths["test"], sizes, tmp_path / "none.json")


def test_every_gpu_figure_is_labelled(tmp_path):
    """The real job's table says of every time whether it is an estimate or measured, and on what."""
    table = real_job_table(ROOT / "benchmark_results" / "rehearsal" / "rehearsal.json")
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| stage")]
    assert rows and all("(estimate" in row.split("|")[2] or "(measured" in row.split("|")[2] for row in rows)


def test_results_made_under_a_profile_are_refused(tmp_path):
    lock = {"stages": {"report": {"params": {"params.yaml": {"profile": "quick", "benchmark": {}}}}}}
    assert results_profile(json.dumps(lock)) == "quick"
    assert results_profile(json.dumps({"stages": {"report": {"params": {"params.yaml": {"profile": None}}}}})) is None
    assert results_profile(None) is None
    readme = _repo_with_documents(tmp_path)
    (tmp_path / "dvc.lock").write_text(json.dumps(lock))  # the working tree's results: made under quick
    assert _check(tmp_path).returncode == 0, "the committed results still match"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    wrote = subprocess.run([sys.executable, "-m", "tools.readme"], cwd=tmp_path, env=env, capture_output=True,
                           text=True)
    assert wrote.returncode == 1 and "profile 'quick'" in wrote.stderr
    assert (tmp_path / "README.md").read_text() == readme


def _synthetic_seeds(tmp_path, converged=None):
    """seeds.json and seeds_validation/seeds.json from kd.seeds.collect on made-up scores: `attention` leads on
    validation, `seqkd` on test; `feature` is +3, -3 and 0 against the control depending on its seed."""
    import numpy as np

    from kd.seeds import collect

    rng = np.random.default_rng(5)
    offsets = {"teacher": {0: 30, 1: 30, 2: 30}, "baseline": {0: 1, 1: -1, 2: 0},
               "seqkd": {0: 20, 1: 18, 2: 22}, "attention": {0: 10, 1: 12, 2: 8},
               "feature": {0: 3, 1: -3, 2: 0}}
    paths = {}
    for split, n in (("test", 30), ("validation", 20)):
        base = rng.uniform(20, 50, size=n).round(1)
        lift = {"attention": 16} if split == "validation" else {}  # attention best on validation only

        def rows(model, s):
            values = base + offsets[model][s] + lift.get(model, 0) + rng.normal(0, 2, size=n).round(1)
            # greedy (how a student is served) a point below beam; fact_recall a third of rougeL
            return [{"split": split, "decoding": decoding, "id": f"{split}{i}", "rougeL": float(v) - shift,
                     "fact_precision": float(v) / 2, "fact_recall": float(v) / 3}
                    for decoding, shift in (("beam", 0.0), ("greedy", 1.0)) for i, v in enumerate(values)]

        per_seed = {s: {m: rows(m, s) for m in offsets} for s in (0, 1, 2)}
        costs = {s: {m: {"converged": (converged or {}).get(m, {}).get(s, True)} for m in offsets} for s in (0, 1, 2)}
        paths[split] = tmp_path / f"{split}.json"
        paths[split].write_text(json.dumps(collect(per_seed, split=split, resamples=300, costs=costs)))
    return paths


def test_the_verdict_is_computed_from_the_seeds_summaries(tmp_path):
    """Every number of "What the numbers say" comes from seeds.json: the student best on validation (not the
    one best on test), its share of the teacher on test (mean and lowest seed), each gap closed with its
    interval, and a plain statement for a recipe whose interval does not clear 0."""
    from kd.seeds import retention

    paths = _synthetic_seeds(tmp_path)
    text = verdict_section(paths["test"], paths["validation"])
    r, v = json.loads(paths["test"].read_text()), json.loads(paths["validation"].read_text())
    gap = {m: r["gap_closed"][m]["beam"]["bootstrap"] for m in ("seqkd", "attention", "feature")}

    def closes(m):
        return f"{gap[m]['mean']:.0f}% [{gap[m]['low']:.0f}, {gap[m]['high']:.0f}]"

    best_val = max(("baseline", "seqkd", "attention", "feature"),
                   key=lambda m: v["models"][m]["beam"]["rougeL"]["mean"])
    assert best_val == "attention"  # and on test seqkd leads: the choice is made on validation
    assert (f"`attention` is the best student on validation (greedy rougeL "
            f"{v['models']['attention']['greedy']['rougeL']['mean']:.2f} there" in text)
    mine, theirs = r["models"]["attention"]["beam"]["rougeL"], r["models"]["teacher"]["beam"]["rougeL"]
    lowest = min(100 * mine["per_seed"][s] / theirs["per_seed"][s] for s in mine["per_seed"])
    assert (f"On test it keeps {retention(r, 'attention', 'beam'):.1f}% of the teacher's rougeL "
            f"({mine['mean']:.2f} against {theirs['mean']:.2f}; lowest seed {lowest:.1f}%) and closes "
            f"{closes('attention')} of the teacher's lead over the label-only `baseline` (its interval is above 0, "
            f"so it beats `baseline`)." in text)
    assert f"`seqkd` closes {closes('seqkd')} of the gap (its interval is above 0, so it beats `baseline`)" in text
    assert gap["feature"]["low"] < 0 < gap["feature"]["high"]
    assert (f"`feature` closes {closes('feature')} of the gap (its interval includes 0, so it does not beat "
            f"`baseline`)" in text)
    assert "- **In all:** 2 of 3 recipes beat `baseline` with an interval above 0; `feature` does not." in text
    lead = r["vs_teacher"]["baseline"]["beam"]["rougeL"]["bootstrap"]
    assert (f"the teacher leads `baseline` by {-lead['mean_diff']:.2f} rougeL [{-lead['high']:.2f}, "
            f"{-lead['low']:.2f}]" in text)
    assert "intervals: 95% two-level bootstrap over seeds and articles" in text
    assert "the intervals above include this training noise" in text
    assert "†" not in text
    # without a validation summary it says the choice was made on test
    assert "`seqkd` is the best student on test (no validation seeds collected)" in verdict_section(
        paths["test"], tmp_path / "none.json")


def test_the_summary_and_verdict_mark_a_student_that_did_not_converge(tmp_path):
    paths = _synthetic_seeds(tmp_path, converged={"seqkd": {1: False}})
    note = ("† not converged: reached its step cap while still improving on validation (seqkd: seed 1).")
    text = verdict_section(paths["test"], paths["validation"])
    assert "`seqkd†` closes" in text and note in text
    summary = summary_section(paths["test"], tmp_path / "none.json")
    assert "| seqkd† |" in summary and note in summary
    assert "with its interval (95% two-level bootstrap over seeds and articles)" in summary
    assert "| best step | steps | examples seen | train_s | teacher_s |" in summary
    assert "| baseline | – | " in summary  # no sizes, no costs recorded: dashes, no crash
