"""The quality half of the benchmark: one model (or lead-N) on the test split, scored.

One stage run per model (`benchmark@<name>`), so retraining one student rescores only that student.
Nothing here is timed (kd/speed.py times every model in one interleaved run): the same model and
test split give the same predictions and byte-identical output files.

Launched as several processes (`accelerate launch`), each process summarises every world-th article
on its own device; the predictions are gathered back into test-set order and only the main process
writes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

from kd.errors import ConfigError
from kd.metrics import lead_n, summary_scores
from kd.params import BenchmarkParams

log = logging.getLogger(__name__)

# Floats in the metrics file are rounded, so `dvc metrics diff` shows changes, not float noise.
DIGITS = 4


def scored_records(records: Sequence[dict], max_samples: int | None) -> list[dict]:
    """The scored part of the test split: its first `max_samples` records (all when None)."""
    subset = list(records[:max_samples] if max_samples else records)
    if not subset:
        raise ConfigError("benchmark: the test split is empty")
    return subset


def quality_metrics(predictions: Sequence[str], references: Sequence[str], *, params: int | None = None,
                    size_mb: float | None = None) -> dict:
    """The flat metrics file: rouge1, rouge2, rougeL, rougeLsum, bleu1..bleu4 (x100), then params and
    size_mb for a model (not for lead-N), then n_examples."""
    metrics = {key: round(value, DIGITS) for key, value in summary_scores(predictions, references).items()}
    if params is not None:
        metrics["params"] = int(params)
    if size_mb is not None:
        metrics["size_mb"] = round(size_mb, DIGITS)
    metrics["n_examples"] = len(predictions)
    return metrics


def prediction_lines(ids: Sequence[str], predictions: Sequence[str]) -> str:
    """The predictions file: one `{"id": ..., "prediction": ...}` JSON line per example, in test order."""
    if len(ids) != len(predictions):
        raise ValueError(f"{len(ids)} ids but {len(predictions)} predictions")
    return "".join(json.dumps({"id": i, "prediction": p}, ensure_ascii=False) + "\n"
                   for i, p in zip(ids, predictions))


def score_lead(*, records: Sequence[dict], n: int) -> tuple[dict, list[str]]:
    """(metrics, predictions) of the lead-n baseline: the first n sentences of each article."""
    predictions = [lead_n(r["article"], n) for r in records]
    return quality_metrics(predictions, [r["highlights"] for r in records]), predictions


def score_model(*, model_dir: str | Path, records: Sequence[dict], bench: BenchmarkParams, prefix: str,
                max_source_length: int) -> tuple[dict, list[str]]:
    """(metrics, predictions) of one model, decoded with the benchmark's settings on `bench.device`.

    Under a distributed launcher every process decodes its shard; every process returns the whole
    test set's predictions (the main process writes them)."""
    from kd.generation import check_model_dir, generate_all, load_summarizer

    check_model_dir(model_dir)  # before torch is imported or any device set up: a missing model fails fast
    from kd.modeling import count_parameters, resolve_device, size_on_disk_mb

    rank, world, device = _process_shard(resolve_device(bench.device))
    model, tokenizer = load_summarizer(model_dir, device)
    articles = [r["article"] for r in records]
    log.info("summarising %d articles with %s on %s (process %d of %d)", len(articles[rank::world]), model_dir,
             device, rank + 1, world)
    predictions = generate_all(model, tokenizer, articles[rank::world], batch_size=bench.batch_size, prefix=prefix,
                               max_source_length=max_source_length, num_beams=bench.num_beams,
                               max_new_tokens=bench.max_new_tokens, device=device)
    if world > 1:
        predictions = _gather(predictions, n=len(articles))
    metrics = quality_metrics(predictions, [r["highlights"] for r in records], params=count_parameters(model),
                              size_mb=size_on_disk_mb(model_dir))
    return metrics, predictions


def write_quality(*, metrics: dict, out: Path, records: Sequence[dict], predictions: Sequence[str],
                  predictions_out: Path) -> None:
    from kd.io import atomic_write_json, atomic_write_text

    atomic_write_text(predictions_out, prediction_lines([r["id"] for r in records], predictions))
    atomic_write_json(out, metrics)


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
