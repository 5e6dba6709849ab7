"""The per-example metric registry: a metric is one function registered by name.

A metric scores every prediction of a split against its record (article, reference, and the facts when
the corpus records them) and returns one dict of scores per example:

    from kd.metrics.registry import register

    @register("copy_rate")                   # compare=("copy_rate",), headline=("copy_rate",) by default
    def copy_rate(predictions, records):     # predictions: list[str]; records: {id, article, highlights, ...}
        return [{"copy_rate": 100.0 * (p in r["article"])} for p, r in zip(predictions, records)]

Put it in any module of `kd/metrics/` (a new file is fine): `metrics()` imports every module of the
package, so nothing else is edited. The benchmark then writes each key per example and its split mean;
keys named in `compare` also get a bootstrap interval in the benchmark, paired intervals against the
control and the teacher in the report, and a spread over seeds in `kd.seeds`; keys named in `headline`
are columns of the seeds tables. Corpus-level scores (BLEU) are not per example and live in
`kd.metrics.bleu`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from kd.plugins import Registry

Scorer = Callable[[Sequence[str], Sequence[Mapping]], list[dict[str, float]]]


@dataclass(frozen=True)
class Metric:
    name: str
    score: Scorer
    compare: tuple[str, ...]  # keys compared with intervals (benchmark, report, seeds)
    headline: tuple[str, ...]  # keys shown as columns of the seeds tables
    order: int  # position among metrics (columns of the examples file, tables); then by name


# Modules of this package that register no metric: skipped by the scan.
METRICS: Registry[Metric] = Registry("kd.metrics", kind="metric", helpers={"bootstrap", "bleu"})


def register(name: str, *, compare: Sequence[str] | None = None, headline: Sequence[str] | None = None,
             order: int = 100) -> Callable[[Scorer], Scorer]:
    """Registers `score(predictions, records) -> [scores per example]` as metric `name`."""

    def add(score: Scorer) -> Scorer:
        keys = tuple(compare) if compare is not None else (name,)
        METRICS.add(name, Metric(name, score, keys, tuple(headline) if headline is not None else keys, order))
        return score

    return add


def metrics() -> list[Metric]:
    """Every registered metric, in order (imports each module of kd/metrics once)."""
    return sorted(METRICS.load_all().values(), key=lambda m: (m.order, m.name))


def compared_keys() -> tuple[str, ...]:
    """The keys every comparison (intervals, paired differences, seed spreads) covers, in order."""
    return tuple(key for metric in metrics() for key in metric.compare)


def headline_keys() -> tuple[str, ...]:
    return tuple(key for metric in metrics() for key in metric.headline)


def score_examples(predictions: Sequence[str], records: Sequence[Mapping]) -> list[dict[str, float]]:
    """Every registered metric of each example, merged into one dict per example (metric order)."""
    if len(predictions) != len(records):
        raise ValueError(f"{len(records)} records but {len(predictions)} predictions")
    rows: list[dict[str, float]] = [{} for _ in predictions]
    for metric in metrics():
        scores = metric.score(predictions, records)
        if len(scores) != len(rows):
            raise ValueError(f"metric {metric.name!r} returned {len(scores)} rows for {len(rows)} predictions")
        for row, score in zip(rows, scores):
            row.update(score)
    return rows
