"""End to end: `dvc repro` of the tiny profile in a temporary git repo, and DVC's rerun behaviour."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

DVC = [sys.executable, "-m", "dvc"]
COPY = ("kd", "stages", "dvc.yaml", ".dvcignore")
STUDENTS = ("baseline", "vanilla", "feature", "attention")


def sh(cmd, cwd, check=True):
    env = dict(os.environ, TQDM_DISABLE="1", PYTHONPATH=str(cwd))
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def set_param(repo: Path, dotted: str, value) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    *parents, leaf = dotted.split(".")
    node = params
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("pipeline")
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, repo / name)
    # The tiny profile overrides the shipped params.yaml, which keeps every key dvc.yaml names.
    params = merge(yaml.safe_load((ROOT / "params.yaml").read_text()),
                   yaml.safe_load((ROOT / "tests" / "profiles" / "tiny.yaml").read_text()))
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(["git", "init", "-q"], repo)
    sh(["git", "config", "user.email", "t@example.com"], repo)
    sh(["git", "config", "user.name", "test"], repo)
    sh(DVC + ["init", "-q"], repo)
    sh(DVC + ["config", "core.analytics", "false"], repo)
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "code and params"], repo)
    first = sh(DVC + ["repro"], repo)
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "tiny pipeline"], repo)
    return repo, first.stdout + first.stderr


def test_repro_runs_every_stage_and_writes_the_outputs(repo):
    path, output = repo
    assert ran(output) == {"download", "tokenize", "train_teacher", "teacher_outputs", "benchmark",
                           *(f"distill@{s}" for s in STUDENTS)}
    for split in ("train", "validation", "test"):
        assert (path / "data" / "raw" / f"{split}.jsonl").is_file()
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    for model in ("teacher", *(f"student_{s}" for s in STUDENTS)):
        AutoModelForSeq2SeqLM.from_pretrained(path / "models" / model)
        AutoTokenizer.from_pretrained(path / "models" / model)
    results = json.loads((path / "benchmark_results" / "benchmark_results.json").read_text())
    assert set(results) == {"teacher", "lead3", *(f"student_{s}" for s in STUDENTS)}
    assert {"rouge1", "rouge2", "rougeL", "rougeLsum", "bleu4", "samples_per_s", "ms_per_sample", "params",
            "size_mb", "peak_mem_mb", "compression", "speedup"} <= set(results["student_vanilla"])
    if results["teacher"]["rougeL"] > 0:  # a tiny teacher may score 0, and retention is then undefined
        assert "retention_rougeL" in results["student_vanilla"]
    for f in ("comparison_table.csv", "benchmark_report.txt", "scores.png", "quality_vs_speed.png"):
        assert (path / "benchmark_results" / f).stat().st_size > 0
    assert (path / "dvclive" / "student_vanilla" / "plots" / "metrics" / "train" / "logit.tsv").is_file()
    assert (path / "logs" / "train_teacher.log").is_file()
    # the vanilla student learned from the cached teacher outputs, the others from the live teacher
    assert "logit KD from cached teacher outputs" in (path / "logs" / "distill_vanilla.log").read_text()
    assert "cached teacher outputs" not in (path / "logs" / "distill_feature.log").read_text()
    manifest = json.loads((path / "data" / "teacher_outputs" / "manifest.json").read_text())
    assert manifest["k"] == 64 and manifest["n_examples"] == 32
    lock = yaml.safe_load((path / "dvc.lock").read_text())
    assert "kd.temperature" not in json.dumps(lock["stages"]["distill@baseline"]["params"])
    assert "kd.temperature" in json.dumps(lock["stages"]["distill@vanilla"]["params"])


def test_second_repro_runs_nothing(repo):
    path, _ = repo
    out = sh(DVC + ["repro"], path)
    assert ran(out.stdout + out.stderr) == set()


def test_temperature_reruns_only_vanilla_and_benchmark(repo):
    path, _ = repo
    set_param(path, "kd.temperature", 3.0)
    out = sh(DVC + ["repro"], path)
    assert ran(out.stdout + out.stderr) == {"distill@vanilla", "benchmark"}


def test_decoding_param_reruns_only_benchmark(repo):
    path, _ = repo
    set_param(path, "benchmark.max_new_tokens", 6)
    out = sh(DVC + ["repro"], path)
    assert ran(out.stdout + out.stderr) == {"benchmark"}
    sh(["git", "add", "-A"], path)
    sh(["git", "commit", "-qm", "tweaks"], path)


def test_experiment_run_show_metrics_diff_and_plots(repo):
    path, _ = repo
    out = sh(DVC + ["exp", "run", "-S", "kd.temperature=4"], path)
    assert ran(out.stdout + out.stderr) == {"distill@vanilla", "benchmark"}
    show = json.loads(sh(DVC + ["exp", "show", "--json"], path).stdout)
    text = json.dumps(show)
    assert "kd" in text and "temperature" in text and "rouge1" in text
    diff = json.loads(sh(DVC + ["metrics", "diff", "HEAD", "--all", "--json"], path).stdout)
    bench = diff["benchmark_results/benchmark_results.json"]
    assert {"student_vanilla.rouge1", "teacher.rougeLsum", "lead3.rouge2"} <= set(bench)
    sh(DVC + ["plots", "show", "-o", "plots_out"], path)
    assert (path / "plots_out" / "index.html").is_file()


def test_experiment_in_a_temp_dir_reruns_only_what_changed(repo):
    """`dvc queue` and `dvc exp run --temp` start from a fresh copy of the repo: nothing there (no
    checkpoints, no logs) may make the teacher look out of date."""
    path, _ = repo
    out = sh(DVC + ["exp", "run", "--temp", "-S", "kd.alpha=0.3"], path)
    assert ran(out.stdout + out.stderr) == {"distill@vanilla", "benchmark"}


def test_training_stages_through_a_distributed_launcher(repo):
    """The documented multi-GPU switch, `-S launch.train=...`, on CPU: every training stage of the
    pipeline runs as two DDP processes (torch.distributed.run; on GPUs, `accelerate launch`)."""
    path, _ = repo
    launcher = "python -m torch.distributed.run --nproc_per_node 2 --master_port 29536"
    out = sh(DVC + ["exp", "run", "-S", f"launch.train={launcher}"], path)
    assert {"train_teacher", "benchmark", *(f"distill@{s}" for s in STUDENTS)} <= ran(out.stdout + out.stderr)
    for log in ("train_teacher", *(f"distill_{s}" for s in STUDENTS)):
        assert "(2 processes)" in (path / "logs" / f"{log}.log").read_text(), log
