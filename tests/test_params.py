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
    ("kd", {"students": {"v": {"losses": {}}}}, "kd.students.v.teacher_input, kd.students.v.targets are required"),
    ("kd", {"students": {"v": {"teacher_input": "models/teacher"}}}, "kd.students.v.targets is required"),
    ("kd", {"students": {"v": {"teacher_input": "models/teacher", "targets": "data/raw"}}},
     "kd.students.v.targets must be one of"),
    ("kd", {"students": {"v": {"teacher_input": "models/teacher", "targets": "data/tokenized", "teacher_share": 0.5}}},
     "kd.students.v.targets is data/tokenized"),
    ("kd", {"students": {"v": {"teacher_input": "models/teacher", "targets": "data/teacher_targets",
                               "teacher_share": 0}}}, "kd.students.v.teacher_share must be in"),
    ("kd", {"students": {"v": {"teacher_input": "models/teacher", "targets": "data/teacher_targets",
                               "teacher_share": 0.5, "with_references": True}}},
     "kd.students.v.with_references trains on both targets"),
    # the cached logits belong to the reference tokens: teacher targets with them would misalign rows
    ("kd", {"students": {"v": {"teacher_input": "data/teacher_outputs", "targets": "data/teacher_targets",
                               "losses": {"logit": {}}}}}, "kd.students.v.targets is the teacher's summaries, "
     "but teacher_input is the teacher_outputs cache"),
    ("kd", {"students": {"v": {"teacher_input": "models/other", "targets": "data/tokenized"}}}, "kd.students.v.teacher_input"),
    ("kd", {"students": {"v": {"teacher_input": "models/teacher", "targets": "data/tokenized", "label_weight": -1}}},
     "kd.students.v.label_weight"),
    ("kd", {"students": {"v": {"teacher_input": "models/teacher", "targets": "data/tokenized", "label_weight": 0}}},
     "kd.students.v.label_weight must be > 0 when the recipe has no losses"),
    ("kd", {"students": {"v": {"teacher_input": "models/teacher", "targets": "data/tokenized", "lossses": {}}}}, "kd.students.v.lossses"),
    ("kd", {"students": {"v": {"teacher_input": "models/teacher", "targets": "data/tokenized", "losses": ["logit"]}}}, "kd.students.v.losses"),
    ("kd", {"students": {"lead3": {"teacher_input": "models/teacher", "targets": "data/tokenized"}}}, "kd.students.lead3 is a reserved name"),
    ("kd", {"students": {"my student": {"teacher_input": "models/teacher", "targets": "data/tokenized"}}}, "kd.students.my student must be"),
    ("kd", {"students": {}}, "kd.students must name at least one student"),
    ("train", {"batch_size": "16"}, "train.batch_size"),
    ("train", {"batch_size": True}, "train.batch_size"),                # bool is not an int here
    ("train", {"precision": "fp8"}, "train.precision"),
    ("teacher", {"num_heads": 0}, "teacher.num_heads"),
    ("student", {"lr": -1.0}, "student.lr"),
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
    from kd.students.recipe import resolve

    path = write(tmp_path, {"kd": {"students": {name: recipe}}, **sections})
    return resolve(name, *(load_section(s, path) for s in ("kd", "student", "train")))


def test_a_recipe_resolves_loss_settings_and_section_overrides(tmp_path):
    r = _resolve(tmp_path, {"teacher_input": "data/teacher_outputs", "targets": "data/tokenized", "label_weight": 0.3,
                            "losses": {"logit": {"temperature": 2}},
                            "student": {"num_layers": 3, "lr": 0.01}, "train": {"seed": 7}},
                 student={"num_layers": 2, "d_model": 24}, train={"seed": 1, "batch_size": 4})
    assert r.label_weight == 0.3 and r.cached
    assert r.losses["logit"].temperature == 2.0 and r.losses["logit"].weight == 1.0  # default weight
    assert (r.student.num_layers, r.student.d_model, r.student.lr) == (3, 24, 0.01)  # override + section
    assert (r.train.seed, r.train.batch_size) == (7, 4)
    assert r.to_json()["losses"] == {"logit": {"weight": 1.0, "temperature": 2.0}}


@pytest.mark.parametrize("recipe,key", [
    ({"teacher_input": "models/teacher", "targets": "data/tokenized", "losses": {"logits": {}}}, r"kd\.students\.s\.losses\.logits: unknown loss"),
    ({"teacher_input": "models/teacher", "targets": "data/tokenized", "losses": {"logit": {"temperature": 0}}},
     r"kd\.students\.s\.losses\.logit\.temperature must be > 0"),
    ({"teacher_input": "models/teacher", "targets": "data/tokenized", "losses": {"logit": {"temprature": 2}}},
     r"kd\.students\.s\.losses\.logit\.temprature"),
    ({"teacher_input": "models/teacher", "targets": "data/tokenized", "losses": {"feature": {"weight": -1}}},
     r"kd\.students\.s\.losses\.feature\.weight must be >= 0"),
    ({"teacher_input": "models/teacher", "targets": "data/tokenized", "losses": {"attention": {"heads": "all"}}},
     r"kd\.students\.s\.losses\.attention\.heads must be one of"),
    ({"teacher_input": "data/teacher_outputs", "targets": "data/tokenized", "losses": {"attention": {}}},
     r"kd\.students\.s\.teacher_input is the teacher_outputs cache .* \['attention'\] need the live teacher"),
    ({"teacher_input": "data/teacher_outputs", "targets": "data/tokenized", "losses": {}}, r"kd\.students\.s\.teacher_input .* no loss"),
    ({"teacher_input": "models/teacher", "targets": "data/tokenized", "student": {"num_layer": 3}}, r"kd\.students\.s\.student\.num_layer"),
    ({"teacher_input": "models/teacher", "targets": "data/tokenized", "student": {"num_layers": 0}}, r"kd\.students\.s\.student\.num_layers"),
    ({"teacher_input": "models/teacher", "targets": "data/tokenized", "train": {"epochs": 3}}, r"kd\.students\.s\.train\.epochs"),
])
def test_bad_recipes_name_the_dotted_key(tmp_path, recipe, key):
    with pytest.raises(ConfigError, match=key):
        _resolve(tmp_path, recipe)


@pytest.mark.parametrize("body,key", [
    ({"select_by": "rouge2"}, "train.select_by must be one of"),
    ({"select_samples": 0}, "train.select_samples must be > 0"),
    ({"select_num_beams": 0}, "train.select_num_beams must be > 0"),
    ({"select_max_new_tokens": -1}, "train.select_max_new_tokens must be > 0"),
])
def test_bad_selection_settings_name_the_key(tmp_path, body, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_section("train", write(tmp_path, {"train": body}))
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):  # built in code, not parsed
        TrainParams(**body)


def test_selection_defaults_to_the_loss(tmp_path):
    train = load_section("train", write(tmp_path, {"train": {"select_by": "rougeLsum"}}))
    assert (train.select_by, train.select_samples, train.select_num_beams, train.select_max_new_tokens) == \
        ("rougeLsum", 64, 1, 64)
    assert TrainParams().select_by == "loss"


@pytest.mark.parametrize("temperatures,what", [
    ([], "must list at least one temperature"),
    ([1.0, 0.0], "must all be > 0"),
    ([1.0, -2.0], "must all be > 0"),
    ([2.0, 4.0], "must contain 1.0"),
    ([1.0, 2.0, 2.0], "must not repeat a temperature"),
    ("2.0", "must be a list"),
])
def test_teacher_outputs_temperatures_are_validated(tmp_path, temperatures, what):
    path = write(tmp_path, {"teacher_outputs": {"temperatures": temperatures}})
    with pytest.raises(ConfigError, match=rf"params: teacher_outputs\.temperatures {what}"):
        load_section("teacher_outputs", path)


def test_teacher_outputs_temperatures_are_a_tuple_of_floats(tmp_path):
    section = load_section("teacher_outputs", write(tmp_path, {"teacher_outputs": {"temperatures": [1, 3]}}))
    assert section.temperatures == (1.0, 3.0) and all(isinstance(t, float) for t in section.temperatures)
    assert load_section("teacher_outputs", write(tmp_path, {})).temperatures == (1.0, 2.0, 4.0)


def test_params_yaml_has_every_key_the_code_reads():
    """`dvc exp run -S key=value` works for any setting only if params.yaml has the key (without DVC's `+`)."""
    import dataclasses
    import typing

    from kd.params import SECTIONS, read_params_file

    raw = read_params_file(ROOT / "params.yaml")
    missing = []

    def walk(cls, data, where):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name not in (data or {}):
                missing.append(f"{where}.{f.name}")
            elif dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], data[f.name], f"{where}.{f.name}")

    for name, cls in SECTIONS.items():
        walk(cls, raw.get(name), name)
    assert not missing
