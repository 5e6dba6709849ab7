"""Training a teacher or a student end to end: load data, build models, fit, save atomically.

`train_teacher` and `distill_student` are the workers behind stages/train_teacher.py and
stages/distill.py; they take keyword arguments so tests call them directly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path
from typing import Callable, Optional

import datasets
import torch
from dvclive import Live
from transformers import GenerationConfig

from kd import checkpoint
from kd.errors import ConfigError
from kd.io import atomic_dir
from kd.losses import needs_of
from kd.modeling import build_model, check_same_vocab, load_model, pick_device
from kd.objective import Objective
from kd.params import KDParams, ModelParams, TrainParams
from kd.tokenization import load_tokenizer
from kd.train import FitResult, finish, fit, make_collator

log = logging.getLogger(__name__)


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


def _train_and_save(*, name, model, teacher, objective, tokenizer, tokenized, spec: ModelParams,
                    train: TrainParams, device, out_dir, ckpt_dir, live_dir, resume_from,
                    fingerprint_of: dict, on_step) -> FitResult:
    fp = checkpoint.fingerprint(fingerprint_of | {"data": tokenized["train"]._fingerprint})
    # dvclive: no DVC experiment side effects from inside a stage; DVC owns the experiment.
    with Live(dir=str(live_dir), resume=bool(resume_from) or _has_checkpoint(ckpt_dir),
              save_dvc_exp=False, dvcyaml=None) as live:
        result = fit(model=model, objective=objective, teacher=teacher, train_ds=tokenized["train"],
                     val_ds=tokenized["validation"], collate=make_collator(tokenizer), epochs=spec.epochs,
                     lr=spec.lr, params=train, device=device, ckpt_dir=ckpt_dir, run_fingerprint=fp,
                     live=live, resume_from=resume_from, on_step=on_step, desc=name)
        live.summary = {"best_val_loss": result.best_val_loss, "best_epoch": result.best_epoch,
                        "steps": result.steps}
    model.load_state_dict(result.best_state)
    save_model_dir(model.cpu(), tokenizer, out_dir)
    finish(ckpt_dir)
    log.info("%s: best val loss %.4f at epoch %d; saved %s", name, result.best_val_loss,
             result.best_epoch, out_dir)
    return result


def _has_checkpoint(ckpt_dir: Path) -> bool:
    return (Path(ckpt_dir) / checkpoint.LAST / "state.json").is_file()


def train_teacher(*, spec: ModelParams, train: TrainParams, tokenizer_dir: Path, tokenized_dir: Path,
                  out_dir: Path, ckpt_dir: Path, live_dir: Path, resume_from: Optional[Path] = None,
                  on_step: Optional[Callable[[int], None]] = None) -> FitResult:
    tokenizer = load_tokenizer(str(tokenizer_dir))
    tokenized = load_tokenized(tokenized_dir)
    device = pick_device(train)
    model = build_model(spec, tokenizer, seed=train.seed)
    objective = Objective({}, alpha=0.0, weights={})
    return _train_and_save(name="teacher", model=model, teacher=None, objective=objective,
                           tokenizer=tokenizer, tokenized=tokenized, spec=spec, train=train, device=device,
                           out_dir=out_dir, ckpt_dir=ckpt_dir, live_dir=live_dir, resume_from=resume_from,
                           fingerprint_of={"spec": dataclasses.asdict(spec), "train": dataclasses.asdict(train)},
                           on_step=on_step)


def distill_student(*, name: str, spec: ModelParams, train: TrainParams, kd: KDParams, teacher_dir: Path,
                    tokenizer_dir: Path, tokenized_dir: Path, out_dir: Path, ckpt_dir: Path, live_dir: Path,
                    resume_from: Optional[Path] = None,
                    on_step: Optional[Callable[[int], None]] = None) -> FitResult:
    """Train student `name` with the losses params give it (none: the label-only baseline)."""
    losses = kd.losses_of(name)
    needs = needs_of(losses)  # validates loss names before anything is loaded
    tokenized = load_tokenized(tokenized_dir)
    teacher_path = Path(teacher_dir)
    if losses and not (teacher_path / "config.json").is_file():
        raise ConfigError(f"{teacher_path}: no trained teacher here; run the train_teacher stage first")
    # The teacher's tokenizer: the tokenize stage trained it, or copied a pretrained teacher's.
    tokenizer = load_tokenizer(str(tokenizer_dir))
    device = pick_device(train)
    # Attention weights exist only with eager attention; SDPA stays for everything else.
    attn = "eager" if "attentions" in needs else "sdpa"
    teacher = load_model(teacher_path, attn_implementation=attn) if losses else None
    model = build_model(spec, tokenizer, seed=train.seed, attn_implementation=attn)
    if teacher is not None:
        check_same_vocab(teacher, model)
    objective = Objective.from_params(losses, kd, teacher.config if teacher else None, model.config)
    used = {k: getattr(kd, k.split(".", 1)[1]) for d in objective.distillers.values() for k in d.param_keys}
    teacher_id = file_digest(teacher_path / "model.safetensors") if teacher is not None else None
    return _train_and_save(name=f"student_{name}", model=model, teacher=teacher, objective=objective,
                           tokenizer=tokenizer, tokenized=tokenized, spec=spec, train=train, device=device,
                           out_dir=out_dir, ckpt_dir=ckpt_dir, live_dir=live_dir, resume_from=resume_from,
                           fingerprint_of={"spec": dataclasses.asdict(spec), "train": dataclasses.asdict(train),
                                           "losses": losses, "kd": used, "teacher": teacher_id},
                           on_step=on_step)
