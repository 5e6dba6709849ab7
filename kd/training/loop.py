"""The training loop shared by the teacher and every student.

AdamW (no weight decay on biases and norm weights) with linear warmup and decay, gradient
accumulation, optional bf16/fp16 autocast, gradient checkpointing, validation loss after each epoch
with the best weights kept (lowest loss, or with a `Scorer` the highest validation score, see
`train.select_by`), and resumable checkpoints every `train.checkpoint_every` optimizer steps
and at the end of each epoch. Resuming restores model, optimizer, scheduler, loss scaler, RNG state
and the position inside the epoch, so an interrupted run ends with the same weights as an
uninterrupted one.

The seams: `TrainState` is the progress a checkpoint records; `TrainLoop.train_step` is one optimizer
step (`backward` per micro-batch, then `optimizer_step`); a `Hook` sees the loop at the start, after
every optimizer step, after each validation and at the end, and may stop it (`loop.should_stop`).
Built in: the progress bar and checkpointing; logging is a hook the caller brings (kd.training.run's dvclive).

Several processes (`accelerate launch`, DDP): each process trains on its own shard of every epoch's
permutation with `train.batch_size` examples per step (global batch = batch_size x processes x
grad_accum); gradients are averaged by DDP, validation loss is summed over all processes, a
validation score is computed by every process alike on the same examples (no communication), and
only the main process writes checkpoints (and, in kd.training.run, logs metrics).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional, Protocol, Sequence

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from kd.training import checkpoint
from kd.errors import ConfigError
from kd.io import previous_version
from kd.models.modeling import resolve_precision
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


@dataclass(frozen=True)
class PadCollator:
    """Rows of token lists -> (B, L) int64 tensors, each column padded to its longest row: input_ids with
    the pad token, attention_mask with 0, labels with -100 so padded target positions are ignored by
    every loss. The tensors DataCollatorForSeq2Seq makes (a test checks it), without its per-batch
    tokenizer.pad machinery, which costs a small model's step more than its backward pass of a layer."""

    pad_token_id: int
    padding_side: str = "right"

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        fill = {"input_ids": self.pad_token_id, "attention_mask": 0, "labels": -100}
        batch = {}
        for key in rows[0]:
            if key not in fill:
                raise KeyError(f"PadCollator pads {sorted(fill)}, not {key!r}")
            values = [row[key] for row in rows]
            width = max(len(v) for v in values)
            padded = torch.full((len(values), width), fill[key], dtype=torch.long)  # (B, L)
            for i, v in enumerate(values):
                where = slice(0, len(v)) if self.padding_side == "right" else slice(width - len(v), width)
                padded[i, where] = torch.as_tensor(v, dtype=torch.long)
            batch[key] = padded
        return batch


def make_collator(tokenizer) -> PadCollator:
    return PadCollator(tokenizer.pad_token_id, tokenizer.padding_side)


class Indexed(Dataset):
    """Rows of `ds` (input_ids, attention_mask, labels) in the order `indices`, each tagged with its
    position in `ds` as "idx", which the cached-teacher objective uses to find the teacher's outputs."""

    COLUMNS = ["input_ids", "attention_mask", "labels"]

    def __init__(self, ds, indices: list[int]):
        self.ds = ds.select_columns(self.COLUMNS)
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        j = self.indices[i]
        return dict(self.ds[j], idx=j)


def with_index(collate):
    """Wraps a collator so the "idx" of each row comes out as a (B,) tensor beside the padded batch."""

    def collate_indexed(rows: list[dict]) -> dict:
        idx = torch.tensor([r.pop("idx") for r in rows], dtype=torch.long)
        return dict(collate(rows), idx=idx)

    return collate_indexed


def shard_order(n: int, *, seed: int, epoch: int, shuffle: bool, rank: int = 0, world: int = 1,
                pad: bool = True, lengths: Optional[Sequence[int]] = None, batch_size: int = 1) -> list[int]:
    """This process's example indices for one epoch; the order depends only on (seed, epoch), so a
    resumed epoch replays the same batches. With `world` processes the permutation is dealt out
    round-robin; `pad` repeats its head so every process gets the same number of batches (DDP steps
    in lockstep), as torch's DistributedSampler does. With `lengths` (and `shuffle`) the permutation is
    regrouped by length first (`length_grouped`), in global batches of `batch_size * world`, so each
    process's batches hold examples of similar length."""
    generator = _epoch_generator(seed, epoch)
    order = torch.randperm(n, generator=generator).tolist() if shuffle else list(range(n))
    if shuffle and lengths is not None:
        order = length_grouped(order, lengths, batch_size=batch_size * world, generator=generator)
    if world > 1:
        if pad and n % world:
            order += order[: world - n % world]
        order = order[rank::world]
    return order


MEGABATCH = 50  # batches per length-sorted group: enough to find similar lengths, few enough to stay random


def length_grouped(order: list[int], lengths: Sequence[int], *, batch_size: int,
                   generator: torch.Generator) -> list[int]:
    """`order` cut into megabatches of MEGABATCH batches, each sorted by length (longest first) and cut
    into batches, then the full batches shuffled and the one short batch (if any) kept last, so batch
    boundaries stay where a loader of `batch_size` puts them. The Hugging Face Trainer's group_by_length:
    a batch pads to about its own length instead of its longest member's."""
    mega = batch_size * MEGABATCH
    batches = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start:start + mega], key=lambda i: -lengths[i])  # stable: ties keep the shuffle
        batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    short = [batches.pop()] if batches and len(batches[-1]) < batch_size else []
    shuffled = [batches[b] for b in torch.randperm(len(batches), generator=generator).tolist()]
    return [i for batch in shuffled + short for i in batch]


def source_lengths(ds) -> list[int]:
    """Each row's input length, read a thousand rows at a time (no whole-column copy at real scale)."""
    return [len(ids) for rows in ds.select_columns(["input_ids"]).iter(batch_size=1000)
            for ids in rows["input_ids"]]


def epoch_loader(ds, *, batch_size: int, collate, seed: int, epoch: int, shuffle: bool = True,
                 rank: int = 0, world: int = 1, start: int = 0,
                 lengths: Optional[Sequence[int]] = None) -> DataLoader:
    """Batches of this process's shard of `ds` for one epoch, from batch `start` on (a resumed epoch
    does not even load the batches it trained on before); each batch carries "idx" (B,). `lengths`
    (`source_lengths(ds)`) groups the batches by length (`train.group_by_length`)."""
    order = shard_order(len(ds), seed=seed, epoch=epoch, shuffle=shuffle, rank=rank, world=world,
                        pad=shuffle, lengths=lengths, batch_size=batch_size)[start * batch_size:]
    # A loader without a generator draws its base seed from the global RNG, which would shift
    # dropout after a resume; this one never touches it.
    return DataLoader(Indexed(ds, order), batch_size=batch_size, shuffle=False,
                      generator=_epoch_generator(seed, epoch), collate_fn=with_index(collate))


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def make_accelerator(device: Optional[torch.device] = None):
    """One Accelerator per process. Launched by `accelerate launch` it knows its rank and GPU;
    launched by `python` it is a single process on `device` (None: a GPU when there is one)."""
    from accelerate import Accelerator

    return Accelerator(cpu=device is not None and device.type == "cpu")


def autocast(device: torch.device, precision: str):
    if precision == "no":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def param_groups(model, objective, weight_decay: float) -> list[dict]:
    """AdamW groups of the trainable parameters of `model` and `objective` (its projections): weight
    decay on weights, none on biases and normalisation weights, as the Hugging Face Trainer does.
    Decay pulls toward 0: for a norm's gain (T5LayerNorm starts at 1) that scales the whole layer's
    output down, and biases are offsets with nothing to regularise."""
    exempt = {id(p) for part in (model, objective) for module in part.modules()
              for name, p in module.named_parameters(recurse=False) if name == "bias" or _is_norm(module)}
    trainable = [p for part in (model, objective) for p in part.parameters() if p.requires_grad]
    groups = [{"params": [p for p in trainable if id(p) not in exempt], "weight_decay": weight_decay},
              {"params": [p for p in trainable if id(p) in exempt], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def _is_norm(module) -> bool:
    # By class name, as the HF Trainer matches names: LayerNorm, RMSNorm, T5LayerNorm, ...
    return "norm" in type(module).__name__.lower()


@dataclass
class FitResult:
    best_state: dict[str, torch.Tensor]
    best_val_loss: float
    best_epoch: int
    steps: int
    history: list[dict]
    resumed_from_step: int
    # Throughput of this process's training loop (validation and hooks excluded): optimizer steps
    # run here (not counting steps before a resume), tokens (real source + target) and seconds.
    steps_run: int = 0
    tokens: int = 0
    seconds: float = 0.0
    # What the best epoch was selected on ("loss" or a Scorer's name) and its score (None for "loss").
    select_by: str = "loss"
    best_score: Optional[float] = None
    best_step: int = 0
    stopped_early: bool = False  # validation patience ended it before its step cap
    step_cap: int = 0  # the steps it would have run without early stopping
    examples_seen: int = 0  # training examples over all processes (resumed steps included)


class Scorer(Protocol):
    """A validation score to select the best epoch by instead of the loss (`train.select_by`; kd.training.run
    builds the one for "rougeLsum"); higher is better, and ties keep the earlier epoch.

    fit calls it after each epoch's validation loss with the model being trained (not a DDP wrapper)
    and the whole validation split, and returns the score (training resumes in train mode). With
    several processes every process calls it alike, so it must give every process the same score
    without communicating. The score goes into `TrainState.history` as "val_<name>"."""

    name: str

    def __call__(self, model, val_ds) -> float: ...


def evaluate(model, loader, device, precision: str, accelerator=None) -> float:
    """Token-weighted label cross-entropy over the whole loader (and over every process's shard)."""
    model.eval()
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # (loss x tokens, tokens)
    with torch.no_grad():
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items() if k != "idx"}
            with autocast(device, precision):
                out = model(**batch)
            n = (batch["labels"] != -100).sum()
            sums += torch.stack([out.loss.double() * n, n.double()])
    if accelerator is not None and accelerator.num_processes > 1:
        sums = accelerator.reduce(sums, reduction="sum")
    model.train()
    return float(sums[0] / sums[1].clamp(min=1))


# ----------------------------------------------------------------------------- state and hooks


@dataclass(kw_only=True)
class TrainState:
    """Where training is: what a checkpoint's state.json records, so a resumed run continues exactly here."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # the epoch in progress
    batch: int = 0  # micro-batches of that epoch trained on (this process's shard)
    best_val_loss: float = math.inf  # the validation loss of the best epoch, whatever it was selected on
    best_epoch: int = -1
    best_step: int = 0  # the optimizer step of the best check
    stale_checks: int = 0  # checks in a row since the best one (early stopping's count)
    stopped_early: bool = False  # `patience` checks without a gain ended training before the cap
    select_by: str = "loss"  # what the best epoch is selected on: "loss" or a Scorer's name
    best_score: Optional[float] = None  # the best epoch's score (None when selecting on the loss)
    # {"epoch", "step", "val_loss"} per epoch, and "val_<scorer name>" when a Scorer selects
    history: list[dict] = field(default_factory=list)
    # Training cost of the whole run, this process, carried across resumes: real tokens (source +
    # target) trained on, and seconds spent in optimizer steps.
    train_tokens: int = 0
    train_seconds: float = 0.0
    fingerprint: str  # of the settings the run belongs to (kd.training.checkpoint.fingerprint)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, saved: dict) -> "TrainState":
        # A field the saved state lacks (e.g. the cost counters) starts from its default, so any
        # state.json that has the required fields resumes.
        return cls(**{f.name: saved[f.name] for f in dataclasses.fields(cls)
                      if f.name in saved or (f.default is dataclasses.MISSING
                                             and f.default_factory is dataclasses.MISSING)})


class Hook:
    """A seam of the training loop: every method is a no-op; override what you need. A hook ends
    training after the current step by setting `loop.should_stop = True`. Hooks run on every
    process, so with several processes every one must stop at the same step (DDP steps in lockstep)."""

    def on_train_start(self, loop: TrainLoop) -> None:
        """Before the first step, after any resume: `loop.state.step` is where training continues."""

    def on_step_end(self, loop: TrainLoop, logs: dict[str, float]) -> None:
        """After every optimizer step (`loop.state.step` counts it); `logs` holds the loss parts
        averaged over its micro-batches ("ce", "total", one per distillation loss) and "lr"."""

    def on_validation_end(self, loop: TrainLoop, val_loss: float) -> None:
        """After each validation (at an epoch's end, or every `validate_every` steps), right after that
        step's `on_step_end`; `loop.state` already records it (history, with the score when
        `loop.scorer` selects; best; early stopping)."""

    def on_train_end(self, loop: TrainLoop) -> None:
        """After the last step; not called when an exception ends training."""


class ProgressBar(Hook):
    """tqdm over optimizer steps, main process only, advanced on real optimizer steps."""

    def __init__(self, desc: str):
        self.desc, self.bar = desc, None

    def on_train_start(self, loop: TrainLoop) -> None:
        # Redraw often on a terminal, rarely into a log file (DVC, nohup) so logs stay readable.
        self.bar = tqdm(total=loop.last_step, initial=loop.state.step, desc=self.desc, dynamic_ncols=True,
                        disable=not loop.is_main, mininterval=0.5 if sys.stderr.isatty() else 30.0)

    def on_step_end(self, loop: TrainLoop, logs: dict[str, float]) -> None:
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{logs.get('total', 0.0):.3f}", refresh=False)

    def on_train_end(self, loop: TrainLoop) -> None:
        self.bar.close()


class Checkpointer(Hook):
    """Writes the resumable checkpoint `ckpt_dir/last` every `every` optimizer steps and after each
    epoch's validation. fit runs it on the main process only and after every other hook, so no
    checkpoint counts a step that a hook (dvclive) has not logged yet."""

    def __init__(self, ckpt_dir: Path, every: int):
        self.ckpt_dir, self.every = Path(ckpt_dir), every

    def on_step_end(self, loop: TrainLoop, logs: dict[str, float]) -> None:
        # An epoch's last step is saved after its validation: a resume must not skip the validation.
        if loop.state.step % self.every == 0 and not loop.validation_due:
            self.save(loop)

    def on_validation_end(self, loop: TrainLoop, val_loss: float) -> None:
        self.save(loop)

    def save(self, loop: TrainLoop) -> None:
        checkpoint.save(self.ckpt_dir, model=loop.model, objective=loop.objective, optimizer=loop.optimizer,
                        scheduler=loop.scheduler, scaler=loop.scaler, best_state=loop.best_state,
                        state=loop.state.to_dict())


# ----------------------------------------------------------------------------- the loop


class TrainLoop:
    """One fit's moving parts, as hooks see them.

    model        the weights being trained, saved and evaluated; `ddp_model` wraps it for the
                 training step when several processes train (it is `model` otherwise)
    objective    loss(model, teacher, batch); its own parameters (projections) train too
    optimizer, scheduler, scaler   AdamW (see param_groups), LR warmup and decay, fp16 loss scaling
    state        TrainState: the progress a checkpoint records
    best_state   the weights of the best validation so far
    scorer       the Scorer the best epoch is selected by, or None: the lowest validation loss
    last_step    where training ends: the last step of `epochs`, or `max_steps` when that comes first
    should_stop  a hook sets it to end training after the current step
    """

    def __init__(self, *, model, objective, teacher, epochs: int, lr: float, n_train: int, params: TrainParams,
                 accelerator, run_fingerprint: str, max_steps: Optional[int], scorer: Optional[Scorer] = None,
                 steps: Optional[int] = None, validations: Optional[int] = None, patience: Optional[int] = None):
        if (scorer.name if scorer is not None else "loss") != params.select_by:
            raise ValueError(f"train.select_by is {params.select_by!r} but the scorer is "
                             f"{getattr(scorer, 'name', None)!r}; kd.training.run.make_scorer builds the right one")
        self.teacher, self.epochs, self.params, self.accelerator = teacher, epochs, params, accelerator
        self.scorer = scorer
        self.device = accelerator.device
        self.precision = resolve_precision(params.precision, self.device)
        self.world = accelerator.num_processes
        set_seed(params.seed)
        if params.gradient_checkpointing:
            # Non-reentrant checkpointing works with DDP and with inputs that need no grad.
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        self.model = model.to(self.device).train()
        self.objective = objective.to(self.device)
        groups = param_groups(model, objective, params.weight_decay)
        self.trainable = [p for g in groups for p in g["params"]]
        self.loss_params = [p for p in objective.parameters() if p.requires_grad]  # e.g. feature projections
        # The fused kernel (CPU and CUDA) does the whole update in one pass: ~15% faster steps on CPU.
        self.optimizer = torch.optim.AdamW(groups, lr=lr, fused=self.device.type in ("cpu", "cuda"))
        # DDP wraps the model for the training step only; `model` itself is saved and evaluated.
        self.ddp_model = accelerator.prepare_model(model) if self.world > 1 else model

        per_process = math.ceil(n_train / self.world)  # this process's share, padded (see shard_order)
        self.batches_per_epoch = math.ceil(per_process / params.batch_size)
        steps_per_epoch = math.ceil(self.batches_per_epoch / params.grad_accum)
        if steps is not None:  # a step budget: as many passes as it takes, the last one cut short
            self.epochs = epochs = math.ceil(steps / steps_per_epoch)
        self.total_steps = steps if steps is not None else steps_per_epoch * epochs
        self.last_step = min(self.total_steps, max_steps or self.total_steps)
        # Checks spread over the step cap (None: after each pass over the data), and how many checks in
        # a row without a gain end training (None: never before the cap).
        self.validate_every = math.ceil(self.total_steps / validations) if validations else None
        self.patience = patience
        warmup = int(params.warmup_ratio * self.total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, warmup_steps=warmup, total_steps=self.total_steps))
        # fp16 overflows without loss scaling; bf16 and fp32 do not need it.
        self.scaler = torch.amp.GradScaler(enabled=self.precision == "fp16")

        self.state = TrainState(fingerprint=run_fingerprint, select_by=params.select_by)
        self.best_state = _weights(model)
        self.hooks: list[Hook] = []
        self.should_stop = False
        self.tokens, self.seconds = 0, 0.0  # throughput of this process (FitResult)

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def examples_seen(self) -> int:
        """Training examples of the whole run, every process and resumed steps included."""
        return self.state.step * self.params.batch_size * self.params.grad_accum * self.world

    @property
    def validation_due(self) -> bool:
        """Validation comes next: the step just taken was the step budget's last, or a multiple of
        `validate_every`, or (without it) its epoch's last."""
        s = self.state
        if s.step == self.total_steps:
            return True
        if self.validate_every is not None:
            return s.step % self.validate_every == 0
        return s.batch == self.batches_per_epoch

    def resume(self, source: Path) -> None:
        """Restore weights, optimizer, scheduler, scaler, RNG and state from checkpoint `source`."""
        saved, self.best_state = checkpoint.load(source, model=self.model, objective=self.objective,
                                                 optimizer=self.optimizer, scheduler=self.scheduler,
                                                 scaler=self.scaler)
        # Checkpoints written from here on belong to this run, even when `source` was another's.
        state = dataclasses.replace(TrainState.from_dict(saved), fingerprint=self.state.fingerprint)
        if state.select_by != self.params.select_by:  # an explicit `source` that selected otherwise
            log.warning("checkpoint %s selected epochs by %s, this run by %s: the best so far is forgotten",
                        source, state.select_by, self.params.select_by)
            state = dataclasses.replace(state, select_by=self.params.select_by, best_val_loss=math.inf,
                                        best_epoch=-1, best_score=None)
            self.best_state = _weights(self.model)
        self.state = state

    def run(self, train_ds, val_ds, collate) -> None:
        """Train from `state` to `last_step`, or until a hook stops it, validating after each epoch. A step
        budget of 0 validates the model once, as it is, and trains nothing."""
        p = self.params
        val_loader = epoch_loader(val_ds, batch_size=p.batch_size, collate=collate, seed=p.seed, epoch=0,
                                  shuffle=False, rank=self.accelerator.process_index, world=self.world)
        self.lengths = source_lengths(train_ds) if p.group_by_length else None
        self._call("on_train_start")
        if self.total_steps == 0 and not self.state.history:  # a model taken as it is (teacher.steps: 0)
            self.validate(val_loader, val_ds)
        while self.state.epoch < self.epochs and not self._stopping():
            self._train_epoch(train_ds, collate, val_loader, val_ds)
        self._call("on_train_end")

    def _train_epoch(self, train_ds, collate, val_loader, val_ds) -> None:
        """The rest of epoch `state.epoch`, validating when due; returns early when stopping."""
        p, s = self.params, self.state
        loader = epoch_loader(train_ds, batch_size=p.batch_size, collate=collate, seed=p.seed, epoch=s.epoch,
                              rank=self.accelerator.process_index, world=self.world, start=s.batch,
                              lengths=self.lengths)
        # A resumed epoch starts on a step boundary, so the groups are those of an uninterrupted run.
        for micro_batches in _groups(loader, p.grad_accum):
            logs = self.train_step(micro_batches)
            s.step += 1
            s.batch += len(micro_batches)
            self._call("on_step_end", logs)
            if self.validation_due:
                self.validate(val_loader, val_ds)
            if self._stopping():
                return
        s.epoch, s.batch = s.epoch + 1, 0

    def train_step(self, micro_batches: list[dict]) -> dict[str, float]:
        """One optimizer step over `micro_batches` (host tensors): forward and backward of each, then
        the update. Returns the loss parts averaged over the step's micro-batches, and the LR."""
        tick = time.perf_counter()
        logs: dict[str, float] = {}
        for k, batch in enumerate(micro_batches):
            # counted on the host copy: no device sync
            tokens = int(batch["attention_mask"].sum()) + int((batch["labels"] != -100).sum())
            self.tokens += tokens
            self.state.train_tokens += tokens
            parts = self.backward({n: v.to(self.device) for n, v in batch.items()},
                                  sync=k == len(micro_batches) - 1)
            for name, value in parts.items():
                logs[name] = logs.get(name, 0.0) + value / self.params.grad_accum
        self.optimizer_step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # honest timing: wait for the step's kernels
        elapsed = time.perf_counter() - tick
        self.seconds += elapsed
        self.state.train_seconds += elapsed
        return logs | {"lr": self.scheduler.get_last_lr()[0]}

    def backward(self, batch: dict, *, sync: bool) -> dict[str, float]:
        """Forward and backward of one micro-batch; its gradient adds to the step's. Only the step's
        last micro-batch (`sync`) pays for DDP's gradient all-reduce."""
        accumulating = self.world > 1 and not sync
        with self.accelerator.no_sync(self.ddp_model) if accumulating else contextlib.nullcontext():
            with autocast(self.device, self.precision):
                loss, parts = self.objective(self.ddp_model, self.teacher, batch)
            self.scaler.scale(loss / self.params.grad_accum).backward()
        return parts

    def optimizer_step(self) -> None:
        """Average the loss's own gradients over processes, unscale, clip, update, advance the LR."""
        if self.world > 1:  # parameters of the loss itself (projections) live outside DDP
            for p in self.loss_params:
                if p.grad is not None:
                    p.grad.copy_(self.accelerator.reduce(p.grad, reduction="mean"))
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.trainable, self.params.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()

    def validate(self, val_loader, val_ds) -> None:
        """Validation loss (and the scorer's score) after step `state.step`: keep the best weights
        (lowest loss, or highest score, the earlier check on a tie); after `patience` checks in a row
        without a gain, stop."""
        s = self.state
        val_loss = evaluate(self.model, val_loader, self.device, self.precision, self.accelerator)
        entry = {"epoch": s.epoch, "step": s.step, "val_loss": val_loss}
        if self.scorer is None:
            better, score = val_loss < s.best_val_loss, None
        else:
            score = float(self.scorer(self.model, val_ds))
            self.model.train()
            entry[f"val_{self.scorer.name}"] = score
            better = s.best_score is None or score > s.best_score
        s.history.append(entry)
        if self.is_main:
            log.info("epoch %d step %d %s", s.epoch, s.step,
                     " ".join(f"{k} {v:.4f}" for k, v in entry.items() if k.startswith("val_")))
        if better:
            s.best_val_loss, s.best_epoch, s.best_score, s.best_step = val_loss, s.epoch, score, s.step
            s.stale_checks = 0
            self.best_state = _weights(self.model)
        else:
            s.stale_checks += 1
        if self.patience is not None and s.stale_checks >= self.patience and s.step < self.last_step:
            s.stopped_early = self.should_stop = True
            if self.is_main:
                log.info("stopping early at step %d: %d checks without a gain since step %d", s.step,
                         s.stale_checks, s.best_step)
        self._call("on_validation_end", val_loss)

    def _stopping(self) -> bool:
        return self.should_stop or self.state.stopped_early or self.state.step >= self.last_step

    def _call(self, event: str, *args) -> None:
        for hook in self.hooks:
            getattr(hook, event)(self, *args)


def _groups(batches: Iterable[dict], n: int) -> Iterator[list[dict]]:
    """Consecutive groups of `n` micro-batches (the last may be shorter): one optimizer step each."""
    group: list[dict] = []
    for batch in batches:
        group.append(batch)
        if len(group) == n:
            yield group
            group = []
    if group:
        yield group


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def checkpoint_to_resume(ckpt_dir: Path, resume_from: Optional[Path], run_fingerprint: str) -> Optional[Path]:
    """`resume_from` (which must be a checkpoint), else `ckpt_dir/last` when it belongs to this run
    (same fingerprint), else None."""
    if resume_from:
        if checkpoint.read_state(resume_from) is None:
            raise ConfigError(f"--resume-from-checkpoint: {resume_from} is not a checkpoint (no state.json)")
        return Path(resume_from)
    last = checkpoint.find_last(ckpt_dir)
    saved = checkpoint.read_state(last)
    if saved is None:
        return None
    if saved.get("fingerprint") != run_fingerprint:
        log.warning("ignoring checkpoint %s: it belongs to different params", last)
        return None
    return last


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
    ckpt_dir: Path,
    run_fingerprint: str,
    hooks: Sequence[Hook] = (),
    max_steps: int | None = None,
    steps: int | None = None,
    validations: int | None = None,
    patience: int | None = None,
    resume_from: Path | None = None,
    desc: str = "train",
    accelerator=None,
    scorer: Scorer | None = None,
) -> FitResult:
    """Train `model` on `objective(model, teacher, batch)`; returns the best weights by validation loss,
    or by `scorer`'s validation score when `params.select_by` names one (kd.training.run.make_scorer).

    Resumes from `resume_from`, or else from `ckpt_dir/last` when that checkpoint belongs to the same
    run (same fingerprint). `teacher` goes to the objective untouched (None, a live teacher or a
    cache of its outputs). `hooks` run in order after the progress bar and before the checkpointer,
    so no checkpoint counts a step a hook has not seen. `steps` replaces `epochs` by a budget of
    optimizer steps (the schedule spans it; validation after every pass and at its last step, or with
    `validations` that many checks spread over the budget). `patience` stops training after that many
    checks in a row without a gain (the result says `stopped_early`).
    `max_steps` ends training after that many optimizer steps in all (resumed ones included); the LR
    schedule still spans the whole run, so such a run is the start of the full one. The accelerator decides the device (default: make_accelerator()).
    """
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"fit: max_steps must be >= 1, got {max_steps}")
    accelerator = accelerator or make_accelerator()
    loop = TrainLoop(model=model, objective=objective, teacher=teacher, epochs=epochs, lr=lr,
                     n_train=len(train_ds), params=params, accelerator=accelerator,
                     run_fingerprint=run_fingerprint, max_steps=max_steps, scorer=scorer, steps=steps,
                     validations=validations, patience=patience)
    source = checkpoint_to_resume(ckpt_dir, resume_from, run_fingerprint)
    if source is not None:
        loop.resume(source)
        log.info("resumed from %s at step %d (epoch %d, batch %d)", source, loop.state.step, loop.state.epoch,
                 loop.state.batch)
    resumed_from_step = loop.state.step
    checkpointer = [Checkpointer(ckpt_dir, params.checkpoint_every)] if loop.is_main else []
    loop.hooks = [ProgressBar(desc), *hooks, *checkpointer]
    loop.run(train_ds, val_ds, collate)
    if params.gradient_checkpointing:
        model.activation_checkpointing_disable()
    accelerator.wait_for_everyone()
    s = loop.state
    return FitResult(best_state=loop.best_state, best_val_loss=s.best_val_loss, best_epoch=s.best_epoch,
                     steps=s.step, history=s.history, resumed_from_step=resumed_from_step,
                     steps_run=s.step - resumed_from_step, tokens=loop.tokens, seconds=loop.seconds,
                     select_by=s.select_by, best_score=s.best_score, best_step=s.best_step,
                     stopped_early=s.stopped_early, step_cap=loop.total_steps,
                     examples_seen=loop.examples_seen)


def finish(ckpt_dir: Path) -> None:
    """Training completed: drop the resumable state so a later rerun starts fresh.

    Removes `last/` and any copy of it kd.io.atomic_dir left aside; the directory itself stays."""
    last = Path(ckpt_dir) / checkpoint.LAST
    for path in (last, previous_version(last)):
        shutil.rmtree(path, ignore_errors=True)
    Path(ckpt_dir).mkdir(parents=True, exist_ok=True)
