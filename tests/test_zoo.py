"""Feature and attention distillation across width, depth and head mismatches."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from conftest import tiny_batch, tiny_t5

from kd.errors import ConfigError
from kd.losses.layermap import layer_pairs, uniform_map
from kd.objective import Objective
from kd.params import AttentionKDParams, FeatureKDParams, KDParams

LOSSES = ("logit", "feature", "attention")


def teacher_model():  # d_model 64, 4 layers, 4 heads
    return tiny_t5(d_model=64, layers=4, heads=4, seed=0)


def student_model():  # d_model 32, 2 layers, 2 heads
    return tiny_t5(d_model=32, layers=2, heads=2, seed=1)


def loss_of(name, student, teacher, batch, kd=KDParams()):
    torch.manual_seed(0)  # the feature projection starts from the same random init every call
    objective = Objective.from_params((name,), kd, teacher.config, student.config)
    return objective, objective(student, teacher, batch)


@pytest.mark.parametrize("name", LOSSES)
def test_zero_when_student_is_a_copy_of_the_teacher(name):
    teacher = teacher_model()
    student = copy.deepcopy(teacher)
    _, (_, parts) = loss_of(name, student, teacher, tiny_batch())
    assert parts[name] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("name", LOSSES)
def test_positive_and_decreasing_when_trained_on(name):
    teacher, student = teacher_model(), student_model()
    batch = tiny_batch()
    objective = Objective.from_params((name,), KDParams(), teacher.config, student.config)
    opt = torch.optim.Adam(list(student.parameters()) + list(objective.parameters()), lr=1e-2)
    values = []
    for _ in range(8):
        # train on the distillation term alone, so its own decrease is what is measured
        student_out = student(**batch, output_hidden_states=True, output_attentions=True)
        with torch.no_grad():
            teacher_out = teacher(**batch, output_hidden_states=True, output_attentions=True)
        loss = objective.distillers[name](student_out, teacher_out, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        values.append(loss.item())
    assert values[0] > 0
    assert values[-1] < 0.7 * values[0], values


@pytest.mark.parametrize("name", LOSSES)
def test_padding_positions_change_nothing(name):
    teacher, student = teacher_model(), student_model()
    batch = tiny_batch(pad_tail=2)
    _, (_, parts) = loss_of(name, student, teacher, batch)
    # different token ids under the padding: masked away, so the loss must not move
    other = {k: v.clone() for k, v in batch.items()}
    other["input_ids"][-1, -2:] = 7
    other["labels"][-1, -2:] = -100
    _, (_, parts2) = loss_of(name, student, teacher, other)
    assert parts2[name] == pytest.approx(parts[name], rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("name", LOSSES)
def test_gradients_reach_student_and_projection_never_teacher(name):
    teacher, student = teacher_model(), student_model()
    teacher.requires_grad_(True)
    objective, (loss, _) = loss_of(name, student, teacher, tiny_batch())
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    for p in objective.parameters():  # the feature projection (student width -> teacher width)
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_feature_projection_maps_student_width_to_teacher_width():
    teacher, student = teacher_model(), student_model()
    objective = Objective.from_params(("feature",), KDParams(), teacher.config, student.config)
    proj = objective.distillers["feature"].proj
    assert (proj.in_features, proj.out_features) == (32, 64)
    same = Objective.from_params(("feature",), KDParams(), teacher.config, teacher.config)
    assert list(same.parameters()) == []  # identity when widths match


def test_uniform_layer_map_rule():
    assert uniform_map(2, 4) == [(0, 1), (1, 3)]
    assert uniform_map(3, 12) == [(0, 3), (1, 7), (2, 11)]
    assert uniform_map(4, 4) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert uniform_map(6, 3)[-1] == (5, 2)  # deeper student: last still maps to last


def test_explicit_layer_map_is_validated_against_real_depths():
    assert layer_pairs("explicit", [[0, 1], [1, 3]], 2, 4, key="k") == [(0, 1), (1, 3)]
    with pytest.raises(ConfigError, match=r"kd.feature.encoder_map.*\[1, 4\]"):
        layer_pairs("explicit", [[1, 4]], 2, 4, key="kd.feature.encoder_map")
    kd = KDParams(feature=FeatureKDParams(layer_map="explicit", encoder_map=((0, 1), (5, 3)),
                                          decoder_map=((1, 3),)))
    with pytest.raises(ConfigError, match="kd.feature.encoder_map"):
        Objective.from_params(("feature",), kd, teacher_model().config, student_model().config)


def test_group_heads_needs_divisible_head_counts():
    teacher = tiny_t5(d_model=48, layers=2, heads=12 // 4 * 3, seed=0)  # 9 heads
    student = tiny_t5(d_model=32, layers=2, heads=2, seed=1)
    kd = KDParams(attention=AttentionKDParams(heads="group"))
    with pytest.raises(ConfigError, match="kd.attention.heads"):
        Objective.from_params(("attention",), kd, teacher.config, student.config)
    ok = Objective.from_params(("attention",), dataclasses.replace(kd, attention=AttentionKDParams(heads="mean")),
                               teacher.config, student.config)
    assert ok(student, teacher, tiny_batch())[1]["attention"] > 0


def test_group_heads_works_when_divisible():
    teacher, student = teacher_model(), student_model()
    kd = KDParams(attention=AttentionKDParams(heads="group"))
    _, (_, parts) = loss_of("attention", student, teacher, tiny_batch(), kd)
    assert parts["attention"] > 0


def test_attention_components_switch_and_all_off_is_an_error():
    teacher, student = teacher_model(), student_model()
    only_cross = KDParams(attention=AttentionKDParams(encoder=False, decoder=False))
    objective, _ = loss_of("attention", student, teacher, tiny_batch(), only_cross)
    assert list(objective.distillers["attention"].pairs) == ["cross_attentions"]
    none = KDParams(attention=AttentionKDParams(encoder=False, decoder=False, cross=False))
    with pytest.raises(ConfigError, match="kd.attention"):
        Objective.from_params(("attention",), none, teacher.config, student.config)


def test_any_combination_mixes_with_the_documented_weights():
    teacher, student = teacher_model(), student_model()
    kd = KDParams(alpha=0.3, feature=FeatureKDParams(weight=2.0), attention=AttentionKDParams(weight=0.5))
    objective = Objective.from_params(LOSSES, kd, teacher.config, student.config)
    total, parts = objective(student, teacher, tiny_batch())
    expected = 0.3 * parts["logit"] + 0.7 * parts["ce"] + 2.0 * parts["feature"] + 0.5 * parts["attention"]
    assert total.item() == pytest.approx(expected, rel=1e-5)
    assert objective.needs == {"logits", "hidden_states", "attentions"}
