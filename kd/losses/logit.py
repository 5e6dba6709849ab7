"""Logit distillation: Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (2015).

KL(teacher || student) between temperature-softened token distributions, over real target tokens
only, scaled by T^2 so its gradient magnitude does not shrink as T grows.

The teacher side is either its full logits (a live forward pass) or its cached top-k logits
(`kd.teacher_cache.TopK`, from the teacher_outputs stage); the latter uses `cached_kl`, a KL over the
stored tokens plus one tail bin (see kd/teacher_cache.py for how the tail is handled).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kd.losses import register
from kd.losses.base import Distiller
from kd.teacher_cache import TopK, cached_kl


@register("logit")
class LogitKD(Distiller):
    needs = frozenset({"logits"})
    param_keys = ("kd.temperature", "kd.alpha", "kd.teacher_outputs")

    def __init__(self, temperature: float):
        super().__init__()
        self.temperature = temperature

    @classmethod
    def from_params(cls, kd, teacher_config, student_config) -> "LogitKD":
        return cls(temperature=kd.temperature)

    def forward(self, student, teacher, batch):
        mask = batch["labels"] != -100  # (B, T): real target tokens
        t = self.temperature
        if isinstance(teacher, TopK):  # cached: rows already aligned with the real target tokens
            return cached_kl(student.logits[mask], teacher, t)
        s_logits = student.logits[mask] / t  # (N, V)
        t_logits = teacher.logits.detach()[mask] / t  # (N, V)
        kl = F.kl_div(
            F.log_softmax(s_logits.float(), dim=-1),
            F.log_softmax(t_logits.float(), dim=-1),
            reduction="sum",
            log_target=True,
        )
        return kl / mask.sum().clamp(min=1) * t * t
