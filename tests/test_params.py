"""params.yaml validation: every bad value is one ConfigError naming the key."""

from __future__ import annotations

import pytest
import yaml
from conftest import ROOT

from kd.errors import ConfigError
from kd.params import SECTIONS, KDParams, load_section


def write(tmp_path, params: dict):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_repo_params_file_is_valid():
    for name in SECTIONS:
        load_section(name, ROOT / "params.yaml")


@pytest.mark.parametrize("section,body,key", [
    ("kd", {"temprature": 2.0}, "kd.temprature"),                       # unknown key
    ("kd", {"temperature": 0}, "kd.temperature"),                       # temperature <= 0
    ("kd", {"temperature": -1.5}, "kd.temperature"),
    ("kd", {"alpha": 1.5}, "kd.alpha"),                                 # alpha outside [0, 1]
    ("kd", {"alpha": "half"}, "kd.alpha"),                              # wrong type
    ("kd", {"students": {"vanilla": "logit"}}, "kd.students.vanilla"),  # not a list
    ("train", {"batch_size": "16"}, "train.batch_size"),
    ("train", {"batch_size": True}, "train.batch_size"),                # bool is not an int here
    ("train", {"precision": "fp8"}, "train.precision"),
    ("teacher", {"num_heads": 0}, "teacher.num_heads"),
    ("student", {"lr": -1.0}, "student.lr"),
    ("data", {"source": "ftp"}, "data.source"),                          # unknown source name
    ("data", {"builtin": {"train_size": 0}}, "data.builtin.train_size"),  # empty split
    ("data", {"builtin": {"nope": 1}}, "data.builtin.nope"),
    ("benchmark", {"num_beams": 0}, "benchmark.num_beams"),
    ("tokenizer", {"vocab_size": 10}, "tokenizer.vocab_size"),
])
def test_bad_values_name_the_key(tmp_path, section, body, key):
    path = write(tmp_path, {section: body})
    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("[", r"\[")):
        load_section(section, path)


def test_unknown_section_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="unknown section"):
        load_section("kd", write(tmp_path, {"kd": {}, "optimiser": {}}))
    bad = tmp_path / "bad.yaml"
    bad.write_text("kd: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_section("kd", bad)
    with pytest.raises(ConfigError, match="not found"):
        load_section("kd", tmp_path / "missing.yaml")


def test_defaults_fill_missing_keys_and_ints_become_floats(tmp_path):
    kd = load_section("kd", write(tmp_path, {"kd": {"temperature": 4}}))
    assert kd.temperature == 4.0 and isinstance(kd.temperature, float) and kd.alpha == KDParams().alpha


def test_unknown_student_name():
    with pytest.raises(ConfigError, match="unknown student 'tiny'"):
        KDParams().losses_of("tiny")
