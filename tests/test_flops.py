"""tools.flops: T5 model FLOPs counted by hand, against a count on paper and torch's FlopCounterMode
(forward, training step, beam search; ReLU and gated feed-forward), and the GPU peak table."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tools.flops import (H100_BF16_FLOPS, Shape, forward_flops, generate_flops, gpu_seconds, peak_tflops,
                      training_flops)

RELU = Shape(d_model=32, d_ff=48, d_kv=8, num_heads=3, num_layers=2, num_decoder_layers=3, vocab_size=300)
GATED = Shape(d_model=32, d_ff=48, d_kv=8, num_heads=3, num_layers=2, num_decoder_layers=1, vocab_size=300,
              feed_forward_proj="gated-gelu")


def _model(shape: Shape):
    """Eager attention: its matmuls are plain aten ops that FlopCounterMode sees, as SDPA's may not be."""
    from transformers import T5ForConditionalGeneration

    torch.manual_seed(0)
    return T5ForConditionalGeneration._from_config(shape.to_config(), attn_implementation="eager").eval()


def test_forward_flops_by_hand():
    """d_model 4, 2 heads of d_kv 2 (inner 4), d_ff 8, one encoder and one decoder layer, vocab 10;
    one example of 3 source and 2 target tokens. A d->inner projection is 2*4*4 = 32 FLOPs a token."""
    shape = Shape(d_model=4, d_ff=8, d_kv=2, num_layers=1, num_decoder_layers=1, num_heads=2, vocab_size=10)
    encoder = 3 * (4 * 32 + 2 * (2 * 4 * 8)) + 2 * (2 * 3 * 3 * 4)  # q k v o and FF on 3 tokens; QK^T, AV: 912
    decoder = (2 * (4 * 32 + 2 * (2 * 4 * 8)) + 2 * (2 * 2 * 2 * 4)  # self-attention and FF on 2 tokens: 576
               + 2 * 2 * 32 + 3 * 2 * 32 + 2 * (2 * 2 * 3 * 4))  # cross: q o on 2, k v on 3, 2x3 scores: 416
    lm_head = 2 * 2 * 4 * 10  # 160
    assert encoder + decoder + lm_head == 2064
    assert forward_flops(shape, 3, 2) == 2064
    assert forward_flops(shape, 3, 2, batch=5) == 5 * 2064
    assert training_flops(shape, 3, 2) == 3 * 2064
    assert training_flops(shape, 3, 2, batch=5) == 15 * 2064


@pytest.mark.parametrize("shape", [RELU, GATED], ids=["relu", "gated"])
def test_forward_and_training_flops_match_torchs_flop_counter(shape):
    """An independent count: torch's FlopCounterMode over the model, a forward pass and a forward +
    backward (the 3x of training_flops), a batch of 2, encoder and decoder of different depths."""
    from torch.utils.flop_counter import FlopCounterMode

    model = _model(shape)
    ids, labels = torch.randint(3, 300, (2, 40)), torch.randint(3, 300, (2, 12))
    with FlopCounterMode(display=False) as forward, torch.no_grad():
        model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)
    with FlopCounterMode(display=False) as step:
        model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss.backward()
    assert forward_flops(shape, 40, 12, batch=2) == forward.get_total_flops()
    assert training_flops(shape, 40, 12, batch=2) == step.get_total_flops()


# generate() sizes its KV cache by num_hidden_layers, which T5Config maps to the encoder's num_layers
# (transformers 5.23): a decoder deeper than its encoder fails there with an IndexError
RELU_GENERATE = dataclasses.replace(RELU, num_decoder_layers=RELU.num_layers)


@pytest.mark.parametrize("shape,beams", [(RELU_GENERATE, 1), (RELU_GENERATE, 3), (GATED, 3)],
                         ids=["relu-greedy", "relu-beam3", "gated-beam3"])
def test_generate_flops_match_torchs_flop_counter(shape, beams):
    """Every beam runs to max_new_tokens (min_new_tokens = max): the worst case the estimate assumes."""
    from torch.utils.flop_counter import FlopCounterMode

    model, src, new = _model(shape), 40, 10
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.generate(input_ids=torch.randint(3, 300, (1, src)), max_new_tokens=new, min_new_tokens=new,
                       num_beams=beams, do_sample=False)
    assert generate_flops(shape, src, new, beams) == counter.get_total_flops()


def test_shape_from_a_config_dict_or_a_t5config():
    cfg = GATED.to_config(dropout=0.1)
    assert (cfg.vocab_size, cfg.num_decoder_layers, cfg.is_gated_act, cfg.dropout_rate) == (300, 1, True, 0.1)
    assert Shape.from_config(cfg) == GATED == Shape.from_config(cfg.to_dict())
    assert RELU.gated is False and GATED.gated is True
    # a config.json without num_decoder_layers (or null): as many decoder layers as encoder layers
    d = {"d_model": 8, "d_ff": 16, "d_kv": 4, "num_heads": 2, "num_layers": 3, "vocab_size": 50}
    assert Shape.from_config(d).num_decoder_layers == 3
    assert Shape.from_config(d | {"num_decoder_layers": None}).num_decoder_layers == 3
    assert Shape.from_config(d).feed_forward_proj == "relu"


def test_t5_base_costs_about_two_flops_a_parameter_a_token():
    """t5-base at 512/128: a token goes through the encoder or the decoder, about half of its 220M
    parameters, at 2 FLOPs each, plus attention; training is 3x the forward."""
    base = Shape(d_model=768, d_ff=3072, d_kv=64, num_heads=12, num_layers=12, num_decoder_layers=12)
    per_token = forward_flops(base, 512, 128) / 640
    assert 2 * 100e6 < per_token < 2 * 130e6
    assert training_flops(base, 512, 128) == 3 * forward_flops(base, 512, 128)


def test_peak_by_device_name():
    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_tflops("NVIDIA H100 PCIe") == 756.0  # listed before "H100": the first match wins
    assert peak_tflops("NVIDIA H200") == 989.0
    assert peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_tflops("NVIDIA GeForce RTX 4090") is None
    assert peak_tflops("NVIDIA GeForce RTX 4090", 165.0) == 165.0
    assert peak_tflops("NVIDIA H100 80GB HBM3", 500.0) == 500.0  # an override wins over the table
    assert H100_BF16_FLOPS == 989e12


def test_gpu_seconds():
    assert gpu_seconds(H100_BF16_FLOPS * 0.4 * 10, 0.4) == pytest.approx(10)
    assert gpu_seconds(1e15, 1.0, peak=1e14) == pytest.approx(10)
