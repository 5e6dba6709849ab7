"""`python -m kd.profile`: the shipped real-scale profile applies cleanly on top of params.yaml."""

from __future__ import annotations

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
    assert "# Every stage reads only its own sections" in text  # comments survive
    assert "kd.students" not in text and "vanilla: [logit]" in text  # untouched keys stay as written
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
