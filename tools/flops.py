"""Model FLOPs of a T5 encoder-decoder, counted by hand, and the GPU peaks they are set against.

What is counted: every matmul of the model, at 2 FLOPs per multiply-add: the attention projections
(q, k, v, o), the attention scores (QK^T) and weighted sums (AV), the feed-forward matrices (wi, wo;
gated: wi_0, wi_1, wo) and the LM head. Attention is counted in full: the decoder's causal mask skips
no matmul work in eager or SDPA kernels. Not counted: norms, softmax, activations, embedding lookups,
the loss, top-k, the optimizer; so these are lower bounds of the work a GPU does. tests/test_flops.py
checks every formula against torch's FlopCounterMode on real T5 models (ReLU and gated).

Used by tools.gpu_real (measured TFLOP/s and share of peak) and tools.rehearsal (H100 time estimates).

The peak table (PEAK_BF16_TFLOPS) is the vendor datasheets' dense bf16 tensor-core peak: no
structured sparsity (the datasheets' headline numbers are 2x these, with sparsity).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

VOCAB_SIZE = 32_128  # T5's embedding rows (32,000 pieces + 100 sentinels, padded to a multiple of 128)

# Dense bf16 tensor-core peak (TFLOP/s, no sparsity) by a substring of torch's device name; the first
# match wins, so the PCIe H100 is listed before the SXM one. Vendor datasheet numbers.
PEAK_BF16_TFLOPS = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0))
H100_BF16_FLOPS = dict(PEAK_BF16_TFLOPS)["H100"] * 1e12  # one H100 SXM, FLOP/s: the rehearsal's card


@dataclass(frozen=True, kw_only=True)
class Shape:
    """A T5 encoder-decoder's size: the config.json / T5Config fields that set its FLOPs.
    Keyword-only, so that no caller depends on the order of six integers."""

    d_model: int
    d_ff: int
    d_kv: int
    num_layers: int
    num_decoder_layers: int
    num_heads: int
    feed_forward_proj: str = "relu"  # t5-base and t5-small: one ReLU matrix pair (flan-t5: gated-gelu)
    vocab_size: int = VOCAB_SIZE

    @staticmethod
    def from_config(cfg) -> "Shape":
        """From a config.json's dict or a T5Config (any object with `to_dict()`)."""
        d: Mapping = cfg if isinstance(cfg, Mapping) else cfg.to_dict()
        return Shape(d_model=d["d_model"], d_ff=d["d_ff"], d_kv=d["d_kv"], num_layers=d["num_layers"],
                     # T5Config's rule: a missing or null num_decoder_layers means as many as the encoder
                     num_decoder_layers=d.get("num_decoder_layers") or d["num_layers"], num_heads=d["num_heads"],
                     feed_forward_proj=d.get("feed_forward_proj", "relu"), vocab_size=d["vocab_size"])

    def to_config(self, dropout: float = 0.0, **overrides):
        """A T5Config of this shape (pad 0, EOS 1, decoder start 0, as T5's tokenizer has them);
        `overrides` are further T5Config keyword arguments."""
        from transformers import T5Config

        kwargs = dict(vocab_size=self.vocab_size, d_model=self.d_model, d_ff=self.d_ff, d_kv=self.d_kv,
                      num_layers=self.num_layers, num_decoder_layers=self.num_decoder_layers,
                      num_heads=self.num_heads, feed_forward_proj=self.feed_forward_proj, dropout_rate=dropout,
                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
        return T5Config(**(kwargs | overrides))

    def build(self, *, dropout: float = 0.0, seed: int = 0):
        """A T5ForConditionalGeneration of this shape with random weights (seeded), SDPA attention as
        kd.models.generation serves a model: speed does not depend on what the weights are."""
        import torch
        from transformers import AutoModelForSeq2SeqLM

        torch.manual_seed(seed)
        return AutoModelForSeq2SeqLM.from_config(self.to_config(dropout), attn_implementation="sdpa")

    @property
    def gated(self) -> bool:
        return self.feed_forward_proj.split("-")[0] == "gated"  # T5Config.is_gated_act's rule

    @property
    def inner(self) -> int:
        """Width of the attention's heads together (num_heads x d_kv)."""
        return self.num_heads * self.d_kv

    @property
    def ffn(self) -> int:
        """Weights of one feed-forward block (wi, wo; gated: wi_0, wi_1, wo)."""
        return (3 if self.gated else 2) * self.d_model * self.d_ff

    @property
    def attn(self) -> int:
        """Weights of one attention block (q, k, v, o)."""
        return 4 * self.d_model * self.inner

    @property
    def decoder_token(self) -> int:
        """Weights a decoder token goes through in one layer: self-attention, the cross-attention's q and
        o (its k and v act on the encoder's output), feed-forward."""
        return self.attn + 2 * self.d_model * self.inner + self.ffn


# A token through a matrix of W weights: W multiply-adds, 2W FLOPs. Attention over n queries and m keys:
# n*m*inner multiply-adds for the scores, as many for the weighted sums: 4*n*m*inner FLOPs.


# The published configs' shapes (hub config.json), for benches that build these models from config.
# flan-t5-small's own LM head (tie_word_embeddings false) is a matmul of the same size as a tied one.
PUBLISHED = {
    "t5-small": Shape(d_model=512, d_ff=2048, d_kv=64, num_layers=6, num_decoder_layers=6, num_heads=8),
    "flan-t5-small": Shape(d_model=512, d_ff=1024, d_kv=64, num_layers=8, num_decoder_layers=8, num_heads=6,
                           feed_forward_proj="gated-gelu"),
    "t5-base": Shape(d_model=768, d_ff=3072, d_kv=64, num_layers=12, num_decoder_layers=12, num_heads=12),
    "t5-large": Shape(d_model=1024, d_ff=4096, d_kv=64, num_layers=24, num_decoder_layers=24, num_heads=16),
}


def _encoder(s: Shape, src: float) -> float:
    return s.num_layers * (2 * (s.attn + s.ffn) * src + 4 * src * src * s.inner)


def _cross_kv(s: Shape, src: float) -> float:
    """Every decoder layer's cross-attention k and v over the encoder's `src` outputs."""
    return s.num_decoder_layers * 2 * 2 * s.d_model * s.inner * src


def _lm_head(s: Shape) -> int:
    return 2 * s.d_model * s.vocab_size  # per target token


def forward_flops(s: Shape, source_len: float, target_len: float, *, batch: int = 1) -> float:
    """FLOPs of one teacher-forced forward pass over `batch` examples of `source_len` source and
    `target_len` target tokens (means are fine: the count is exact for whole numbers), LM head included."""
    src, tgt = source_len, target_len
    decoder = s.num_decoder_layers * (2 * s.decoder_token * tgt  # projections and feed-forward
                                      + 4 * tgt * tgt * s.inner + 4 * tgt * src * s.inner)  # self and cross
    return batch * (_encoder(s, src) + _cross_kv(s, src) + decoder + _lm_head(s) * tgt)


def training_flops(s: Shape, source_len: float, target_len: float, *, batch: int = 1) -> float:
    """One training step: forward + backward (two matmuls for each of the forward's) = 3x the forward."""
    return 3 * forward_flops(s, source_len, target_len, batch=batch)


def generate_flops(s: Shape, source_len: float, new_tokens: int, beams: int) -> float:
    """Worst-case FLOPs of generating `new_tokens` tokens for one source with `beams` beams (every beam
    runs to the end), with a KV cache: the encoder once, the cross-attention k/v once per beam, then
    each step one token per beam attending to its cache and to the source."""
    src = source_len
    per_step = s.num_decoder_layers * (2 * s.decoder_token + 4 * src * s.inner) + _lm_head(s)
    self_attn = s.num_decoder_layers * 4 * s.inner * new_tokens * (new_tokens + 1) // 2  # cache grows 1..n
    return _encoder(s, src) + beams * (_cross_kv(s, src) + new_tokens * per_step + self_attn)


def peak_tflops(device_name: str, override: Optional[float] = None) -> Optional[float]:
    """The card's dense bf16 peak, TFLOP/s: `override` when given, else from PEAK_BF16_TFLOPS, else None."""
    if override is not None:
        return override
    return next((tf for key, tf in PEAK_BF16_TFLOPS if key in device_name), None)


def gpu_seconds(flops: float, utilisation: float, peak: float = H100_BF16_FLOPS) -> float:
    """Seconds for `flops` at `utilisation` of the card's `peak` FLOP/s."""
    return flops / (peak * utilisation)
