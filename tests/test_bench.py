"""The benchmark entry points run (their numbers are measurements, not test expectations)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT


def test_gpu_smoke_script_runs_every_stage_on_cpu(tmp_path):
    """No GPU in CI: the same script and stages with --device cpu, 2 steps per model, short decoding (random
    weights decode to the length limit: at the real shape that is most of the CPU time)."""
    out = subprocess.run([sys.executable, "-m", "tools.bench", "gpu-smoke", "--device", "cpu", "--steps", "2",
                          "--eval-size", "8", "--max-new-tokens", "8",
                          "--out", str(tmp_path / "smoke.json")], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    result = json.loads((tmp_path / "smoke.json").read_text())
    for key in ("teacher_steps_per_s", "student_vanilla_tokens_per_s", "student_attention_tokens_per_s",
                "teacher_generate_samples_per_s", "vanilla_generate_samples_per_s",
                "attention_generate_samples_per_s", "train_teacher_s", "teacher_outputs_s",
                "teacher_generate_s", "distill_seqkd_s", "student_seqkd_tokens_per_s", "seqkd_generate_samples_per_s",
                "benchmark_teacher_s", "benchmark_lead3_s", "speed_s", "report_s"):
        assert result[key] > 0, key
    assert "gpu-smoke.wall_s" in out.stdout


def test_gpu_smoke_without_cuda_says_so():
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here")
    out = subprocess.run([sys.executable, "-m", "tools.bench", "gpu-smoke"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode != 0 and "no CUDA device here" in out.stderr
