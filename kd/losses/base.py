"""What every distillation loss is: an `nn.Module` with typed settings of its own.

A loss module in kd/losses/ defines a `Distiller` subclass registered under the module's own name and
its `Settings` dataclass (extending `LossSettings`). A recipe in params.yaml names the loss and gives
its settings (`kd.students.<student>.losses.<loss>.<setting>`); missing settings take the dataclass
defaults, and `check` validates them with errors naming the dotted key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
from torch import nn

from kd.params import require

# Names of model outputs a loss can ask for; they map to `output_hidden_states` / `output_attentions`.
OUTPUTS = frozenset({"logits", "hidden_states", "attentions"})


@dataclass(frozen=True)
class LossSettings:
    """Settings every loss has: its weight in the total loss (beside the recipe's `label_weight`)."""

    weight: float = 1.0

    def check(self, where: str) -> None:
        """Validate the values; `where` is the dotted key of this loss (errors name `where.<setting>`)."""
        require(self.weight >= 0, f"{where}.weight", "must be >= 0")


class Distiller(nn.Module):
    name: ClassVar[str] = ""
    Settings: ClassVar[type[LossSettings]] = LossSettings
    # which model outputs the loss reads; the training step asks the models for exactly those
    needs: ClassVar[frozenset[str]] = frozenset({"logits"})
    # True when `forward` also accepts the teacher_outputs stage's cached top-k logits as `teacher`
    reads_cache: ClassVar[bool] = False
    # True when `distill_batch` may return other targets than the batch's (on-policy losses)
    chooses_targets: ClassVar[bool] = False

    @classmethod
    def from_settings(cls, settings: LossSettings, teacher_config, student_config, *, where: str) -> "Distiller":
        """Build the loss for these model configs (layer maps, projections); errors name `where`."""
        raise NotImplementedError

    def distill_batch(self, model, batch: dict[str, torch.Tensor]) -> Optional[dict[str, torch.Tensor]]:
        """The batch to distill on, when it is not the training batch itself: e.g. kd.losses.gkd's
        sequences sampled from the student (`model`). None (the default): the batch's own targets.
        The label loss always stays on the batch's own targets."""
        return None

    def forward(self, student, teacher, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError
