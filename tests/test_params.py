"""params.yaml validation: every bad value is one ConfigError naming the key."""

from __future__ import annotations

import pytest
import yaml
from conftest import ROOT

from kd.errors import ConfigError
from kd.params import SECTIONS, KDParams, TrainParams, load_section


def write(tmp_path, params: dict):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_repo_params_file_is_valid():
    for name in SECTIONS:
        load_section(name, ROOT / "params.yaml")


@pytest.mark.parametrize("section,body,key", [
    ("kd", {"temperature": 2.0}, "kd.temperature"),                     # the old flat key: unknown now
    ("kd", {"students": {"vanilla": "logit"}}, "kd.students.vanilla"),  # not a recipe mapping
    ("kd", {"students": {"v": {"losses": {}}}}, "kd.students.v.teacher_input is required"),
    ("kd", {"students": {"v": {"teacher_input": "models/other"}}}, "kd.students.v.teacher_input"),
    ("kd", {"students": {"v": {"teacher_input": "models/teacher", "label_weight": -1}}},
     "kd.students.v.label_weight"),
    ("kd", {"students": {"v": {"teacher_input": "models/teacher", "label_weight": 0}}},
     "kd.students.v.label_weight must be > 0 when the recipe has no losses"),
    ("kd", {"students": {"v": {"teacher_input": "models/teacher", "lossses": {}}}}, "kd.students.v.lossses"),
    ("kd", {"students": {"v": {"teacher_input": "models/teacher", "losses": ["logit"]}}}, "kd.students.v.losses"),
    ("kd", {"students": {"lead3": {"teacher_input": "models/teacher"}}}, "kd.students.lead3 is a reserved name"),
    ("kd", {"students": {"my student": {"teacher_input": "models/teacher"}}}, "kd.students.my student must be"),
    ("kd", {"students": {}}, "kd.students must name at least one student"),
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
    train = load_section("train", write(tmp_path, {"train": {"weight_decay": 1}}))
    assert train.weight_decay == 1.0 and isinstance(train.weight_decay, float)
    assert train.batch_size == TrainParams().batch_size


def test_unknown_student_name():
    with pytest.raises(ConfigError, match="unknown student 'tiny'"):
        KDParams().recipe("tiny")


def _resolve(tmp_path, recipe: dict, name="s", **sections):
    from kd.recipe import resolve

    path = write(tmp_path, {"kd": {"students": {name: recipe}}, **sections})
    return resolve(name, *(load_section(s, path) for s in ("kd", "student", "train")))


def test_a_recipe_resolves_loss_settings_and_section_overrides(tmp_path):
    r = _resolve(tmp_path, {"teacher_input": "data/teacher_outputs", "label_weight": 0.3,
                            "losses": {"logit": {"temperature": 2}},
                            "student": {"num_layers": 3, "lr": 0.01}, "train": {"seed": 7}},
                 student={"num_layers": 2, "d_model": 24}, train={"seed": 1, "batch_size": 4})
    assert r.label_weight == 0.3 and r.cached
    assert r.losses["logit"].temperature == 2.0 and r.losses["logit"].weight == 1.0  # default weight
    assert (r.student.num_layers, r.student.d_model, r.student.lr) == (3, 24, 0.01)  # override + section
    assert (r.train.seed, r.train.batch_size) == (7, 4)
    assert r.to_json()["losses"] == {"logit": {"weight": 1.0, "temperature": 2.0}}


@pytest.mark.parametrize("recipe,key", [
    ({"teacher_input": "models/teacher", "losses": {"logits": {}}}, r"kd\.students\.s\.losses\.logits: unknown loss"),
    ({"teacher_input": "models/teacher", "losses": {"logit": {"temperature": 0}}},
     r"kd\.students\.s\.losses\.logit\.temperature must be > 0"),
    ({"teacher_input": "models/teacher", "losses": {"logit": {"temprature": 2}}},
     r"kd\.students\.s\.losses\.logit\.temprature"),
    ({"teacher_input": "models/teacher", "losses": {"feature": {"weight": -1}}},
     r"kd\.students\.s\.losses\.feature\.weight must be >= 0"),
    ({"teacher_input": "models/teacher", "losses": {"attention": {"heads": "all"}}},
     r"kd\.students\.s\.losses\.attention\.heads must be one of"),
    ({"teacher_input": "data/teacher_outputs", "losses": {"attention": {}}},
     r"kd\.students\.s\.teacher_input is the teacher_outputs cache .* \['attention'\] need the live teacher"),
    ({"teacher_input": "data/teacher_outputs", "losses": {}}, r"kd\.students\.s\.teacher_input .* no loss"),
    ({"teacher_input": "models/teacher", "student": {"num_layer": 3}}, r"kd\.students\.s\.student\.num_layer"),
    ({"teacher_input": "models/teacher", "student": {"num_layers": 0}}, r"kd\.students\.s\.student\.num_layers"),
    ({"teacher_input": "models/teacher", "train": {"epochs": 3}}, r"kd\.students\.s\.train\.epochs"),
])
def test_bad_recipes_name_the_dotted_key(tmp_path, recipe, key):
    with pytest.raises(ConfigError, match=key):
        _resolve(tmp_path, recipe)
