"""The training objective: label cross-entropy mixed with any set of distillation losses.

    total = alpha * logit_kd + (1 - alpha) * label_ce + sum_k weight_k * loss_k

When a student does not use `logit`, alpha does not apply and the label loss has weight 1.
"""

from __future__ import annotations

import torch
from torch import nn

from kd.losses import build_distiller
from kd.losses.base import Distiller
from kd.teacher_cache import TeacherCache


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

    def _kwargs(self, batch, device=None) -> dict:
        def put(t):
            return t if device is None else t.to(device, non_blocking=True)

        return dict(
            input_ids=put(batch["input_ids"]),
            attention_mask=put(batch["attention_mask"]),
            labels=put(batch["labels"]),
            output_hidden_states="hidden_states" in self.needs,
            output_attentions="attentions" in self.needs,
        )

    def teacher_outputs(self, teacher, batch):
        """The teacher's side of every loss: looked up in a cache of its outputs, or a forward pass
        of the frozen teacher under inference mode on its own device (maybe another GPU, maybe bf16)."""
        if isinstance(teacher, TeacherCache):
            mask = batch["labels"] != -100  # (B, T)
            return teacher.lookup(batch["idx"], mask.sum(dim=1), device=batch["labels"].device)
        t_device = next(teacher.parameters()).device
        with torch.inference_mode():
            out = teacher(**self._kwargs(batch, t_device), use_cache=False)
        # Inference tensors cannot be saved for backward, and bf16 or another device would leak into
        # the loss: copy what the losses read, as fp32 on the student's device.
        device = batch["labels"].device
        return type(out)(**{k: _fp32_copy(v, device) for k, v in out.items() if k != "past_key_values"})

    def forward(self, student, teacher, batch) -> tuple[torch.Tensor, dict[str, float]]:
        s_out = student(**self._kwargs(batch))
        parts = {"ce": s_out.loss}
        if self.uses_teacher:
            t_out = self.teacher_outputs(teacher, batch)
            for name, distiller in self.distillers.items():
                parts[name] = distiller(s_out, t_out, batch)
        total = mix_losses(parts, alpha=self.alpha, weights=self.weights)
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
