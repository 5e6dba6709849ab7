"""Training-loop and generation speed, measured in one process on the same models, data and batches.

    python -m tools.speedbench --quick                 # tiny models, seconds: a smoke test
    python -m tools.speedbench --steps 30 --out speed.json

Everything is built from params.yaml (models from config, random weights: speed does not depend on
what the weights are), on builtin data with a SentencePiece tokenizer trained here. Nothing is read
from or written to the pipeline's directories.

What is measured:

1. train: our loop (`kd.training.loop.fit`, label loss only) against `transformers.Seq2SeqTrainer`.
   Both get a student freshly built from `student` params with the same seed, the same tokenized
   rows and collator, `train.batch_size`, AdamW with the student's lr and `train.weight_decay`
   (none on biases and norm weights), linear warmup (`train.warmup_ratio`) and decay, `train.max_grad_norm`, the same precision, and
   exactly `--steps` optimizer steps: one pass over `steps * batch_size` rows (each side shuffles
   them its own way). No evaluation, no saving, no logging, no progress bar on HF's side (fit keeps
   its own: it is built in, and redraws at most every 0.5 s on a terminal).
   Tokens are source + target tokens of the rows a side trains on, padding not counted. Two rates:
     whole run:    all tokens / wall time from the call to the end of the last optimizer step:
                   `fit(...)` for ours, `Seq2SeqTrainer(...)` + `.train()` for HF (both include
                   optimizer and data loader setup; building the model is outside). Both sides
                   process the same rows, so this is a ratio of times.
     steady steps: tokens of batches 2..steps / time from the end of optimizer step 1 to the end of
                   the last (a fit hook's and HF's `on_step_end`); leaves out setup and first-step
                   costs. Batches are counted as each side's collator builds them.
   Left as each side does it: HF's default optimizer implementation (`adamw_torch_fused`) and its
   warmup formula. Target: ours/HF >= 1.0, both.
2. kd: seconds per epoch of plain student training, logit KD with a live teacher (built from
   `teacher` params) and logit KD from cached teacher outputs (top-k from `teacher_outputs.top_k`,
   written once before timing; that one-time cost is reported separately). Each is `fit` over
   `--steps` optimizer steps, scaled to one epoch of the builtin train split
   (ceil(train_size / batch_size) steps; the per-epoch validation is excluded).
   Target: cached/plain <= 1.2.
3. generate: samples/s of teacher and student on the same pre-tokenized articles, SDPA attention,
   `torch.inference_mode()`, `benchmark.batch_size`, greedy and beam search (`benchmark.num_beams`),
   `benchmark.warmup_batches` untimed batches first. Every output is exactly
   `benchmark.max_new_tokens` long (min_new_tokens = max_new_tokens): untrained models stop at
   random points, and the comparison must be about speed, not output length. No target: reported.

Noise: each variant first runs once, untimed, on a few batches (first-call allocations, lazy
imports); then every variant runs `--repeats` times, in reverse order every other round so drift
on a shared machine does not favour whichever goes first, and the best (shortest) time counts.
Torch uses `--threads` threads throughout (default: torch's own choice, printed).

How `fit` is timed: with `max_steps=--steps` and a hook (`StepClock.fit_hook`) that reads the clock
at the end of optimizer steps 1 and `--steps`. The last step ends fit's only epoch, so fit then
validates and writes a checkpoint, whatever `checkpoint_every` says (set past `--steps`, so no
checkpoint falls inside the timed steps); that comes after the clock's last reading and is not timed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from kd.errors import ConfigError
from kd.report import format as fmt

QUICK = {  # tiny everything: the whole run takes seconds
    "tokenizer": {"vocab_size": 200, "max_source_length": 64, "max_target_length": 16},
    "student": {"d_model": 16, "d_ff": 32, "d_kv": 8, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 2},
    "teacher": {"d_model": 32, "d_ff": 64, "d_kv": 8, "num_layers": 2, "num_decoder_layers": 2, "num_heads": 4},
    "train": {"batch_size": 4},
    "benchmark": {"batch_size": 4, "max_new_tokens": 8, "warmup_batches": 1},
}
QUICK_STEPS, QUICK_TRAIN_SIZE = 3, 32
DEFAULT_STEPS = 30
WARMUP_STEPS = 2  # untimed warm-up run of each training variant
GEN_BATCHES = 2  # timed generation batches per model and decoding mode

# name -> (comparison, target) for every ratio that has a target.
TARGETS = {
    "train_ours_over_hf": (">=", 1.0),
    "train_step_ours_over_hf": (">=", 1.0),
    "kd_cached_over_plain": ("<=", 1.2),
}


# ----------------------------------------------------------------------------- pure helpers


def count_tokens(rows) -> int:
    """Source + target tokens of tokenized rows (unpadded, so padding never counts)."""
    return sum(len(r) for r in rows["input_ids"]) + sum(len(r) for r in rows["labels"])


def best_of(runs: dict[str, Callable], work, *, repeats: int, warmup_work=None) -> dict:
    """Best (smallest) cost each run reports for `work` over `repeats` rounds.

    A run returns seconds, or a dict of costs (seconds, seconds per token, ...), each minimised on
    its own. Each run gets one untimed call on `warmup_work` first (when given). Every other round
    runs the variants in reverse order, so a machine that speeds up or slows down favours none."""
    names = list(runs)
    if warmup_work is not None:
        for name in names:
            runs[name](warmup_work)
    best: dict = {}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            cost, seen = runs[name](work), best.get(name)
            if isinstance(cost, dict):
                best[name] = cost if seen is None else {k: min(v, seen[k]) for k, v in cost.items()}
            else:
                best[name] = cost if seen is None else min(cost, seen)
    return best


def judge(name: str, value: Optional[float]) -> Optional[bool]:
    """True/False against TARGETS[name]; None when there is no target or no measurement."""
    if name not in TARGETS or value is None:
        return None
    op, target = TARGETS[name]
    return value >= target if op == ">=" else value <= target


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None or b == 0 else a / b


def table_line(label: str, name: str, value: Optional[float], detail: str = "") -> str:
    """'label 1.07 (target >= 1.0) ok' / 'MISSED' / '(info)' / 'n/a'."""
    shown = fmt.number(value, missing="n/a")
    if name in TARGETS:
        op, target = TARGETS[name]
        verdict = {True: "ok", False: "MISSED", None: "not measured"}[judge(name, value)]
        tail = f"(target {op} {target}) {verdict}"
    else:
        tail = "(info)"
    return f"{label} {shown} {tail}" + (f"   [{detail}]" if detail else "")


# ----------------------------------------------------------------------------- setup


@dataclass
class SpeedContext:
    """Everything the measurements share: params (after --quick), data, tokenizer, device."""

    student: object  # kd.params.ModelParams
    teacher: object  # kd.params.ModelParams
    train: object  # kd.params.TrainParams, with grad_accum 1 and precision resolved
    bench: object  # kd.params.BenchmarkParams
    tokenizer: object
    collate: Callable
    train_ds: object  # datasets.Dataset: input_ids, attention_mask, labels; steps * batch_size rows
    articles: list[str]  # for generation
    prefix: str
    max_source_length: int
    device: torch.device
    steps: int
    repeats: int
    steps_per_epoch: int  # of the builtin train split, for seconds per epoch
    tmp: Path  # scratch for checkpoint and output dirs that must exist but stay empty
    top_k: int  # teacher_outputs.top_k, for the cached-KD variant

    def rows(self, steps: int):
        return self.train_ds.select(range(steps * self.train.batch_size))

    def build_student(self):
        from kd.models.modeling import build_model

        return build_model(self.student, self.tokenizer, seed=self.train.seed)

    def build_teacher(self):
        from kd.models.modeling import build_model

        return build_model(self.teacher, self.tokenizer, seed=self.train.seed, section="teacher")


def _from_config(spec, overrides: dict):
    # Never a download or the trained teacher: these models are built from their dimensions.
    fields = {f.name for f in dataclasses.fields(spec)}
    fixed = {"pretrained": None} | ({"init": "config"} if "init" in fields else {})
    return dataclasses.replace(spec, **fixed, **overrides)


def build_context(args, tmp: Path) -> SpeedContext:
    from kd.data.builtin import generate
    from kd.models.modeling import resolve_device, resolve_precision
    from kd.params import load_section
    from kd.data.tokenization import tokenize_records, train_sentencepiece
    from kd.training.loop import make_collator

    quick = QUICK if args.quick else {}
    sec = {name: load_section(name, args.params) for name in
           ("data", "tokenizer", "student", "teacher", "train", "benchmark", "teacher_outputs")}
    tok_p = dataclasses.replace(sec["tokenizer"], **quick.get("tokenizer", {}))
    bench = dataclasses.replace(sec["benchmark"], **quick.get("benchmark", {}))
    device = torch.device(resolve_device(args.device, "--device"))
    train = dataclasses.replace(sec["train"], **quick.get("train", {}), grad_accum=1)
    train = dataclasses.replace(train, precision=resolve_precision(train.precision, device))
    steps = args.steps or (QUICK_STEPS if args.quick else DEFAULT_STEPS)
    if steps < 1 or args.repeats < 1:
        raise ConfigError(f"speedbench: --steps and --repeats must be >= 1, got {steps} and {args.repeats}")

    data, builtin = sec["data"], sec["data"].builtin
    train_size = QUICK_TRAIN_SIZE if args.quick else builtin.train_size
    if data.max_train_samples:
        train_size = min(train_size, data.max_train_samples)
    n_rows = steps * train.batch_size
    gen_kw = dict(n_distractors=builtin.n_distractors, entity_pool=builtin.entity_pool)
    records = generate("train", max(train_size, n_rows), data.seed, **gen_kw)
    # The tokenizer learns from a train split of the pipeline's size, as the tokenize stage does.
    tokenizer = train_sentencepiece(
        (t for r in records[:train_size] for t in (tok_p.prefix + r["article"], r["highlights"])),
        tok_p.vocab_size, tok_p.model_type,
    )
    train_ds = tokenize_records(records[:n_rows], tokenizer, prefix=tok_p.prefix,
                                max_source_length=tok_p.max_source_length,
                                max_target_length=tok_p.max_target_length)
    n_gen = (bench.warmup_batches + GEN_BATCHES) * bench.batch_size
    articles = [r["article"] for r in generate("test", n_gen, data.seed, **gen_kw)]
    return SpeedContext(
        student=_from_config(sec["student"], quick.get("student", {})),
        teacher=_from_config(sec["teacher"], quick.get("teacher", {})),
        train=train, bench=bench, tokenizer=tokenizer, collate=make_collator(tokenizer),
        train_ds=train_ds.select_columns(["input_ids", "attention_mask", "labels"]), articles=articles,
        prefix=tok_p.prefix, max_source_length=tok_p.max_source_length, device=device, steps=steps,
        repeats=args.repeats, steps_per_epoch=math.ceil(train_size / train.batch_size), tmp=tmp,
        top_k=sec["teacher_outputs"].top_k,
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- training


class CountingCollator:
    """Wraps a collator and remembers the unpadded source + target tokens of each batch it builds,
    in order, so steady-state token counts follow whatever order each trainer draws rows in."""

    def __init__(self, collate):
        self.collate, self.tokens = collate, []

    def __call__(self, rows):
        self.tokens.append(sum(len(r["input_ids"]) + len(r["labels"]) for r in rows))
        return self.collate(rows)


@dataclass
class StepClock:
    """perf_counter at the end of optimizer steps 1 and `steps`: steady-state time leaves out
    everything before the first step ends (setup, first-call costs) and after the last."""

    steps: int
    device: torch.device
    first: Optional[float] = None
    last: Optional[float] = None

    def tick(self, step: int) -> None:
        if step in (1, self.steps):
            _sync(self.device)  # queued GPU work belongs to the steps it came from
            if step == 1:
                self.first = time.perf_counter()
            if step == self.steps:
                self.last = time.perf_counter()

    def fit_hook(self):
        """A kd.training.loop hook that ticks this clock after every optimizer step of `fit`."""
        from kd.training.loop import Hook

        tick = self.tick

        class Tick(Hook):
            def on_step_end(self, loop, logs):
                tick(loop.state.step)

        return Tick()

    def steady(self, batch_tokens: list[int]) -> dict:
        """Seconds per token over steps 2..steps (batch k is consumed by step k)."""
        if self.steps < 2:
            return {}
        return {"steady_s_per_token": (self.last - self.first) / sum(batch_tokens[1:self.steps])}


def timed_fit(ctx: SpeedContext, *, model, objective, teacher, rows, collate=None,
              clock: Optional[StepClock] = None) -> float:
    """Seconds from calling `kd.training.loop.fit` to the end of its last optimizer step, for one pass over
    `rows` (one optimizer step per batch); what fit does after that step is not timed."""
    from kd.training.loop import fit, make_accelerator

    steps = math.ceil(len(rows) / ctx.train.batch_size)
    clock = clock or StepClock(steps, ctx.device)
    with tempfile.TemporaryDirectory(dir=ctx.tmp) as ckpt:
        start = time.perf_counter()
        fit(model=model, objective=objective, teacher=teacher, train_ds=rows, val_ds=rows.select(range(1)),
            collate=collate or ctx.collate, epochs=1, lr=ctx.student.lr,
            params=dataclasses.replace(ctx.train, checkpoint_every=steps + 1), ckpt_dir=Path(ckpt),
            run_fingerprint="speedbench", hooks=[clock.fit_hook()], max_steps=steps, desc="speedbench",
            accelerator=make_accelerator(ctx.device))
    return clock.last - start


def time_ours(ctx: SpeedContext, rows) -> dict:
    """{"s": wall seconds of fit(...), "steady_s_per_token": ...} for one pass over `rows`."""
    from kd.training.objective import Objective

    steps = math.ceil(len(rows) / ctx.train.batch_size)
    collate, clock = CountingCollator(ctx.collate), StepClock(steps, ctx.device)
    s = timed_fit(ctx, model=ctx.build_student(), objective=Objective.labels_only(), teacher=None, rows=rows,
                  collate=collate, clock=clock)
    return {"s": s} | clock.steady(collate.tokens)


def time_hf(ctx: SpeedContext, rows) -> dict:
    """Like `time_ours`, for Seq2SeqTrainer(...) + train() configured the same way."""
    from transformers import PrinterCallback, Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback

    class Tick(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            clock.tick(state.global_step)

    model = ctx.build_student()
    steps = math.ceil(len(rows) / ctx.train.batch_size)
    collate, clock = CountingCollator(ctx.collate), StepClock(steps, ctx.device)
    with tempfile.TemporaryDirectory(dir=ctx.tmp) as out:
        args = Seq2SeqTrainingArguments(
            output_dir=out, max_steps=steps, per_device_train_batch_size=ctx.train.batch_size,
            gradient_accumulation_steps=1, learning_rate=ctx.student.lr, weight_decay=ctx.train.weight_decay,
            lr_scheduler_type="linear", warmup_steps=int(ctx.train.warmup_ratio * steps),
            max_grad_norm=ctx.train.max_grad_norm, seed=ctx.train.seed,
            bf16=ctx.train.precision == "bf16", fp16=ctx.train.precision == "fp16",
            use_cpu=ctx.device.type == "cpu", dataloader_num_workers=0,
            eval_strategy="no", save_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True,
        )
        start = time.perf_counter()
        trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=rows, data_collator=collate,
                                 callbacks=[Tick()])
        # With the progress bar off HF prints the end-of-training metrics instead; not wanted here.
        trainer.remove_callback(PrinterCallback)
        trainer.train()
        _sync(ctx.device)
        s = time.perf_counter() - start
    return {"s": s} | clock.steady(collate.tokens)


def bench_train(ctx: SpeedContext) -> dict:
    rows = ctx.rows(ctx.steps)
    tokens = count_tokens(rows)
    best = best_of({"ours": lambda r: time_ours(ctx, r), "hf": lambda r: time_hf(ctx, r)}, rows,
                   repeats=ctx.repeats, warmup_work=ctx.rows(min(WARMUP_STEPS, ctx.steps)))
    out = {"train_tokens": tokens}
    for side in ("ours", "hf"):
        out[f"train_{side}_s"] = best[side]["s"]
        out[f"train_{side}_tokens_per_s"] = tokens / best[side]["s"]
        steady = best[side].get("steady_s_per_token")
        out[f"train_{side}_step_tokens_per_s"] = None if steady is None else 1 / steady
    out["train_ours_over_hf"] = out["train_ours_tokens_per_s"] / out["train_hf_tokens_per_s"]
    out["train_step_ours_over_hf"] = ratio(out["train_ours_step_tokens_per_s"], out["train_hf_step_tokens_per_s"])
    return out


# ----------------------------------------------------------------------------- distillation


def per_epoch(ctx: SpeedContext, seconds: float) -> float:
    """Seconds for `ctx.steps` optimizer steps -> seconds for an epoch of the builtin train split."""
    return seconds / ctx.steps * ctx.steps_per_epoch


def write_kd_cache(ctx: SpeedContext, teacher, rows) -> tuple[Path, float]:
    """The teacher_outputs stage's work for `rows` (top-k from `teacher_outputs.top_k`): the cache
    dir and the seconds it took, which a pipeline pays once per teacher, not once per student."""
    from kd.teacher.cache import write_cache

    out = Path(tempfile.mkdtemp(dir=ctx.tmp)) / "teacher_outputs"
    k = ctx.top_k
    start = time.perf_counter()
    write_cache(out, teacher=teacher, dataset=rows, collate=ctx.collate, batch_size=ctx.train.batch_size,
                k=k, device=ctx.device, manifest={})
    _sync(ctx.device)
    return out, time.perf_counter() - start


def bench_kd(ctx: SpeedContext) -> dict:
    """Seconds per epoch: plain student training, live-teacher logit KD, cached-teacher logit KD.

    The cached variant reads a cache written once, before timing, over the same rows (the warm-up
    rows are its first rows); the one-time cost of writing it is reported on its own, per epoch of
    data, since the pipeline pays it once per teacher and every logit-KD student then reuses it."""
    from kd.losses.logit import LogitKD
    from kd.training.objective import LiveTeacher, Objective, freeze_teacher
    from kd.teacher.cache import TeacherCache

    # Placed like kd.students.distill places it (eval, no grads, bf16 on CUDA); untrained, which costs the same.
    teacher = freeze_teacher(ctx.build_teacher(), ctx.device)
    rows = ctx.rows(ctx.steps)
    cache_dir, cache_s = write_kd_cache(ctx, teacher, rows)
    cache = TeacherCache.open(cache_dir)

    def plain(rows):
        return timed_fit(ctx, model=ctx.build_student(), objective=Objective.labels_only(), teacher=None,
                         rows=rows)

    def with_teacher(source):
        def run(rows):
            # Label loss plus logit KD; neither the temperature nor the weights change the cost.
            objective = Objective({"logit": LogitKD(temperature=2.0)}, weights={"logit": 1.0})
            return timed_fit(ctx, model=ctx.build_student(), objective=objective, teacher=source, rows=rows)

        return run

    runs = {"plain": plain, "live": with_teacher(LiveTeacher(teacher)), "cached": with_teacher(cache)}
    best = best_of(runs, rows, repeats=ctx.repeats, warmup_work=ctx.rows(min(WARMUP_STEPS, ctx.steps)))
    plain_s, live_s, cached_s = (per_epoch(ctx, best[k]) for k in ("plain", "live", "cached"))
    return {"kd_steps_per_epoch": ctx.steps_per_epoch, "kd_plain_s_per_epoch": plain_s,
            "kd_live_s_per_epoch": live_s, "kd_cached_s_per_epoch": cached_s,
            "kd_cache_write_s_per_epoch": per_epoch(ctx, cache_s), "kd_cache_top_k": cache.manifest["k"],
            "kd_live_over_plain": live_s / plain_s, "kd_cached_over_live": cached_s / live_s,
            "kd_cached_over_plain": cached_s / plain_s}


# ----------------------------------------------------------------------------- generation


def bench_generate(ctx: SpeedContext) -> dict:
    """Samples/s of teacher and student, greedy and beam, on the same pre-tokenized batches."""
    b = ctx.bench
    models = {"teacher": ctx.build_teacher(), "student": ctx.build_student()}
    for m in models.values():
        m.to(ctx.device).eval()
    batches = [
        ctx.tokenizer([ctx.prefix + a for a in ctx.articles[i:i + b.batch_size]], max_length=ctx.max_source_length,
                      truncation=True, padding=True, return_tensors="pt").to(ctx.device)
        for i in range(0, len(ctx.articles), b.batch_size)
    ]
    warm, timed = batches[:b.warmup_batches], batches[b.warmup_batches:]
    n = sum(len(enc["input_ids"]) for enc in timed)

    def generator(model, num_beams):
        def go(work) -> float:
            start = time.perf_counter()
            with torch.inference_mode():
                for enc in work:
                    model.generate(**enc, num_beams=num_beams, do_sample=False,
                                   max_new_tokens=b.max_new_tokens, min_new_tokens=b.max_new_tokens)
            _sync(ctx.device)
            return time.perf_counter() - start

        return go

    out = {"gen_samples": n, "gen_batch_size": b.batch_size, "gen_max_new_tokens": b.max_new_tokens,
           "gen_num_beams": b.num_beams}
    for mode, beams in (("greedy", 1), ("beam", b.num_beams)):
        best = best_of({k: generator(m, beams) for k, m in models.items()}, timed, repeats=ctx.repeats,
                       warmup_work=warm or None)
        sps = {k: n / t for k, t in best.items()}
        out |= {f"gen_{mode}_teacher_samples_per_s": sps["teacher"],
                f"gen_{mode}_student_samples_per_s": sps["student"],
                f"gen_{mode}_student_over_teacher": sps["student"] / sps["teacher"]}
    return out


# ----------------------------------------------------------------------------- entry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=None,
                        help=f"optimizer steps per timed training run "
                             f"(default {DEFAULT_STEPS}; --quick: {QUICK_STEPS})")
    parser.add_argument("--quick", action="store_true", help="tiny models, data and decoding: a smoke test")
    parser.add_argument("--out", type=Path, default=None, help="write the measurements as JSON here")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per variant; the best counts")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")


@contextlib.contextmanager
def _quiet():
    """No tokenize progress bars and no library warnings while measuring; restored after."""
    import datasets
    import transformers

    saved_level, bars = transformers.logging.get_verbosity(), datasets.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(saved_level)
        if bars:
            datasets.enable_progress_bars()


def run(args) -> dict:
    """Measure, print the table, write `args.out`; returns the flat results (with "ok" and "missed")."""
    if args.threads:
        torch.set_num_threads(args.threads)
    with _quiet(), tempfile.TemporaryDirectory(prefix="speedbench-") as tmp:
        ctx = build_context(args, Path(tmp))
        result = {"device": str(ctx.device), "threads": torch.get_num_threads(), "quick": bool(args.quick),
                  "steps": ctx.steps, "batch_size": ctx.train.batch_size, "repeats": ctx.repeats,
                  "precision": ctx.train.precision}
        result |= bench_train(ctx)
        result |= bench_kd(ctx)
        result |= bench_generate(ctx)
    verdicts = {name: judge(name, result.get(name)) for name in TARGETS}
    result["missed"] = sorted(name for name, ok in verdicts.items() if ok is False)
    result["ok"] = not result["missed"]
    for line in format_table(result):
        print(line)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


def format_table(r: dict) -> list[str]:
    def f(key, digits=1):
        v = r.get(key)
        return "n/a" if v is None else f"{v:.{digits}f}"

    beams = r["gen_num_beams"]
    return [
        f"speedbench: device {r['device']}, {r['threads']} threads, {r['precision']} precision, "
        f"{r['steps']} steps x batch {r['batch_size']}, best of {r['repeats']}"
        + (" (--quick: a smoke test; millisecond timings, verdicts are noise)" if r["quick"] else ""),
        table_line("train tokens/s ours/HF (whole run)", "train_ours_over_hf", r["train_ours_over_hf"],
                   f"ours {f('train_ours_tokens_per_s', 0)}, HF {f('train_hf_tokens_per_s', 0)} tokens/s"),
        table_line("train tokens/s ours/HF (steady steps)", "train_step_ours_over_hf", r["train_step_ours_over_hf"],
                   f"ours {f('train_ours_step_tokens_per_s', 0)}, HF {f('train_hf_step_tokens_per_s', 0)} tokens/s"),
        table_line("kd s/epoch live/plain", "kd_live_over_plain", r["kd_live_over_plain"],
                   f"plain {f('kd_plain_s_per_epoch')} s, live teacher {f('kd_live_s_per_epoch')} s, "
                   f"{r['kd_steps_per_epoch']} steps/epoch"),
        table_line("kd s/epoch cached/plain", "kd_cached_over_plain", r["kd_cached_over_plain"],
                   f"cached top-{r['kd_cache_top_k']} {f('kd_cached_s_per_epoch')} s, plus "
                   f"{f('kd_cache_write_s_per_epoch')} s once per teacher to write the cache"),
        table_line("kd s/epoch cached/live", "kd_cached_over_live", r["kd_cached_over_live"]),
        table_line("generate greedy samples/s student/teacher", "gen_greedy_student_over_teacher",
                   r["gen_greedy_student_over_teacher"],
                   f"teacher {f('gen_greedy_teacher_samples_per_s')}, student {f('gen_greedy_student_samples_per_s')}"),
        table_line(f"generate beam{beams} samples/s student/teacher", "gen_beam_student_over_teacher",
                   r["gen_beam_student_over_teacher"],
                   f"teacher {f('gen_beam_teacher_samples_per_s')}, student {f('gen_beam_student_samples_per_s')}"),
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return 0 if run(parser.parse_args(argv))["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
