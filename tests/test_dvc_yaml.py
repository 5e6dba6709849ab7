"""dvc.yaml agrees with the code: each distill stage declares the params its losses read, and the
paths on each `cmd` are the scripts' defaults."""

from __future__ import annotations

import yaml
from conftest import ROOT

from kd import paths
from kd.distill import uses_cache
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
        declared = {item["p1"], item["p2"], item["p3"]} - {f"kd.students.{name}"}
        needed = {k for loss in losses for k in distiller_class(loss).param_keys}
        assert declared == needed, name
        # the teacher-side input the student really reads: the cache for logit-only KD
        cached = uses_cache(kd, losses)
        assert item["teacher"] == str(paths.TEACHER_OUTPUTS_DIR if cached else paths.TEACHER_DIR), name
    assert str(paths.TEACHER_DIR) in stage["do"]["deps"]  # student.init: shrink reads the teacher
    assert f"--teacher-outputs {paths.TEACHER_OUTPUTS_DIR}" in stage["do"]["cmd"]


def test_teacher_outputs_depends_on_teacher_and_data_only():
    stage = dvc_yaml()["stages"]["teacher_outputs"]
    assert stage["params"] == ["teacher_outputs"]  # no student or kd key can rerun it
    assert {str(paths.TEACHER_DIR), str(paths.TOKENIZED_DIR), str(paths.TOKENIZER_DIR)} <= set(stage["deps"])
    assert f"--out {paths.TEACHER_OUTPUTS_DIR}" in stage["cmd"]
    assert [str(paths.TEACHER_OUTPUTS_DIR)] == stage["outs"]


def test_training_stages_start_through_the_launch_param():
    stages = dvc_yaml()["stages"]
    assert stages["train_teacher"]["cmd"].startswith("${launch.train} stages/train_teacher.py")
    assert stages["distill"]["do"]["cmd"].startswith("${launch.train} stages/distill.py")
    assert stages["benchmark"]["cmd"].startswith("${launch.benchmark} stages/benchmark.py")


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
