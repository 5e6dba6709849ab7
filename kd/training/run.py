"""One training run, teacher or student: load the tokenized data, fit with metrics to dvclive (keeping
the epoch `train.select_by` selects, by loss or by validation ROUGE), save the best weights atomically.

Shared by kd.teacher.train (the teacher stage) and kd.students.distill (the students); imports neither the losses nor
the teacher cache, so the teacher's stage does not depend on them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Optional, Sequence

import datasets
import torch
from dvclive import Live
from dvclive.plots import Metric
from dvclive.studio import get_dvc_studio_config
from transformers import GenerationConfig

from kd.training import checkpoint
from kd.errors import ConfigError
from kd.io import atomic_dir, atomic_write_json, atomic_write_text
from kd.models.modeling import generate_kwargs
from kd.params import ModelParams, TrainParams
from kd.training.loop import FitResult, Hook, TrainLoop, finish, fit, make_collator

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


def saved_generation_config(model, **decoding) -> GenerationConfig:
    """The generation config a saved model carries: its special tokens only, no decoding defaults
    (plus `decoding`, e.g. num_beams, when generating with it)."""
    return GenerationConfig(
        decoder_start_token_id=model.config.decoder_start_token_id,
        eos_token_id=model.config.eos_token_id,
        pad_token_id=model.config.pad_token_id,
        **decoding,
    )


def save_model_dir(model, tokenizer, out_dir: Path, extra_files: Optional[dict[str, dict]] = None) -> None:
    """save_pretrained into a temp dir, then rename: a crash never leaves half a model. `extra_files`
    (name -> JSON object, e.g. a student's recipe.json) go into the same directory, in the same swap."""
    model.generation_config = saved_generation_config(model)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for file_name, obj in (extra_files or {}).items():
            atomic_write_json(tmp / file_name, obj)


class RougeLsumScorer:
    """`train.select_by: rougeLsum`: the mean rougeLsum (kd.metrics.rouge.rouge_scores: stemmed F1 x 100 on
    sentence-split text) of summaries of the first `samples` validation examples (all of them when
    the split is smaller) against their references.

    The summaries are generated from the tokenized `input_ids` (prefixed and truncated as training
    sees them), `batch_size` at a time, in eval mode under inference mode, in full precision, with
    `num_beams` beams (greedy when 1), at most `max_new_tokens` tokens and the special tokens of the
    saved model's generation config, as the benchmark decodes. The references are decoded from the
    subset's `labels`: the tokenized references, truncated to `tokenizer.max_target_length` tokens,
    not the raw text the benchmark scores against. No randomness and no communication: with several
    processes each one computes the same score on the same examples."""

    name = "rougeLsum"

    def __init__(self, tokenizer, *, samples: int, num_beams: int, max_new_tokens: int, batch_size: int):
        self.tokenizer, self.samples, self.batch_size = tokenizer, samples, batch_size
        self.num_beams, self.max_new_tokens = num_beams, max_new_tokens

    def subset(self, val_ds) -> datasets.Dataset:
        """The validation examples scored: the first `samples` of `val_ds`."""
        return val_ds.select(range(min(self.samples, len(val_ds))))

    def references(self, subset) -> list[str]:
        return [self.tokenizer.decode([t for t in ids if t >= 0], skip_special_tokens=True).strip()
                for ids in subset["labels"]]

    def generate(self, model, subset) -> list[str]:
        """Summaries of `subset`'s tokenized inputs, in order; `model` is back in its mode afterwards."""
        device, was_training = next(model.parameters()).device, model.training
        config = saved_generation_config(model, num_beams=self.num_beams, max_new_tokens=self.max_new_tokens,
                                         do_sample=False)
        rows = subset.select_columns(["input_ids", "attention_mask"])
        predictions: list[str] = []
        model.eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(rows), self.batch_size):
                    batch = self.tokenizer.pad(rows[start:start + self.batch_size], return_tensors="pt").to(device)
                    out = model.generate(**batch, generation_config=config, **generate_kwargs(model))
                    predictions += [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]
        finally:
            model.train(was_training)
        return predictions

    def __call__(self, model, val_ds) -> float:
        from kd.metrics.rouge import rouge_scores  # rouge_score and nltk: only when a run selects by ROUGE

        subset = self.subset(val_ds)
        return rouge_scores(self.generate(model, subset), self.references(subset))["rougeLsum"]


def make_scorer(train: TrainParams, tokenizer) -> Optional[RougeLsumScorer]:
    """The Scorer `train.select_by` selects epochs by; None for "loss" (fit keeps the lowest loss)."""
    if train.select_by == "loss":
        return None
    return RougeLsumScorer(tokenizer, samples=train.select_samples, num_beams=train.select_num_beams,
                           max_new_tokens=train.select_max_new_tokens, batch_size=train.batch_size)


class DvcLiveHook(Hook):
    """fit's metrics to dvclive in `live_dir` (main process only): train/<loss part> and train/lr at
    every optimizer step, val/loss (and val/<score>, e.g. val/rougeLsum, when a Scorer selects) at each
    epoch's last step, and at the end a summary (the best epoch, what it was selected by, its
    validation loss and score, steps, training seconds and tokens) whose `step` is the last step.

    A resumed run continues the files of the run it resumes, after dropping their rows of steps past
    the checkpoint: the killed run logged those steps, and the resumed one trains and logs them again."""

    # Steps between rewrites of metrics.json (the plots' rows are appended at every step): an atomic
    # rewrite per step costs a small model's run a few percent of its time.
    SUMMARY_EVERY = 50

    def __init__(self, live_dir: Path, teacher_seconds: float = 0.0):
        # teacher_seconds: a one-off teacher pass the stage made before training (teacher_pass: once),
        # recorded with the training cost so the recipe's cost includes it
        self.live_dir, self.live, self.teacher_seconds = Path(live_dir), None, teacher_seconds

    def on_train_start(self, loop: TrainLoop) -> None:
        resumed = loop.state.step > 0
        if resumed:
            discard_unreadable_summary(self.live_dir)
        # dvclive: no DVC experiment side effects from inside a stage; DVC owns the experiment.
        self.live = Live(dir=str(self.live_dir), resume=resumed, save_dvc_exp=False, dvcyaml=None)
        # Live.next_step() re-reads every metric file for DVC Studio even when Studio is not configured
        # (dvclive 3.49): quadratic in the steps, 80 s of a 3,000-step run. Without Studio, writing the
        # summary (metrics.json) is all a step needs.
        self.studio = bool(get_dvc_studio_config(self.live))
        if resumed:
            drop_rows_after(Path(self.live.plots_dir) / Metric.subfolder, loop.state.step)

    def on_step_end(self, loop: TrainLoop, logs: dict[str, float]) -> None:
        self.live.step = loop.state.step
        for name, value in logs.items():
            self.live.log_metric(f"train/{name}", value)
        if self.studio:
            self.live.next_step()  # writes metrics.json and posts the new points to Studio
        elif loop.state.step % self.SUMMARY_EVERY == 0:
            self.write_summary()  # `dvc metrics show` mid-run; each validation and the end write it too

    def on_validation_end(self, loop: TrainLoop, val_loss: float) -> None:
        self.live.step = loop.state.step  # the epoch's last step: next_step moved past it
        self.live.log_metric("val/loss", val_loss)
        if loop.scorer is not None:
            name = loop.scorer.name
            self.live.log_metric(f"val/{name}", loop.state.history[-1][f"val_{name}"])
        self.write_summary()

    def write_summary(self) -> None:
        """Live.make_summary, atomically: dvclive rewrites metrics.json in place, and a kill mid-write
        would leave a truncated file that the resumed run's Live(resume=True) cannot parse."""
        atomic_write_json(self.live.metrics_file, {**self.live.summary, "step": self.live.step})

    def on_train_end(self, loop: TrainLoop) -> None:
        s = loop.state
        # With "step" in the summary, end() writes that step rather than the one next_step moved to.
        # Training cost for the report, over the whole run (a resumed run adds to the killed one's):
        # seconds of optimizer steps, and the real tokens (source + target) every process trained on.
        score = {} if s.best_score is None else {"best_score": s.best_score}
        self.live.summary = {"best_val_loss": s.best_val_loss, "best_epoch": s.best_epoch, "select_by": s.select_by,
                             **score, "best_step": s.best_step, "steps": s.step, "step_cap": loop.total_steps,
                             "stopped_early": s.stopped_early,
                             # reached its cap still improving: not converged (unknown without patience)
                             "converged": s.stopped_early if loop.patience is not None else None,
                             "examples_seen": loop.examples_seen,
                             "train_seconds": round(s.train_seconds, 1), "train_tokens": s.train_tokens * loop.world,
                             "teacher_seconds": round(self.teacher_seconds, 3), "threads": torch.get_num_threads(),
                             "step": s.step}
        self.live.end()


def discard_unreadable_summary(live_dir: Path) -> None:
    """Before a resume: delete a metrics.json that is not valid JSON, and temp files of the summary.

    The killed run may have died while writing it (dvclive's own end() writes in place). Nothing in it
    is needed: the resumed run logs every metric again and on_train_end writes the whole summary."""
    live_dir = Path(live_dir)
    for tmp in live_dir.glob(".metrics.json.tmp-*"):
        tmp.unlink()
    summary = live_dir / "metrics.json"
    if summary.is_file():
        try:
            json.loads(summary.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("%s: unreadable (the killed run died writing it); the resumed run rewrites it", summary)
            summary.unlink()


def drop_rows_after(metrics_dir: Path, step: int) -> None:
    """Keep only the rows of steps <= `step` in every dvclive metric file (.tsv) under `metrics_dir`,
    and only whole rows: a kill mid-append leaves a last row without its newline."""
    for path in Path(metrics_dir).rglob("*.tsv"):
        header, *rows = path.read_text(encoding="utf-8").splitlines(keepends=True)
        at = header.rstrip("\r\n").split("\t").index("step")
        kept = [row for row in rows if row.endswith("\n") and int(row.split("\t")[at]) <= step]
        atomic_write_text(path, header + "".join(kept))


def train_and_save(*, name, model, teacher, objective, tokenizer, tokenized, spec: ModelParams,
                   train: TrainParams, accelerator, out_dir, ckpt_dir, live_dir, resume_from,
                   fingerprint_of: dict, hooks: Sequence[Hook] = (),
                   extra_files: Optional[dict[str, dict]] = None, teacher_seconds: float = 0.0) -> FitResult:
    """Fit (metrics to dvclive in `live_dir`, then the caller's `hooks`), then (main process only) save
    the best weights atomically and drop the resumable state."""
    fp = checkpoint.fingerprint(fingerprint_of | {"data": tokenized["train"]._fingerprint})
    main = accelerator.is_main_process
    logging_hooks = [DvcLiveHook(live_dir, teacher_seconds)] if main else []
    result = fit(model=model, objective=objective, teacher=teacher, train_ds=tokenized["train"],
                 val_ds=tokenized["validation"], collate=make_collator(tokenizer), epochs=spec.epochs, steps=spec.steps,
                 lr=spec.lr, validations=spec.validations, patience=spec.patience, params=train,
                 ckpt_dir=ckpt_dir, run_fingerprint=fp,
                 hooks=[*logging_hooks, *hooks], resume_from=resume_from, desc=name, accelerator=accelerator,
                 scorer=make_scorer(train, tokenizer))
    if main:
        model.load_state_dict(result.best_state)
        save_model_dir(model.cpu(), tokenizer, out_dir, extra_files)
        finish(ckpt_dir)
        score = "" if result.best_score is None else f" (selected by {result.select_by} {result.best_score:.2f})"
        log.info("%s: best val loss %.4f at epoch %d%s; saved %s", name, result.best_val_loss,
                 result.best_epoch, score, out_dir)
        log.info("%s throughput: %d steps in %.1f s, %.2f steps/s, %.0f tokens/s per process (%d processes)",
                 name, result.steps_run, result.seconds,
                 result.steps_run / max(result.seconds, 1e-9), result.tokens / max(result.seconds, 1e-9),
                 accelerator.num_processes)
    accelerator.wait_for_everyone()
    return result
