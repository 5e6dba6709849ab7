"""End to end: `dvc repro` of the quick profile in a temporary git repo, and DVC's rerun behaviour."""

from __future__ import annotations

import copy
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
COPY = ("kd", "stages", "dvc.yaml", ".dvcignore", ".gitignore")
# The default's five students plus two documented labels-only recipes the default does not train: logit KD
# from the teacher_outputs cache, and on-policy gkd.
STUDENTS = ("baseline", "seqkd", "seqkd_logit", "seqkd_feature", "seqkd_attention", "vanilla", "gkd")
EXTRA = {"vanilla": {"teacher_input": "data/teacher_outputs", "targets": "data/tokenized", "label_weight": 0.7,
                     "losses": {"logit": {"weight": 0.3, "temperature": 1.0}}},
         "gkd": {"teacher_input": "models/teacher", "targets": "data/tokenized", "label_weight": 1.0,
                 "losses": {"gkd": {"weight": 1.0, "lmbda": 0.25}}}}


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


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("pipeline")
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, repo / name)
    # The shipped params.yaml plus two labels-only recipes that the default does not train, committed; then
    # the quick profile run as the README says (`python -m kd.profile quick --exp`).
    shutil.copy(ROOT / "params.yaml", repo / "params.yaml")
    for name, recipe in EXTRA.items():
        set_param(repo, f"kd.students.{name}", recipe)
    sh(["git", "init", "-q"], repo)
    sh(["git", "config", "user.email", "t@example.com"], repo)
    sh(["git", "config", "user.name", "test"], repo)
    sh(DVC + ["init", "-q"], repo)
    # The repo's own DVC config (cache link types: every output a read-only link into the cache), so the
    # stages are tested as they run in a checkout.
    shutil.copy(ROOT / ".dvc" / "config", repo / ".dvc" / "config")
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "code and params"], repo)
    first = sh([sys.executable, "-m", "kd.profile", "quick", "--exp", "--name", "quick"], repo)
    # The documented run leaves the work tree as it found it: params.yaml, results, dvc.lock, dvclive.
    assert sh(["git", "status", "--porcelain"], repo).stdout == "", "the quick profile changed the work tree"
    assert not (repo / "dvc.lock").exists()
    # The tests below read the run's outputs in the workspace and change params from there.
    sh(DVC + ["exp", "apply", "quick"], repo)
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "tiny pipeline"], repo)
    return repo, first.stdout + first.stderr


def quality_stages(students=STUDENTS) -> set[str]:
    return {"benchmark_teacher", "benchmark_lead3", *(f"benchmark@{s}" for s in students)}


def commit(path, message):
    sh(["git", "add", "-A"], path)
    sh(["git", "commit", "-qm", message], path)


def test_repro_runs_every_stage_and_writes_the_outputs(repo):
    path, output = repo
    logs = path / "logs" / "quick"  # the experiment's logs, kept in the workspace (KD_LOG_DIR)
    assert ran(output) == {"download", "tokenize", "train_teacher", "teacher_outputs", "teacher_generate", "speed", "report",
                           *(f"distill@{s}" for s in STUDENTS), *quality_stages()}
    for split in ("train", "validation", "test"):
        assert (path / "data" / "raw" / f"{split}.jsonl").is_file()
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    for model in ("teacher", *(f"student_{s}" for s in STUDENTS)):
        AutoModelForSeq2SeqLM.from_pretrained(path / "models" / model)
        AutoTokenizer.from_pretrained(path / "models" / model)
    for s in STUDENTS:  # each student keeps the resolved recipe it was trained with
        assert json.loads((path / "models" / f"student_{s}" / "recipe.json").read_text())["name"] == s
    results = json.loads((path / "benchmark_results" / "benchmark_results.json").read_text())
    assert set(results) == {"teacher", "lead3", *STUDENTS}
    assert {"samples_per_s", "params", "size_mb", "compression", "speedup", "train_seconds",
            "train_tokens"} <= set(results["vanilla"])
    for split in ("validation", "test"):  # num_beams 1 in the quick profile: greedy only
        scores = results["vanilla"][split]["greedy"]
        assert {"rouge1", "rougeL_low", "rougeL_high", "bleu", "fact_precision", "fact_recall", "entity_precision",
                "vs_baseline", "vs_teacher"} <= set(scores)
        assert set(results["lead3"][split]) == {"lead"}
    metrics = json.loads((path / "benchmark_results" / "metrics.json").read_text())
    assert set(metrics) == set(results) and all(len(m) == 3 for m in metrics.values())
    for f in ("comparison_table.csv", "benchmark_report.txt", "scores.png", "quality_vs_speed.png", "speed.json",
              "curves/val_loss.png", "curves/train_logit.png", *(f"examples/{m}.jsonl" for m in results)):
        assert (path / "benchmark_results" / f).stat().st_size > 0, f
    assert (path / "dvclive" / "student_vanilla" / "plots" / "metrics" / "train" / "logit.tsv").is_file()
    assert (logs / "train_teacher.log").is_file()
    # the vanilla student learned from the cached teacher outputs, the others from the live teacher
    assert "logit KD from cached teacher outputs" in (logs / "distill_vanilla.log").read_text()
    assert "cached teacher outputs" not in (logs / "distill_seqkd_feature.log").read_text()
    # seqkd_logit's teacher ran once over its own training set (references and summaries), and that
    # pass, like teacher_generate's, is charged to it in the report
    assert "teacher's top-64 over 80 training examples" in (logs / "distill_seqkd_logit.log").read_text()
    assert json.loads((path / "dvclive" / "teacher_generate" / "metrics.json").read_text())["seconds"] > 0
    # (the tiny pass may round away in the 0.1 s total: its own part is what shows it is charged)
    assert results["seqkd_logit"]["teacher_charge"]["own"] > 0 and results["seqkd"]["teacher_charge"]["own"] == 0
    assert results["seqkd_logit"]["charged_teacher_seconds"] >= results["seqkd"]["charged_teacher_seconds"] > 0
    manifest = json.loads((path / "data" / "teacher_outputs" / "manifest.json").read_text())
    assert manifest["k"] == 64 and manifest["n_examples"] == 32
    lock = yaml.safe_load((path / "dvc.lock").read_text())
    assert "data/teacher_outputs" in json.dumps(lock["stages"]["distill@vanilla"]["deps"])
    assert "data/teacher_outputs" not in json.dumps(lock["stages"]["distill@baseline"]["deps"])
    # the seqkd student trained on the teacher's summaries, the others on the references
    targets = json.loads((path / "data" / "teacher_targets" / "manifest.json").read_text())
    assert targets["splits"]["train"]["n_examples"] == 32 and targets["splits"]["unlabeled"]["n_examples"] == 16
    assert set(targets["train_rouge"]) == {"rouge1", "rouge2", "rougeL", "rougeLsum"}
    # every student trains the same optimizer steps (student.steps), whatever its training set
    for s in STUDENTS:
        assert json.loads((path / "dvclive" / f"student_{s}" / "metrics.json").read_text())["steps"] == 4, s
    # the teacher trained on its own labelled pool (48 articles, 6 batches of 8 in its one epoch)
    assert json.loads((path / "dvclive" / "teacher" / "metrics.json").read_text())["steps"] == 6
    assert "data/teacher_targets" in json.dumps(lock["stages"]["distill@seqkd"]["deps"])
    assert "data/teacher_targets" not in json.dumps(lock["stages"]["distill@baseline"]["deps"])
    assert "trains on the summaries in data/teacher_targets" in (logs / "distill_seqkd.log").read_text()
    # the same-text recipes: the teacher's summaries with a loss from the live teacher
    for s in ("seqkd_logit", "seqkd_feature", "seqkd_attention"):
        assert "data/teacher_targets" in json.dumps(lock["stages"][f"distill@{s}"]["deps"])
        assert "trains on the summaries in data/teacher_targets" in (logs / f"distill_{s}.log").read_text()
    assert (path / "dvclive" / "student_seqkd_attention" / "plots" / "metrics" / "train" / "attention.tsv").is_file()
    assert "teacher's summaries" not in (logs / "distill_gkd.log").read_text()
    assert (path / "dvclive" / "student_gkd" / "plots" / "metrics" / "train" / "gkd.tsv").is_file()


def test_second_repro_runs_nothing(repo):
    path, _ = repo
    out = sh(DVC + ["repro"], path)
    assert ran(out.stdout + out.stderr) == set()


def test_decoding_param_reruns_only_the_benchmark_stages(repo):
    """What DVC would rerun after a decoding change (`dvc status`; lead-3 decodes nothing: it stays)."""
    path, _ = repo
    set_param(path, "benchmark.max_new_tokens", 6)
    try:
        status = set(json.loads(sh(DVC + ["status", "--json"], path).stdout))
    finally:
        sh(["git", "checkout", "params.yaml"], path)
    assert status == quality_stages() - {"benchmark_lead3"} | {"speed", "report"}


def test_teacher_generate_reruns_for_the_teacher_never_for_a_recipe(repo):
    """The teacher's summaries are computed once: a student's recipe does not touch them, a changed
    teacher (here: its output edited in place, as a retrained one would be) does."""
    path, _ = repo
    set_param(path, "kd.students.seqkd.label_weight", 0.5)
    set_param(path, "kd.students.seqkd.teacher_share", 0.5)
    try:
        status = set(json.loads(sh(DVC + ["status", "--json"], path).stdout))
    finally:
        sh(["git", "checkout", "params.yaml"], path)
    assert status == {"distill@seqkd", "speed", "report"}  # the two read every recipe (kd.students)
    config = path / "models" / "teacher" / "generation_config.json"
    sh(DVC + ["unprotect", str(config)], path)  # outputs are read-only links into the cache: copy before editing
    config.write_text(config.read_text().replace("{", '{"edited": 1, ', 1))
    try:
        status = set(json.loads(sh(DVC + ["status", "--json"], path).stdout))
    finally:
        sh(DVC + ["checkout", "--force", "models/teacher"], path)
    assert "teacher_generate" in status and "train_teacher" in status
    assert set(json.loads(sh(DVC + ["status", "--json"], path).stdout)) == set()


def test_a_student_is_one_params_entry(repo):
    """A copy of a recipe under a new name and a logit + attention combination, added to params.yaml
    only: each becomes a distill and a benchmark stage, trains, and is benchmarked."""
    path, _ = repo
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["kd"]["students"]["vanilla_copy"] = copy.deepcopy(params["kd"]["students"]["vanilla"])
    params["kd"]["students"]["combo"] = {"teacher_input": "models/teacher", "targets": "data/tokenized", "label_weight": 0.5,
                                         "losses": {"logit": {"weight": 0.5}, "attention": {"weight": 1.0}}}
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    new = {"distill@vanilla_copy", "distill@combo", "benchmark@vanilla_copy", "benchmark@combo"}
    assert new <= set(sh(DVC + ["stage", "list", "--name-only"], path).stdout.split())
    # DVC 3.67's --dry hashes every dep of a stage and fails on one not built yet (the new student's
    # model), so the dry run targets the new distill stages; `dvc status` lists everything that will run.
    dry = sh(DVC + ["repro", "--dry", "distill@vanilla_copy", "distill@combo"], path)
    assert ran(dry.stdout + dry.stderr) == {"distill@vanilla_copy", "distill@combo"}
    assert set(json.loads(sh(DVC + ["status", "--json"], path).stdout)) == new | {"speed", "report"}
    out = sh(DVC + ["repro"], path)
    assert ran(out.stdout + out.stderr) == new | {"speed", "report"}
    results = json.loads((path / "benchmark_results" / "benchmark_results.json").read_text())
    assert {"vanilla_copy", "combo"} <= set(results) and "samples_per_s" in results["combo"]
    recipe = json.loads((path / "models" / "student_combo" / "recipe.json").read_text())
    assert set(recipe["losses"]) == {"logit", "attention"}
    assert "cached teacher outputs" not in (path / "logs" / "distill_combo.log").read_text()
    commit(path, "two more students")


def test_one_recipe_change_reruns_its_student_its_benchmark_speed_and_report(repo):
    """As an experiment in a temporary copy (as `dvc queue` runs them: nothing there, no checkpoints or
    logs, may make the teacher look out of date); then exp show and plots see it."""
    path, _ = repo
    out = sh(DVC + ["exp", "run", "--temp", "-n", "t4", "-S", "kd.students.vanilla.losses.logit.temperature=4"], path)
    assert ran(out.stdout + out.stderr) == {"distill@vanilla", "benchmark@vanilla", "speed", "report"}
    show = json.loads(sh(DVC + ["exp", "show", "--json"], path).stdout)
    text = json.dumps(show)
    assert "temperature" in text and "val_rougeL" in text and '"t4"' in text

    def metrics_of(name):  # the experiment's (or the workspace's) metrics.json, from exp show
        for row in show:
            for exp in [row, *(e for branch in row.get("experiments") or [] for e in branch.get("revs", []))]:
                if exp.get("name") == name or (name == "workspace" and exp.get("rev") == "workspace"):
                    return exp["data"]["metrics"]["benchmark_results/metrics.json"]["data"]
        raise AssertionError(f"{name} not in exp show")

    mine, base = metrics_of("t4"), metrics_of("workspace")
    assert mine["baseline"] == base["baseline"] and mine["teacher"] == base["teacher"]  # untouched models
    sh(DVC + ["plots", "show", "-o", "plots_out"], path)
    html = (path / "plots_out" / "index.html").read_text()
    assert "val_loss.png" in html and "quality_vs_speed.png" in html


def test_training_stages_through_a_distributed_launcher(repo):
    """The documented multi-GPU switch, `-S launch.train=...`, on CPU: every training stage of the
    pipeline runs as two DDP processes (torch.distributed.run; on GPUs, `accelerate launch`)."""
    path, _ = repo
    launcher = "python -m torch.distributed.run --nproc_per_node 2 --master_port 29536"
    # the teacher and one student stand for every training stage (they share the launch command)
    out = sh(DVC + ["exp", "run", "-S", f"launch.train={launcher}", "distill@vanilla"], path)
    assert {"train_teacher", "teacher_outputs", "distill@vanilla"} == ran(out.stdout + out.stderr)
    for log in ("train_teacher", "distill_vanilla"):
        assert "(2 processes)" in (path / "logs" / f"{log}.log").read_text(), log


NEW_LOSS = '''"""A loss added as one module: mean squared error between student and teacher logits."""

from dataclasses import dataclass

from kd.losses.registry import register
from kd.losses.base import Distiller, LossSettings


@dataclass(frozen=True)
class Settings(LossSettings):
    scale: float = 1.0


@register("logit_mse")
class LogitMSE(Distiller):
    Settings = Settings
    needs = frozenset({"logits"})

    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    @classmethod
    def from_settings(cls, settings, teacher_config, student_config, *, where):
        return cls(settings.scale)

    def forward(self, student, teacher, batch):
        mask = batch["labels"] != -100
        return self.scale * (student.logits[mask] - teacher.logits.detach()[mask]).pow(2).mean()
'''


def test_a_loss_is_one_module_usable_by_name(repo):
    path, _ = repo
    (path / "kd" / "losses" / "logit_mse.py").write_text(NEW_LOSS)
    set_param(path, "kd.students.mse", {"teacher_input": "models/teacher", "targets": "data/tokenized", "label_weight": 1.0,
                                        "losses": {"logit_mse": {"weight": 0.1, "scale": 2.0}}})
    # A new file in kd/losses changes every student's code dep (see README, Extending), and never the
    # teacher's: the teacher's stages do not import the losses. Last test: only the new student runs.
    status = json.loads(sh(DVC + ["status", "--json"], path).stdout)
    assert {"distill@mse", "distill@baseline", "distill@vanilla"} <= set(status)
    assert not {"train_teacher", "teacher_outputs"} & set(status)
    out = sh(DVC + ["repro", "benchmark@mse"], path)
    assert ran(out.stdout + out.stderr) == {"distill@mse", "benchmark@mse"}
    recipe = json.loads((path / "models" / "student_mse" / "recipe.json").read_text())
    assert recipe["losses"] == {"logit_mse": {"weight": 0.1, "scale": 2.0}}
    assert (path / "dvclive" / "student_mse" / "plots" / "metrics" / "train" / "logit_mse.tsv").is_file()
