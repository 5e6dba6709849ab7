"""Distillation losses: exact expectations on tiny models."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import live, make_objective, tiny_batch, tiny_t5

from kd.errors import ConfigError
from kd.losses.registry import LOSSES, available, loss_class
from kd.losses.logit import LogitKD
from kd.training.objective import Objective, mix_losses


class Out:  # the part of Seq2SeqLMOutput a logit loss reads
    def __init__(self, logits):
        self.logits = logits


def test_logit_kd_is_zero_for_identical_logits():
    logits = torch.randn(2, 4, 10)
    labels = torch.ones(2, 4, dtype=torch.long)
    loss = LogitKD(temperature=3.0)(Out(logits), Out(logits.clone()), {"labels": labels})
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_logit_kd_matches_hand_computed_kl_times_t_squared():
    s, t = torch.randn(1, 2, 5), torch.randn(1, 2, 5)
    labels = torch.ones(1, 2, dtype=torch.long)
    for temp in (1.0, 2.0, 4.0):
        p_t = torch.softmax(t / temp, -1)
        kl = (p_t * (torch.log_softmax(t / temp, -1) - torch.log_softmax(s / temp, -1))).sum(-1).mean()
        got = LogitKD(temperature=temp)(Out(s), Out(t), {"labels": labels})
        assert got.item() == pytest.approx(kl.item() * temp**2, rel=1e-5)


def test_logit_kd_ignores_masked_positions():
    s, t = torch.randn(2, 4, 10), torch.randn(2, 4, 10)
    labels = torch.ones(2, 4, dtype=torch.long)
    labels[1, 2:] = -100
    before = LogitKD(2.0)(Out(s), Out(t), {"labels": labels})
    s2, t2 = s.clone(), t.clone()
    s2[1, 2:] += 100 * torch.randn(2, 10)  # garbage where the labels are padding
    t2[1, 2:] -= 50
    after = LogitKD(2.0)(Out(s2), Out(t2), {"labels": labels})
    assert after.item() == pytest.approx(before.item(), rel=1e-6)


def test_logit_kd_gradients_reach_only_the_student():
    student, teacher = tiny_t5(seed=0), tiny_t5(seed=1)
    teacher.requires_grad_(True)  # even a teacher left trainable must receive no gradient
    objective = make_objective({"logit": {}}, teacher, student)
    loss, parts = objective(student, live(teacher), tiny_batch())
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert set(parts) == {"ce", "logit", "total"}


def test_student_copy_of_teacher_has_zero_logit_kd():
    teacher = tiny_t5(seed=0)
    student = tiny_t5(seed=0)
    _, parts = make_objective({"logit": {}}, teacher, student)(student, live(teacher), tiny_batch())
    assert parts["logit"] == pytest.approx(0.0, abs=1e-6)


def test_mix_losses_rule():
    parts = {"ce": torch.tensor(2.0), "logit": torch.tensor(4.0), "x": torch.tensor(1.0)}
    got = mix_losses(parts, label_weight=0.25, weights={"logit": 0.75, "x": 3.0})
    assert got.item() == pytest.approx(0.25 * 2 + 0.75 * 4 + 3 * 1)
    with pytest.raises(KeyError):  # every loss needs a weight: none is implied by another loss
        mix_losses(parts, label_weight=1.0, weights={"logit": 1.0})


def test_objective_weights_come_from_the_recipe():
    student, teacher = tiny_t5(seed=0), tiny_t5(seed=1)
    objective = make_objective({"logit": {"weight": 0.7, "temperature": 2.0}}, teacher, student, label_weight=0.2)
    assert objective.weights == {"logit": 0.7} and objective.label_weight == 0.2
    assert objective.distillers["logit"].temperature == 2.0
    total, parts = objective(student, live(teacher), tiny_batch())
    assert total.item() == pytest.approx(0.2 * parts["ce"] + 0.7 * parts["logit"], rel=1e-5)


def test_baseline_objective_uses_no_teacher():
    objective = Objective.labels_only()
    assert not objective.uses_teacher
    loss, parts = objective(tiny_t5(), None, tiny_batch())
    assert set(parts) == {"ce", "total"} and math.isfinite(loss.item())


def test_unknown_loss_name_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"kd.students.x.losses.nope: unknown loss 'nope'"):
        loss_class("nope", where="kd.students.x.losses.nope")
    with pytest.raises(ConfigError, match="unknown loss 'layermap'"):  # a helper module is not a loss
        loss_class("layermap")
    with pytest.raises(ConfigError, match=r"test.logit.temprature"):
        make_objective({"logit": {"temprature": 2.0}})
    with pytest.raises(ConfigError, match=r"test.logit.temperature must be > 0"):
        make_objective({"logit": {"temperature": 0}})


def test_losses_are_found_by_module_name():
    assert {"logit", "feature", "attention"} <= set(available())
    for name in available():
        cls = loss_class(name)
        assert cls.name == name and LOSSES.entries[name] is cls
        assert cls.needs and cls.needs <= {"logits", "hidden_states", "attentions"}
        cls.Settings()  # every setting has a default


@pytest.mark.parametrize("name", available())
def test_each_loss_docstring_cites_its_paper_and_shows_a_recipe_that_validates(name, tmp_path):
    """The docstring is the loss's manual: a paper (authors and year) and a params.yaml snippet that is a
    valid recipe using this loss."""
    import importlib
    import re

    import yaml

    from kd.params import load_section
    from kd.students.recipe import resolve

    doc = importlib.import_module(f"kd.losses.{name}").__doc__
    assert re.search(r"(19|20)\d\d\)", doc), f"{name}: no year of a paper in the docstring"
    after = doc.split("In params.yaml", 1)[1].split("\n", 1)[1]
    block = "\n".join(line[4:] for line in re.match(r"((?:\n| {4}.*\n)+)", after + "\n")[1].splitlines())
    snippet = yaml.safe_load(block)
    (student, recipe), = snippet["kd"]["students"].items()
    assert name in recipe["losses"], f"{name}: its snippet does not use it"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(snippet))
    resolve(student, load_section("kd", path), load_section("student", path), load_section("train", path))
