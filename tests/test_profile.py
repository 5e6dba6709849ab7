"""`python -m kd.profile`: the shipped real-scale profile applies cleanly on top of params.yaml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

from kd import profile
from kd.errors import ConfigError
from kd.params import load_section


def test_real_scale_profile_switches_to_t5_base_to_small_on_cnndm(tmp_path):
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    out = subprocess.run([sys.executable, "-m", "kd.profile", "cnndm-t5-base-small", "--params", str(params)],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    data, tok = load_section("data", params), load_section("tokenizer", params)
    teacher, student = load_section("teacher", params), load_section("student", params)
    assert (data.source, data.hub.name, data.hub.config) == ("hub", "abisee/cnn_dailymail", "3.0.0")
    assert (tok.max_source_length, tok.max_target_length) == (512, 128)
    assert (teacher.source, teacher.pretrained) == ("pretrained", "t5-base")
    assert (student.source, student.pretrained) == ("pretrained", "t5-small")
    assert load_section("train", params).precision == "auto"
    text = params.read_text()
    assert "# The pipeline's settings." in text  # comments survive
    assert "speed_repeats: 3           # the speed stage" in text  # untouched keys stay as written
    # the profile's own student recipes replace the builtin ones: the control and sequence-level KD, each
    # for t5-small and flan-t5-small, from one teacher whose summaries of the training split are the targets
    kd = load_section("kd", params)
    assert list(kd.students) == ["baseline", "seqkd", "flan_baseline", "flan_seqkd"]
    assert kd.students["flan_seqkd"].student == {"init": "pretrained", "pretrained": "google/flan-t5-small"}
    assert kd.students["seqkd"].targets == "data/teacher_targets" and kd.students["seqkd"].target_splits == ("train",)
    generate = load_section("teacher_generate", params)
    assert (generate.splits, generate.num_beams, generate.max_new_tokens) == (("train",), 4, 128)
    # applying twice changes nothing
    before = params.read_text()
    profile.apply("cnndm-t5-base-small", params)
    assert params.read_text() == before


def test_profile_with_an_unknown_key_is_refused_and_params_untouched(tmp_path, monkeypatch):
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    before = params.read_text()
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "bad.yaml").write_text("teacher:\n  pretrained: t5-base\n  widht: 3\n")
    (tmp_path / "profiles" / "invalid.yaml").write_text("train:\n  precision: fp8\n")
    monkeypatch.setattr(profile, "PROFILES_DIR", tmp_path / "profiles")
    with pytest.raises(ConfigError, match="teacher.widht is not a key of params.yaml"):
        profile.apply("bad", params)
    with pytest.raises(ConfigError, match="train.precision must be one of"):
        profile.apply("invalid", params)
    with pytest.raises(ConfigError, match="not found"):
        profile.apply("nope", params)
    assert params.read_text() == before


def test_profile_recipes_are_validated_before_params_is_replaced(tmp_path, monkeypatch):
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    before = params.read_text()
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "typo.yaml").write_text(
        "kd:\n  students:\n    s:\n      teacher_input: models/teacher\n      targets: data/tokenized\n      losses:\n"
        "        logit: {temprature: 2.0}\n")
    monkeypatch.setattr(profile, "PROFILES_DIR", tmp_path / "profiles")
    with pytest.raises(ConfigError, match=r"kd\.students\.s\.losses\.logit\.temprature"):
        profile.apply("typo", params)
    assert params.read_text() == before


def _git(cwd, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                   capture_output=True)


def test_a_profile_refuses_uncommitted_params_and_checkout_goes_back(tmp_path):
    """Your own uncommitted edits are never mixed into a profile; `git checkout params.yaml` undoes one."""
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "params.yaml")
    _git(tmp_path, "commit", "-qm", "params")
    committed = params.read_text()
    params.write_text(committed.replace("batch_size: 8", "batch_size: 4", 1))
    edited = params.read_text()
    with pytest.raises(ConfigError, match="uncommitted changes.*git checkout params.yaml"):
        profile.apply("quick", params)
    assert params.read_text() == edited
    _git(tmp_path, "checkout", "params.yaml")
    profile.apply("quick", params)
    assert load_section("student", params).steps == 4
    _git(tmp_path, "checkout", "params.yaml")
    assert params.read_text() == committed


def test_the_quick_profile_keeps_every_default_recipe():
    """The smoke run trains the default's students, with the default recipes, only smaller and shorter."""
    import yaml

    quick = yaml.safe_load((profile.PROFILES_DIR / "quick.yaml").read_text())
    assert "kd" not in quick  # kd.students is replaced whole by a profile that names it
    assert load_section("student", ROOT / "params.yaml").steps > quick["student"]["steps"]


def test_a_recipe_asking_for_summaries_nobody_generates_is_refused(tmp_path):
    """Parameter validation names the recipe's key and teacher_generate's, before anything runs."""
    from kd.students.recipe import check_teacher_summaries

    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    kd = load_section("kd", params)
    check_teacher_summaries(kd, load_section("teacher_generate", params))  # the shipped params agree
    for name in profile.available():  # and so does every profile applied on top of them
        shutil.copy(ROOT / "params.yaml", params)
        profile.apply(name, params)
    none = type(load_section("teacher_generate", params))(splits=())
    with pytest.raises(ConfigError, match=r"kd.students.seqkd.target_splits asks for the teacher's summaries of "
                                          r"\['train', 'unlabeled'\], but teacher_generate.splits made only \[\]"):
        check_teacher_summaries(kd, none)


def test_a_profile_is_recorded_in_params_yaml(tmp_path):
    from kd.params import applied_profile

    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    assert applied_profile(params) is None
    profile.apply("quick", params)
    assert applied_profile(params) == "quick"
    assert "profile: quick" in params.read_text()


def test_a_profile_run_as_an_experiment_sees_the_profile_and_gives_params_back(tmp_path):
    """`--exp`: `dvc exp run --temp` reads the profile's params from the workspace; afterwards params.yaml
    is as it was, also when the run fails (here a stand-in for dvc that records what it saw)."""
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    committed = params.read_text()
    seen = tmp_path / "seen.yaml"
    record = ["sh", "-c", f'cp params.yaml {seen}; echo "$@" > {tmp_path / "args"}; echo $KD_LOG_DIR > {tmp_path / "logs"}; '
              f'exit $EXIT', "dvc"]
    for code in (0, 3):
        os.environ["EXIT"] = str(code)
        try:
            rc = profile.run_as_experiment("quick", params, exp_name="smoke", dvc=record)
        finally:
            del os.environ["EXIT"]
        assert rc == code
        assert params.read_text() == committed
        assert load_section("student", seen).steps == 4  # the run read the quick profile's params
        assert (tmp_path / "args").read_text().split() == ["exp", "run", "--temp", "--name", "smoke"]
        assert (tmp_path / "logs").read_text().strip() == str(tmp_path / "logs" / "smoke")  # logs kept in the workspace
