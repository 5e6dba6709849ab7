"""Greedy decoding for T5 in plain tensor code: the same summaries as `model.generate(num_beams=1)`,
with less work per new token.

Why: at the builtin sizes (tens of thousands to a few million parameters) a decoding step is mostly
Python, not arithmetic: `generate` and the transformers T5 stack rebuild masks and position biases,
consult cache objects and config attributes, and pass through several wrappers for every layer and
every token. This loop reads the model's weights and runs the same tensor operations in the same order
and layouts, so the results are bit for bit those of `generate` (tests/test_greedy.py compares them),
while everything that does not change from one token to the next (the padding mask, the decoder's
relative position biases, the cross-attention keys and values) is built once per batch.

It covers what our models are: T5 (`model_type` "t5", relu or gated-gelu feed-forward, any encoder and
decoder depth) in fp32 or bf16, greedy, no logits processors. `supports(model, ...)` says when it
applies; everything else goes through `generate` (kd.models.generation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# generation_config fields that would add a logits processor or change the stopping rule: greedy here
# only when each is at its neutral value.
NEUTRAL = {"repetition_penalty": (None, 1.0), "encoder_repetition_penalty": (None, 1.0),
           "no_repeat_ngram_size": (None, 0), "encoder_no_repeat_ngram_size": (None, 0),
           "bad_words_ids": (None,), "force_words_ids": (None,), "forced_bos_token_id": (None,),
           "forced_eos_token_id": (None,), "suppress_tokens": (None,), "begin_suppress_tokens": (None,),
           "sequence_bias": (None,), "min_length": (None, 0), "min_new_tokens": (None, 0),
           "exponential_decay_length_penalty": (None,), "renormalize_logits": (None, False),
           "stop_strings": (None,), "max_time": (None,), "do_sample": (None, False),
           "watermarking_config": (None,), "guidance_scale": (None, 1.0), "output_scores": (None, False),
           "output_logits": (None, False), "return_dict_in_generate": (None, False)}


def supports(model, *, num_beams: int, min_new_tokens: int = 0) -> bool:
    """True when `greedy` gives exactly what `model.generate` would: a T5 model in eval mode, no
    quantized or half-precision (fp16 clamps in the stack) weights, greedy, no logits processors."""
    cfg = model.config
    if num_beams != 1 or min_new_tokens or model.training or getattr(cfg, "model_type", None) != "t5":
        return False
    if not all(type(m) is torch.nn.Linear for m in (model.lm_head, model.encoder.block[0].layer[0].SelfAttention.q)):
        return False  # e.g. dynamically quantized linears: generate handles those
    if model.lm_head.weight.dtype not in (torch.float32, torch.bfloat16):
        return False
    gen = model.generation_config
    for key in ("pad_token_id", "eos_token_id", "decoder_start_token_id"):  # needed to start, stop and pad
        if getattr(gen, key, None) is None and getattr(cfg, key, None) is None:
            return False
    return all(getattr(gen, key, None) in values for key, values in NEUTRAL.items())


def _norm(x: torch.Tensor, ln) -> torch.Tensor:
    # T5LayerNorm: RMS norm with no mean and no bias, accumulated in fp32.
    variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
    x = x * torch.rsqrt(variance + ln.variance_epsilon)
    if ln.weight.dtype in (torch.float16, torch.bfloat16):
        x = x.to(ln.weight.dtype)
    return ln.weight * x


def _heads(x: torch.Tensor, d_kv: int) -> torch.Tensor:
    # (B, T, H*D) -> (B, H, T, D), a view, as transformers makes it
    return x.view(*x.shape[:-1], -1, d_kv).transpose(1, 2)


def _attend(q, k, v, mask) -> torch.Tensor:
    # (B, H, Tq, D) -> (B, Tq, H*D); T5 does not scale the scores (scale=1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0, scale=1.0, is_causal=False)
    out = out.reshape(out.shape[0], -1, q.shape[2], v.shape[-1]).transpose(1, 2).contiguous()
    return out.reshape(*out.shape[:2], -1).contiguous()


def _feed_forward(x: torch.Tensor, layer) -> torch.Tensor:
    h = _norm(x, layer.layer_norm)
    ff = layer.DenseReluDense
    if hasattr(ff, "wi_0"):  # gated (flan-t5): act(wi_0 h) * wi_1 h
        h = ff.act(F.linear(h, ff.wi_0.weight)) * F.linear(h, ff.wi_1.weight)
    else:
        h = ff.act(F.linear(h, ff.wi.weight))
    if h.dtype != ff.wo.weight.dtype:
        h = h.to(ff.wo.weight.dtype)
    return x + F.linear(h, ff.wo.weight)


def _encode(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, L) ids -> (B, L, d_model) final encoder states."""
    enc = model.encoder
    d_kv = model.config.d_kv
    x = F.embedding(input_ids, enc.embed_tokens.weight)
    L = input_ids.shape[1]
    bias = enc.block[0].layer[0].SelfAttention.compute_bias(L, L, device=x.device)  # (1, H, L, L)
    if bool(attention_mask.all()):
        mask = bias.contiguous()  # no padding: transformers passes the bias alone
    else:
        # transformers' torch.where(padding mask, bias, min), value for value, built as a copy of the
        # bias with the padded keys filled: the same tensor at a third of the cost.
        mask = bias.expand(input_ids.shape[0], -1, -1, -1).contiguous()  # (B, H, L, L)
        mask.masked_fill_(~attention_mask.bool()[:, None, None, :], torch.finfo(x.dtype).min)
    for block in enc.block:
        attn = block.layer[0].SelfAttention
        h = _norm(x, block.layer[0].layer_norm)
        q, k, v = (_heads(F.linear(h, m.weight), d_kv) for m in (attn.q, attn.k, attn.v))
        x = x + F.linear(_attend(q, k, v, mask), attn.o.weight)
        x = _feed_forward(x, block.layer[-1])
    return _norm(x, enc.final_layer_norm)


@torch.inference_mode()
def greedy(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, max_new_tokens: int) -> torch.Tensor:
    """(B, L) source ids and mask -> (B, 1 + n) generated ids, starting with the decoder start token and
    padded after each row's end token: what `model.generate(..., num_beams=1, do_sample=False)` returns."""
    cfg, dec = model.config, model.decoder
    gen = model.generation_config
    d_kv, B = cfg.d_kv, input_ids.shape[0]
    device = input_ids.device
    start = gen.decoder_start_token_id if gen.decoder_start_token_id is not None else cfg.decoder_start_token_id
    pad = gen.pad_token_id if gen.pad_token_id is not None else cfg.pad_token_id
    eos = gen.eos_token_id if gen.eos_token_id is not None else cfg.eos_token_id
    eos = torch.tensor([eos] if isinstance(eos, int) else list(eos), device=device)

    memory = _encode(model, input_ids, attention_mask)  # (B, L, d)
    L = memory.shape[1]
    dtype = memory.dtype
    # Cross-attention: keys and values of the source, and its padding mask, fixed for the whole batch.
    # transformers' cache returns them concatenated onto an empty tensor, i.e. contiguous.
    cross_kv = []
    for block in dec.block:
        attn = block.layer[1].EncDecAttention
        cross_kv.append(tuple(_heads(F.linear(memory, m.weight), d_kv).contiguous() for m in (attn.k, attn.v)))
    H = dec.block[0].layer[1].EncDecAttention.n_heads
    zeros = torch.zeros((1, H, 1, L), device=device, dtype=dtype)
    if bool(attention_mask.all()):
        cross_mask = zeros
    else:
        cross_mask = torch.where(attention_mask.bool()[:, None, None, :], zeros,
                                 torch.finfo(dtype).min).contiguous()  # (B, H, 1, L)
    # Decoder self-attention biases for every step: row t attends positions 0..t (1, H, T, T).
    self_bias = dec.block[0].layer[0].SelfAttention.compute_bias(max_new_tokens, max_new_tokens, device=device)
    # Every weight the loop reads, looked up once: a step is ~100 small tensor operations, and module
    # attribute lookups would add a third to it.
    layers = [(block.layer[0].layer_norm, *(m.weight for m in (block.layer[0].SelfAttention.q,
                                                               block.layer[0].SelfAttention.k,
                                                               block.layer[0].SelfAttention.v,
                                                               block.layer[0].SelfAttention.o)),
               block.layer[1].layer_norm, block.layer[1].EncDecAttention.q.weight,
               block.layer[1].EncDecAttention.o.weight, block.layer[-1]) for block in dec.block]
    embed, final_norm, lm_head = dec.embed_tokens.weight, dec.final_layer_norm, model.lm_head.weight
    scale = cfg.d_model ** -0.5 if getattr(cfg, "scale_decoder_outputs", cfg.tie_word_embeddings) else None

    tokens = torch.full((B, 1), start, dtype=torch.long, device=device)
    out = [tokens]
    unfinished = torch.ones(B, dtype=torch.long, device=device)
    # The self-attention cache starts empty and grows by concatenation, as transformers' does.
    empty = torch.zeros((B, H, 0, d_kv), device=device, dtype=dtype)
    past = [(empty, empty)] * len(layers)
    for t in range(max_new_tokens):
        x = F.embedding(tokens, embed)  # (B, 1, d)
        bias = self_bias[:, :, t:t + 1, :t + 1].contiguous()  # (1, H, 1, t+1)
        for i, (ln_self, wq, wk, wv, wo, ln_cross, cq, co, ff) in enumerate(layers):
            h = _norm(x, ln_self)
            q, k, v = (_heads(F.linear(h, w), d_kv) for w in (wq, wk, wv))
            k, v = torch.cat([past[i][0], k], dim=-2), torch.cat([past[i][1], v], dim=-2)  # (B, H, t+1, D)
            past[i] = (k, v)
            x = x + F.linear(_attend(q, k, v, bias), wo)
            h = _norm(x, ln_cross)
            x = x + F.linear(_attend(_heads(F.linear(h, cq), d_kv), *cross_kv[i], cross_mask), co)
            x = _feed_forward(x, ff)
        x = _norm(x, final_norm)
        if scale is not None:
            x = x * scale
        logits = F.linear(x, lm_head)[:, -1, :].to(dtype=torch.float32)  # (B, V)
        next_tokens = logits.argmax(dim=-1)
        next_tokens = next_tokens * unfinished + pad * (1 - unfinished)
        tokens = next_tokens[:, None]
        out.append(tokens)
        unfinished = unfinished & ~torch.isin(next_tokens, eos)
        if not bool(unfinished.any()):
            break
    return torch.cat(out, dim=1)
