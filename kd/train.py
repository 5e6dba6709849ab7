"""The training loop shared by the teacher and every student.

AdamW with linear warmup and decay, gradient accumulation, optional bf16/fp16 autocast, validation
loss after each epoch with the best weights kept, and resumable checkpoints every
`train.checkpoint_every` optimizer steps. Resuming restores model, optimizer, scheduler, RNG state
and the position inside the epoch, so an interrupted run ends with the same weights as an
uninterrupted one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import DataCollatorForSeq2Seq

from kd import checkpoint
from kd.errors import ConfigError
from kd.params import TrainParams

log = logging.getLogger(__name__)


def lr_factor(step: int, *, warmup_steps: int, total_steps: int) -> float:
    """Linear warmup from 0 to 1 over `warmup_steps`, then linear decay to 0 at `total_steps`."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    remaining = max(total_steps - warmup_steps, 1)
    return max(0.0, (total_steps - step) / remaining)


def set_seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def make_collator(tokenizer) -> DataCollatorForSeq2Seq:
    # Pads labels with -100 so padded target positions are ignored by every loss.
    return DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, return_tensors="pt")


def epoch_loader(ds, *, batch_size: int, collate, seed: int, epoch: int, shuffle: bool = True) -> DataLoader:
    """A loader whose order depends only on (seed, epoch), so a resumed epoch replays the same batches."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    cols = ["input_ids", "attention_mask", "labels"]
    return DataLoader(ds.select_columns(cols), batch_size=batch_size, shuffle=shuffle,
                      generator=gen, collate_fn=collate)


def autocast(device: torch.device, precision: str):
    if precision == "no":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass
class FitResult:
    best_state: dict[str, torch.Tensor]
    best_val_loss: float
    best_epoch: int
    steps: int
    history: list[dict]
    resumed_from_step: int


def evaluate(model, loader, device, precision: str) -> float:
    """Token-weighted label cross-entropy over the whole loader."""
    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad():
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            with autocast(device, precision):
                out = model(**batch)
            n = int((batch["labels"] != -100).sum())
            total += float(out.loss) * n
            tokens += n
    model.train()
    return total / max(tokens, 1)


def fit(
    *,
    model,
    objective,
    teacher,
    train_ds,
    val_ds,
    collate,
    epochs: int,
    lr: float,
    params: TrainParams,
    device: torch.device,
    ckpt_dir: Path,
    run_fingerprint: str,
    live=None,
    resume_from: Optional[Path] = None,
    on_step: Optional[Callable[[int], None]] = None,
    desc: str = "train",
) -> FitResult:
    """Train `model` on `objective(model, teacher, batch)`; returns the best weights by validation loss.

    Resumes from `resume_from`, or else from `ckpt_dir/last` when that checkpoint belongs to the same
    run (same fingerprint). `on_step(step)` is called after every optimizer step.
    """
    if params.precision == "fp16" and device.type != "cuda":
        raise ConfigError("params: train.precision 'fp16' needs a CUDA device; use 'bf16' or 'no' on CPU")
    set_seed(params.seed)
    model.to(device).train()
    objective.to(device)
    if teacher is not None:
        teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)

    trainable = [p for p in list(model.parameters()) + list(objective.parameters()) if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=params.weight_decay)
    batches_per_epoch = math.ceil(len(train_ds) / params.batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / params.grad_accum)
    total_steps = steps_per_epoch * epochs
    warmup = int(params.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warmup_steps=warmup, total_steps=total_steps)
    )
    # fp16 overflows without loss scaling; bf16 and fp32 do not need it.
    scaler = torch.amp.GradScaler(enabled=params.precision == "fp16")

    state = {"step": 0, "epoch": 0, "batch": 0, "best_val_loss": math.inf, "best_epoch": -1,
             "history": [], "fingerprint": run_fingerprint}
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    source = Path(resume_from) if resume_from else Path(ckpt_dir) / checkpoint.LAST
    saved = checkpoint.read_state(source) if source.is_dir() else None
    if resume_from and saved is None:
        raise ConfigError(f"--resume-from-checkpoint: {resume_from} is not a checkpoint (no state.json)")
    if saved is not None and saved.get("fingerprint") != run_fingerprint and not resume_from:
        log.warning("ignoring checkpoint %s: it belongs to different params", source)
        saved = None
    if saved is not None:
        state, best_state = checkpoint.load(source, model=model, objective=objective,
                                            optimizer=optimizer, scheduler=scheduler)
        log.info("resumed from %s at step %d (epoch %d, batch %d)", source, state["step"],
                 state["epoch"], state["batch"])
    resumed_from_step = state["step"]

    val_loader = epoch_loader(val_ds, batch_size=params.batch_size, collate=collate,
                              seed=params.seed, epoch=0, shuffle=False)
    # Redraw often on a terminal, rarely into a log file (DVC, nohup) so logs stay readable.
    bar = tqdm(total=total_steps, initial=state["step"], desc=desc, dynamic_ncols=True,
               mininterval=0.5 if sys.stderr.isatty() else 30.0)
    for epoch in range(state["epoch"], epochs):
        loader = epoch_loader(train_ds, batch_size=params.batch_size, collate=collate,
                              seed=params.seed, epoch=epoch)
        skip = state["batch"] if epoch == state["epoch"] else 0
        running: dict[str, float] = {}
        for i, batch in enumerate(loader):
            if i < skip:  # already trained on before the interruption
                continue
            batch = {k: v.to(device) for k, v in batch.items()}
            with autocast(device, params.precision):
                loss, parts = objective(model, teacher, batch)
            scaler.scale(loss / params.grad_accum).backward()
            for k, v in parts.items():
                running[k] = running.get(k, 0.0) + v / params.grad_accum
            last_batch = i + 1 == batches_per_epoch
            if (i + 1) % params.grad_accum and not last_batch:
                continue
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(trainable, params.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            state["step"] += 1
            state["batch"] = i + 1
            state["epoch"] = epoch
            bar.update(1)
            bar.set_postfix(loss=f"{running.get('total', 0.0):.3f}", refresh=False)
            if live is not None:
                live.step = state["step"]
                for k, v in running.items():
                    live.log_metric(f"train/{k}", v)
                live.log_metric("train/lr", scheduler.get_last_lr()[0])
            running = {}
            if last_batch:
                val_loss = evaluate(model, val_loader, device, params.precision)
                state["history"].append({"epoch": epoch, "step": state["step"], "val_loss": val_loss})
                log.info("epoch %d step %d val_loss %.4f", epoch, state["step"], val_loss)
                if live is not None:
                    live.log_metric("val/loss", val_loss)
                if val_loss < state["best_val_loss"]:
                    state["best_val_loss"], state["best_epoch"] = val_loss, epoch
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                state["epoch"], state["batch"] = epoch + 1, 0
            if live is not None:
                live.next_step()
            if state["step"] % params.checkpoint_every == 0 or last_batch:
                checkpoint.save(ckpt_dir, model=model, objective=objective, optimizer=optimizer,
                                scheduler=scheduler, best_state=best_state, state=state)
            if on_step is not None:
                on_step(state["step"])
    bar.close()
    return FitResult(best_state=best_state, best_val_loss=state["best_val_loss"],
                     best_epoch=state["best_epoch"], steps=state["step"], history=state["history"],
                     resumed_from_step=resumed_from_step)


def finish(ckpt_dir: Path) -> None:
    """Training completed: drop the resumable state so a later rerun starts fresh.

    The directory itself stays (DVC declares it as a persistent output)."""
    shutil.rmtree(Path(ckpt_dir) / checkpoint.LAST, ignore_errors=True)
    Path(ckpt_dir).mkdir(parents=True, exist_ok=True)
