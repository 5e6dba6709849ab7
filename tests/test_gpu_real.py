"""tools.gpu_real (`python -m tools.bench gpu-real`): its CPU path end to end. Its FLOP counts and peak table
(tools.flops) are tested in tests/test_flops.py."""

from __future__ import annotations

import json

import pytest
import torch

from tools import bench

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


def test_a_failed_measurement_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    """One shot on a lent GPU: a measurement that raises must not lose the others."""
    from tools import gpu_real

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
