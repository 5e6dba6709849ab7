"""Distillation losses: exact expectations on tiny models."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_batch, tiny_t5

from kd.errors import ConfigError
from kd.losses import REGISTRY, build_distiller, needs_of
from kd.losses.logit import LogitKD
from kd.objective import Objective, mix_losses
from kd.params import KDParams


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
    objective = Objective.from_params(("logit",), KDParams())
    loss, parts = objective(student, teacher, tiny_batch())
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert set(parts) == {"ce", "logit", "total"}


def test_student_copy_of_teacher_has_zero_logit_kd():
    teacher = tiny_t5(seed=0)
    student = tiny_t5(seed=0)
    _, parts = Objective.from_params(("logit",), KDParams())(student, teacher, tiny_batch())
    assert parts["logit"] == pytest.approx(0.0, abs=1e-6)


def test_mix_losses_rule():
    parts = {"ce": torch.tensor(2.0), "logit": torch.tensor(4.0)}
    assert mix_losses(parts, alpha=0.25, weights={}).item() == pytest.approx(0.75 * 2 + 0.25 * 4)
    # without logit KD alpha does not apply: the label loss keeps weight 1
    assert mix_losses({"ce": torch.tensor(2.0), "x": torch.tensor(1.0)}, alpha=0.9,
                      weights={"x": 3.0}).item() == pytest.approx(2 + 3)


def test_baseline_objective_uses_no_teacher():
    objective = Objective.from_params((), KDParams())
    assert not objective.uses_teacher
    loss, parts = objective(tiny_t5(), None, tiny_batch())
    assert set(parts) == {"ce", "total"} and math.isfinite(loss.item())


def test_unknown_loss_name_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown loss 'nope'"):
        needs_of(("nope",))
    with pytest.raises(ConfigError, match="kd.students"):
        build_distiller("nope", KDParams(), None, None)


def test_every_registered_loss_declares_what_it_needs():
    for name, cls in REGISTRY.items():
        assert cls.name == name
        assert cls.needs and cls.needs <= {"logits", "hidden_states", "attentions"}
