"""kd.gpu_real (`python -m kd.bench gpu-real`): its CPU path end to end, and its FLOP count."""

from __future__ import annotations

import json

import pytest
import torch

from kd import bench
from kd.gpu_real import Shape, forward_flops, peak_tflops, train_flops

# Every measurement the CPU path writes (the GPU path adds bf16 generation and peak memory).
MEASURED = [
    "gen_beam4_teacher_fp32_samples_per_s", "gen_beam4_student_fp32_samples_per_s",
    "teacher_outputs_examples_per_s", "teacher_outputs_tokens_per_s", "teacher_outputs_tflops", "teacher_outputs_mfu",
    *(f"train_{v}_{m}" for v in ("label", "kd") for m in ("step_s", "tokens_per_s", "tflops", "mfu")),
    "teacher_params", "student_params", "source_len", "target_len", "batch_size", "steps", "peak_bf16_tflops",
    "wall_s",
]


def test_tiny_cpu_run_writes_every_measurement(tmp_path):
    out = tmp_path / "gpu_real.json"
    assert bench.main(["gpu-real", "--device", "cpu", "--tiny", "--peak-tflops", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    missing = [k for k in MEASURED if k not in result]
    assert not missing
    not_positive = {k: v for k, v in result.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and not v > 0}
    assert not not_positive
    assert result["ok"] is True and result["tiny"] is True and result["device"] == "cpu"
    assert {"torch", "transformers", "date", "device_name"} <= set(result)
    # the tiny teacher is bigger than its student, as t5-base is than t5-small
    assert result["teacher_params"] > result["student_params"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_cuda_without_a_gpu_is_one_clear_error():
    with pytest.raises(SystemExit, match="gpu-real: no CUDA device here"):
        bench.main(["gpu-real", "--tiny"])


def test_forward_flops_by_hand():
    """d_model 4, 2 heads of d_kv 2 (inner 4), d_ff 8, one encoder and one decoder layer, vocab 10;
    one example of 3 source and 2 target tokens. A d->inner projection is 2*4*4 = 32 FLOPs a token."""
    cfg = Shape(d_model=4, d_ff=8, d_kv=2, num_layers=1, num_decoder_layers=1, num_heads=2).config(10)
    encoder = 3 * (4 * 32 + 2 * (2 * 4 * 8)) + 2 * (2 * 3 * 3 * 4)  # q k v o and FF on 3 tokens; QK^T, AV: 912
    decoder = (2 * (4 * 32 + 2 * (2 * 4 * 8)) + 2 * (2 * 2 * 2 * 4)  # self-attention and FF on 2 tokens: 576
               + 2 * 2 * 32 + 3 * 2 * 32 + 2 * (2 * 2 * 3 * 4))  # cross: q o on 2, k v on 3, 2x3 scores: 416
    lm_head = 2 * 2 * 4 * 10  # 160
    assert encoder + decoder + lm_head == 2064
    assert forward_flops(cfg, batch=1, source_len=3, target_len=2) == 2064
    assert forward_flops(cfg, batch=5, source_len=3, target_len=2) == 5 * 2064
    assert train_flops(cfg, batch=1, source_len=3, target_len=2) == 3 * 2064


@pytest.mark.parametrize("shape", [Shape(16, 24, 4, 2, 3, 3), Shape(16, 24, 4, 2, 1, 2, "gated-gelu")])
def test_forward_flops_match_torchs_flop_counter(shape):
    """An independent count: torch's FlopCounterMode over the eager-attention model, forward and
    forward + backward (the 3x of train_flops), for a ReLU and a gated feed-forward."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import T5ForConditionalGeneration

    cfg = shape.config(50)
    model = T5ForConditionalGeneration._from_config(cfg, attn_implementation="eager")
    ids, labels = torch.randint(2, 50, (2, 7)), torch.randint(2, 50, (2, 5))
    with FlopCounterMode(display=False) as forward, torch.no_grad():
        model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)
    with FlopCounterMode(display=False) as step:
        model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss.backward()
    assert forward.get_total_flops() == forward_flops(cfg, batch=2, source_len=7, target_len=5)
    assert step.get_total_flops() == train_flops(cfg, batch=2, source_len=7, target_len=5)


def test_peak_by_device_name():
    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_tflops("NVIDIA H200") == 989.0
    assert peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_tflops("NVIDIA GeForce RTX 4090") is None
    assert peak_tflops("NVIDIA GeForce RTX 4090", 165.0) == 165.0


def test_a_failed_measurement_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    """One shot on a lent GPU: a measurement that raises must not lose the others."""
    from kd import gpu_real

    def broken(b, name, model, ds):
        raise RuntimeError("no beams today")

    monkeypatch.setattr(gpu_real, "measure_generation", broken)
    out = tmp_path / "gpu_real.json"
    assert bench.main(["gpu-real", "--device", "cpu", "--tiny", "--out", str(out)]) == 1
    result = json.loads(out.read_text())
    assert result["gen_beam4_teacher_fp32_error"] == "RuntimeError: no beams today"
    assert result["ok"] is False
    assert result["train_kd_tokens_per_s"] > 0 and result["teacher_outputs_tokens_per_s"] > 0
    assert result["train_kd_mfu"] is None  # no --peak-tflops and no known peak for a CPU
