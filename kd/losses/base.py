"""Base class of every distillation loss."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

# Names of model outputs a loss can ask for; they map to `output_hidden_states` / `output_attentions`.
OUTPUTS = frozenset({"logits", "hidden_states", "attentions"})


class Distiller(nn.Module):
    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset({"logits"})
    # params keys the loss reads, for dvc.yaml's per-stage `params` (checked by a test)
    param_keys: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_params(cls, kd, teacher_config, student_config) -> "Distiller":
        raise NotImplementedError

    def forward(self, student, teacher, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError
