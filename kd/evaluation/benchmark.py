"""The quality half of the benchmark: one model (or lead-N) on the validation and test splits, scored
per example (ROUGE, faithfulness, shape) and summed up with bootstrap intervals.

One stage run per model (`benchmark@<name>`), so retraining one student rescores only that student.
Nothing here is timed (kd/evaluation/speed.py times every model in one interleaved run): the same model and
test split give the same predictions and byte-identical output files.

Launched as several processes (`accelerate launch`), each process summarises every world-th article
on its own device; the predictions are gathered back into test-set order and only the main process
writes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from kd.errors import ConfigError
from kd.metrics.rouge import lead_n
from kd.params import BenchmarkParams

log = logging.getLogger(__name__)

# Floats in the results files are rounded, so `dvc metrics diff` shows changes, not float noise.
DIGITS = 4
# Every model is scored on both: validation is what experiments and sweeps compare, test is reported.
SPLITS = ("validation", "test")
LEAD = "lead"  # the decoding name of the lead-N rows


def decodings(num_beams: int) -> dict[str, int]:
    """Decoding name -> beams: beam search with the benchmark's beams, and greedy (small students are
    deployed greedy, and sequence-level KD is said to make beam search unnecessary). Only greedy when
    `num_beams` is 1."""
    return {"beam": num_beams, "greedy": 1} if num_beams > 1 else {"greedy": 1}


def scored_records(records: Sequence[dict], max_samples: int | None, split: str = "test") -> list[dict]:
    """The scored part of a split: its first `max_samples` records (all when None)."""
    subset = list(records[:max_samples] if max_samples else records)
    if not subset:
        raise ConfigError(f"benchmark: the {split} split is empty")
    return subset


def _rounded(values: dict) -> dict:
    return {k: round(v, DIGITS) if isinstance(v, float) else v for k, v in values.items()}


def example_rows(records: Sequence[dict], predictions: Sequence[str], *, split: str, decoding: str) -> list[dict]:
    """Per-example scores, one row per record in split order: split, decoding, id, every registered metric's
    scores (kd.metrics.registry: ROUGE-1/2/L/Lsum, faithfulness and shape, ...), and the prediction itself."""
    from kd.metrics.registry import score_examples

    scores = score_examples(predictions, records)
    return [{"split": split, "decoding": decoding, "id": r["id"], **_rounded(row), "prediction": p}
            for r, p, row in zip(records, predictions, scores)]


def split_metrics(rows: Sequence[dict], references: Sequence[str]) -> dict:
    """One split and decoding summed up: the mean of every per-example metric (ROUGE, faithfulness,
    length, ...), corpus BLEU (sacreBLEU), a 95% bootstrap interval (`<key>_low`, `<key>_high`; 1,000
    resamples of the examples, fixed seed) for each compared key of the metric registry, and n_examples."""
    import numpy as np

    from kd.metrics.bleu import bleu
    from kd.metrics.bootstrap import interval
    from kd.metrics.registry import compared_keys

    keys = [k for k, v in rows[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    compared = set(compared_keys())
    metrics: dict = {}
    for key in keys:
        values = [row[key] for row in rows]
        if key in compared:  # shape metrics (length, ...) are plain means
            ci = interval(values)
            metrics[key], metrics[f"{key}_low"], metrics[f"{key}_high"] = ci.mean, ci.low, ci.high
        else:
            metrics[key] = float(np.mean(np.asarray(values, dtype=float)))
    metrics["bleu"] = bleu([row["prediction"] for row in rows], references)
    metrics["n_examples"] = len(rows)
    return _rounded(metrics)


def quality_file(blocks: dict[str, dict[str, dict]], *, params: int | None = None,
                 size_mb: float | None = None) -> dict:
    """The model's quality file: params and size_mb (models only), how BLEU was computed (sacreBLEU's
    signature), then {split: {decoding: metrics}}."""
    from kd.metrics.bleu import signature

    head = {} if params is None else {"params": int(params), "size_mb": round(size_mb, DIGITS)}
    return {**head, "bleu_signature": signature(), **blocks}


def evaluate(splits: dict[str, Sequence[dict]], summarize) -> tuple[dict, list[dict]]:
    """({split: {decoding: metrics}}, every example row) for `summarize(records) -> {decoding: predictions}`
    on each split."""
    blocks, rows = {}, []
    for split, records in splits.items():
        blocks[split] = {}
        for decoding, predictions in summarize(records).items():
            split_rows = example_rows(records, predictions, split=split, decoding=decoding)
            blocks[split][decoding] = split_metrics(split_rows, [r["highlights"] for r in records])
            rows += split_rows
    return blocks, rows


def score_lead(*, splits: dict[str, Sequence[dict]], n: int) -> tuple[dict, list[dict]]:
    """(quality file, example rows) of the lead-n baseline: the first n sentences of each article."""
    blocks, rows = evaluate(splits, lambda records: {LEAD: [lead_n(r["article"], n) for r in records]})
    return quality_file(blocks), rows


def score_model(*, model_dir: str | Path, splits: dict[str, Sequence[dict]], bench: BenchmarkParams, prefix: str,
                max_source_length: int) -> tuple[dict, list[dict]]:
    """(quality file, example rows) of one model, decoded with each of the benchmark's decodings on
    `bench.device`.

    Under a distributed launcher every process decodes its shard; every process returns the whole
    result (the main process writes it)."""
    from kd.models.generation import check_model_dir, generate_all, load_summarizer

    check_model_dir(model_dir)  # before torch is imported or any device set up: a missing model fails fast
    from kd.models.modeling import count_parameters, resolve_device, size_on_disk_mb

    rank, world, device = _process_shard(resolve_device(bench.device))
    model, tokenizer = load_summarizer(model_dir, device)

    def summarize(records):
        articles = [r["article"] for r in records]
        out = {}
        for decoding, beams in decodings(bench.num_beams).items():
            log.info("%s: %d articles, %s (%d beams), on %s (process %d of %d)", model_dir,
                     len(articles[rank::world]), decoding, beams, device, rank + 1, world)
            predictions = generate_all(model, tokenizer, articles[rank::world], batch_size=bench.batch_size,
                                       prefix=prefix, max_source_length=max_source_length, num_beams=beams,
                                       max_new_tokens=bench.max_new_tokens, device=device)
            out[decoding] = _gather(predictions, n=len(articles)) if world > 1 else predictions
        return out

    blocks, rows = evaluate(splits, summarize)
    return quality_file(blocks, params=count_parameters(model), size_mb=size_on_disk_mb(model_dir)), rows


def write_quality(*, quality: dict, out: Path, rows: Sequence[dict], examples_out: Path) -> None:
    from kd.evaluation.examples import example_lines
    from kd.io import atomic_write_json, atomic_write_text

    atomic_write_text(examples_out, example_lines(rows))
    atomic_write_json(out, quality)


def _process_shard(device: str) -> tuple[int, int, str]:
    """(rank, world size, device) of this process; one process unless started by a distributed launcher."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return 0, 1, device
    from accelerate import PartialState

    state = PartialState(cpu=device == "cpu")
    return state.process_index, state.num_processes, str(state.device)


def _gather(shard: list[str], *, n: int) -> list[str]:
    """Every process's shard of predictions (process r holds articles r, r + world, ...) -> all `n`
    predictions in test-set order, on every process."""
    from accelerate.utils import gather_object

    parts = gather_object([shard])  # one list per process, rank order
    world = len(parts)
    predictions = [""] * n
    for rank, part in enumerate(parts):
        predictions[rank::world] = part
    return predictions
