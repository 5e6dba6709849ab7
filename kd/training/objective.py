"""The training objective: the weighted label loss plus any set of weighted distillation losses.

    total = label_weight * label_ce + sum_k weight_k * loss_k

Each weight comes from the student's recipe in params.yaml (`kd.students.<name>.label_weight` and
`kd.students.<name>.losses.<loss>.weight`). This module knows nothing about particular losses and does
not import the registry: the teacher's stage trains with `Objective.labels_only()`.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn


def weighted_ce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The label cross-entropy with each example's tokens weighted by `weights` (B,): the sum of
    weight x token loss over the real tokens (labels != -100) divided by their number, so with every
    weight 1 it is the model's own token-mean loss."""
    b, t, v = logits.shape
    per_token = nn.functional.cross_entropy(logits.float().reshape(b * t, v), labels.reshape(b * t),
                                            ignore_index=-100, reduction="none").reshape(b, t)  # (B, T)
    real = (labels != -100).sum().clamp(min=1)
    return (per_token * weights.to(per_token.dtype)[:, None]).sum() / real


def mix_losses(parts: Mapping[str, torch.Tensor], *, label_weight: float,
               weights: Mapping[str, float]) -> torch.Tensor:
    """Pure mixing rule, shared by training and tests: every part but "ce" needs a weight."""
    total = label_weight * parts["ce"]
    for name, value in parts.items():
        if name != "ce":
            total = total + weights[name] * value
    return total


class LiveTeacher:
    """The frozen teacher model as a source of teacher outputs: one forward pass per batch, under
    inference mode, on the teacher's own device (maybe another GPU, maybe bf16)."""

    def __init__(self, model):
        self.model = model

    def outputs(self, batch, *, hidden_states: bool, attentions: bool):
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            out = self.model(**model_inputs(batch, device, hidden_states=hidden_states, attentions=attentions),
                             use_cache=False)
        # Inference tensors cannot be saved for backward, and bf16 or another device would leak into
        # the loss: copy what the losses read, as fp32 on the student's device.
        student_device = batch["labels"].device
        return type(out)(**{k: _fp32_copy(v, student_device) for k, v in out.items() if k != "past_key_values"})


def model_inputs(batch, device=None, *, hidden_states: bool = False, attentions: bool = False) -> dict:
    def put(t):
        return t if device is None else t.to(device, non_blocking=True)

    return dict(input_ids=put(batch["input_ids"]), attention_mask=put(batch["attention_mask"]),
                labels=put(batch["labels"]), output_hidden_states=hidden_states, output_attentions=attentions)


class Objective(nn.Module):
    """Every loss term of one student from one batch; the teacher's side is computed once per batch.

    `teacher` (passed per call) is a source with `.outputs(batch, hidden_states=, attentions=)`: a
    `LiveTeacher`, or a `kd.teacher.cache.TeacherCache` for logit-only recipes."""

    def __init__(self, distillers: Mapping[str, nn.Module], *, weights: Mapping[str, float],
                 label_weight: float = 1.0, row_weights: torch.Tensor | None = None):
        super().__init__()
        # (n_train,) the label loss's weight of each training example, looked up by the batch's "idx"
        # (a recipe's source_weights); None: every example counts alike (the model's own loss)
        self.register_buffer("row_weights", row_weights, persistent=False)
        missing = set(distillers) - set(weights)
        if missing:
            raise ValueError(f"no weight for loss(es) {sorted(missing)}")
        self.distillers = nn.ModuleDict(dict(distillers))
        self.weights = dict(weights)
        self.label_weight = label_weight
        self.needs = frozenset().union(*(d.needs for d in distillers.values()))
        # Losses that choose their own targets (Distiller.chooses_targets, e.g. gkd): one at most,
        # since the other losses of the recipe see the same batch.
        self.choosers = [n for n, d in distillers.items() if getattr(d, "chooses_targets", False)]
        if len(self.choosers) > 1:
            raise ValueError(f"losses {self.choosers} each choose their own targets; a recipe may have one of them")

    def distill_batch(self, student, batch):
        """The batch the distillation losses see: the one a loss asks for (at most one loss of a recipe
        may choose its targets, checked in __init__), else `batch` itself."""
        for name in self.choosers:
            other = self.distillers[name].distill_batch(student, batch)
            if other is not None:
                return other
        return batch

    @classmethod
    def labels_only(cls) -> "Objective":
        return cls({}, weights={}, label_weight=1.0)

    @property
    def uses_teacher(self) -> bool:
        return len(self.distillers) > 0

    def forward(self, student, teacher, batch) -> tuple[torch.Tensor, dict[str, float]]:
        hidden, att = "hidden_states" in self.needs, "attentions" in self.needs
        # A loss may distill on other targets than the batch's (gkd: the student's own samples); the
        # label loss stays on the batch's targets, so the student then runs once on each.
        kd_batch = self.distill_batch(student, batch)
        s_out = student(**model_inputs(batch, hidden_states=hidden and kd_batch is batch,
                                       attentions=att and kd_batch is batch))
        parts = {"ce": s_out.loss if self.row_weights is None
                 else weighted_ce(s_out.logits, batch["labels"], self.row_weights[batch["idx"]])}
        if self.uses_teacher:
            if kd_batch is not batch:
                s_out = student(**model_inputs(kd_batch, hidden_states=hidden, attentions=att))
            t_out = teacher.outputs(kd_batch, hidden_states=hidden, attentions=att)
            for name, distiller in self.distillers.items():
                parts[name] = distiller(s_out, t_out, kd_batch)
        total = mix_losses(parts, label_weight=self.label_weight, weights=self.weights)
        logged = {k: float(v.detach()) for k, v in parts.items()} | {"total": float(total.detach())}
        return total, logged


def _fp32_copy(x, device):
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=torch.float32 if x.is_floating_point() else x.dtype, copy=True)
    if isinstance(x, tuple):
        return tuple(_fp32_copy(v, device) for v in x)
    return x


def freeze_teacher(teacher, device, *, bf16_on_cuda: bool = True):
    """The teacher never trains: eval mode, no grads (so no optimizer state), on `device`, and in bf16
    on CUDA (half the memory and faster; its outputs are copied to fp32 for the losses)."""
    teacher.eval().requires_grad_(False)
    device = torch.device(device)
    if bf16_on_cuda and device.type == "cuda" and torch.cuda.is_bf16_supported():
        teacher.to(dtype=torch.bfloat16)
    return teacher.to(device)
