"""The benchmark stage's worker: every model on the test split with identical decoding.

Each model is measured in its own spawned process, so its peak memory is its own and not the
high-water mark of the models loaded before it. Generation uses SDPA attention under
`torch.inference_mode()`; the first `warmup_batches` batches are generated but not timed.

Launched as several processes (`accelerate launch`), each process summarises every world-th article
on its own device; predictions are gathered back into test-set order on the main process, throughput
is the sum over processes and peak memory the largest of them. Only the main process writes.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

from kd.errors import ConfigError
from kd.metrics import lead_n, summary_scores
from kd.params import BenchmarkParams

log = logging.getLogger(__name__)

RESULTS_JSON = "benchmark_results.json"
TABLE_CSV = "comparison_table.csv"
REPORT_TXT = "benchmark_report.txt"
SCORES_PNG = "scores.png"
SPEED_PNG = "quality_vs_speed.png"


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def generate_summaries(model_dir: str, articles: list[str], prefix: str, max_source_length: int,
                       decoding: dict, device: str = "cpu") -> dict:
    """Load one model and summarise `articles`; returns predictions, timing and memory."""
    import torch

    from kd.modeling import count_parameters, load_model, size_on_disk_mb
    from kd.tokenization import load_tokenizer

    torch.manual_seed(0)
    tokenizer = load_tokenizer(model_dir)
    base_rss = _rss_mb()
    model = load_model(model_dir, attn_implementation="sdpa").to(device).eval()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    bs, warmup = decoding["batch_size"], decoding["warmup_batches"]
    batches = [articles[i:i + bs] for i in range(0, len(articles), bs)]
    predictions, timed_s, timed_n = [], 0.0, 0
    with torch.inference_mode():
        # Warm-up batches are generated again afterwards so every article is still summarised once.
        for batch in batches[:warmup]:
            _generate(model, tokenizer, batch, prefix, max_source_length, decoding, device)
        for batch in batches:
            start = time.perf_counter()
            predictions += _generate(model, tokenizer, batch, prefix, max_source_length, decoding, device)
            timed_s += time.perf_counter() - start
            timed_n += len(batch)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
            else _peak_rss_mb() - base_rss)
    return {
        "predictions": predictions,
        "params": count_parameters(model),
        "size_mb": size_on_disk_mb(model_dir),
        "samples_per_s": timed_n / timed_s,
        "ms_per_sample": 1000 * timed_s / timed_n,
        "peak_mem_mb": peak,
    }


def _generate(model, tokenizer, batch, prefix, max_source_length, decoding, device) -> list[str]:
    from kd.modeling import generate_kwargs

    enc = tokenizer([prefix + a for a in batch], max_length=max_source_length, truncation=True,
                    padding=True, return_tensors="pt").to(device)
    out = model.generate(**enc, num_beams=decoding["num_beams"], max_new_tokens=decoding["max_new_tokens"],
                         do_sample=False, **generate_kwargs(model))
    return [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True)]


def _in_child(args) -> dict:
    return generate_summaries(*args)


def run_benchmark(*, models: dict[str, Path], test_records: list[dict], bench: BenchmarkParams,
                  prefix: str, max_source_length: int, device: str = "cpu") -> tuple[list[dict], list[dict]]:
    """Returns (rows, examples): one row per model plus lead-N, and a few side-by-side examples."""
    if "teacher" not in models:
        raise ConfigError("benchmark: --model teacher=PATH is required (every ratio is relative to it)")
    for name, path in models.items():
        if not (Path(path) / "config.json").is_file():
            raise ConfigError(f"benchmark: model {name!r}: {path} has no config.json; train it first")
    records = test_records[: bench.max_samples] if bench.max_samples else test_records
    if not records:
        raise ConfigError("benchmark: the test split is empty")
    articles = [r["article"] for r in records]
    references = [r["highlights"] for r in records]
    decoding = {k: v for k, v in dataclasses.asdict(bench).items()
                if k in ("num_beams", "max_new_tokens", "batch_size", "warmup_batches")}

    rows, outputs = [], {}
    ctx = mp.get_context("spawn")
    rank, world, device = _process_shard(device)
    for name, path in models.items():
        log.info("benchmarking %s (%s) on %d samples", name, path, len(articles))
        with ctx.Pool(1) as pool:
            res = pool.apply(_in_child, ((str(path), articles[rank::world], prefix, max_source_length, decoding,
                                          device),))
        if world > 1:
            res = _gather(res, n=len(articles))
        outputs[name] = res.pop("predictions")
        kind = "teacher" if name == "teacher" else "student"
        rows.append({"model": name, "kind": kind, **summary_scores(outputs[name], references), **res})
        log.info("%s: %s", name, {k: round(v, 3) for k, v in rows[-1].items() if isinstance(v, float)})
    lead_name = f"lead{bench.lead_n}"
    outputs[lead_name] = [lead_n(a, bench.lead_n) for a in articles]
    rows.append({"model": lead_name, "kind": "baseline-heuristic",
                 **summary_scores(outputs[lead_name], references)})
    examples = [
        {"id": r["id"], "article": r["article"], "reference": r["highlights"],
         **{name: preds[i] for name, preds in outputs.items()}}
        for i, r in enumerate(records[: bench.num_examples])
    ]
    return rows, examples


def _process_shard(device: str) -> tuple[int, int, str]:
    """(rank, world size, device) of this process; one process unless started by a distributed launcher."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return 0, 1, device
    from accelerate import PartialState

    state = PartialState(cpu=device == "cpu")
    return state.process_index, state.num_processes, str(state.device)


def _gather(res: dict, *, n: int) -> dict:
    """Every process's shard result -> the whole test set's: predictions back in order, throughput
    summed (the processes generate at the same time), peak memory the largest."""
    from accelerate.utils import gather_object

    parts = gather_object([res])  # one dict per process, rank order
    world = len(parts)
    predictions = [""] * n
    for rank, part in enumerate(parts):
        predictions[rank::world] = part["predictions"]
    samples_per_s = sum(p["samples_per_s"] for p in parts)
    return {"predictions": predictions, "params": res["params"], "size_mb": res["size_mb"],
            "samples_per_s": samples_per_s, "ms_per_sample": 1000 / samples_per_s,
            "peak_mem_mb": max(p["peak_mem_mb"] for p in parts), "processes": world}


def write_outputs(rows: list[dict], examples: list[dict], bench: BenchmarkParams, out_dir: Path) -> dict:
    from kd.io import atomic_write_json
    from kd.report import add_relative_columns, plot_quality_vs_speed, plot_scores, write_csv, write_report

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    full = add_relative_columns(rows)
    # Nested {model: {metric: value}}: `dvc metrics show/diff` flattens it to teacher.rouge1 etc.
    nested = {r["model"]: {k: round(v, 4) if isinstance(v, float) else v
                           for k, v in r.items() if k not in ("model", "kind") and v is not None}
              for r in full}
    atomic_write_json(out_dir / RESULTS_JSON, nested)
    write_csv(full, out_dir / TABLE_CSV)
    write_report(out_dir / REPORT_TXT, full, examples, dataclasses.asdict(bench),
                 max_examples=bench.num_examples)
    plot_scores(full, out_dir / SCORES_PNG)
    plot_quality_vs_speed(full, out_dir / SPEED_PNG)
    return nested
