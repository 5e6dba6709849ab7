"""Attention-map distillation: MiniLM (Wang, Wei, Dong, Bao, Yang & Zhou, "MiniLM: Deep Self-Attention
Distillation for Task-Agnostic Compression of Pre-Trained Transformers", NeurIPS 2020), for encoder
self-attention, decoder self-attention and cross-attention.

KL(teacher || student) between post-softmax attention distributions (or MSE between the maps),
averaged over real query positions; masked keys carry zero probability in both and add nothing.
Different head counts are reconciled by `heads`:
  mean   average the heads of each model into one map before comparing (any head counts);
  group  split the teacher's heads into as many contiguous groups as the student has heads and
         compare each student head with its group's mean (teacher heads divisible by student heads).
Needs eager attention: SDPA returns no attention weights.

With `targets: data/tokenized` alone (the references) it is the labels-only `attention` recipe of
docs/methods.md.

In params.yaml (the shipped `seqkd_attention` recipe; a missing setting takes its `AttentionSettings` default):

    kd:
      students:
        seqkd_attention:
          teacher_input: models/teacher  # a live teacher: the teacher_outputs cache holds logits only
          targets: data/teacher_targets  # the teacher's summaries, beside the references
          target_splits: [train, unlabeled]
          with_references: true
          label_weight: 1.0
          losses:
            attention:
              weight: 1.0
              layer_map: uniform         # uniform | last | explicit (reads the three maps below)
              encoder_map: []            # explicit [[student_layer, teacher_layer], ...], 0-based
              decoder_map: []
              cross_map: []
              encoder: true              # encoder self-attention
              decoder: true              # decoder self-attention
              cross: true                # decoder-encoder cross-attention
              heads: mean                # mean | group
              loss: kl                   # kl | mse
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from kd.errors import ConfigError
from kd.losses.registry import register
from kd.losses.base import Distiller, LossSettings
from kd.losses.feature import masked_token_mean
from kd.losses.layermap import layer_pairs
from kd.params import LayerPairs, require


@dataclass(frozen=True)
class AttentionSettings(LossSettings):
    layer_map: Literal["uniform", "last", "explicit"] = "uniform"
    encoder_map: LayerPairs = ()  # explicit [[student_layer, teacher_layer], ...], 0-based
    decoder_map: LayerPairs = ()
    cross_map: LayerPairs = ()
    encoder: bool = True  # encoder self-attention
    decoder: bool = True  # decoder self-attention
    cross: bool = True  # decoder-encoder cross-attention
    heads: Literal["mean", "group"] = "mean"  # how different head counts are reconciled
    loss: Literal["kl", "mse"] = "kl"

    def check(self, where: str) -> None:
        super().check(where)
        require(self.encoder or self.decoder or self.cross, where, "has encoder, decoder and cross all off")

# model output attribute -> (params switch, config attribute holding that stack's depth)
COMPONENTS = {
    "encoder_attentions": ("encoder", "num_layers"),
    "decoder_attentions": ("decoder", "num_decoder_layers"),
    "cross_attentions": ("cross", "num_decoder_layers"),
}


def reduce_heads(att: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, H, Tq, Tk) -> (B, groups, Tq, Tk), averaging contiguous blocks of H // groups heads."""
    b, h, tq, tk = att.shape
    return att.reshape(b, groups, h // groups, tq, tk).mean(2)


@register("attention")
class AttentionKD(Distiller):
    Settings = AttentionSettings
    needs = frozenset({"attentions"})

    def __init__(self, *, pairs: dict[str, list[tuple[int, int]]], heads: str, student_heads: int,
                 loss: str = "kl"):
        super().__init__()
        self.pairs, self.loss = pairs, loss
        self.groups = 1 if heads == "mean" else student_heads

    @classmethod
    def from_settings(cls, a: AttentionSettings, teacher_config, student_config, *, where: str) -> "AttentionKD":
        if a.heads == "group" and teacher_config.num_heads % student_config.num_heads:
            raise ConfigError(
                f"params: {where}.heads 'group' needs teacher heads ({teacher_config.num_heads}) "
                f"divisible by student heads ({student_config.num_heads}); use 'mean'")
        pairs = {}
        for attr, (switch, depth) in COMPONENTS.items():
            if getattr(a, switch):
                pairs[attr] = layer_pairs(a.layer_map, getattr(a, f"{switch}_map"), getattr(student_config, depth),
                                          getattr(teacher_config, depth), key=f"{where}.{switch}_map")
        if not pairs:
            raise ConfigError(f"params: {where}: encoder, decoder and cross are all off")
        return cls(pairs=pairs, heads=a.heads, student_heads=student_config.num_heads, loss=a.loss)

    def _per_query(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(B, G, Tq, Tk) maps -> (B, Tq) divergence averaged over the G maps."""
        s, t = s.float(), t.detach().float()
        if self.loss == "mse":
            return (s - t).pow(2).sum(-1).mean(1)
        # KL(t || s); where t is 0 (masked keys) the term is 0, and clamping keeps log s finite.
        kl = t * (t.clamp_min(1e-12).log() - s.clamp_min(1e-12).log())
        return kl.sum(-1).mean(1)

    def forward(self, student, teacher, batch):
        query_mask = {"encoder_attentions": batch["attention_mask"].bool(),
                      "decoder_attentions": batch["labels"] != -100,
                      "cross_attentions": batch["labels"] != -100}
        terms = []
        for attr, pairs in self.pairs.items():
            s_maps, t_maps = getattr(student, attr), getattr(teacher, attr)
            for i, j in pairs:
                s = reduce_heads(s_maps[i], self.groups)  # (B, G, Tq, Tk)
                t = reduce_heads(t_maps[j], self.groups)
                terms.append(masked_token_mean(self._per_query(s, t), query_mask[attr]))
        return torch.stack(terms).mean()
