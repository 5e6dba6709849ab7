"""Training a teacher or a student end to end: load data, build models, fit, save atomically.

`train_teacher` and `distill_student` are the workers behind stages/train_teacher.py and
stages/distill.py; they take keyword arguments so tests call them directly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Callable, Optional

import datasets
import torch
from dvclive import Live
from transformers import GenerationConfig

from kd import checkpoint, paths
from kd.errors import ConfigError
from kd.io import atomic_dir
from kd.losses import needs_of
from kd.modeling import build_model, check_same_vocab, load_model, pick_device, resolve_device
from kd.objective import Objective, freeze_teacher
from kd.params import KDParams, ModelParams, TeacherOutputsParams, TrainParams
from kd.tokenization import load_tokenizer
from kd.teacher_cache import TeacherCache, write_cache
from kd.train import FitResult, finish, fit, make_accelerator, make_collator

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


def _train_and_save(*, name, model, teacher, objective, tokenizer, tokenized, spec: ModelParams,
                    train: TrainParams, accelerator, out_dir, ckpt_dir, live_dir, resume_from,
                    fingerprint_of: dict, on_step) -> FitResult:
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
                     on_step=on_step, desc=name, accelerator=accelerator)
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


def train_teacher(*, spec: ModelParams, train: TrainParams, tokenizer_dir: Path, tokenized_dir: Path,
                  out_dir: Path, ckpt_dir: Path, live_dir: Path, resume_from: Optional[Path] = None,
                  on_step: Optional[Callable[[int], None]] = None) -> FitResult:
    tokenizer = load_tokenizer(str(tokenizer_dir))
    tokenized = load_tokenized(tokenized_dir)
    accelerator = make_accelerator(pick_device(train))
    model = build_model(spec, tokenizer, seed=train.seed, section="teacher")
    objective = Objective({}, alpha=0.0, weights={})
    return _train_and_save(name="teacher", model=model, teacher=None, objective=objective,
                           tokenizer=tokenizer, tokenized=tokenized, spec=spec, train=train,
                           accelerator=accelerator, out_dir=out_dir, ckpt_dir=ckpt_dir, live_dir=live_dir,
                           resume_from=resume_from,
                           fingerprint_of={"spec": dataclasses.asdict(spec), "train": dataclasses.asdict(train)},
                           on_step=on_step)


def uses_cache(kd: KDParams, losses: tuple[str, ...]) -> bool:
    """Cached teacher outputs serve logit-only KD; hidden states and attentions need the live teacher."""
    return kd.teacher_outputs == "cached" and bool(losses) and needs_of(losses) <= {"logits"}


def open_teacher_cache(path: Path, *, teacher_id: str, tokenizer, train_ds) -> TeacherCache:
    """The cache, checked against the teacher, tokenizer and data this run uses (never silent reuse)."""
    cache = TeacherCache.open(path)
    cache.check(cache_identity(teacher_id=teacher_id, tokenizer=tokenizer, train_ds=train_ds))
    return cache


def distill_student(*, name: str, spec: ModelParams, train: TrainParams, kd: KDParams, teacher_dir: Path,
                    tokenizer_dir: Path, tokenized_dir: Path, out_dir: Path, ckpt_dir: Path, live_dir: Path,
                    teacher_outputs_dir: Path = paths.TEACHER_OUTPUTS_DIR, resume_from: Optional[Path] = None,
                    on_step: Optional[Callable[[int], None]] = None) -> FitResult:
    """Train student `name` with the losses params give it (none: the label-only baseline)."""
    losses = kd.losses_of(name)
    needs = needs_of(losses)  # validates loss names before anything is loaded
    tokenized = load_tokenized(tokenized_dir)
    teacher_path = Path(teacher_dir)
    cached = uses_cache(kd, losses)
    needs_teacher_model = (losses and not cached) or spec.source == "shrink"
    if (losses or needs_teacher_model) and not (teacher_path / "config.json").is_file():
        raise ConfigError(f"{teacher_path}: no trained teacher here; run the train_teacher stage first")
    # The teacher's tokenizer: the tokenize stage trained it, or copied a pretrained teacher's.
    tokenizer = load_tokenizer(str(tokenizer_dir))
    # Which teacher this run learns from: part of the checkpoint fingerprint, checked against the cache.
    teacher_id = file_digest(teacher_path / "model.safetensors") if losses or spec.source == "shrink" else None
    cache = (open_teacher_cache(teacher_outputs_dir, teacher_id=teacher_id, tokenizer=tokenizer,
                                train_ds=tokenized["train"]) if cached else None)
    accelerator = make_accelerator(pick_device(train))
    # Attention weights exist only with eager attention; SDPA stays for everything else.
    attn = "eager" if "attentions" in needs else "sdpa"
    teacher = load_model(teacher_path, attn_implementation=attn) if needs_teacher_model else None
    model = build_model(spec, tokenizer, seed=train.seed, attn_implementation=attn, teacher=teacher)
    if teacher is not None and losses:
        check_same_vocab(teacher, model)
    if cache is not None and cache.manifest["vocab_size"] != model.config.vocab_size:
        raise ConfigError(f"{teacher_outputs_dir}: cached for a vocabulary of {cache.manifest['vocab_size']} "
                          f"tokens, but the student has {model.config.vocab_size}")
    teacher_config = teacher.config if teacher is not None else None
    objective = Objective.from_params(losses, kd, teacher_config, model.config)
    if cache is not None:
        log.info("%s: logit KD from cached teacher outputs %s (top-%d)", name, teacher_outputs_dir,
                 cache.manifest["k"])
        source = cache
    elif losses:
        source = freeze_teacher(teacher, kd.teacher_device or accelerator.device)
    else:
        source = None  # the teacher was only needed to shrink from
    del teacher
    used = {k: getattr(kd, k.split(".", 1)[1]) for d in objective.distillers.values() for k in d.param_keys}
    return _train_and_save(name=f"student_{name}", model=model, teacher=source, objective=objective,
                           tokenizer=tokenizer, tokenized=tokenized, spec=spec, train=train,
                           accelerator=accelerator, out_dir=out_dir, ckpt_dir=ckpt_dir, live_dir=live_dir,
                           resume_from=resume_from,
                           fingerprint_of={"spec": dataclasses.asdict(spec), "train": dataclasses.asdict(train),
                                           "losses": losses, "kd": used, "teacher": teacher_id,
                                           "cached": cache is not None},
                           on_step=on_step)


def cache_identity(*, teacher_id: str, tokenizer, train_ds, with_size: bool = True) -> dict:
    """What a teacher-outputs cache must have been made from: this teacher (`file_digest` of its
    weights), tokenizer and data (the cache records the number of examples itself; checks compare it too)."""
    vocab = json.dumps(sorted(tokenizer.get_vocab().items())).encode()
    identity = {"teacher": teacher_id,
                "tokenizer": hashlib.sha256(vocab).hexdigest()[:16], "data": train_ds._fingerprint}
    return identity | ({"n_examples": len(train_ds)} if with_size else {})


def write_teacher_outputs(*, params: TeacherOutputsParams, teacher_dir: Path, tokenizer_dir: Path,
                          tokenized_dir: Path, out_dir: Path) -> dict:
    """The teacher_outputs stage's worker: run the trained teacher once over the training split and
    store its top-k logits per target token (kd.teacher_cache), stamped with what it was made from."""
    teacher_path = Path(teacher_dir)
    if not (teacher_path / "config.json").is_file():
        raise ConfigError(f"{teacher_path}: no trained teacher here; run the train_teacher stage first")
    tokenized = load_tokenized(tokenized_dir)
    tokenizer = load_tokenizer(str(tokenizer_dir))
    device = torch.device(resolve_device(params.device, "teacher_outputs.device"))
    teacher = freeze_teacher(load_model(teacher_path), device)
    manifest = write_cache(out_dir, teacher=teacher, dataset=tokenized["train"], collate=make_collator(tokenizer),
                           batch_size=params.batch_size, k=params.top_k, device=device,
                           manifest=cache_identity(teacher_id=file_digest(teacher_path / "model.safetensors"),
                                                   tokenizer=tokenizer,
                                                   train_ds=tokenized["train"], with_size=False))
    log.info("cached top-%d teacher logits for %d tokens of %d examples in %s", manifest["k"],
             manifest["n_tokens"], manifest["n_examples"], out_dir)
    return manifest
