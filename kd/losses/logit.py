"""Logit distillation: Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network"
(arXiv:1503.02531, 2015).

KL(teacher || student) between temperature-softened token distributions, over real target tokens
only, scaled by T^2 so its gradient magnitude does not shrink as T grows.

The teacher side is either its full logits (a live forward pass, `teacher_input: models/teacher`) or
its cached top-k logits (`kd.teacher.cache.TopK`): from the teacher_outputs stage (`teacher_input:
data/teacher_outputs`, the references' tokens), or from the recipe's own pass over its training set
(`teacher_pass: once`). The latter two use `cached_kl`, a KL over the stored tokens plus one tail bin.
The cache gives the tail bin's teacher mass exactly at the temperatures it was made for (the
teacher_outputs stage: `teacher_outputs.temperatures`, a recipe at another temperature is refused; a
recipe's own pass: 1.0 and its own), so the only remaining approximation is merging the tail tokens
into one bin, which can only lower the KL (see kd/teacher/cache.py).

The labels-only `vanilla` recipe of docs/methods.md reads `teacher_input: data/teacher_outputs` with
`targets: data/tokenized` instead of the teacher's pass and summaries below.

In params.yaml (the shipped `seqkd_logit` recipe; a missing setting takes its `LogitSettings` default):

    kd:
      students:
        seqkd_logit:
          teacher_input: models/teacher        # the teacher, run once by the stage (teacher_pass below)
          teacher_pass: once                   # its top-k logits over this recipe's own training set
          targets: data/teacher_targets        # the teacher's summaries, beside the references
          target_splits: [train, unlabeled]
          with_references: true
          label_weight: 0.7                    # the label cross-entropy's weight
          losses:
            logit:
              weight: 0.3
              temperature: 1.0                 # with data/teacher_outputs, one of teacher_outputs.temperatures
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from kd.losses.registry import register
from kd.losses.base import Distiller, LossSettings
from kd.params import require
from kd.teacher.cache import TopK, cached_kl


@dataclass(frozen=True)
class LogitSettings(LossSettings):
    temperature: float = 1.0  # T: softens both distributions; the loss is scaled by T^2

    def check(self, where: str) -> None:
        super().check(where)
        require(self.temperature > 0, f"{where}.temperature", "must be > 0")


@register("logit")
class LogitKD(Distiller):
    Settings = LogitSettings
    needs = frozenset({"logits"})
    reads_cache = True

    def __init__(self, temperature: float):
        super().__init__()
        self.temperature = temperature

    @classmethod
    def from_settings(cls, settings: LogitSettings, teacher_config, student_config, *, where: str) -> "LogitKD":
        return cls(temperature=settings.temperature)

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
