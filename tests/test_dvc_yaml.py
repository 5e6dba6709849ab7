"""dvc.yaml agrees with the code: each distill stage declares the params its losses read, and the
paths on each `cmd` are the scripts' defaults."""

from __future__ import annotations

import yaml
from conftest import ROOT

from kd import paths
from kd.losses import distiller_class
from kd.params import load_section


def dvc_yaml():
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


def test_every_student_in_params_has_a_distill_stage_declaring_its_loss_params():
    kd = load_section("kd", ROOT / "params.yaml")
    stage = dvc_yaml()["stages"]["distill"]
    assert set(stage["foreach"]) == set(kd.students)
    for name, losses in kd.students.items():
        item = stage["foreach"][name]
        # unused slots repeat the student's own recipe key, which the stage declares anyway
        declared = {item["p1"], item["p2"]} - {f"kd.students.{name}"}
        needed = {k for loss in losses for k in distiller_class(loss).param_keys}
        assert declared == needed, name
        assert item["teacher"] == (str(paths.TEACHER_DIR) if losses else str(paths.TOKENIZER_DIR))


def test_benchmark_covers_every_student():
    kd = load_section("kd", ROOT / "params.yaml")
    stage = dvc_yaml()["stages"]["benchmark"]
    for name in kd.students:
        assert f"student_{name}={paths.student_dir(name)}" in stage["cmd"]
        assert str(paths.student_dir(name)) in stage["deps"]


def test_cmd_paths_are_the_script_defaults():
    stages = dvc_yaml()["stages"]
    assert f"--out {paths.RAW_DIR}" in stages["download"]["cmd"]
    assert f"--tokenized-out {paths.TOKENIZED_DIR}" in stages["tokenize"]["cmd"]
    assert f"--out {paths.TEACHER_DIR}" in stages["train_teacher"]["cmd"]
    assert f"--out {paths.BENCHMARK_DIR}" in stages["benchmark"]["cmd"]
