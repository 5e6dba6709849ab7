"""Logit distillation: Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (2015).

KL(teacher || student) between temperature-softened token distributions, over real target tokens
only, scaled by T^2 so its gradient magnitude does not shrink as T grows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kd.losses import register
from kd.losses.base import Distiller


@register("logit")
class LogitKD(Distiller):
    needs = frozenset({"logits"})
    param_keys = ("kd.temperature", "kd.alpha")

    def __init__(self, temperature: float):
        super().__init__()
        self.temperature = temperature

    @classmethod
    def from_params(cls, kd, teacher_config, student_config) -> "LogitKD":
        return cls(temperature=kd.temperature)

    def forward(self, student, teacher, batch):
        mask = batch["labels"] != -100  # (B, T): real target tokens
        t = self.temperature
        s_logits = student.logits[mask] / t  # (N, V)
        t_logits = teacher.logits.detach()[mask] / t  # (N, V)
        kl = F.kl_div(
            F.log_softmax(s_logits.float(), dim=-1),
            F.log_softmax(t_logits.float(), dim=-1),
            reduction="sum",
            log_target=True,
        )
        return kl / mask.sum().clamp(min=1) * t * t
