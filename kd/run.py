"""One training run, teacher or student: load the tokenized data, fit, save the best weights atomically.

Shared by kd.teacher (the teacher stage) and kd.distill (the students); imports neither the losses nor
the teacher cache, so the teacher's stage does not depend on them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from pathlib import Path

import datasets
from dvclive import Live
from transformers import GenerationConfig

from kd import checkpoint
from kd.errors import ConfigError
from kd.io import atomic_dir
from kd.params import ModelParams, TrainParams
from kd.train import FitResult, finish, fit, make_collator

log = logging.getLogger(__name__)
# One line per training run; kd.bench gpu-smoke reads it back (THROUGHPUT_RE).
THROUGHPUT_LOG = "%s throughput: %d steps in %.1f s, %.2f steps/s, %.0f tokens/s per process (%d processes)"
THROUGHPUT_RE = (r"(?P<name>\S+) throughput: (?P<steps>\d+) steps in (?P<seconds>[\d.]+) s, "
                 r"(?P<steps_per_s>[\d.]+) steps/s, (?P<tokens_per_s>\d+) tokens/s")


def load_tokenized(path: Path) -> datasets.DatasetDict:
    path = Path(path)
    if not (path / "dataset_dict.json").is_file():
        raise ConfigError(f"{path}: no tokenized dataset here; run the tokenize stage first")
    ds = datasets.load_from_disk(str(path))
    for split in ("train", "validation"):
        if split not in ds or len(ds[split]) == 0:
            raise ConfigError(f"{path}: split {split!r} is missing or empty")
    return ds


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def save_model_dir(model, tokenizer, out_dir: Path) -> None:
    """save_pretrained into a temp dir, then rename: a crash never leaves half a model."""
    model.generation_config = GenerationConfig(
        decoder_start_token_id=model.config.decoder_start_token_id,
        eos_token_id=model.config.eos_token_id,
        pad_token_id=model.config.pad_token_id,
    )
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def train_and_save(*, name, model, teacher, objective, tokenizer, tokenized, spec: ModelParams,
                    train: TrainParams, accelerator, out_dir, ckpt_dir, live_dir, resume_from,
                    fingerprint_of: dict, hooks=()) -> FitResult:
    """Fit, then (main process only) save the best weights atomically and drop the resumable state."""
    fp = checkpoint.fingerprint(fingerprint_of | {"data": tokenized["train"]._fingerprint})
    main = accelerator.is_main_process
    # dvclive: no DVC experiment side effects from inside a stage; DVC owns the experiment.
    live = (Live(dir=str(live_dir), resume=bool(resume_from) or _has_checkpoint(ckpt_dir),
                 save_dvc_exp=False, dvcyaml=None) if main else contextlib.nullcontext())
    with live:
        result = fit(model=model, objective=objective, teacher=teacher, train_ds=tokenized["train"],
                     val_ds=tokenized["validation"], collate=make_collator(tokenizer), epochs=spec.epochs,
                     lr=spec.lr, params=train, device=accelerator.device, ckpt_dir=ckpt_dir,
                     run_fingerprint=fp, live=live if main else None, resume_from=resume_from,
                     hooks=hooks, desc=name, accelerator=accelerator)
        if main:
            live.summary = {"best_val_loss": result.best_val_loss, "best_epoch": result.best_epoch,
                            "steps": result.steps}
    if main:
        model.load_state_dict(result.best_state)
        save_model_dir(model.cpu(), tokenizer, out_dir)
        finish(ckpt_dir)
        log.info("%s: best val loss %.4f at epoch %d; saved %s", name, result.best_val_loss,
                 result.best_epoch, out_dir)
        log.info(THROUGHPUT_LOG, name, result.steps_run, result.seconds,
                 result.steps_run / max(result.seconds, 1e-9), result.tokens / max(result.seconds, 1e-9),
                 accelerator.num_processes)
    accelerator.wait_for_everyone()
    return result


def _has_checkpoint(ckpt_dir: Path) -> bool:
    return (checkpoint.find_last(ckpt_dir) / "state.json").is_file()
