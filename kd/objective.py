"""The training objective: label cross-entropy mixed with any set of distillation losses.

    total = alpha * logit_kd + (1 - alpha) * label_ce + sum_k weight_k * loss_k

When a student does not use `logit`, alpha does not apply and the label loss has weight 1.
"""

from __future__ import annotations

import torch
from torch import nn

from kd.losses import build_distiller
from kd.losses.base import Distiller


def mix_losses(parts: dict[str, torch.Tensor], *, alpha: float, weights: dict[str, float]) -> torch.Tensor:
    """Pure mixing rule, shared by training and tests."""
    label_weight = 1.0 - alpha if "logit" in parts else 1.0
    total = label_weight * parts["ce"]
    for name, value in parts.items():
        if name == "logit":
            total = total + alpha * value
        elif name != "ce":
            total = total + weights.get(name, 1.0) * value
    return total


class Objective(nn.Module):
    """Computes every loss term of one student from one batch; the teacher runs once, without grad."""

    def __init__(self, distillers: dict[str, Distiller], *, alpha: float, weights: dict[str, float]):
        super().__init__()
        self.distillers = nn.ModuleDict(distillers)
        self.alpha = alpha
        self.weights = dict(weights)
        self.needs = frozenset().union(*(d.needs for d in distillers.values()))

    @classmethod
    def from_params(cls, losses: tuple[str, ...], kd, teacher_config=None, student_config=None) -> "Objective":
        distillers = {n: build_distiller(n, kd, teacher_config, student_config) for n in losses}
        weights = {n: getattr(getattr(kd, n, None), "weight", 1.0) for n in losses if n != "logit"}
        return cls(distillers, alpha=kd.alpha, weights=weights)

    @property
    def uses_teacher(self) -> bool:
        return len(self.distillers) > 0

    def _forward(self, model, batch, grad: bool):
        kwargs = dict(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            labels=batch["labels"],
            output_hidden_states="hidden_states" in self.needs,
            output_attentions="attentions" in self.needs,
        )
        if grad:
            return model(**kwargs)
        with torch.no_grad():
            return model(**kwargs)

    def forward(self, student, teacher, batch) -> tuple[torch.Tensor, dict[str, float]]:
        s_out = self._forward(student, batch, grad=True)
        parts = {"ce": s_out.loss}
        if self.uses_teacher:
            t_out = self._forward(teacher, batch, grad=False)
            for name, distiller in self.distillers.items():
                parts[name] = distiller(s_out, t_out, batch)
        total = mix_losses(parts, alpha=self.alpha, weights=self.weights)
        logged = {k: float(v.detach()) for k, v in parts.items()} | {"total": float(total.detach())}
        return total, logged
