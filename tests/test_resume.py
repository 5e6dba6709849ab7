"""Resuming the training loop: a killed stage ends like an uninterrupted one, its dvclive metrics
included; `max_steps` and hooks stop the loop; which parameters get weight decay."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from conftest import ROOT, tiny_t5

from kd.params import ModelParams, TrainParams
from kd.training.loop import Hook, param_groups

# 24 training records in batches of 4: 6 steps an epoch.
STEPS_PER_EPOCH = 6
STAGE_TEACHER = {"d_model": 16, "d_ff": 32, "d_kv": 8, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 2,
                 "epochs": 4, "lr": 0.01}
# Checkpoints at steps 5, 6 (epoch end), 10, 12, ...: the kill lands between two of them.
STAGE_TRAIN = {"batch_size": 4, "checkpoint_every": 5}


# Two stage runs share the machine at once: one thread each rather than both oversubscribing.
ONE_THREAD = os.environ | {"OMP_NUM_THREADS": "1"}


def _stage(tmp_path, tiny_data, run: str) -> list[str]:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"teacher": STAGE_TEACHER, "train": STAGE_TRAIN}))
    out = tmp_path / run
    return [sys.executable, "-m", "stages.train_teacher", "--params", str(params),
            "--tokenizer", str(tiny_data / "tokenizer"), "--tokenized", str(tiny_data / "tokenized"),
            "--out", str(out / "teacher"), "--checkpoints", str(out / "ckpt"), "--live-dir", str(out / "live"),
            "--log-dir", str(out / "logs")]


def _logged_steps(tsv) -> list[int]:
    """Steps of the complete rows of a dvclive metric file (it may be mid-append)."""
    if not tsv.is_file():
        return []
    rows = [line.split("\t") for line in tsv.read_text().splitlines(keepends=True)[1:] if line.endswith("\n")]
    return [int(r[0]) for r in rows]


def _checkpoint_step(ckpt_dir) -> int:
    from kd.training.checkpoint import find_last, read_state

    state = read_state(find_last(ckpt_dir))
    return state["step"] if state else 0


def _kill_between_checkpoints(proc, run_dir, *, after: int) -> int:
    """SIGKILL `proc` once its checkpoint is at step >= `after` and dvclive has logged a later step
    (the rows a resumed run must not repeat); returns the step of the checkpoint left behind."""
    ce = run_dir / "live" / "plots" / "metrics" / "train" / "ce.tsv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            saved = _checkpoint_step(run_dir / "ckpt")
        except (FileNotFoundError, json.JSONDecodeError):  # being swapped for a newer one
            saved = 0
        if saved >= after and max(_logged_steps(ce), default=0) > saved:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "training finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return _checkpoint_step(run_dir / "ckpt")


def test_killed_stage_resumes_to_the_uninterrupted_weights_and_metrics(tiny_data, tmp_path):
    from safetensors.torch import load_file

    total = STAGE_TEACHER["epochs"] * STEPS_PER_EPOCH
    full_args, cut_args = _stage(tmp_path, tiny_data, "full"), _stage(tmp_path, tiny_data, "cut")
    # Both at once: the uninterrupted run is the reference, the other one is killed and rerun.
    with open(tmp_path / "full.stderr", "w") as err:
        full = subprocess.Popen(full_args, cwd=tmp_path, env=ONE_THREAD, stdout=subprocess.DEVNULL, stderr=err)
    cut = subprocess.Popen(cut_args, cwd=tmp_path, env=ONE_THREAD, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    killed_at = _kill_between_checkpoints(cut, tmp_path / "cut", after=STEPS_PER_EPOCH + 1)
    live = tmp_path / "cut" / "live"
    assert max(_logged_steps(live / "plots" / "metrics" / "train" / "ce.tsv")) > killed_at  # rows to drop
    assert not (tmp_path / "cut" / "teacher").exists()  # no half-written model

    rerun = subprocess.run(cut_args, cwd=tmp_path, env=ONE_THREAD, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert full.wait() == 0, (tmp_path / "full.stderr").read_text()[-2000:]
    log = (tmp_path / "cut" / "logs" / "train_teacher.log").read_text()
    assert "resumed from" in log and f"at step {killed_at}" in log

    wf = load_file(str(tmp_path / "full" / "teacher" / "model.safetensors"))
    wc = load_file(str(tmp_path / "cut" / "teacher" / "model.safetensors"))
    assert wf.keys() == wc.keys() and all(torch.equal(wf[k], wc[k]) for k in wf)

    tsvs = sorted(p.relative_to(live) for p in live.rglob("*.tsv"))
    assert {str(p) for p in tsvs} >= {"plots/metrics/train/ce.tsv", "plots/metrics/train/lr.tsv",
                                      "plots/metrics/train/total.tsv", "plots/metrics/val/loss.tsv"}
    for rel in tsvs:
        expected = (range(STEPS_PER_EPOCH, total + 1, STEPS_PER_EPOCH) if rel.parts[-2] == "val"
                    else range(1, total + 1))
        assert _logged_steps(live / rel) == list(expected), rel  # each step once, in order
        # Same weights at every step, so the same values: the resumed files are the uninterrupted ones.
        assert (live / rel).read_text() == (tmp_path / "full" / "live" / rel).read_text(), rel
    metrics = json.loads((live / "metrics.json").read_text())
    full = json.loads((tmp_path / "full" / "live" / "metrics.json").read_text())
    assert metrics["step"] == metrics["steps"] == total
    # the training cost spans the resume: every token once (seconds are timings, not compared)
    assert metrics.pop("train_seconds") > 0 and full.pop("train_seconds") > 0
    assert metrics == full and metrics["train_tokens"] > 0


# ----------------------------------------------------------------------------- max_steps and hooks

TINY = ModelParams(d_model=16, d_ff=32, d_kv=8, num_layers=1, num_decoder_layers=1, num_heads=2, epochs=2, lr=1e-2)
TRAIN = TrainParams(batch_size=4, checkpoint_every=100, seed=3)


class Recorder(Hook):
    """Records every event as (name, step); stops the loop after step `stop_at` when given."""

    def __init__(self, stop_at: int | None = None):
        self.stop_at, self.events = stop_at, []

    def on_train_start(self, loop):
        self.events.append(("start", loop.state.step))

    def on_step_end(self, loop, logs):
        assert set(logs) == {"ce", "total", "lr"}
        self.events.append(("step", loop.state.step))
        if loop.state.step == self.stop_at:
            loop.should_stop = True

    def on_validation_end(self, loop, val_loss):
        self.events.append(("val", loop.state.step))

    def on_train_end(self, loop):
        self.events.append(("end", loop.state.step))


def _fit(tiny_data, tmp_path, hooks, **kw):
    from kd.models.modeling import build_model
    from kd.training.objective import Objective
    from kd.training.run import load_tokenized
    from kd.data.tokenization import load_tokenizer
    from kd.training.loop import fit, make_accelerator, make_collator

    tokenizer = load_tokenizer(str(tiny_data / "tokenizer"))
    ds = load_tokenized(tiny_data / "tokenized")
    model = build_model(TINY, tokenizer, seed=TRAIN.seed, section="teacher")
    return fit(model=model, objective=Objective.labels_only(), teacher=None, train_ds=ds["train"],
               val_ds=ds["validation"], collate=make_collator(tokenizer), epochs=TINY.epochs, lr=TINY.lr,
               params=TRAIN, ckpt_dir=tmp_path / "ckpt", run_fingerprint="test", hooks=hooks,
               accelerator=make_accelerator(torch.device("cpu")), **kw)


def test_max_steps_stops_exactly_there_after_the_epoch_validation(tiny_data, tmp_path):
    rec = Recorder()
    result = _fit(tiny_data, tmp_path, [rec], max_steps=STEPS_PER_EPOCH + 1)
    steps = [("step", s) for s in range(1, STEPS_PER_EPOCH + 2)]
    assert rec.events == ([("start", 0)] + steps[:STEPS_PER_EPOCH] + [("val", STEPS_PER_EPOCH)]
                          + steps[STEPS_PER_EPOCH:] + [("end", STEPS_PER_EPOCH + 1)])
    assert result.steps == result.steps_run == STEPS_PER_EPOCH + 1
    assert [h["step"] for h in result.history] == [STEPS_PER_EPOCH]


def test_a_hook_stops_the_loop_after_the_current_step(tiny_data, tmp_path):
    rec = Recorder(stop_at=3)
    result = _fit(tiny_data, tmp_path, [rec])
    assert rec.events == [("start", 0), ("step", 1), ("step", 2), ("step", 3), ("end", 3)]
    assert result.steps == 3 and result.history == [] and result.best_epoch == -1


def test_max_steps_must_be_positive(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="max_steps must be >= 1"):
        _fit(tiny_data, tmp_path, [], max_steps=0)


# ----------------------------------------------------------------------------- weight decay


def test_no_weight_decay_on_norm_weights_and_biases():
    model = tiny_t5(d_model=8, layers=1, heads=2, vocab=16)
    # Stands in for an objective's trainable loss parameters: a projection (with bias) and a norm.
    objective = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.LayerNorm(4))
    model.encoder.block[0].layer[0].SelfAttention.q.weight.requires_grad_(False)  # frozen: no group
    groups = param_groups(model, objective, weight_decay=0.1)

    names = {id(p): n for n, p in model.named_parameters()} | \
        {id(p): f"objective.{n}" for n, p in objective.named_parameters()}
    by_decay = {g["weight_decay"]: sorted(names[id(p)] for p in g["params"]) for g in groups}
    assert sorted(by_decay) == [0.0, 0.1]
    assert by_decay[0.0] == sorted([
        "encoder.block.0.layer.0.layer_norm.weight", "encoder.block.0.layer.1.layer_norm.weight",
        "encoder.final_layer_norm.weight",
        "decoder.block.0.layer.0.layer_norm.weight", "decoder.block.0.layer.1.layer_norm.weight",
        "decoder.block.0.layer.2.layer_norm.weight", "decoder.final_layer_norm.weight",
        "objective.0.bias", "objective.1.weight", "objective.1.bias",
    ])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad} | {"objective.0.weight"}
    assert by_decay[0.1] == sorted(trainable - set(by_decay[0.0]))
    assert len(by_decay[0.1]) == len(set(by_decay[0.1]))  # tied embeddings once


# ----------------------------------------------------------------------------- dvclive files left by a kill


class _Loop:
    """What DvcLiveHook reads of the training loop."""

    def __init__(self, step: int):
        self.state, self.scorer = type("State", (), {"step": step, "history": []})(), None


def _killed_live_dir(tmp_path):
    """A dvclive dir as a kill at step 7 can leave it: the summary cut mid-write, a temp file of the
    next one, and a metric row half appended (the checkpoint is at step 6)."""
    live = tmp_path / "live"
    ce = live / "plots" / "metrics" / "train" / "ce.tsv"
    ce.parent.mkdir(parents=True)
    ce.write_text("step\tce\n5\t2.5\n6\t2.4\n7\t2.3\n8\t2.")
    (live / "metrics.json").write_text('{\n    "train": {\n        "ce": 2.')
    (live / ".metrics.json.tmp-abc.json").write_text("{")
    return live, ce


def test_a_resumed_hook_survives_the_files_a_kill_cut_short(tmp_path, monkeypatch):
    from kd.training.run import DvcLiveHook

    monkeypatch.setattr(DvcLiveHook, "SUMMARY_EVERY", 1)  # the summary of every step, as a kill could cut it
    live, ce = _killed_live_dir(tmp_path)
    hook = DvcLiveHook(live)
    hook.on_train_start(_Loop(step=6))  # Live(resume=True) parses metrics.json: it must not be the cut one
    assert ce.read_text() == "step\tce\n5\t2.5\n6\t2.4\n"
    assert not list(live.glob(".metrics.json.tmp-*"))

    loop = _Loop(step=7)
    hook.on_step_end(loop, {"ce": 2.25})
    assert json.loads((live / "metrics.json").read_text()) == {"train": {"ce": 2.25}, "step": 7}
    assert _logged_steps(ce) == [5, 6, 7]


def test_the_step_summary_is_written_atomically(tmp_path, monkeypatch):
    """A write that dies midway leaves the previous summary whole, never a truncated one."""
    import kd.io
    from kd.training.run import DvcLiveHook

    monkeypatch.setattr(DvcLiveHook, "SUMMARY_EVERY", 1)
    live = tmp_path / "live"
    hook = DvcLiveHook(live)
    hook.on_train_start(_Loop(step=0))
    hook.on_step_end(_Loop(step=1), {"ce": 3.0})
    before = (live / "metrics.json").read_text()

    def dies_midway(path, text):
        with kd.io.atomic_file(path) as tmp:
            tmp.write_text(text[: len(text) // 2])
            raise KeyboardInterrupt  # the kill

    monkeypatch.setattr("kd.io.atomic_write_text", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        hook.on_step_end(_Loop(step=2), {"ce": 2.0})
    assert (live / "metrics.json").read_text() == before
    assert json.loads(before)["step"] == 1


def test_the_step_summary_is_rewritten_every_summary_every_steps(tmp_path):
    """metrics.json follows training every SUMMARY_EVERY steps (the plots get every step's row)."""
    from kd.training.run import DvcLiveHook

    live = tmp_path / "live"
    hook = DvcLiveHook(live)
    every = DvcLiveHook.SUMMARY_EVERY
    hook.on_train_start(_Loop(step=0))
    for step in range(1, every + 2):
        hook.on_step_end(_Loop(step=step), {"ce": float(step)})
        if step == every - 1:
            assert not (live / "metrics.json").exists()
    assert json.loads((live / "metrics.json").read_text()) == {"train": {"ce": float(every)}, "step": every}
    assert _logged_steps(live / "plots" / "metrics" / "train" / "ce.tsv") == list(range(1, every + 2))
