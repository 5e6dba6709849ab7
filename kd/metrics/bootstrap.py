"""Percentile bootstrap over examples: how much a corpus mean, or a difference between two models
scored on the same examples, could move if the test set were drawn again; and its two-level form over
training seeds and examples, for results averaged over several training runs.

Every function draws its resamples from `np.random.default_rng(seed)`, so the same inputs and
arguments give the same interval on every machine and every rerun (the report stage's outputs, and
so dvc.lock, stay reproducible). Differences are *paired*: both models are resampled with the same
example indices, which removes the example-to-example variance they share and gives much tighter
intervals than comparing two independent intervals.

A one-level interval (`interval`, `paired`, `gap_closed`) describes one training run: it is over
examples only, and says nothing of what another training seed would give. The two-level functions
(`two_level_paired`, `two_level_gap_closed`) take per-seed, per-example scores of shape (seeds,
examples) and resample both: each resample draws the seeds with replacement, then the examples with
replacement, the same example indices for every drawn seed and every model (an example is the same
article under every seed and model, so its scores are paired across both), and takes the statistic of
the resampled means. With one seed they give exactly the one-level interval.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np


def resample_indices(n: int, *, resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """(resamples, n) example indices drawn with replacement; the same arguments give the same array.

    Exactly `np.random.default_rng(seed).integers(0, n, size=(resamples, n))`, so anyone can
    reproduce an interval with one line of numpy.
    """
    if n < 1:
        raise ValueError(f"cannot resample {n} examples: need at least one")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))  # (R, n)


def _as_values(values: Sequence[float] | np.ndarray, name: str = "values") -> np.ndarray:
    """A 1-D float array of finite numbers, or a ValueError that says what is wrong."""
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty: nothing to bootstrap")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ValueError(f"{name} must be finite; position {bad[0]} is {array[bad[0]]}")
    return array


def _percentiles(means: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central `confidence` share of the resampled means (linear interpolation)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(means, [tail, 100.0 - tail], method="linear")
    return float(low), float(high)


def _rounded(obj: object, digits: int) -> dict[str, float]:
    return {key: round(value, digits) for key, value in dataclasses.asdict(obj).items()}


@dataclasses.dataclass(frozen=True)
class Interval:
    """A corpus mean and its percentile bootstrap interval."""

    mean: float
    low: float
    high: float

    def as_dict(self, digits: int = 4) -> dict[str, float]:
        return _rounded(self, digits)


@dataclasses.dataclass(frozen=True)
class Paired:
    """Mean of per-example differences a - b, its bootstrap interval, and the share of resamples in
    which a does not beat b (mean difference <= 0): a one-sided bootstrap p-value for "a > b"."""

    mean_diff: float
    low: float
    high: float
    share_le_0: float

    def as_dict(self, digits: int = 4) -> dict[str, float]:
        return _rounded(self, digits)


def interval(
    values: Sequence[float] | np.ndarray,
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Interval:
    """Mean of `values` (one score per example) and the percentile interval of resampled means."""
    array = _as_values(values)
    means = array[resample_indices(array.size, resamples=resamples, seed=seed)].mean(axis=1)  # (R,)
    low, high = _percentiles(means, confidence)
    return Interval(mean=float(array.mean()), low=low, high=high)


def paired(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Paired:
    """Paired bootstrap of a - b, where a[i] and b[i] score the same example i (same order)."""
    first, second = _as_values(a, "a"), _as_values(b, "b")
    if first.size != second.size:
        raise ValueError(
            f"paired scores need one value per example on both sides: a has {first.size}, "
            f"b has {second.size}"
        )
    diff = first - second
    means = diff[resample_indices(diff.size, resamples=resamples, seed=seed)].mean(axis=1)  # (R,)
    low, high = _percentiles(means, confidence)
    return Paired(
        mean_diff=float(diff.mean()), low=low, high=high, share_le_0=float(np.mean(means <= 0.0))
    )


def gap_closed(
    student: Sequence[float] | np.ndarray,
    control: Sequence[float] | np.ndarray,
    teacher: Sequence[float] | np.ndarray,
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Interval:
    """The share of the teacher's lead over the control that the student closes, in percent:
    100 * mean(student - control) / mean(teacher - control), with a paired bootstrap interval (the same
    resampled examples for all three; a resample whose teacher does not lead is left out of it).
    100 is the teacher's score, 0 the control's, below 0 worse than the control."""
    s, c, t = _as_values(student, "student"), _as_values(control, "control"), _as_values(teacher, "teacher")
    if not s.size == c.size == t.size:
        raise ValueError(f"one score per example on every side: {s.size}, {c.size}, {t.size}")
    idx = resample_indices(s.size, resamples=resamples, seed=seed)  # (R, n)
    gain, gap = (s - c)[idx].mean(axis=1), (t - c)[idx].mean(axis=1)  # (R,) each
    shares = 100.0 * gain[gap > 0] / gap[gap > 0]
    low, high = _percentiles(shares, confidence) if shares.size else (float("nan"), float("nan"))
    return Interval(mean=float(100.0 * (s - c).mean() / (t - c).mean()), low=low, high=high)


# ---------------------------------------------------------------------------------------------
# Two levels: training seeds, then examples.


def resample_seeds_and_examples(n_seeds: int, n: int, *, resamples: int = 1000,
                                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """((resamples, n) example indices, (resamples, n_seeds) seed indices), both drawn with replacement.

    Exactly `rng = np.random.default_rng(seed)`, then `rng.integers(0, n, size=(resamples, n))`, then
    `rng.integers(0, n_seeds, size=(resamples, n_seeds))`: the examples are drawn first so that their
    indices are `resample_indices`' and one seed reduces to the one-level bootstrap exactly.
    """
    if n_seeds < 1:
        raise ValueError(f"cannot resample {n_seeds} seeds: need at least one")
    if n < 1:
        raise ValueError(f"cannot resample {n} examples: need at least one")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    rng = np.random.default_rng(seed)
    examples = rng.integers(0, n, size=(resamples, n))  # (R, n)
    seeds = rng.integers(0, n_seeds, size=(resamples, n_seeds))  # (R, S)
    return examples, seeds


def _as_matrix(values: Sequence[Sequence[float]] | np.ndarray, name: str) -> np.ndarray:
    """A (seeds, examples) float array of finite numbers, or a ValueError that says what is wrong."""
    array = np.asarray(values, dtype=float)
    if array.ndim != 2:
        raise ValueError(f"{name} must be (seeds, examples), two-dimensional; got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}): nothing to bootstrap")
    bad = np.argwhere(~np.isfinite(array))
    if bad.size:
        s, e = bad[0]
        raise ValueError(f"{name} must be finite; seed row {s}, example {e} is {array[s, e]}")
    return array


def _same_shape(arrays: dict[str, np.ndarray]) -> None:
    shapes = {name: a.shape for name, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError("one score per seed and example on every side, the same seeds and examples in the "
                         "same order: shapes " + ", ".join(f"{k} {v}" for k, v in shapes.items()))


def two_level_means(*arrays: np.ndarray, resamples: int = 1000, seed: int = 0,
                    chunk: int = 100) -> list[np.ndarray]:
    """For each (seeds, examples) array, its (resamples,) resampled means, every array resampled with
    the same seed and example draws (`resample_seeds_and_examples`): resample r averages, over its drawn
    seeds, each drawn seed's mean over the drawn examples. Computed `chunk` resamples at a time, so memory
    stays seeds x chunk x examples whatever the number of resamples."""
    n_seeds, n = arrays[0].shape
    examples, seeds = resample_seeds_and_examples(n_seeds, n, resamples=resamples, seed=seed)
    out = []
    for array in arrays:
        # (S, R): each seed's mean over each resample's examples, then (R,): the drawn seeds' average.
        per_seed = np.concatenate([array[:, examples[i:i + chunk]].mean(axis=2)
                                   for i in range(0, resamples, chunk)], axis=1)
        out.append(np.take_along_axis(per_seed.T, seeds, axis=1).mean(axis=1))
    return out


def two_level_paired(
    a: Sequence[Sequence[float]] | np.ndarray,
    b: Sequence[Sequence[float]] | np.ndarray,
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Paired:
    """Two-level paired bootstrap of a - b, where a[s, i] and b[s, i] score example i under training
    seed s (the same seeds and examples, in the same order, on both sides). The mean difference is over
    every seed and example; the interval and share_le_0 come from resampling seeds, then examples."""
    first, second = _as_matrix(a, "a"), _as_matrix(b, "b")
    _same_shape({"a": first, "b": second})
    diff = first - second
    means, = two_level_means(diff, resamples=resamples, seed=seed)
    low, high = _percentiles(means, confidence)
    return Paired(
        mean_diff=float(diff.mean()), low=low, high=high, share_le_0=float(np.mean(means <= 0.0))
    )


def two_level_gap_closed(
    student: Sequence[Sequence[float]] | np.ndarray,
    control: Sequence[Sequence[float]] | np.ndarray,
    teacher: Sequence[Sequence[float]] | np.ndarray,
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Interval:
    """`gap_closed` over training seeds and examples: 100 * mean(student - control) / mean(teacher -
    control) on (seeds, examples) arrays (a fixed teacher simply repeats its row per seed; a teacher
    retrained per seed pairs with its own seed's students), its interval from resampling seeds, then
    examples, the same draws for all three (a resample whose teacher does not lead is left out)."""
    s = _as_matrix(student, "student")
    c, t = _as_matrix(control, "control"), _as_matrix(teacher, "teacher")
    _same_shape({"student": s, "control": c, "teacher": t})
    gain, gap = two_level_means(s - c, t - c, resamples=resamples, seed=seed)
    shares = 100.0 * gain[gap > 0] / gap[gap > 0]
    low, high = _percentiles(shares, confidence) if shares.size else (float("nan"), float("nan"))
    return Interval(mean=float(100.0 * (s - c).mean() / (t - c).mean()), low=low, high=high)
