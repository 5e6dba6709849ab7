"""The training loop: LR schedule, determinism, and resume after an interrupt."""

from __future__ import annotations

import logging

import pytest
import torch

from kd.errors import ConfigError
from kd.params import ModelParams, TrainParams
from kd.train import Hook, lr_factor

TINY = ModelParams(d_model=16, d_ff=32, d_kv=8, num_layers=1, num_decoder_layers=1, num_heads=2,
                   dropout=0.1, epochs=2, lr=1e-2)
TRAIN = TrainParams(batch_size=4, checkpoint_every=2, seed=3)


def test_lr_factor_warms_up_then_decays_to_zero():
    f = [lr_factor(s, warmup_steps=4, total_steps=10) for s in range(11)]
    assert f[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert f[4] == pytest.approx(1.0) and f[10] == 0.0
    assert all(a >= b for a, b in zip(f[4:], f[5:]))


class Interrupt(Exception):
    pass


class CrashAt(Hook):
    """Simulates a crash right after optimizer step `at`, before that step's checkpoint."""

    def __init__(self, at: int):
        self.at = at

    def on_step_end(self, loop, logs):
        if loop.state.step == self.at:
            raise Interrupt


def _train(tiny_data, tmp_path, name, **kw):
    from kd.teacher import train_teacher

    return train_teacher(spec=TINY, train=kw.pop("train", TRAIN), tokenizer_dir=tiny_data / "tokenizer",
                         tokenized_dir=tiny_data / "tokenized", out_dir=tmp_path / name / "model",
                         ckpt_dir=tmp_path / name / "ckpt", live_dir=tmp_path / name / "live", **kw)


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_same_seed_same_weights(tiny_data, tmp_path):
    a = _train(tiny_data, tmp_path, "a")
    b = _train(tiny_data, tmp_path, "b")
    assert a.best_val_loss == b.best_val_loss
    wa, wb = _weights(tmp_path / "a" / "model"), _weights(tmp_path / "b" / "model")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_interrupted_run_resumes_to_identical_weights(tiny_data, tmp_path):
    full = _train(tiny_data, tmp_path, "full")

    with pytest.raises(Interrupt):  # step 3: after the step-2 checkpoint, mid-epoch
        _train(tiny_data, tmp_path, "cut", hooks=[CrashAt(3)])
    assert not (tmp_path / "cut" / "model").exists()  # nothing half-written
    assert (tmp_path / "cut" / "ckpt" / "last" / "state.json").is_file()
    resumed = _train(tiny_data, tmp_path, "cut")
    assert resumed.resumed_from_step == 2
    assert resumed.best_val_loss == full.best_val_loss
    wf, wr = _weights(tmp_path / "full" / "model"), _weights(tmp_path / "cut" / "model")
    assert all(torch.equal(wf[k], wr[k]) for k in wf)
    assert not (tmp_path / "cut" / "ckpt" / "last").exists()  # finished: a rerun starts fresh


def test_checkpoint_of_other_params_is_not_resumed(tiny_data, tmp_path, caplog):
    with pytest.raises(Interrupt):
        _train(tiny_data, tmp_path, "x", hooks=[CrashAt(3)])
    other = TrainParams(batch_size=4, checkpoint_every=2, seed=4)
    with caplog.at_level(logging.WARNING, logger="kd.train"):
        result = _train(tiny_data, tmp_path, "x", train=other)
    assert result.resumed_from_step == 0
    assert "ignoring checkpoint" in caplog.text


def test_explicit_resume_path_must_be_a_checkpoint(tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="not a checkpoint"):
        _train(tiny_data, tmp_path, "y", resume_from=tmp_path)


def test_checkpoint_files_load_without_unpickling(tiny_data, tmp_path):
    with pytest.raises(Interrupt):
        _train(tiny_data, tmp_path, "z", hooks=[CrashAt(3)])  # after the step-2 checkpoint
    last = tmp_path / "z" / "ckpt" / "last"
    for f in ("optimizer.pt", "rng.pt"):
        torch.load(last / f, weights_only=True)  # raises if anything but tensors/containers were saved
    assert {p.name for p in last.iterdir()} >= {"model.safetensors", "best.safetensors", "state.json"}
