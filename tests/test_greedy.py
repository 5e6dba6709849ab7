"""The lean greedy path (kd.models.greedy) returns exactly the ids `model.generate` returns, for the T5
shapes the project trains (relu and gated feed-forward, deeper decoders, padded batches, rows that end
early), and the decoding helpers take it only where it applies."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_t5

from kd.models import greedy
from kd.models.generation import generate_batch, load_summarizer, quantize_int8
from kd.models.modeling import generate_kwargs


def with_early_ends(model):
    # A louder end-token embedding (tied to the LM head) makes some rows end before max_new_tokens,
    # so the padding after an end token is compared too.
    with torch.no_grad():
        model.shared.weight[1] *= 6
    return model


def source(batch=5, length=30, vocab=64, seed=3):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    for row, pad in enumerate([0, 3, 11, 0, 25][:batch]):  # ragged rows, as a tokenizer pads them
        if pad:
            ids[row, -pad:] = 0
            mask[row, -pad:] = 0
    return ids, mask


def reference(model, ids, mask, n):
    with torch.inference_mode():
        return model.generate(input_ids=ids, attention_mask=mask, num_beams=1, do_sample=False,
                              max_new_tokens=n, **generate_kwargs(model))


SHAPES = {
    "relu": {},
    "deeper decoder": {"layers": 1, "dec_layers": 3},
    "wide heads": {"d_model": 48, "heads": 4, "layers": 2},
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("padded", [True, False])
def test_greedy_ids_are_generates(shape, padded):
    model = with_early_ends(tiny_t5(attn="sdpa", **SHAPES[shape]))
    ids, mask = source()
    if not padded:
        mask = torch.ones_like(mask)
    expected = reference(model, ids, mask, 24)
    got = greedy.greedy(model, ids, mask, max_new_tokens=24)
    assert torch.equal(got, expected)
    if shape == "relu" and padded:
        assert (got[:, 1:] == 0).any() and got.shape[1] <= 25  # some rows ended early: padding compared


def test_greedy_ids_are_generates_for_gated_gelu_flan_t5_shapes():
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    cfg = T5Config(vocab_size=64, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=2,
                   feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.0,
                   pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    model = T5ForConditionalGeneration._from_config(cfg, attn_implementation="sdpa").eval()
    ids, mask = source()
    assert torch.equal(greedy.greedy(model, ids, mask, max_new_tokens=16), reference(model, ids, mask, 16))


def test_greedy_ids_are_generates_in_bf16():
    model = with_early_ends(tiny_t5(attn="sdpa")).to(torch.bfloat16)  # how a GPU serves it
    ids, mask = source()
    assert greedy.supports(model, num_beams=1)
    assert torch.equal(greedy.greedy(model, ids, mask, max_new_tokens=20), reference(model, ids, mask, 20))


def test_greedy_stops_when_every_row_has_ended():
    model = tiny_t5(attn="sdpa")
    ids, mask = source()
    # End tokens: every row's second generated token (a list, as generation configs allow), so rows
    # end at step 2 or earlier and the loop stops long before max_new_tokens.
    second = reference(model, ids, mask, 2)[:, 2]
    model.generation_config.eos_token_id = sorted(set(second.tolist()))
    got = greedy.greedy(model, ids, mask, max_new_tokens=30)
    assert torch.equal(got, reference(model, ids, mask, 30)) and got.shape[1] <= 3


def test_supports_only_plain_greedy_t5():
    model = tiny_t5(attn="sdpa")
    assert greedy.supports(model, num_beams=1)
    assert not greedy.supports(model, num_beams=2)
    assert not greedy.supports(model, num_beams=1, min_new_tokens=3)
    assert not greedy.supports(quantize_int8(tiny_t5(attn="sdpa")), num_beams=1)
    model.generation_config.repetition_penalty = 1.3  # a logits processor: generate's job
    assert not greedy.supports(model, num_beams=1)
    model.generation_config.repetition_penalty = 1.0
    model.generation_config.pad_token_id = model.config.pad_token_id = None  # nothing to pad finished rows with
    assert not greedy.supports(model, num_beams=1)
    model.generation_config.pad_token_id = model.config.pad_token_id = 0
    model.train()
    assert not greedy.supports(model, num_beams=1)


def test_generate_batch_takes_the_lean_path_with_the_same_summaries(tiny_data, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_data / "tokenizer")
    with_early_ends(tiny_t5(vocab=len(tok), attn="sdpa")).save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    model, tokenizer = load_summarizer(tmp_path / "m")
    articles = ["the cat sat on the mat today", "a much longer article " * 8, "short"]
    kwargs = dict(prefix="summarize: ", max_source_length=48, num_beams=1, max_new_tokens=12)
    calls = []
    real = greedy.greedy
    monkeypatch.setattr(greedy, "greedy", lambda *a, **k: calls.append(1) or real(*a, **k))
    lean = generate_batch(model, tokenizer, articles, **kwargs)
    assert calls == [1]
    monkeypatch.setattr(greedy, "supports", lambda *a, **k: False)  # the plain path: model.generate
    assert generate_batch(model, tokenizer, articles, **kwargs) == lean and calls == [1]


def test_int8_decodes_close_to_fp32_and_only_on_a_cpu(tiny_data, tmp_path):
    from transformers import AutoTokenizer

    from kd.errors import ConfigError

    tok = AutoTokenizer.from_pretrained(tiny_data / "tokenizer")
    tiny_t5(vocab=len(tok), attn="sdpa").save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    model, _ = load_summarizer(tmp_path / "m", int8=True)
    assert any("quantized" in type(m).__module__ for m in model.modules())
    ids, mask = source(vocab=len(tok))
    fp32, _ = load_summarizer(tmp_path / "m")
    with torch.inference_mode():
        a = model(input_ids=ids, attention_mask=mask, decoder_input_ids=ids[:, :4]).logits
        b = fp32(input_ids=ids, attention_mask=mask, decoder_input_ids=ids[:, :4]).logits
    assert (a - b).abs().max() < 0.1 * b.abs().max()  # int8 rounding, not a different model
    with pytest.raises(ConfigError, match="int8 serves on the CPU only"):
        load_summarizer(tmp_path / "m", "cuda", int8=True)
