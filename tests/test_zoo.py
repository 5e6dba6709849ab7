"""Feature and attention distillation across width, depth and head mismatches."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import live, make_objective, tiny_batch, tiny_t5

from kd.errors import ConfigError
from kd.losses.layermap import layer_pairs, uniform_map

LOSSES = ("logit", "feature", "attention")


def teacher_model():  # d_model 64, 4 layers, 4 heads
    return tiny_t5(d_model=64, layers=4, heads=4, seed=0)


def student_model():  # d_model 32, 2 layers, 2 heads
    return tiny_t5(d_model=32, layers=2, heads=2, seed=1)


def loss_of(name, student, teacher, batch, settings=None):
    torch.manual_seed(0)  # the feature projection starts from the same random init every call
    objective = make_objective({name: settings or {}}, teacher, student)
    return objective, objective(student, live(teacher), batch)


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
    objective = make_objective({name: {}}, teacher, student)
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
    objective = make_objective({"feature": {}}, teacher, student)
    proj = objective.distillers["feature"].proj
    assert (proj.in_features, proj.out_features) == (32, 64)
    same = make_objective({"feature": {}}, teacher, teacher)
    assert list(same.parameters()) == []  # identity when widths match


def test_uniform_layer_map_rule():
    assert uniform_map(2, 4) == [(0, 1), (1, 3)]
    assert uniform_map(3, 12) == [(0, 3), (1, 7), (2, 11)]
    assert uniform_map(4, 4) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert uniform_map(6, 3)[-1] == (5, 2)  # deeper student: last still maps to last


def test_explicit_layer_map_is_validated_against_real_depths():
    assert layer_pairs("explicit", [[0, 1], [1, 3]], 2, 4, key="k") == [(0, 1), (1, 3)]
    with pytest.raises(ConfigError, match=r"test.feature.encoder_map.*\[1, 4\]"):
        layer_pairs("explicit", [[1, 4]], 2, 4, key="test.feature.encoder_map")
    settings = {"layer_map": "explicit", "encoder_map": [[0, 1], [5, 3]], "decoder_map": [[1, 3]]}
    with pytest.raises(ConfigError, match=r"test\.feature\.encoder_map has pair \[5, 3\]"):
        make_objective({"feature": settings}, teacher_model(), student_model())


def test_group_heads_needs_divisible_head_counts():
    teacher = tiny_t5(d_model=48, layers=2, heads=12 // 4 * 3, seed=0)  # 9 heads
    student = tiny_t5(d_model=32, layers=2, heads=2, seed=1)
    with pytest.raises(ConfigError, match=r"test\.attention\.heads 'group'"):
        make_objective({"attention": {"heads": "group"}}, teacher, student)
    ok = make_objective({"attention": {"heads": "mean"}}, teacher, student)
    assert ok(student, live(teacher), tiny_batch())[1]["attention"] > 0


def test_group_heads_works_when_divisible():
    teacher, student = teacher_model(), student_model()
    _, (_, parts) = loss_of("attention", student, teacher, tiny_batch(), {"heads": "group"})
    assert parts["attention"] > 0


def test_attention_components_switch_and_all_off_is_an_error():
    teacher, student = teacher_model(), student_model()
    objective, _ = loss_of("attention", student, teacher, tiny_batch(), {"encoder": False, "decoder": False})
    assert list(objective.distillers["attention"].pairs) == ["cross_attentions"]
    with pytest.raises(ConfigError, match=r"test\.attention has encoder, decoder and cross all off"):
        make_objective({"attention": {"encoder": False, "decoder": False, "cross": False}}, teacher, student)


def test_any_combination_mixes_with_the_documented_weights():
    teacher, student = teacher_model(), student_model()
    objective = make_objective({"logit": {"weight": 0.3}, "feature": {"weight": 2.0}, "attention": {"weight": 0.5}},
                               teacher, student, label_weight=0.7)
    total, parts = objective(student, live(teacher), tiny_batch())
    expected = 0.3 * parts["logit"] + 0.7 * parts["ce"] + 2.0 * parts["feature"] + 0.5 * parts["attention"]
    assert total.item() == pytest.approx(expected, rel=1e-5)
    assert objective.needs == {"logits", "hidden_states", "attentions"}
