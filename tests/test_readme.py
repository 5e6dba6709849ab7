"""The README's results tables are the committed results files, rendered (python -m tools.readme)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from conftest import ROOT

from tools.readme import cnndm_table, markers, render, render_all, results_table


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


def test_the_check_accepts_the_committed_results_after_a_rerun(tmp_path):
    """After `dvc repro` rewrites the run's timings in the working tree, the README still shows the committed
    run and passes; a README that matches neither the committed nor the working tree's results fails."""
    shutil.copytree(ROOT / "benchmark_results", tmp_path / "benchmark_results")
    # rendered from the copied results, so the test holds in a tree whose own run rewrote them too
    readme = render_all((ROOT / "README.md").read_text(), tmp_path / "benchmark_results")
    (tmp_path / "README.md").write_text(readme)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "README.md", "benchmark_results")
    _git(tmp_path, "commit", "-q", "-m", "results")

    def check():
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return subprocess.run([sys.executable, "-m", "tools.readme", "--check"], cwd=tmp_path, env=env,
                              capture_output=True, text=True)

    assert check().returncode == 0
    results_file = tmp_path / "benchmark_results" / "benchmark_results.json"
    results = json.loads(results_file.read_text())
    results["teacher"]["test"]["beam"]["rougeL"] += 1.0  # a rerun elsewhere: the working tree differs
    results_file.write_text(json.dumps(results))
    assert check().returncode == 0, "the README shows the committed run"
    start, _ = markers("results")
    (tmp_path / "README.md").write_text(readme.replace(start, start + "\n| typed by hand |"))
    failed = check()
    assert failed.returncode == 1 and "differs" in failed.stderr
