"""The teacher_outputs stage and the distill stage reading its cache, through the stage scripts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import ROOT

VANILLA = {"teacher_input": "data/teacher_outputs", "targets": "data/tokenized", "label_weight": 0.5, "losses": {"logit": {"weight": 0.5}}}
STUDENT = {"d_model": 16, "d_ff": 32, "d_kv": 8, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 2,
           "epochs": 1, "lr": 0.01}


def stage(name, args, cwd):
    return subprocess.run([sys.executable, "-m", f"stages.{name}", *args], cwd=cwd,
                          capture_output=True, text=True)


def save_teacher(path, tokenizer_dir, seed):
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    cfg = T5Config(vocab_size=len(tok), d_model=32, d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=2,
                   num_heads=2, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    T5ForConditionalGeneration(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture
def setup(tiny_data, tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump({"student": STUDENT, "train": {"batch_size": 8, "device": "cpu"},
                                 "teacher_outputs": {"top_k": 8, "device": "cpu", "temperatures": [1.0, 2.0]},
                                 "kd": {"students": {"vanilla": VANILLA}}}))
    common = ["--params", str(p), "--tokenizer", str(tiny_data / "tokenizer"),
              "--tokenized", str(tiny_data / "tokenized"), "--log-dir", str(tmp_path / "logs")]
    teacher = save_teacher(tmp_path / "teacher", tiny_data / "tokenizer", seed=0)
    out = stage("teacher_outputs", [*common, "--teacher", str(teacher), "--out", str(tmp_path / "cache")], tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    return tmp_path, common


def distill(tmp_path, common, teacher, name):
    return stage("distill", [*common, "--student", "vanilla", "--teacher", str(teacher),
                             "--teacher-outputs", str(tmp_path / "cache"), "--out", str(tmp_path / name),
                             "--checkpoints", str(tmp_path / f"{name}-ckpt"),
                             "--live-dir", str(tmp_path / f"{name}-live")], tmp_path)


def test_stage_writes_a_manifest_of_what_it_was_made_from(setup, tiny_data):
    tmp_path, _ = setup
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert manifest["k"] == 8 and manifest["n_examples"] == 24
    assert manifest["temperatures"] == [1.0, 2.0]  # teacher_outputs.temperatures, not the default
    assert {"teacher", "tokenizer", "data"} <= set(manifest)
    assert "cached top-8 teacher logits" in (tmp_path / "logs" / "teacher_outputs.log").read_text()


def test_distill_reads_the_cache_of_its_own_teacher(setup):
    tmp_path, common = setup
    out = distill(tmp_path, common, tmp_path / "teacher", "student")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "logit KD from cached teacher outputs" in (tmp_path / "logs" / "distill_vanilla.log").read_text()


def test_cache_of_another_teacher_is_refused_before_training(setup, tiny_data):
    tmp_path, common = setup
    other = save_teacher(tmp_path / "other", tiny_data / "tokenizer", seed=1)
    out = distill(tmp_path, common, other, "student")
    assert out.returncode == 2
    assert "teacher output cache was made for another teacher/data/tokenizer (teacher: cached" in out.stderr
    assert "rerun the teacher_outputs stage" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "student").exists()


def test_a_recipe_temperature_the_cache_lacks_is_refused_before_training(setup):
    tmp_path, common = setup
    p = yaml.safe_load(open(common[1]))
    p["kd"]["students"]["vanilla"]["losses"]["logit"]["temperature"] = 4.0  # a default, but not this cache's
    (tmp_path / "t4.yaml").write_text(yaml.safe_dump(p))
    out = distill(tmp_path, ["--params", str(tmp_path / "t4.yaml"), *common[2:]], tmp_path / "teacher", "student")
    assert out.returncode == 2
    assert ("params: kd.students.vanilla.losses.logit.temperature 4.0 is not in the teacher_outputs cache "
            f"({tmp_path / 'cache'} has temperatures [1.0, 2.0]); add it to teacher_outputs.temperatures and "
            "rerun the teacher_outputs stage (dvc repro)") in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "student").exists()


def test_live_mode_needs_no_cache(setup):
    tmp_path, common = setup
    p = yaml.safe_load(open(common[1]))
    p["kd"]["students"]["vanilla"]["teacher_input"] = "models/teacher"
    (tmp_path / "live.yaml").write_text(yaml.safe_dump(p))
    common = ["--params", str(tmp_path / "live.yaml"), *common[2:]]
    (tmp_path / "cache" / "manifest.json").unlink()  # no usable cache
    out = distill(tmp_path, common, tmp_path / "teacher", "student")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "cached teacher outputs" not in (tmp_path / "logs" / "distill_vanilla.log").read_text()


def test_the_student_saves_the_recipe_it_was_trained_with(setup):
    tmp_path, common = setup
    out = distill(tmp_path, common, tmp_path / "teacher", "student")
    assert out.returncode == 0, out.stderr[-2000:]
    recipe = json.loads((tmp_path / "student" / "recipe.json").read_text())
    assert recipe["name"] == "vanilla" and recipe["teacher_input"] == "data/teacher_outputs"
    assert recipe["label_weight"] == 0.5
    assert recipe["losses"] == {"logit": {"weight": 0.5, "temperature": 1.0}}  # defaults filled in
    assert recipe["student"]["d_model"] == 16 and recipe["train"]["batch_size"] == 8
