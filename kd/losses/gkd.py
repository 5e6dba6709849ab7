"""Generalized KD: Agarwal et al., "On-Policy Distillation of Language Models: Learning from
Self-Generated Mistakes" (ICLR 2024).

Per batch, with probability `lambda` the distillation targets are sequences the *student* samples
from its own distribution (on-policy: it learns what the teacher would say about its own mistakes),
else the batch's targets (the references, or the teacher's pseudo-labels of a `targets:
data/teacher_targets` recipe). On every real target position the loss is the generalized
Jensen-Shannon divergence between the teacher P and the student Q, both softened by `temperature`:

    JSD(beta)(P || Q) = beta * KL(P || M) + (1 - beta) * KL(Q || M),   M = beta * P + (1 - beta) * Q

for 0 < beta < 1. The JSD vanishes at both ends, so, as in TRL's GKDTrainer, beta = 0 is defined as
forward KL(P || Q) (token-level logit KD: with lambda 0 and beta 0 this loss *is* kd.losses.logit) and
beta = 1 as reverse KL(Q || P) (mode seeking). The mean over real target tokens is scaled by T^2, as
logit KD is. Between the ends the divergence is bounded (by log 2 per token at beta 0.5) and shrinks
toward 0 as beta nears 0 or 1, so the loss `weight` that balances it against the label loss depends
on beta (see docs/methods.md).

Sampling (kd.losses.gkd.GKD.distill_batch): without gradients, in eval mode, `sample_temperature`,
plain sampling (no top-k/top-p), at most `max_new_tokens`; positions after the first EOS are -100, so
nothing after the sampled EOS counts. The coin flips and each sample's seed come from this loss's own
generator, whose state is part of the objective's state dict (`get_extra_state`), so a checkpoint
records it and a resumed run samples exactly what an uninterrupted one would. The generator is seeded
from torch's global RNG at its first use, which kd.training.loop seeds with `train.seed`. The teacher scores
the sampled sequences live (a recipe with gkd must use `teacher_input: models/teacher`). The recipe's
`label_weight` applies to the batch's own targets, never to the student's samples.

No default recipe uses this loss; docs/methods.md documents this labels-only recipe.

In params.yaml (the documented `gkd` recipe; a missing setting takes its `GKDSettings` default):

    kd:
      students:
        gkd:
          teacher_input: models/teacher  # required: the teacher scores the student's samples live
          targets: data/tokenized        # or data/teacher_targets: the teacher's summaries
          label_weight: 1.0              # on the batch's targets, never on the student's samples
          losses:
            gkd:
              weight: 1.0
              beta: 0.0                  # 0: forward KL(teacher || student), 1: reverse KL, between: JSD(beta)
              temperature: 1.0
              lmbda: 0.25                # share of batches distilled on the student's own samples
              sample_temperature: 1.0
              max_new_tokens: 32         # the builtin references have at most 30 tokens
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from kd.losses.registry import register
from kd.losses.base import Distiller, LossSettings
from kd.params import require


@dataclass(frozen=True)
class GKDSettings(LossSettings):
    beta: float = 0.5  # 0: forward KL(teacher || student); 1: reverse KL(student || teacher); between: JSD(beta)
    temperature: float = 1.0  # softens both distributions; the loss is scaled by T^2
    # `lambda` in the paper (a Python keyword): the share of batches trained on the student's own samples
    lmbda: float = 0.5
    sample_temperature: float = 1.0  # the student samples from softmax(logits / sample_temperature)
    max_new_tokens: int = 64  # longest sampled sequence (tokens, EOS included)

    def check(self, where: str) -> None:
        super().check(where)
        require(0.0 <= self.beta <= 1.0, f"{where}.beta", "must be in [0, 1]")
        require(self.temperature > 0, f"{where}.temperature", "must be > 0")
        require(0.0 <= self.lmbda <= 1.0, f"{where}.lmbda", "must be in [0, 1]")
        require(self.sample_temperature > 0, f"{where}.sample_temperature", "must be > 0")
        require(self.max_new_tokens > 0, f"{where}.max_new_tokens", "must be > 0")


def generalized_jsd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, beta: float,
                    temperature: float = 1.0) -> torch.Tensor:
    """(N,) JSD(beta)(P || Q) per row, P = softmax(teacher / T), Q = softmax(student / T), in float32;
    beta = 0 is KL(P || Q), beta = 1 is KL(Q || P)."""
    log_q = F.log_softmax(student_logits.float() / temperature, dim=-1)  # (N, V)
    log_p = F.log_softmax(teacher_logits.float() / temperature, dim=-1)  # (N, V)
    if beta == 0.0:
        return _kl(log_p, log_q)
    if beta == 1.0:
        return _kl(log_q, log_p)
    # log M = logsumexp(log P + log beta, log Q + log(1 - beta)): stable where P or Q underflows
    log_m = torch.logsumexp(torch.stack([log_p + math.log(beta), log_q + math.log1p(-beta)]), dim=0)
    return beta * _kl(log_p, log_m) + (1.0 - beta) * _kl(log_q, log_m)


def _kl(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """(N,) KL(A || B) per row from log-probs (terms where A = 0 count 0)."""
    return F.kl_div(log_b, log_a, reduction="none", log_target=True).sum(-1)


def after_eos(ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """(B, T) True at every position after a row's first EOS (the EOS itself is a real target)."""
    is_eos = (ids == eos_token_id).long()
    return (is_eos.cumsum(dim=1) - is_eos) > 0


@register("gkd")
class GKD(Distiller):
    Settings = GKDSettings
    needs = frozenset({"logits"})
    chooses_targets = True

    def __init__(self, *, beta: float, temperature: float, lmbda: float, sample_temperature: float,
                 max_new_tokens: int):
        super().__init__()
        self.beta, self.temperature, self.lmbda = beta, temperature, lmbda
        self.sample_temperature, self.max_new_tokens = sample_temperature, max_new_tokens
        self.generator = torch.Generator()  # CPU: coin flips and sample seeds, whatever the device
        self.seeded = False

    @classmethod
    def from_settings(cls, settings: GKDSettings, teacher_config, student_config, *, where: str) -> "GKD":
        return cls(beta=settings.beta, temperature=settings.temperature, lmbda=settings.lmbda,
                   sample_temperature=settings.sample_temperature, max_new_tokens=settings.max_new_tokens)

    # ------------------------------------------------------------------ the generator, checkpointed

    def _rng(self) -> torch.Generator:
        if not self.seeded:  # first use: after kd.training.loop seeded the global RNG with train.seed
            self.generator.manual_seed(int(torch.randint(0, 2**62, (1,))))
            self.seeded = True
        return self.generator

    def get_extra_state(self) -> torch.Tensor:
        # one uint8 tensor (checkpoints are safetensors): [seeded flag, generator state...]
        return torch.cat([torch.tensor([int(self.seeded)], dtype=torch.uint8), self.generator.get_state()])

    def set_extra_state(self, state: torch.Tensor) -> None:
        self.seeded = bool(state[0])
        self.generator.set_state(state[1:].clone())

    # ------------------------------------------------------------------ targets and loss

    def distill_batch(self, model, batch: dict) -> Optional[dict]:
        """With probability lambda: `batch` with labels replaced by sequences `model` samples (no
        gradient, eval mode; -100 after the first EOS). Otherwise None: distill on the batch's targets."""
        if self.lmbda == 0.0:
            return None
        rng = self._rng()
        if float(torch.rand((), generator=rng)) >= self.lmbda:
            return None
        seed = int(torch.randint(0, 2**62, (1,), generator=rng))
        labels = sample(getattr(model, "module", model), batch, seed=seed, temperature=self.sample_temperature,
                        max_new_tokens=self.max_new_tokens)
        return dict(batch, labels=labels)

    def forward(self, student, teacher, batch):
        mask = batch["labels"] != -100  # (B, T): real target tokens
        jsd = generalized_jsd(student.logits[mask], teacher.logits.detach()[mask], self.beta,
                              self.temperature)  # (N,)
        return jsd.sum() / mask.sum().clamp(min=1) * self.temperature**2


def sample(model, batch: dict, *, seed: int, temperature: float, max_new_tokens: int) -> torch.Tensor:
    """(B, T') sampled target ids for the batch's sources, -100 after each row's first EOS.

    Runs in eval mode without gradients; torch's global RNG (dropout, data order) is left as it was:
    the sample draws from a forked RNG seeded with `seed`."""
    from kd.models.modeling import generate_kwargs

    device = batch["input_ids"].device
    was_training = model.training
    model.eval()
    try:
        devices = [device] if device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                 do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                                 max_new_tokens=max_new_tokens, **generate_kwargs(model))  # (B, 1 + T')
    finally:
        model.train(was_training)
    labels = out[:, 1:].clone()  # drop the decoder start token: what remains is the target sequence
    labels[after_eos(labels, model.config.eos_token_id)] = -100
    return labels
