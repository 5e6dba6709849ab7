"""The real job's shapes on one GPU: t5-base teacher -> t5-small student, bf16, 512 source / 128 target.

    python -m tools.bench gpu-real --out gpu_real.json     # on an H100/H200 (estimate, not yet run: ~2 min)
    python -m tools.bench gpu-real --device cpu --tiny     # the same code path on tiny shapes, seconds

Models are built from T5Config by hand with the published t5-base and t5-small shapes (no hub, random
weights: speed does not depend on what the weights are) and fed random token ids, every example
exactly `source_len` + `target_len` tokens with no padding: the cost of a full-length batch (CNN/DM
articles average ~781 tokens, so most fill 512; summaries average ~56 of the 128, so real batches pad
their targets and do less useful work per step). Tokens are counted as the training loop counts them:
source + target tokens of the batch.

What is measured, each after untimed warm-up work, with the project's own code:

1. train_label / train_kd: student optimizer steps through `kd.training.loop.TrainLoop.train_step` (forward,
   backward, clip, fused AdamW; bf16 autocast on CUDA): label loss only (the profile's `baseline`),
   and label + logit KD from the cached top-64 of (2) (its `t5_small` recipe: 0.5 / 0.5, T = 1).
2. teacher_outputs: `kd.teacher.cache.write_cache` over the same examples, as the stage runs it (the
   teacher frozen by `kd.training.objective.freeze_teacher`: bf16 weights on CUDA; top-64 and the logsumexp at
   each temperature, written through memory maps).
3. generate: beam-4 `generate` (`kd.models.modeling.generate_kwargs`) of teacher and student, `target_len`
   new tokens per article. Random weights never emit EOS on cue, so min_new_tokens = max_new_tokens:
   every beam runs the full length, a worst case. With fp32 weights, as the benchmark stages load
   models today (`kd.models.generation.load_summarizer`), and on CUDA also with bf16 weights.
4. mfu: model FLOPs per second over the card's dense bf16 peak (tools.flops.PEAK_BF16_TFLOPS by device
   name, or --peak-tflops). Model FLOPs are counted per layer (tools.flops.forward_flops: every matmul,
   attention scores included, 2 FLOPs per multiply-add); a training step is 3x a forward pass (the
   backward pass computes two matmuls for each of the forward's). Not counted: norms, softmax, the loss,
   the optimizer.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import tempfile
import time
import traceback
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Optional

import torch

from tools.flops import PUBLISHED, Shape, forward_flops, peak_tflops, training_flops

BUDGET_S = 180.0  # the whole gpu-real run on one H100/H200 (tools/gpu_check.sh stops it at 210 s)


@dataclass(frozen=True)
class Setup:
    teacher: Shape
    student: Shape
    source_len: int
    target_len: int
    batch_size: int  # training (the profile's train.batch_size)
    cache_batch_size: int  # teacher_outputs (the profile's teacher_outputs.batch_size)
    gen_batch_size: int  # generation (the profile's benchmark.batch_size)
    steps: int  # timed optimizer steps per training variant
    warmup_steps: int
    gen_batches: int  # timed generation batches per model and dtype (one more runs untimed first)
    top_k: int = 64
    num_beams: int = 4

    def __post_init__(self):
        if self.teacher.vocab_size != self.student.vocab_size:  # logit KD compares them token by token
            raise ValueError(f"gpu-real: teacher vocab_size {self.teacher.vocab_size} != student's "
                             f"{self.student.vocab_size}")

    @property
    def vocab_size(self) -> int:
        return self.student.vocab_size


T5_BASE, T5_SMALL = PUBLISHED["t5-base"], PUBLISHED["t5-small"]
REAL = Setup(teacher=T5_BASE, student=T5_SMALL, source_len=512, target_len=128,  # T5's 32,128-token vocab
             batch_size=32, cache_batch_size=64, gen_batch_size=64, steps=20, warmup_steps=3, gen_batches=2)
TINY = Setup(teacher=Shape(d_model=32, d_ff=64, d_kv=8, num_layers=2, num_decoder_layers=2, num_heads=4,
                           vocab_size=96),
             student=Shape(d_model=16, d_ff=32, d_kv=8, num_layers=1, num_decoder_layers=1, num_heads=2,
                           vocab_size=96),
             source_len=24, target_len=8, batch_size=4, cache_batch_size=4, gen_batch_size=2, steps=2,
             warmup_steps=1, gen_batches=1, top_k=16)


# ----------------------------------------------------------------------------- pure helpers


def mfu(flops: float, seconds: float, peak: Optional[float]) -> Optional[float]:
    """Share of `peak` TFLOP/s that `flops` in `seconds` reached; None without a peak."""
    return None if peak is None else flops / seconds / (peak * 1e12)


def stack_collate(rows: list[dict]) -> dict:
    """Rows of equal lengths -> a batch of (B, L) tensors: what kd.training.loop.make_collator returns
    when nothing needs padding (no tokenizer needed for it)."""
    return {key: torch.tensor([r[key] for r in rows]) for key in rows[0]}


# ----------------------------------------------------------------------------- measurements


@dataclass
class Bench:
    setup: Setup
    device: torch.device
    peak: Optional[float]
    workdir: Path

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def timed(self, fn: Callable[[], object]) -> float:
        self.sync()
        start = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - start

    def memory(self, prefix: str) -> dict:
        """Peak GPU memory since the last call (CUDA only: the CPU path reports none)."""
        if not self.cuda:
            return {}
        peak = torch.cuda.max_memory_allocated(self.device) / 2**30
        torch.cuda.reset_peak_memory_stats(self.device)
        return {f"{prefix}_peak_mem_gib": round(peak, 2)}

    def model(self, shape: Shape, *, dropout: float = 0.0, seed: int = 0):
        return shape.build(dropout=dropout, seed=seed)

    def rows(self, n: int, seed: int = 0):
        """`n` random examples: ids in [2, vocab) (never pad 0 or EOS 1), no padding anywhere."""
        import datasets

        s, g = self.setup, torch.Generator().manual_seed(seed)
        ids = torch.randint(2, s.vocab_size, (n, s.source_len), generator=g)
        labels = torch.randint(2, s.vocab_size, (n, s.target_len), generator=g)
        return datasets.Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist(),
                                           "labels": labels.tolist()})


def measure_teacher_outputs(b: Bench, teacher, ds, written: list[Path]) -> dict:
    """The teacher_outputs stage's writer over `ds`; appends the cache directory to `written`."""
    from kd.training.objective import freeze_teacher
    from kd.teacher.cache import write_cache

    s = b.setup
    teacher = freeze_teacher(teacher, b.device)
    kwargs = dict(teacher=teacher, collate=stack_collate, batch_size=s.cache_batch_size, k=s.top_k,
                  device=b.device, manifest={"made_by": "tools.gpu_real"})
    write_cache(b.workdir / "warmup_cache", dataset=ds.select(range(s.cache_batch_size)), **kwargs)
    b.memory("teacher_outputs")  # reset: the warm-up's peak is the same work
    out = b.workdir / "teacher_outputs"
    seconds = b.timed(lambda: write_cache(out, dataset=ds, **kwargs))
    flops = forward_flops(Shape.from_config(teacher.config), s.source_len, s.target_len, batch=len(ds))
    result = {"teacher_outputs_examples_per_s": len(ds) / seconds,
              "teacher_outputs_tokens_per_s": len(ds) * (s.source_len + s.target_len) / seconds,
              "teacher_outputs_tflops": flops / seconds / 1e12,
              "teacher_outputs_mfu": mfu(flops, seconds, b.peak), **b.memory("teacher_outputs")}
    written.append(out)
    return result


def measure_training(b: Bench, name: str, *, objective, source, ds) -> dict:
    """`setup.steps` timed optimizer steps of a fresh student through TrainLoop.train_step."""
    from kd.params import TrainParams
    from kd.training.loop import TrainLoop, epoch_loader, make_accelerator

    s = b.setup
    student = b.model(s.student, dropout=0.1)  # the profile trains with dropout 0.1
    params = TrainParams(batch_size=s.batch_size, precision="bf16" if b.cuda else "no",
                         device=b.device.type, warmup_ratio=0.02, checkpoint_every=10**9)
    loop = TrainLoop(model=student, objective=objective, teacher=source, epochs=1, lr=3e-4, n_train=len(ds),
                     params=params, accelerator=make_accelerator(b.device), run_fingerprint="gpu-real",
                     max_steps=None)
    batches = list(epoch_loader(ds, batch_size=s.batch_size, collate=stack_collate, seed=0, epoch=0,
                                shuffle=False))
    losses = [loop.train_step([batch])["total"] for batch in batches[:s.warmup_steps]]
    b.memory(name)
    timed = batches[s.warmup_steps:s.warmup_steps + s.steps]
    seconds = b.timed(lambda: losses.extend(loop.train_step([batch])["total"] for batch in timed))
    if not all(math.isfinite(x) for x in losses):
        raise RuntimeError(f"gpu-real: {name} loss is not finite: {losses}")
    tokens = sum(int(x["attention_mask"].sum()) + int((x["labels"] != -100).sum()) for x in timed)
    flops = len(timed) * training_flops(Shape.from_config(student.config), s.source_len, s.target_len,
                                        batch=s.batch_size)
    return {f"{name}_step_s": seconds / len(timed), f"{name}_tokens_per_s": tokens / seconds,
            f"{name}_tflops": flops / seconds / 1e12, f"{name}_mfu": mfu(flops, seconds, b.peak),
            **b.memory(name)}


def measure_generation(b: Bench, name: str, model, ds) -> dict:
    """Beam search samples/s over `gen_batches` timed batches (one untimed first), every beam forced
    to `target_len` new tokens."""
    from kd.models.modeling import generate_kwargs

    s = b.setup
    model.to(b.device).eval()
    batches = [ds[i:i + s.gen_batch_size] for i in range(0, (s.gen_batches + 1) * s.gen_batch_size, s.gen_batch_size)]
    inputs = [{k: torch.tensor(batch[k], device=b.device) for k in ("input_ids", "attention_mask")} for batch in batches]

    def generate(enc):
        with torch.inference_mode():
            out = model.generate(**enc, num_beams=s.num_beams, do_sample=False, max_new_tokens=s.target_len,
                                 min_new_tokens=s.target_len, **generate_kwargs(model))
        if out.shape[1] < s.target_len:
            raise RuntimeError(f"gpu-real: {name} generated {out.shape[1]} tokens, expected {s.target_len}")

    generate(inputs[0])
    b.memory(name)
    seconds = b.timed(lambda: [generate(enc) for enc in inputs[1:]])
    return {f"{name}_samples_per_s": s.gen_batches * s.gen_batch_size / seconds, **b.memory(name)}


# ----------------------------------------------------------------------------- entry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cpu runs the same code (with --tiny: a check of the script, not of speed)")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes and lengths: seconds on a CPU")
    parser.add_argument("--steps", type=int, default=None, help=f"timed optimizer steps per training variant "
                                                                  f"(default {REAL.steps}; --tiny {TINY.steps})")
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"training batch size (default {REAL.batch_size}; --tiny {TINY.batch_size})")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the card's dense bf16 peak, for a card not in PEAK_BF16_TFLOPS (or the CPU)")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help="ok only if the run takes at most this")
    parser.add_argument("--out", type=Path, default=None, help="write the measurements as JSON here")


def setup_of(args) -> Setup:
    base = TINY if args.tiny else REAL
    return dataclasses.replace(base, steps=args.steps or base.steps, batch_size=args.batch_size or base.batch_size)


def describe(device: torch.device) -> dict:
    import platform

    import transformers

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {"device": device.type, "device_name": name, "torch": torch.__version__,
            "transformers": transformers.__version__,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def run(args) -> dict:
    """Measure, print a line per measurement, write `args.out` (after each measurement too, so a run
    stopped by a timeout leaves what it had); "ok": every measurement ran, within the budget."""
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu-real: no CUDA device here (run it on a GPU machine, or pass --device cpu --tiny "
                         "to exercise the same path on the CPU)")
    from kd.losses.logit import LogitKD
    from kd.training.objective import Objective
    from kd.teacher.cache import TeacherCache

    start = time.perf_counter()
    s, device = setup_of(args), torch.device(args.device)
    info = describe(device)
    peak = peak_tflops(info["device_name"], args.peak_tflops)
    result: dict = {**info, "precision": "bf16" if device.type == "cuda" else "fp32", "tiny": bool(args.tiny),
                    "source_len": s.source_len, "target_len": s.target_len, "batch_size": s.batch_size,
                    "steps": s.steps, "top_k": s.top_k, "num_beams": s.num_beams, "gen_batch_size": s.gen_batch_size,
                    "peak_bf16_tflops": peak}

    def attempt(name: str, measure: Callable[[], dict]) -> None:
        # GPU time is scarce: one failed measurement is recorded and the others still run.
        try:
            result.update(measure())
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            result[f"{name}_error"] = f"{type(e).__name__}: {e}"
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")

    with tempfile.TemporaryDirectory(prefix="gpu-real-") as tmp:
        b = Bench(setup=s, device=device, peak=peak, workdir=Path(tmp))
        ds = b.rows(max(s.batch_size * (s.warmup_steps + s.steps), s.gen_batch_size * (s.gen_batches + 1)))
        teacher, student = b.model(s.teacher), b.model(s.student)
        result |= {"teacher_params": sum(p.numel() for p in teacher.parameters()),
                   "student_params": sum(p.numel() for p in student.parameters())}
        for dtype in ("fp32", "bf16") if b.cuda else ("fp32",):  # bf16 generation on a CPU tells nothing
            for role, model in (("teacher", teacher), ("student", student)):
                name = f"gen_beam{s.num_beams}_{role}_{dtype}"
                model.to(torch.float32 if dtype == "fp32" else torch.bfloat16)
                attempt(name, partial(measure_generation, b, name, model, ds))
        del student, model  # the teacher stays: its outputs are cached next
        cache: list[Path] = []
        attempt("teacher_outputs", partial(measure_teacher_outputs, b, teacher, ds, cache))
        del teacher
        if b.cuda:
            torch.cuda.empty_cache()
        attempt("train_label", lambda: measure_training(b, "train_label", objective=Objective.labels_only(),
                                                        source=None, ds=ds))
        if cache:  # logit KD reads the teacher outputs just written
            kd = Objective({"logit": LogitKD(temperature=1.0)}, weights={"logit": 0.5}, label_weight=0.5)
            attempt("train_kd", lambda: measure_training(b, "train_kd", objective=kd,
                                                         source=TeacherCache.open(cache[0]), ds=ds))
    result["wall_s"] = time.perf_counter() - start
    errors = [k for k in result if k.endswith("_error")]
    result["ok"] = not errors and result["wall_s"] <= args.budget_s
    for key, value in result.items():
        shown = f"{value:.4g}" if isinstance(value, float) else value
        verdict = f" {'ok' if value <= args.budget_s else 'OVER'} (budget {args.budget_s:.0f} s)" if key == "wall_s" else ""
        print(f"gpu-real.{key}: {shown}{verdict}")
    if peak is None:
        print(f"gpu-real: no bf16 peak known for {info['device_name']!r}: pass --peak-tflops for the mfu lines")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result
