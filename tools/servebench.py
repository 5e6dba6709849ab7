"""Decoding speed a user sees when serving a summarizer: the published T5 shapes on this machine.

    python -m tools.bench serve --out benchmark_results/serve/serve_cpu.json   # the CPU table, 2 threads
    python -m tools.bench serve --tiny                                        # the same path, tiny shapes
    python -m tools.bench serve --device cuda --out serve_gpu.json            # a GPU: fp32 and bf16

Models are built from config with the published shapes (tools.flops.PUBLISHED, shared with
tools.gpu_real): t5-small- and flan-t5-small-shaped students, t5-base- and t5-large-shaped teachers,
random weights (speed does not depend on what they are), SDPA attention as
`kd.models.generation.load_summarizer` serves a model. Every article is `source_len` random token ids (512,
T5's limit: most CNN/DailyMail articles fill it) and every summary is forced to exactly `new_tokens`
tokens (min_new_tokens = max_new_tokens; random weights never stop on cue): 56, the length of a
CNN/DailyMail reference summary on average, and 128, the real profile's cap.

Cells, for each summary length, decoding (greedy; beam 4, as teachers are benchmarked), precision (fp32,
and int8 on a CPU by the chosen path, bf16 on CUDA) and model:
  batch 1        latency per article: p50 and p95 over every timed article
  batch 16       throughput: articles per second (a serving batch)
One round times every cell of a (length, batch) group once, in a rotating order, so every ratio compares
models measured under the same conditions: a ratio is the median over rounds of that round's ratio.
Ratios: like for like (each student against each teacher at the same decoding and precision) and served
(the student greedy, fp32 and int8, against the fp32 teacher at beam 4). Per model: parameters, size on
disk, load time and the peak RSS of a process that loads it and decodes one article.

int8 paths (`--int8-paths`), measured side by side on t5-small and t5-base (greedy, batch 1) before the
grid, which then uses `--int8`: torch's dynamic quantization of every Linear (`torch.ao`), and torchao's
dynamic int8 activations with int8 weights. ONNX Runtime through Optimum's exporter is not among them:
optimum-onnx needs transformers < 4.58, and this project pins transformers 5.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import torch

from tools.flops import PUBLISHED, Shape

STUDENTS = ("t5-small", "flan-t5-small")
TEACHERS = ("t5-base", "t5-large")
DECODINGS = {"greedy": 1, "beam4": 4}
BUDGET_S = 20 * 60.0  # the whole CPU run on 2 cores


@dataclass(frozen=True)
class Plan:
    shapes: dict[str, Shape]
    source_len: int = 512
    new_tokens: tuple[int, ...] = (56, 128)
    rounds: int = 3
    latency_articles: int = 2  # timed articles per cell and round at batch 1
    serve_batch: int = 16
    threads: int = 2
    # What the 20-minute budget leaves out, the costliest cells first (`--full` keeps them all):
    # - `big` models (t5-large) run only the batch-1 fp32 cells of the first length: the served ratio;
    # - the serving batch runs at the first length only;
    # - int8 (bf16) runs beam search only at batch 1 and the first length: a student is served greedy;
    # - at the longer length the students run greedy only, the teachers greedy and fp32 beam 4.
    big: tuple[str, ...] = ("t5-large",)
    trimmed: bool = True
    int8: str = "torch-dynamic"
    int8_paths: tuple[str, ...] = ("torch-dynamic", "torchao")

    def precisions(self, device: str) -> tuple[str, ...]:
        return ("fp32", "bf16") if device == "cuda" else ("fp32", "int8")

    def batches(self, new_tokens: int) -> tuple[int, ...]:
        first = new_tokens == self.new_tokens[0]
        return (1, self.serve_batch) if first or not self.trimmed else (1,)

    def cells(self, device: str, new_tokens: int, batch: int) -> list["Cell"]:
        """Every (model, precision, decoding) timed in one (length, batch) group."""
        first = new_tokens == self.new_tokens[0]

        def kept(m: str, p: str, d: str) -> bool:
            if m in self.big and (batch > 1 or not first or p != "fp32"):
                return False
            if not self.trimmed or d == "greedy":
                return True
            if p != "fp32":
                return batch == 1 and first
            return first or m in TEACHERS

        return [Cell(m, p, d) for m in self.shapes for p in self.precisions(device) for d in DECODINGS if kept(m, p, d)]

    def left_out(self) -> list[str]:
        """What the trimmed plan does not time, in words (the JSON and docs/serving.md say it)."""
        if not self.trimmed:
            return [f"{m}: int8, the serving batch and the longer summaries" for m in self.big]
        later = ", ".join(str(n) for n in self.new_tokens[1:])
        return [*(f"{m}: every cell but fp32 at batch 1 with {self.new_tokens[0]}-token summaries" for m in self.big),
                f"the serving batch with {later}-token summaries",
                "int8 beam search beyond batch 1 and the first length (a student is served greedy)",
                f"the students' beam search with {later}-token summaries"]


_TINY = dict(d_kv=8, num_heads=2, vocab_size=96)
TINY = Plan(shapes={"t5-small": Shape(d_model=16, d_ff=32, num_layers=1, num_decoder_layers=1, **_TINY),
                    "flan-t5-small": Shape(d_model=16, d_ff=16, num_layers=2, num_decoder_layers=2,
                                           feed_forward_proj="gated-gelu", **_TINY),
                    "t5-base": Shape(d_model=32, d_ff=64, num_layers=2, num_decoder_layers=2, **_TINY),
                    "t5-large": Shape(d_model=48, d_ff=96, num_layers=3, num_decoder_layers=3, **_TINY)},
            source_len=24, new_tokens=(6, 10), rounds=3, latency_articles=2, serve_batch=4)
REAL = Plan(shapes={name: PUBLISHED[name] for name in (*STUDENTS, *TEACHERS)})


@dataclass(frozen=True)
class Cell:
    model: str
    precision: str
    decoding: str

    @property
    def key(self) -> str:
        return f"{self.model} {self.precision} {self.decoding}"


# ----------------------------------------------------------------------------- models


def build(shape: Shape, seed: int = 0):
    return shape.build(seed=seed).eval()


def int8_torch_dynamic(model):
    """torch.ao's dynamic quantization: int8 weights of every Linear, activations quantized per batch
    (what `python -m kd.summarize --int8` serves)."""
    from kd.models.generation import quantize_int8

    return quantize_int8(model)


def int8_torchao(model):
    """torchao's int8 dynamic activations with int8 weights, on every Linear."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    quantize_(model, Int8DynamicActivationInt8WeightConfig())
    return model


INT8 = {"torch-dynamic": int8_torch_dynamic, "torchao": int8_torchao}


def variant(model, precision: str, int8: str):
    """`model` (fp32) in `precision`: itself, an int8 copy by path `int8`, or a bf16 copy."""
    if precision == "fp32":
        return model
    if precision == "int8":
        return INT8[int8](copy.deepcopy(model))
    return copy.deepcopy(model).to(torch.bfloat16)


# ----------------------------------------------------------------------------- timing


def articles(plan: Plan, n: int, vocab_size: int, seed: int = 0) -> torch.Tensor:
    """`n` random articles of `source_len` ids in [2, vocab): never pad (0) or EOS (1). (n, L)"""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(2, vocab_size, (n, plan.source_len), generator=g)


def decode(model, ids: torch.Tensor, *, num_beams: int, new_tokens: int) -> None:
    from kd.models.modeling import generate_kwargs

    ids = ids.to(model.device)
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), num_beams=num_beams,
                             do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                             **generate_kwargs(model))
    if out.shape[1] < new_tokens:  # the decoder start token plus at least new_tokens
        raise RuntimeError(f"serve bench: generated {out.shape[1]} tokens, expected {new_tokens}")


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between the sorted values."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def rotated(items: list, r: int) -> list:
    """`items` starting at position r (mod len): each round starts with another cell, so no cell is
    always timed first or right after the heaviest one."""
    k = r % len(items) if items else 0
    return items[k:] + items[:k]


@dataclass
class Group:
    """The timings of one (length, batch) group: seconds per cell and round, and every article's latency."""

    new_tokens: int
    batch: int
    rounds: list[dict[str, float]] = field(default_factory=list)  # per round: cell key -> seconds
    latencies: dict[str, list[float]] = field(default_factory=dict)  # batch 1: cell key -> seconds each


def time_group(plan: Plan, cells: list[Cell], models: dict[tuple[str, str], object], *, new_tokens: int,
               batch: int, sync: Callable[[], None], log: Callable[[str], None]) -> Group:
    group = Group(new_tokens, batch)
    n = plan.latency_articles if batch == 1 else batch
    inputs = {m: articles(plan, n, plan.shapes[m].vocab_size) for m in plan.shapes}
    for cell in cells:  # untimed warm-up: kernels, allocator, lazy init
        decode(models[cell.model, cell.precision], inputs[cell.model][:batch], num_beams=DECODINGS[cell.decoding],
               new_tokens=2)
    for r in range(plan.rounds):
        seconds: dict[str, float] = {}
        for cell in rotated(cells, r):
            model, beams = models[cell.model, cell.precision], DECODINGS[cell.decoding]
            total = 0.0
            for start in range(0, n, batch):
                sync()
                tick = time.perf_counter()
                decode(model, inputs[cell.model][start:start + batch], num_beams=beams, new_tokens=new_tokens)
                sync()
                elapsed = time.perf_counter() - tick
                total += elapsed
                if batch == 1:
                    group.latencies.setdefault(cell.key, []).append(elapsed)
            seconds[cell.key] = total
        group.rounds.append(seconds)
        log(f"serve: {new_tokens} tokens, batch {batch}: round {r + 1}/{plan.rounds} done")
    return group


def summarize(group: Group, plan: Plan) -> list[dict]:
    """One row per cell: latency p50/p95 (batch 1) or articles per second (a serving batch), medians of rounds."""
    rows = []
    for key in group.rounds[0]:
        model, precision, decoding = key.split(" ")
        per_round = [r[key] for r in group.rounds]
        row = {"model": model, "precision": precision, "decoding": decoding, "new_tokens": group.new_tokens,
               "batch": group.batch}
        if group.batch == 1:
            lat = group.latencies[key]
            row |= {"p50_s": round(percentile(lat, 50), 4), "p95_s": round(percentile(lat, 95), 4),
                    "n_articles": len(lat)}
        else:
            row |= {"articles_per_s": round(group.batch / statistics.median(per_round), 3)}
        rows.append(row)
    return rows


def ratio(group: Group, slow: str, fast: str) -> Optional[float]:
    """Median over rounds of seconds(slow) / seconds(fast): how many times faster `fast` runs."""
    if slow not in group.rounds[0] or fast not in group.rounds[0]:
        return None
    return round(statistics.median(r[slow] / r[fast] for r in group.rounds), 2)


def ratios(group: Group, plan: Plan, device: str) -> dict:
    """Like for like (student vs teacher at the same decoding and precision) and served (the student
    greedy in each precision against the fp32 teacher at beam 4)."""
    like, served = {}, {}
    for s in STUDENTS:
        for t in TEACHERS:
            for p in plan.precisions(device):
                for d in DECODINGS:
                    value = ratio(group, f"{t} {p} {d}", f"{s} {p} {d}")
                    if value is not None:
                        like[f"{s} vs {t}, {p} {d}"] = value
                value = ratio(group, f"{t} fp32 beam4", f"{s} {p} greedy")
                if value is not None:
                    served[f"{s} {p} greedy vs {t} fp32 beam4"] = value
    return {"like_for_like": like, "served": served}


# ----------------------------------------------------------------------------- per model: disk, load, memory


def probe(model_dir: str, precision: str, int8: str, source_len: int, new_tokens: int) -> dict:
    """In a fresh process (`--probe`): load time (from_pretrained, plus quantizing for int8) and one
    batch-1 greedy decode, so the launcher's wait4 reports this model's peak RSS."""
    import transformers.models.t5.modeling_t5  # noqa: F401  (the import is not the model's load time)
    from transformers import AutoModelForSeq2SeqLM

    tick = time.perf_counter()
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir, attn_implementation="sdpa").eval()
    model = variant(model, precision, int8)
    load_s = time.perf_counter() - tick
    ids = torch.randint(2, model.config.vocab_size, (1, source_len), generator=torch.Generator().manual_seed(0))
    decode(model, ids, num_beams=1, new_tokens=new_tokens)
    return {"load_s": round(load_s, 2)}


def model_facts(name: str, model, plan: Plan, precision: str, workdir: Path, threads: int) -> dict:
    """Parameters, size on disk (fp32: save_pretrained's safetensors; int8: the quantized state dict as
    torch.save writes it), load time and peak RSS from a fresh process (tools.peakrss)."""
    from tools.peakrss import measured

    model_dir = workdir / name
    if not model_dir.is_dir():
        model.save_pretrained(model_dir)
    if precision == "fp32":
        disk = sum(f.stat().st_size for f in model_dir.glob("*.safetensors"))
    else:
        path = workdir / f"{name}.{precision}.pt"
        torch.save(variant(model, precision, plan.int8).state_dict(), path)
        disk = path.stat().st_size
    out = workdir / f"{name}.{precision}.json"
    cmd = [sys.executable, "-m", "tools.servebench", "--probe", str(model_dir), "--precision", precision,
           "--int8", plan.int8, "--source-len", str(plan.source_len), "--new-tokens", str(plan.new_tokens[0]),
           "--probe-out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    m = measured(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if m["returncode"] != 0:
        raise RuntimeError(f"serve bench: probing {name} {precision} failed (exit {m['returncode']})")
    return {"parameters": sum(p.numel() for p in model.parameters()), "disk_bytes": disk,
            **json.loads(out.read_text()), "peak_rss_mb": m["peak_rss_mb"]}


# ----------------------------------------------------------------------------- entry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes and lengths: the same path in seconds")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per group (default 3, at least 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (CPU)")
    parser.add_argument("--int8", choices=sorted(INT8), default=REAL.int8, help="the int8 path of the grid")
    parser.add_argument("--int8-paths", nargs="*", choices=sorted(INT8), default=list(REAL.int8_paths),
                        help="int8 paths measured side by side first (none: skip)")
    parser.add_argument("--full", action="store_true", help="t5-large in every cell too (well over the budget)")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S)
    parser.add_argument("--out", type=Path, default=None, help="write the measurements as JSON here")


def plan_of(args) -> Plan:
    plan = TINY if args.tiny else REAL
    rounds = args.rounds or plan.rounds
    if rounds < 3:
        raise SystemExit("serve bench: --rounds must be at least 3 (ratios are medians of rounds)")
    return replace(plan, rounds=rounds, threads=args.threads, int8=args.int8,
                   int8_paths=tuple(args.int8_paths), big=() if args.full else plan.big,
                   trimmed=plan.trimmed and not args.full)


def compare_int8_paths(plan: Plan, fp32: dict, log) -> dict:
    """Each int8 path against fp32 on t5-small and t5-base (greedy, batch 1, the first length), interleaved."""
    names = [m for m in ("t5-small", "t5-base") if m in fp32] or list(fp32)[:2]
    models = {(m, "fp32"): fp32[m] for m in names}
    cells = [Cell(m, "fp32", "greedy") for m in names]
    unavailable, measured = {}, []
    for path in plan.int8_paths:
        try:
            for m in names:
                models[m, path] = INT8[path](copy.deepcopy(fp32[m]))
        except ImportError as e:  # its package is not installed here: say so, measure the others
            unavailable[path] = f"{type(e).__name__}: {e}"
            continue
        measured.append(path)
        cells += [Cell(m, path, "greedy") for m in names]
    group = time_group(plan, cells, models, new_tokens=plan.new_tokens[0], batch=1, sync=lambda: None, log=log)
    return {"cells": summarize(group, plan), "unavailable": unavailable,
            "speedup_over_fp32": {f"{m} {path}": ratio(group, f"{m} fp32 greedy", f"{m} {path} greedy")
                                  for path in measured for m in names}}


def compare_greedy_paths(plan: Plan, fp32: dict, log) -> dict:
    """`model.generate` against kd.models.greedy (what the benchmark, the speed stage and kd.summarize
    decode greedily with) on the student shape, batch 1, the first length: the same ids, and how much
    faster, as the median over interleaved rounds of each round's ratio. The end token is one the model
    cannot emit (an id past its vocabulary), so every summary runs to the full length on both paths."""
    from kd.models import greedy
    from kd.models.modeling import generate_kwargs

    name = "t5-small" if "t5-small" in fp32 else next(iter(fp32))
    model, n = copy.deepcopy(fp32[name]), plan.new_tokens[0]
    model.generation_config.eos_token_id = model.config.vocab_size
    ids = articles(plan, plan.latency_articles, model.config.vocab_size, seed=1)

    def plain(x):
        return model.generate(input_ids=x, attention_mask=torch.ones_like(x), num_beams=1, do_sample=False,
                              max_new_tokens=n, **generate_kwargs(model))

    def lean(x):
        return greedy.greedy(model, x, torch.ones_like(x), max_new_tokens=n)

    paths = {"generate": plain, "kd.models.greedy": lean}
    with torch.inference_mode():
        outputs = {k: [f(ids[i:i + 1]) for i in range(len(ids))] for k, f in paths.items()}  # also the warm-up
        same = all(torch.equal(a, b) for a, b in zip(*outputs.values()))
        rounds = []
        for r in range(plan.rounds):
            seconds = {}
            for k in rotated(list(paths), r):
                tick = time.perf_counter()
                for i in range(len(ids)):
                    paths[k](ids[i:i + 1])
                seconds[k] = time.perf_counter() - tick
            rounds.append(seconds)
    group = Group(n, 1, rounds=rounds)
    log(f"serve: greedy paths on {name}: identical ids {same}")
    return {"model": name, "new_tokens": n, "articles": len(ids), "identical_ids": same,
            "seconds_per_article": {k: round(statistics.median(r[k] for r in rounds) / len(ids), 4) for k in paths},
            "lean_speedup": ratio(group, "generate", "kd.models.greedy")}


def run(args) -> dict:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("serve bench: no CUDA device here")
    start = time.perf_counter()
    plan = plan_of(args)
    torch.set_num_threads(plan.threads)
    device = args.device
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    from kd.evaluation.speed import host_info

    result: dict = {"host": host_info(device=device, torch_threads=plan.threads, n_samples=plan.latency_articles,
                                      rounds=plan.rounds), "plan": {
        "source_len": plan.source_len, "new_tokens": list(plan.new_tokens), "rounds": plan.rounds,
        "latency_articles": plan.latency_articles, "serve_batch": plan.serve_batch, "int8": plan.int8,
        "left_out": plan.left_out(),
        "shapes": {m: asdict(s) for m, s in plan.shapes.items()}, "tiny": bool(args.tiny)}}

    def save() -> None:
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")

    fp32 = {m: build(s).to(device) for m, s in plan.shapes.items()}
    if device == "cpu" and plan.int8_paths:
        result["int8_paths"] = compare_int8_paths(plan, fp32, log)
        save()
    result["greedy_paths"] = compare_greedy_paths(plan, fp32, log)
    save()
    models = {(m, "fp32"): model for m, model in fp32.items()}
    for m, model in fp32.items():
        for p in plan.precisions(device)[1:]:
            if m not in plan.big:
                models[m, p] = variant(model, p, plan.int8)
    with tempfile.TemporaryDirectory(prefix="serve-") as tmp:
        result["models"] = {m: {p: model_facts(m, fp32[m], plan, p, Path(tmp), plan.threads)
                                for p in plan.precisions(device) if (m, p) in models} for m in plan.shapes}
    save()
    result["cells"], result["ratios"] = [], {}
    for new_tokens in plan.new_tokens:
        for batch in plan.batches(new_tokens):
            cells = plan.cells(device, new_tokens, batch)
            group = time_group(plan, cells, models, new_tokens=new_tokens, batch=batch, sync=sync, log=log)
            result["cells"] += summarize(group, plan)
            result["ratios"][f"{new_tokens} tokens, batch {batch}"] = ratios(group, plan, device)
            save()
    result["wall_s"] = round(time.perf_counter() - start, 1)
    result["ok"] = args.tiny or result["wall_s"] <= args.budget_s
    save()
    for line in format_lines(result):
        print(line)
    return result


def format_lines(r: dict) -> list[str]:
    lines = []
    for group, blocks in r.get("ratios", {}).items():
        for kind, values in blocks.items():
            lines += [f"{group}, {kind}: {name} {value:g}x" for name, value in values.items()]
    lines.append(f"wall {r.get('wall_s')} s")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    p.add_argument("--probe-out", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    p.add_argument("--source-len", type=int, default=REAL.source_len, help=argparse.SUPPRESS)
    p.add_argument("--new-tokens", type=int, default=REAL.new_tokens[0], help=argparse.SUPPRESS)
    add_arguments(p)
    args = p.parse_args(argv)
    if args.probe:
        torch.set_num_threads(args.threads)
        facts = probe(args.probe, args.precision, args.int8, args.source_len, args.new_tokens)
        args.probe_out.write_text(json.dumps(facts))
        return 0
    result = run(args)
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
