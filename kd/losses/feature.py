"""Hidden-state distillation, for encoder and decoder: TinyBERT (Jiao et al., "TinyBERT: Distilling
BERT for Natural Language Understanding", Findings of EMNLP 2020) and DistilBART's intermediate-layer
loss (Shleifer & Rush, "Pre-trained Summarization Distillation", 2020).

Student states pass through a learned linear projection to the teacher's width (identity when the
widths match), then MSE (or 1 - cosine) against the teacher's states, averaged over real tokens.
Hidden state 0 is the embedding output; state k > 0 is the output of layer k-1.

With `targets: data/tokenized` alone (the references) it is the labels-only `feature` recipe of
docs/methods.md.

In params.yaml (the shipped `seqkd_feature` recipe; a missing setting takes its `FeatureSettings` default):

    kd:
      students:
        seqkd_feature:
          teacher_input: models/teacher  # a live teacher: the teacher_outputs cache holds logits only
          targets: data/teacher_targets  # the teacher's summaries, beside the references
          target_splits: [train, unlabeled]
          with_references: true
          label_weight: 1.0
          losses:
            feature:
              weight: 0.1
              layer_map: last            # uniform | last | explicit (reads encoder_map / decoder_map)
              encoder_map: []            # explicit [[student_layer, teacher_layer], ...], 0-based
              decoder_map: []
              include_embeddings: true   # also match the embedding outputs (hidden state 0)
              encoder: true
              decoder: true
              loss: mse                  # mse | cosine
              normalize: true            # layer-normalise both states first: their shapes, not their scale
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from kd.losses.registry import register
from kd.losses.base import Distiller, LossSettings
from kd.losses.layermap import layer_pairs
from kd.params import LayerPairs, require


@dataclass(frozen=True)
class FeatureSettings(LossSettings):
    layer_map: Literal["uniform", "last", "explicit"] = "uniform"
    encoder_map: LayerPairs = ()  # explicit [[student_layer, teacher_layer], ...], 0-based
    decoder_map: LayerPairs = ()
    include_embeddings: bool = True  # also match the embedding outputs (hidden state 0)
    encoder: bool = True
    decoder: bool = True
    loss: Literal["mse", "cosine"] = "mse"
    normalize: bool = False  # layer-normalise both states before comparing

    def check(self, where: str) -> None:
        super().check(where)
        require(self.encoder or self.decoder, where, "needs encoder or decoder switched on")


def masked_token_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of per-token values (B, T) over positions where mask (B, T) is true."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1)


def state_pairs(strategy, explicit, n_student_layers, n_teacher_layers, include_embeddings, key):
    """Layer pairs shifted to hidden-state indices (+1), with the embeddings pair (0, 0) in front."""
    pairs = [(s + 1, t + 1) for s, t in layer_pairs(strategy, explicit, n_student_layers, n_teacher_layers, key=key)]
    return [(0, 0)] * include_embeddings + pairs


@register("feature")
class FeatureKD(Distiller):
    Settings = FeatureSettings
    needs = frozenset({"hidden_states"})

    def __init__(self, *, student_width: int, teacher_width: int, encoder_pairs, decoder_pairs,
                 loss: str = "mse", normalize: bool = False):
        super().__init__()
        # Trained with the student, kept out of the saved student model.
        self.proj = nn.Identity() if student_width == teacher_width else nn.Linear(student_width, teacher_width)
        self.pairs = {"encoder": list(encoder_pairs), "decoder": list(decoder_pairs)}
        self.loss, self.normalize = loss, normalize

    @classmethod
    def from_settings(cls, f: FeatureSettings, teacher_config, student_config, *, where: str) -> "FeatureKD":
        enc = state_pairs(f.layer_map, f.encoder_map, student_config.num_layers, teacher_config.num_layers,
                          f.include_embeddings, f"{where}.encoder_map")
        dec = state_pairs(f.layer_map, f.decoder_map, student_config.num_decoder_layers,
                          teacher_config.num_decoder_layers, f.include_embeddings, f"{where}.decoder_map")
        return cls(student_width=student_config.d_model, teacher_width=teacher_config.d_model,
                   encoder_pairs=enc if f.encoder else [], decoder_pairs=dec if f.decoder else [],
                   loss=f.loss, normalize=f.normalize)

    def _distance(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Per-token distance (B, T) between (B, T, D) states."""
        s, t = self.proj(s.float()), t.detach().float()
        if self.normalize:  # compare shapes of the states, not their scale
            s, t = F.layer_norm(s, s.shape[-1:]), F.layer_norm(t, t.shape[-1:])
        if self.loss == "cosine":
            return 1 - F.cosine_similarity(s, t, dim=-1)
        return (s - t).pow(2).mean(-1)

    def forward(self, student, teacher, batch):
        masks = {"encoder": batch["attention_mask"].bool(), "decoder": batch["labels"] != -100}
        terms = []
        for side, pairs in self.pairs.items():
            s_states = getattr(student, f"{side}_hidden_states")
            t_states = getattr(teacher, f"{side}_hidden_states")
            terms += [masked_token_mean(self._distance(s_states[i], t_states[j]), masks[side]) for i, j in pairs]
        return torch.stack(terms).mean()
