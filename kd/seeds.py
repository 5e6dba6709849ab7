"""Several training seeds as DVC experiments, and one summary of them all.

    python -m kd.seeds run --seeds 0 1 2            # experiments seed-0, seed-1, seed-2 (student.seed), in turn
                                                    # (each in a temporary copy: the workspace stays)
    python -m kd.seeds run --seeds 0 1 2 --queue    # only queue them (then `dvc queue start`)
    python -m kd.seeds collect --seeds 0 1 2        # benchmark_results/seeds.json and seeds.md
    python -m kd.seeds collect --seeds 0 1 2 --committed-seed 0   # seed 0 is the commit's own run

Why: one training run per model cannot say whether a recipe beats the label-only baseline or just
drew a luckier seed, nor whether a gap would survive another test set. Every interval here therefore
holds both kinds of noise: a two-level paired bootstrap (kd.metrics.bootstrap.two_level_paired) draws
the training seeds with replacement, then the test examples with replacement, the same examples for
every drawn seed and model. Resampling the seeds is what puts training noise in the interval: an
interval over examples alone of the seed-averaged scores would be as narrow with three seeds that
disagree by ten points as with three that agree. The examples are drawn once per resample, not once
per seed, because an example's scores under different seeds are not independent draws: resampling
(seed, example) pairs would count each example once per seed and overstate the evidence. Beside the
intervals, mean ± sd over seeds shows the training noise on its own.

Runs whose students trained with different torch thread counts are not combined (`collect` refuses):
the thread count changes the training time and the order of float sums, so the seeds would differ in
more than their seed.

Each seed is one experiment, `dvc exp run --temp -S student.seed=<N> -n seed-<N>`: the students' training
seed, so every seed's students learn from the same, fixed teacher and only what the students do varies
(`--teacher-too` varies `train.seed` instead, which retrains the teacher with each seed as well, and
every comparison with the teacher then pairs a student with its own seed's teacher). The per-example scores come from the
git-tracked `benchmark_results/examples/<model>.jsonl` files that each experiment commits; `collect`
reads them straight from the experiment refs with git, without touching the workspace.

The collector (`collect`, `markdown`) is pure; the few functions that call git or dvc sit at the end.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from kd import paths
from kd.metrics.bootstrap import two_level_gap_closed, two_level_paired
from kd.errors import ConfigError
from kd.evaluation.examples import read_committed
from kd.git import git
from kd.report import format as fmt
from kd.io import atomic_write_json, atomic_write_text
from kd.report.results import (CHARGED, COST_FIELDS, NOT_CONVERGED_MARK, NOT_CONVERGED_NOTE, RUN_FLAGS, live_run,
                               primary_decoding)
from kd.report.results import RESULTS_JSON as REPORT_JSON

Row = Mapping[str, Any]
PerSeed = Mapping[int, Mapping[str, Sequence[Row]]]  # training seed -> model -> its example rows

SEEDS_JSON, SEEDS_MD = "seeds.json", "seeds.md"
KEY_FIELDS = ("split", "decoding", "id")
HEURISTICS = ("lead3",)  # reference rows that are not trained, so never compared with the baseline
# Each model's training cost (kd.report.results.COST_FIELDS), from its training stage's dvclive summary in the
# experiment's commit.
LIVE_DIR = PurePosixPath(paths.DVCLIVE_DIR.as_posix())
# Each model's compression and speedup against its seed's teacher, as the report stage computed them,
# from its results in the experiment's commit.
RESULTS_JSON = PurePosixPath(paths.BENCHMARK_DIR.as_posix()) / REPORT_JSON
EFFICIENCY_FIELDS = ("compression", "speedup", "speedup_greedy", "retention_greedy")
# Each student's charged teacher work, as the report stage computed it from its recipe (kd.report.results.CHARGED).
REPORT_COST_FIELDS = (CHARGED,)
SEED_COST_FIELDS = (*COST_FIELDS, *REPORT_COST_FIELDS)
# What every interval of a seeds summary is over (its `bootstrap.over`); older summaries say otherwise.
TWO_LEVEL = "seeds and examples (two-level bootstrap: seeds, then examples, with replacement)"
UNRECORDED = "unrecorded"  # a run whose summary has no thread count
RATIO_FIELDS = ("compression", "speedup")  # the columns of every decoding's table
DELTA_METRIC = "rougeL"
DIGITS = 4
EXPS_NAMESPACE = "refs/exps"
# DVC 3 keeps an experiment at refs/exps/<baseline sha[:2]>/<baseline sha[2:]>/<name>.
_EXP_REF = re.compile(r"refs/exps/([0-9a-f]{2})/([0-9a-f]{38}|[0-9a-f]{62})/([^/]+)")


def experiment_name(seed: int) -> str:
    return f"seed-{seed}"


# ---------------------------------------------------------------------------------------------
# The collector: rows in, a JSON-able summary out.


def _is_score(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def _index(rows: Iterable[Row], *, split: str, where: str) -> dict[str, dict[str, Row]]:
    """decoding -> example id -> row, for the rows of `split`; an id seen twice is an error."""
    by_decoding: dict[str, dict[str, Row]] = {}
    for row in rows:
        missing = [key for key in KEY_FIELDS if key not in row]
        if missing:
            raise ConfigError(f"{where}: a row has no {missing[0]!r}: {dict(row)}")
        if row["split"] != split:
            continue
        by_id = by_decoding.setdefault(row["decoding"], {})
        if row["id"] in by_id:
            raise ConfigError(f"{where}: example {row['id']!r} appears twice (decoding {row['decoding']!r})")
        by_id[row["id"]] = row
    if not by_decoding:
        raise ConfigError(f"{where}: no rows for split {split!r}")
    return by_decoding


def _id_mismatch(where: str, got: set[str], want: set[str], reference: str) -> ConfigError:
    missing, extra = sorted(want - got), sorted(got - want)
    return ConfigError(
        f"{where}: its example ids differ from {reference}'s ({len(got)} vs {len(want)} ids; "
        f"missing {missing[:3]}, extra {extra[:3]}); every seed and model must score the same examples"
    )


def _check_same_examples(indexed: Mapping[int, Mapping[str, Mapping[str, Mapping[str, Row]]]]) -> list[str]:
    """The sorted example ids shared by every seed, model and decoding; any difference is an error
    that names the seed and model, since pairing needs the same examples everywhere."""
    seeds = list(indexed)
    first_seed = seeds[0]
    models = sorted(indexed[first_seed])
    ref_where = f"seed {first_seed}, model {models[0]}"
    reference = set(next(iter(indexed[first_seed][models[0]].values())))
    for seed in seeds:
        if sorted(indexed[seed]) != models:
            raise ConfigError(
                f"seed {seed} has models {sorted(indexed[seed])}, seed {first_seed} has {models}"
            )
        for model in models:
            decodings = sorted(indexed[seed][model])
            if decodings != sorted(indexed[first_seed][model]):
                raise ConfigError(f"seed {seed}, model {model}: decodings {decodings} differ from seed "
                                  f"{first_seed}'s {sorted(indexed[first_seed][model])}")
            for decoding, by_id in indexed[seed][model].items():
                if set(by_id) != reference:
                    where = f"seed {seed}, model {model}, decoding {decoding}"
                    raise _id_mismatch(where, set(by_id), reference, ref_where)
    return sorted(reference)


def _metric_names(rows: Sequence[Row]) -> tuple[list[str], list[str]]:
    """(metrics every row has a finite number for, metrics only some rows have a number for);
    fields that are never a number (text, if a source adds any) are neither."""
    seen = list(dict.fromkeys(
        key for row in rows for key, value in row.items() if key not in KEY_FIELDS and _is_score(value)
    ))
    complete = [k for k in seen if all(_is_score(row.get(k)) for row in rows)]
    return complete, [k for k in seen if k not in complete]


def _score_arrays(indexed, ids: Sequence[str]) -> tuple[dict, dict]:
    """model -> decoding -> metric -> (seeds, examples) array, plus the metrics skipped for lack of
    a number on some row (a source without facts has no fact_* at all, and that is fine)."""
    seeds = list(indexed)
    scores: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    skipped: dict[str, dict[str, list[str]]] = {}
    for model in indexed[seeds[0]]:
        for decoding in indexed[seeds[0]][model]:
            rows = {s: [indexed[s][model][decoding][i] for i in ids] for s in seeds}
            complete, partial = _metric_names([row for s in seeds for row in rows[s]])
            scores.setdefault(model, {})[decoding] = {
                metric: np.array([[row[metric] for row in rows[s]] for s in seeds], dtype=float)  # (S, n)
                for metric in complete
            }
            if partial:
                skipped.setdefault(model, {})[decoding] = partial
    return scores, skipped


def _spread(per_seed: np.ndarray, seeds: Sequence[int]) -> dict[str, Any]:
    """Each seed's value, their mean and sample sd (None for one seed: no spread to estimate)."""
    sd = float(np.std(per_seed, ddof=1)) if per_seed.size > 1 else None
    return {
        "per_seed": {str(s): round(float(v), DIGITS) for s, v in zip(seeds, per_seed)},
        "mean": round(float(per_seed.mean()), DIGITS),
        "sd": None if sd is None else round(sd, DIGITS),
    }


def _compare(mine: Mapping[str, Mapping[str, np.ndarray]], other: Mapping[str, Mapping[str, np.ndarray]],
             seeds: Sequence[int], **bootstrap: Any) -> dict[str, dict[str, Any]]:
    """Per decoding and metric both sides have: each seed's mean per-example difference (mine - other)
    with its spread, and a two-level paired bootstrap over seeds and examples."""
    out: dict[str, dict[str, Any]] = {}
    for decoding in [d for d in mine if d in other]:
        for metric in [m for m in mine[decoding] if m in other[decoding]]:
            a, b = mine[decoding][metric], other[decoding][metric]  # (S, n) each
            interval = two_level_paired(a, b, **bootstrap)
            out.setdefault(decoding, {})[metric] = {
                **_spread((a - b).mean(axis=1), seeds), "bootstrap": interval.as_dict(DIGITS)
            }
    return out


def collect(
    per_seed: PerSeed,
    *,
    baseline: str = "baseline",
    teacher: str = "teacher",
    heuristics: Sequence[str] = HEURISTICS,
    split: str = "test",
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    costs: Mapping[int, Mapping[str, Mapping[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Summarize every seed's per-example scores (see the module docstring for what and why).

    Returns `models` (model -> decoding -> metric -> per_seed, mean, sd of the corpus means),
    `vs_baseline` for every student but the baseline and `vs_teacher` for every student (each
    model -> decoding -> metric -> per_seed, mean, sd of the paired differences, plus `bootstrap`:
    mean_diff, low, high, share_le_0, over seeds and examples), `gap_closed` likewise, `skipped`
    metrics that some rows lacked, `cost` (model -> SEED_COST_FIELDS -> per_seed, mean, sd) from
    `costs` (seed -> model -> its training stage's summary, plus `compression`, `speedup` and the
    charged teacher work from its report), for the models that have one, `converged` (model -> seed ->
    its summary's converged flag, where recorded), `threads` (the one torch thread count every student
    trained with, None when unrecorded) and `efficiency` (model -> compression / speedup against the
    teacher -> per_seed, mean, sd). Retention (a mean as a share of the teacher's) is derived from
    `models` where it is shown.

    Raises ConfigError when the students of different runs trained with different thread counts.
    """
    seeds = sorted(per_seed)
    if not seeds:
        raise ConfigError("no seeds to collect")
    indexed = {
        s: {m: _index(rows, split=split, where=f"seed {s}, model {m}") for m, rows in per_seed[s].items()}
        for s in seeds
    }
    if not indexed[seeds[0]]:
        raise ConfigError(f"seed {seeds[0]} has no models")
    ids = _check_same_examples(indexed)
    scores, skipped = _score_arrays(indexed, ids)
    for role, name in (("baseline", baseline), ("teacher", teacher)):
        if name not in scores:
            raise ConfigError(f"the {role} model {name!r} is not among the results: {sorted(scores)}")
    # The baseline first: the row every other student is read against.
    students = sorted((m for m in scores if m != teacher and m not in heuristics),
                      key=lambda m: (m != baseline, m))
    threads = common_threads(costs, seeds, students) if costs else None
    bootstrap = {"resamples": resamples, "seed": seed, "confidence": confidence}
    return {
        "split": split,
        "seeds": seeds,
        "n_examples": len(ids),
        "baseline": baseline,
        "teacher": teacher,
        "heuristics": [m for m in heuristics if m in scores],
        "bootstrap": {**bootstrap, "over": TWO_LEVEL},
        "models": {
            model: {
                decoding: {metric: _spread(values.mean(axis=1), seeds) for metric, values in metrics.items()}
                for decoding, metrics in scores[model].items()
            }
            for model in [teacher, *students, *(m for m in heuristics if m in scores)]
        },
        "vs_baseline": {
            m: _compare(scores[m], scores[baseline], seeds, **bootstrap) for m in students if m != baseline
        },
        "vs_teacher": {m: _compare(scores[m], scores[teacher], seeds, **bootstrap) for m in students},
        "gap_closed": {m: _gap_closed(scores[m], scores[baseline], scores[teacher], seeds, **bootstrap)
                       for m in students if m != baseline},
        "skipped": skipped,
        "cost": _costs(costs or {}, seeds),
        "converged": _flags(costs or {}, seeds, "converged"),
        "threads": threads,
        "efficiency": _costs(costs or {}, seeds, EFFICIENCY_FIELDS),
    }


def common_threads(costs: Mapping[int, Mapping[str, Mapping[str, Any]]], seeds: Sequence[int],
                   students: Sequence[str]) -> int | None:
    """The torch thread count every student of every seed trained with (None: none recorded one). Runs
    trained with different counts are not one experiment repeated (see the module docstring): a
    ConfigError names each count with its seeds and models; a run without the key is "unrecorded",
    which differs from any number."""
    groups: dict[Any, dict[int, list[str]]] = {}
    for s in seeds:
        for model in students:
            value = costs.get(s, {}).get(model, {}).get("threads")
            key = int(value) if _is_score(value) else UNRECORDED
            groups.setdefault(key, {}).setdefault(s, []).append(model)
    if len(groups) > 1:
        listed = "; ".join(
            f"{key if key == UNRECORDED else f'{key} threads'}: "
            + ", ".join(f"seed {s} ({', '.join(models)})" for s, models in by_seed.items())
            for key, by_seed in sorted(groups.items(), key=lambda kv: (kv[0] == UNRECORDED, 0 if kv[0] == UNRECORDED
                                                                         else kv[0])))
        raise ConfigError(
            f"seeds {', '.join(map(str, seeds))}: their students trained with different torch thread counts "
            f"(train_s and the float sums depend on it), so they are not one experiment repeated: {listed}; "
            f"rerun them with the same train.threads")
    (key,) = groups or {UNRECORDED: {}}
    return None if key == UNRECORDED else key


def _flags(costs: Mapping[int, Mapping[str, Mapping[str, Any]]], seeds: Sequence[int],
           flag: str) -> dict[str, dict[str, bool]]:
    """model -> seed -> its summary's yes/no `flag` (RUN_FLAGS), for the seeds that recorded one."""
    out: dict[str, dict[str, bool]] = {}
    for s in seeds:
        for model, cost in costs.get(s, {}).items():
            if isinstance(cost.get(flag), bool):
                out.setdefault(model, {})[str(s)] = cost[flag]
    return out


def _gap_closed(mine, control, teacher, seeds: Sequence[int], **bootstrap: Any) -> dict[str, dict[str, Any]]:
    """Per decoding both sides have, in DELTA_METRIC: the share of the teacher's lead over the control
    that this student closes (kd.metrics.bootstrap.two_level_gap_closed), per seed and over all seeds with
    its two-level interval over seeds and examples."""
    out: dict[str, dict[str, Any]] = {}
    for decoding in [d for d in mine if d in control and d in teacher]:
        if DELTA_METRIC not in mine[decoding] or DELTA_METRIC not in control[decoding]:
            continue
        a, c, t = (x[decoding][DELTA_METRIC] for x in (mine, control, teacher))  # (S, n) each
        per_seed = 100.0 * (a - c).mean(axis=1) / (t - c).mean(axis=1)
        share = two_level_gap_closed(a, c, t, **bootstrap)
        out[decoding] = {**_spread(per_seed, seeds), "bootstrap": share.as_dict(DIGITS)}
    return out


def _costs(costs: Mapping[int, Mapping[str, Mapping[str, Any]]], seeds: Sequence[int],
           fields: Sequence[str] = SEED_COST_FIELDS) -> dict[str, Any]:
    """model -> field -> spread over seeds, for the fields every seed recorded for that model."""
    out: dict[str, Any] = {}
    models = dict.fromkeys(m for s in seeds for m in costs.get(s, {}))
    for model in models:
        for field in fields:
            values = [costs.get(s, {}).get(model, {}).get(field) for s in seeds]
            if all(_is_score(v) for v in values):
                out.setdefault(model, {})[field] = _spread(np.array(values, dtype=float), seeds)
    return out


def retention(result: Mapping[str, Any], model: str, decoding: str, metric: str = DELTA_METRIC) -> float | None:
    """`model`'s mean `metric` over seeds as a percentage of the teacher's mean with the same decoding
    (lead-3, with its own decoding, against the teacher's primary one, as the report does); None where
    either is missing."""
    teacher = result["models"][result["teacher"]]
    mine = result["models"][model].get(decoding, {}).get(metric)
    theirs = (teacher.get(decoding) or teacher[primary_decoding(teacher)]).get(metric)
    if mine is None or theirs is None or not theirs["mean"]:
        return None
    return 100.0 * mine["mean"] / theirs["mean"]


# ---------------------------------------------------------------------------------------------
# The markdown summary, from collect()'s result (or a seeds.json read back).


NONE = "–"  # a cell of the seeds tables with no value


def served_lines(result: Mapping[str, Any]) -> list[str]:
    """The served table: each student greedy against the teacher at its headline decoding (beam), speed
    from each seed's speed run and rougeL retention from its report; the slowest seed beside the mean,
    since a claim like "6x faster" has to hold in every run. Nothing when no seed timed greedy."""
    efficiency = result.get("efficiency", {})
    students = [m for m in efficiency if "speedup_greedy" in efficiency[m]]
    if not students:
        return []
    lines = ["### served: each student greedy against the teacher at beam search", "",
             "| model | rougeL greedy | % of teacher's beam rougeL | speedup greedy | slowest seed |",
             "|---|---:|---:|---:|---:|"]
    for model in students:
        e = efficiency[model]
        kept = e.get("retention_greedy")
        slowest = min(e["speedup_greedy"]["per_seed"].values())
        lines.append(f"| {shown_name(result, model)} "
                     f"| {_fmt_spread(result['models'].get(model, {}).get('greedy', {}).get('rougeL'))} "
                     f"| {NONE if kept is None else _fmt_spread(kept, 1) + '%'} "
                     f"| {_fmt_spread(e['speedup_greedy'])}x | {fmt.number(slowest, 2)}x |")
    return lines + [""]


def _fmt_spread(stat: Mapping[str, Any] | None, digits: int = 2) -> str:
    return NONE if stat is None else fmt.spread(stat["mean"], stat["sd"], digits)


def _fmt_delta(stat: Mapping[str, Any] | None) -> str:
    if stat is None:
        return NONE
    b = stat["bootstrap"]
    return f"{fmt.signed_interval(b['mean_diff'], b['low'], b['high'])} ({b['share_le_0']:.3f})"


def _fmt_gap(stat: Mapping[str, Any] | None) -> str:
    return NONE if stat is None else fmt.percent_interval(**{k: stat["bootstrap"][k] for k in ("mean", "low", "high")})


def _table_rows(result: Mapping[str, Any], decoding: str) -> list[tuple[str, str]]:
    """(model, decoding shown) for one table: the models decoded with `decoding`, then each heuristic
    with its own decoding (lead-3 has only "lead"), so it sits in every table as a reference."""
    heuristics = set(result["heuristics"])
    rows = [(model, decoding) for model, decodings in result["models"].items()
            if model not in heuristics and decoding in decodings]
    for model in result["heuristics"]:
        decodings = result["models"][model]
        rows.append((model, decoding if decoding in decodings else next(iter(decodings))))
    return rows


def two_level(result: Mapping[str, Any]) -> bool:
    """Whether a summary's intervals resample seeds as well as examples (older seeds.json files' do not)."""
    return result.get("bootstrap", {}).get("over") == TWO_LEVEL


def interval_words(result: Mapping[str, Any]) -> str:
    """What a summary's intervals are over, in a few words, for the sentences that print them."""
    return ("two-level bootstrap over seeds and articles" if two_level(result)
            else "paired bootstrap over articles only, training noise not included")


def not_converged(result: Mapping[str, Any]) -> dict[str, list[str]]:
    """model -> the seeds whose training summary says it did not converge (converged: false)."""
    return {model: [s for s, ok in by_seed.items() if ok is False]
            for model, by_seed in result.get("converged", {}).items() if False in by_seed.values()}


def shown_name(result: Mapping[str, Any], model: str) -> str:
    """`model`, with NOT_CONVERGED_MARK when it did not converge in at least one seed."""
    return f"{model}{NOT_CONVERGED_MARK}" if model in not_converged(result) else model


def not_converged_footnote(result: Mapping[str, Any]) -> str | None:
    """NOT_CONVERGED_NOTE with the seeds it holds for, when a model is marked; else None."""
    marked = not_converged(result)
    if not marked:
        return None
    every = set(map(str, result["seeds"]))
    where = "; ".join(f"{model}: {'every seed' if set(seeds) == every else 'seed ' + ', '.join(seeds)}"
                      for model, seeds in marked.items())
    return f"{NOT_CONVERGED_NOTE} ({where})."


def _fmt_count(stat: Mapping[str, Any] | None) -> str:
    return NONE if stat is None else fmt.count_spread(stat["mean"], stat["sd"])


def cost_lines(result: Mapping[str, Any]) -> list[str]:
    """The training cost table: per trained model the mean ± sd over seeds of the step of its kept weights,
    the steps run, the training examples seen, its seconds of optimizer steps and the teacher work charged
    to it (kd.report.results.teacher_charge); "–" where its runs did not record one. Nothing without costs."""
    cost = result.get("cost", {})
    if not cost:
        return []
    heuristics = set(result["heuristics"])
    threads = result.get("threads")
    lines = ["### training cost", "",
             "Mean ± sd over seeds. teacher_s: the teacher work charged to a student (the teacher-side stages "
             "whose output its recipe reads, and any teacher pass of its own), in seconds"
             + (f"; every student trained with {threads} torch threads" if threads else "") + ".", "",
             "| model | best step | steps | examples seen | train_s | teacher_s |", "|---|---:|---:|---:|---:|---:|"]
    for model in (m for m in result["models"] if m not in heuristics):
        c = cost.get(model, {})
        cells = [shown_name(result, model), *(_fmt_count(c.get(k)) for k in ("best_step", "steps", "examples_seen")),
                 _fmt_spread(c.get("train_seconds"), digits=0), _fmt_spread(c.get(CHARGED), digits=0)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def markdown(result: Mapping[str, Any]) -> str:
    """One table per decoding: rows are models, a few metrics as mean ± sd over seeds, and the
    paired difference to the baseline and the teacher in `DELTA_METRIC` with its interval; then the
    served table and the training cost. A model that did not converge in some seed is marked."""
    seeds = ", ".join(map(str, result["seeds"]))
    boot = result["bootstrap"]
    spread = "mean ± sd over seeds of the corpus means" if len(result["seeds"]) > 1 else "corpus means"
    if two_level(result):
        how = (f"from a two-level paired bootstrap over seeds and examples ({boot['resamples']} resamples, each "
               f"drawing the seeds with replacement, then the examples with replacement, the same examples for "
               f"every drawn seed and model, so the interval holds training noise as well as test-set noise; "
               f"P is the share of resamples with Δ ≤ 0)")
    else:
        how = (f"from a paired bootstrap over examples only, of the seed-averaged differences "
               f"({boot['resamples']} resamples; P is the share of resamples with Δ ≤ 0; training noise is not "
               f"in these intervals)")
    lines = [
        f"Seeds {seeds} · split {result['split']} · {result['n_examples']} examples. Scores: {spread}. "
        f"Δ: mean per-example difference [{boot['confidence']:.0%} interval] (P(Δ ≤ 0)), {how}. "
        f"Gap closed: the share of the teacher's lead over "
        f"{result['baseline']} in {DELTA_METRIC} that a student closes, (student - {result['baseline']}) / "
        f"(teacher - {result['baseline']}), [interval] from the same bootstrap.",
        "",
    ]
    heuristics = set(result["heuristics"])
    trained = [m for m in result["models"] if m not in heuristics] or list(result["models"])
    decodings = list(dict.fromkeys(d for m in trained for d in result["models"][m]))
    for decoding in decodings:
        rows = _table_rows(result, decoding)
        # The markdown table keeps to the registry's headline keys; seeds.json has every metric.
        from kd.metrics.registry import headline_keys

        metrics = [k for k in headline_keys() if any(k in result["models"][m][d] for m, d in rows)]
        cost = result.get("cost", {})
        efficiency = result.get("efficiency", {})
        header = ["model", *metrics, *(["train_s"] if cost else [])]
        deltas = any(DELTA_METRIC in result["models"][m][d] for m, d in rows)
        if deltas:
            header += [f"Δ {DELTA_METRIC} vs {result[role]}" for role in ("baseline", "teacher")]
            header.append(f"{DELTA_METRIC} % of teacher")
            header.append("gap closed")
        header += [name for name in RATIO_FIELDS if any(name in e for e in efficiency.values())]
        lines += [f"### {decoding}", "", "| " + " | ".join(header) + " |",
                  "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        for model, shown in rows:
            name = shown_name(result, model)
            cells = [name if shown == decoding else f"{name} ({shown})"]
            cells += [_fmt_spread(result["models"][model][shown].get(k)) for k in metrics]
            if cost:
                cells.append(_fmt_spread(cost.get(model, {}).get("train_seconds"), digits=0))
            if deltas:
                for section in ("vs_baseline", "vs_teacher"):
                    cells.append(_fmt_delta(result[section].get(model, {}).get(shown, {}).get(DELTA_METRIC)))
                kept = retention(result, model, shown)
                cells.append(NONE if kept is None else fmt.number(kept, 1) + "%")
                cells.append(_fmt_gap(result.get("gap_closed", {}).get(model, {}).get(shown)))
            for name in header[len(cells):]:  # compression, speedup
                ratio = efficiency.get(model, {}).get(name)
                cells.append(NONE if ratio is None else _fmt_spread(ratio) + "x")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += served_lines(result)
    lines += cost_lines(result)
    if (footnote := not_converged_footnote(result)) is not None:
        lines += [footnote, ""]
    if result["skipped"]:
        skipped = "; ".join(f"{model} {decoding}: {', '.join(metrics)}"
                            for model, by_decoding in result["skipped"].items()
                            for decoding, metrics in by_decoding.items())
        lines += [f"Skipped (a number missing on some examples): {skipped}.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Finding and reading the experiments (git), and running them (dvc).


@dataclass(frozen=True)
class Experiment:
    """One DVC experiment: its ref, the commit it was run on (baseline) and its name."""

    ref: str
    baseline: str
    name: str


def parse_experiment_ref(ref: str) -> Experiment | None:
    """The experiment behind a DVC 3 ref, or None for DVC's own refs (stash, celery, exec, ...)."""
    match = _EXP_REF.fullmatch(ref)
    if match is None:
        return None
    return Experiment(ref=ref, baseline=match[1] + match[2], name=match[3])


def find_experiment(refs: Iterable[str], name: str, *, baseline: str) -> Experiment:
    """The experiment `name` run on `baseline`. Only that baseline counts, so results of different
    code are never mixed; when `name` exists only elsewhere the error says where."""
    found = [e for e in map(parse_experiment_ref, refs) if e is not None and e.name == name]
    for experiment in found:
        if experiment.baseline == baseline:
            return experiment
    where = (f"; it exists on baseline(s) {', '.join(e.baseline[:7] for e in found)} (pass --rev)"
             if found else "")
    raise ConfigError(f"no experiment {name!r} on baseline {baseline[:7]}{where}")


def experiment_refs(repo: Path) -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname)", EXPS_NAMESPACE).split()


def resolve_commit(repo: Path, rev: str) -> str:
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").strip()
    except ConfigError:
        raise ConfigError(f"{rev!r} is not a commit of the git repository at {repo}") from None


def read_examples(repo: Path, rev: str) -> dict[str, list[dict[str, Any]]]:
    """model -> rows of every benchmark_results/examples/<model>.jsonl in commit `rev`."""
    return read_committed(repo, rev)


def read_costs(repo: Path, rev: str, models: Iterable[str], teacher: str = "teacher") -> dict[str, dict[str, Any]]:
    """model -> the COST_FIELDS (training cost and its torch `threads`) and RUN_FLAGS of its training stage's
    dvclive summary (dvclive/<teacher | student_name>/metrics.json) in commit `rev`, plus its
    EFFICIENCY_FIELDS and REPORT_COST_FIELDS from the report's benchmark_results.json where that has
    them; models with none of these (lead-3) are left out."""
    try:
        report = json.loads(git(repo, "show", f"{rev}:{RESULTS_JSON}"))
    except (ConfigError, ValueError):
        report = {}
    out = {}
    for model in models:
        entry = report.get(model) if isinstance(report.get(model), dict) else {}
        sizes = {k: entry[k] for k in (*EFFICIENCY_FIELDS, *REPORT_COST_FIELDS) if _is_score(entry.get(k))}
        path = LIVE_DIR / live_run(model, teacher) / "metrics.json"
        try:
            summary = json.loads(git(repo, "show", f"{rev}:{path}"))
        except (ConfigError, ValueError):
            summary = None
        if isinstance(summary, dict):
            out[model] = {**{k: summary[k] for k in (*COST_FIELDS, *RUN_FLAGS) if k in summary}, **sizes}
        elif sizes:
            out[model] = sizes
    return out


def exp_run_command(seed: int, *, queue: bool = False, teacher_too: bool = False) -> list[str]:
    # --temp: each experiment runs in a temporary copy of the repo, so the workspace keeps its own
    # results (and a run restored from DVC's run cache costs nothing, e.g. the seed already in HEAD).
    # student.seed: the students' seed alone, so every seed learns from the same, fixed teacher;
    # train.seed (teacher_too) retrains the teacher with each seed as well.
    key = "train.seed" if teacher_too else "student.seed"
    return ["dvc", "exp", "run", "--queue" if queue else "--temp",
            "-S", f"{key}={seed}", "-n", experiment_name(seed)]


def _run(seeds: Sequence[int], *, queue: bool, teacher_too: bool = False) -> int:
    for seed in seeds:
        command = exp_run_command(seed, queue=queue, teacher_too=teacher_too)
        print(f"$ {shlex.join(command)}", flush=True)
        try:
            code = subprocess.run(command).returncode  # output streams straight to the terminal
        except FileNotFoundError:
            raise ConfigError("`dvc` is not on PATH (activate the project's virtual environment)") from None
        if code:
            print(f"error: seed {seed} failed (exit {code}); later seeds not started", file=sys.stderr)
            return code
    collect_cmd = f"python -m kd.seeds collect --seeds {' '.join(map(str, seeds))}"
    if queue:
        print("\nQueued. Start them (-j N runs N at once, each training every model) and follow them with:\n"
              "  dvc queue start\n  dvc queue status\n  dvc queue logs <task>\n"
              f"then, once all have succeeded:\n  {collect_cmd}")
    else:
        print(f"\nDone (the workspace is untouched; `dvc exp show` lists them). Summarize with:\n"
              f"  {collect_cmd}")
    return 0


def _collect(args: argparse.Namespace) -> int:
    repo = Path.cwd()
    baseline = resolve_commit(repo, args.rev)
    refs = experiment_refs(repo)
    experiments = {s: (Experiment(ref=baseline, baseline=baseline, name=f"{args.rev} (committed run)")
                       if s == args.committed_seed else find_experiment(refs, experiment_name(s), baseline=baseline))
                   for s in args.seeds}
    per_seed = {s: read_examples(repo, e.ref) for s, e in experiments.items()}
    costs = {s: read_costs(repo, e.ref, per_seed[s], teacher=args.teacher) for s, e in experiments.items()}
    result = collect(per_seed, baseline=args.baseline, teacher=args.teacher, split=args.split,
                     resamples=args.resamples, seed=args.bootstrap_seed, costs=costs)
    provenance = {str(s): {"name": e.name, "ref": e.ref, "commit": resolve_commit(repo, e.ref)}
                  for s, e in experiments.items()}
    result = {**result, "baseline_commit": baseline, "experiments": provenance}
    atomic_write_json(args.out_dir / SEEDS_JSON, result)
    atomic_write_text(args.out_dir / SEEDS_MD, markdown(result))
    print(f"wrote {args.out_dir / SEEDS_JSON} and {args.out_dir / SEEDS_MD}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="one DVC experiment per seed")
    run.add_argument("--seeds", type=int, nargs="+", required=True)
    run.add_argument("--queue", action="store_true", help="only queue them; `dvc queue start` runs them")
    run.add_argument("--teacher-too", action="store_true",
                     help="vary train.seed (the teacher is retrained per seed) instead of student.seed")
    col = sub.add_parser("collect", help="summarize the seeds' experiments",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    col.add_argument("--seeds", type=int, nargs="+", required=True)
    col.add_argument("--out-dir", type=Path, default=paths.BENCHMARK_DIR)
    col.add_argument("--rev", default="HEAD", help="the baseline commit the experiments were run on")
    col.add_argument("--committed-seed", type=int, default=None, metavar="N",
                     help="seed N is the run committed at --rev itself (its dvc.lock and results), not an experiment")
    col.add_argument("--split", default="test")
    col.add_argument("--baseline", default="baseline", help="the label-only student")
    col.add_argument("--teacher", default="teacher")
    col.add_argument("--resamples", type=int, default=1000)
    col.add_argument("--bootstrap-seed", type=int, default=0)
    args = p.parse_args(argv)
    if len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds has a repeat: {args.seeds}")
    try:
        return (_run(args.seeds, queue=args.queue, teacher_too=args.teacher_too) if args.command == "run"
                else _collect(args))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
