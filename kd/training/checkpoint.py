"""Resumable training checkpoints, without pickles of arbitrary objects.

A checkpoint is a directory written atomically (temp dir, then rename):
  model.safetensors      model weights            best.safetensors   best weights so far
  objective.safetensors  the objective's state, when it has any: trainable loss parameters (e.g.
                         projections), a loss's own state (gkd's sampling generator)
  optimizer.pt           optimizer state: tensors and numbers only, loaded with weights_only=True
  rng.pt                 torch RNG state (a uint8 tensor), weights_only=True
  state.json             kd.training.loop.TrainState (step, epoch, position, best validation, history, params
                         fingerprint), plus scheduler, fp16 loss scaler and Python RNG
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from kd.io import atomic_dir, atomic_write_json, previous_version

LAST = "last"


def fingerprint(obj) -> str:
    """Stable hash of the settings a checkpoint belongs to (params that change the run)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save(ckpt_dir: Path, *, model, objective, optimizer, scheduler, scaler, best_state, state: dict) -> Path:
    target = Path(ckpt_dir) / LAST
    with atomic_dir(target) as tmp:
        save_model(model, str(tmp / "model.safetensors"))
        save_file({k: v.contiguous() for k, v in best_state.items()}, str(tmp / "best.safetensors"))
        if objective.state_dict():  # trainable projections, or a loss's own state (gkd's sampling RNG)
            save_model(objective, str(tmp / "objective.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save({"torch": torch.get_rng_state()}, tmp / "rng.pt")
        full = dict(state, scheduler=scheduler.state_dict(), scaler=scaler.state_dict(),
                    python_rng=_py_rng_to_json(random.getstate()))
        atomic_write_json(tmp / "state.json", full)
    return target


def load(path: Path, *, model, objective, optimizer, scheduler, scaler) -> tuple[dict, dict]:
    """Restore everything in place; returns (state, best_state_dict)."""
    path = Path(path)
    load_model(model, str(path / "model.safetensors"))
    if (path / "objective.safetensors").exists():
        load_model(objective, str(path / "objective.safetensors"))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    torch.set_rng_state(torch.load(path / "rng.pt", weights_only=True)["torch"])
    state = json.loads((path / "state.json").read_text())
    scheduler.load_state_dict(state.pop("scheduler"))
    # {} from a disabled scaler (bf16, fp32); a state.json without the key also resumes, with a fresh scaler.
    scaler_state = state.pop("scaler", {})
    if scaler_state:
        scaler.load_state_dict(scaler_state)
    random.setstate(_py_rng_from_json(state.pop("python_rng")))
    return state, load_file(str(path / "best.safetensors"))


def find_last(ckpt_dir: Path) -> Path:
    """`ckpt_dir/last`, or the previous checkpoint when a crash hit while `last` was being swapped
    (see kd.io.atomic_dir); the returned path may not exist (no checkpoint yet)."""
    last = Path(ckpt_dir) / LAST
    aside = previous_version(last)
    return aside if not last.is_dir() and (aside / "state.json").is_file() else last


def read_state(path: Path) -> dict | None:
    f = Path(path) / "state.json"
    return json.loads(f.read_text()) if f.is_file() else None


def _py_rng_to_json(s):
    return [s[0], list(s[1]), s[2]]


def _py_rng_from_json(s):
    return (s[0], tuple(s[1]), s[2])
