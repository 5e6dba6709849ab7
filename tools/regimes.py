"""The losses in two regimes, and what unlabeled text buys: an experiment outside `dvc repro`.

    python -m tools.regimes plan                          # the runs, one line each
    python -m tools.regimes run --workdir DIR [--only RE] # train + benchmark each missing run, one at a time
    python -m tools.regimes collect                       # benchmark_results/regimes/regimes.{json,md}, pool.png

`DIR` is a checkout where `dvc repro teacher_generate teacher_outputs` has run: the fixed teacher, its
summaries and its cached logits. Every row of the experiment is trained here, reference rows included, on
that one teacher: a teacher's weights depend on the CPU it trained on (the same params and seed give
other float sums on another instruction set), so rows trained against another checkout's teacher would
not compare. Each run records the teacher's fingerprint; `run` and `collect` refuse to mix teachers or
torch thread counts. Per training seed (0, 1, 2; `student.seed`):

- **labels only**: the label-only control `baseline` and today's documented recipes that learn on the
  500 labelled articles alone (`vanilla` logit KD, `feature`, `attention`, `gkd`). Reference row: `baseline`.
- **with the teacher's text**: `seqkd` and the default's `seqkd_logit`, `seqkd_feature`,
  `seqkd_attention`, plus gkd on the same text (`seqkd_gkd`). Reference row: `seqkd`.

and on seed 0 only:

- **pool**: seqkd on the references plus the teacher's summaries of the labelled articles and of the first
  1,000, 2,000 or 4,000 unlabeled articles (a summaries file of the teacher_generate stage's summaries,
  `targets: <file>`); the 8,000 point is the seed's `seqkd` row.
- **check**: seqkd_logit with the live teacher (`teacher_pass: live`) against the cached pass (`once`),
  on validation.

Each run is the distill and benchmark stage scripts run with a params file of its own (the checkout's
params.yaml, the recipe under `kd.students`, `student.seed`), outputs in `DIR/regimes/<run>/`; what is
kept is `benchmark_results/regimes/runs/<run>.json` (the recipe, seed, teacher, the means per split and
decoding, the training cost). `run` skips runs whose file exists, so an interrupted experiment goes on
where it stopped. Every setting is the default's: the labels-only recipes keep their documented KD
weights, which were tuned on that regime; nothing is tuned on this experiment.

Intervals over seeds are 95% t-intervals over the per-seed means (three seeds: t = 4.30), so they hold
training noise but not the test set's own; the seeds tables of `kd.seeds` give two-level bootstraps.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from kd import paths
from kd.io import atomic_write_json, atomic_write_text
from kd.jsonl import dumps_lines, read_jsonl
from kd.report.results import CHARGED, COST_FIELDS, RUN_FLAGS, TEACHER_STAGES, teacher_charge

OUT_DIR = paths.BENCHMARK_DIR / "regimes"
RUNS_DIR = "runs"
SEEDS = (0, 1, 2)
POOL_SIZES = (1000, 2000, 4000)
FULL_POOL = 8000  # data.builtin.unlabeled_size: the default's seqkd
METRICS = ("rougeL", "rougeLsum", "fact_precision", "fact_recall")
HEADLINE = "rougeL"
CONTROL, SEQKD, TEACHER = "baseline", "seqkd", "teacher"
# Today's labels-only recipes (docs/methods.md), and the loss each adds, by regime.
LABELS_ONLY = {
    "logit": ("vanilla", {"teacher_input": "data/teacher_outputs", "targets": "data/tokenized", "label_weight": 0.7,
                          "losses": {"logit": {"weight": 0.3, "temperature": 1.0}}}),
    "feature": ("feature", {"teacher_input": "models/teacher", "targets": "data/tokenized", "label_weight": 1.0,
                            "losses": {"feature": {"weight": 0.1, "layer_map": "last", "normalize": True}}}),
    "attention": ("attention", {"teacher_input": "models/teacher", "targets": "data/tokenized", "label_weight": 1.0,
                                "losses": {"attention": {"weight": 1.0, "layer_map": "uniform", "heads": "mean"}}}),
    "gkd": ("gkd", {"teacher_input": "models/teacher", "targets": "data/tokenized", "label_weight": 1.0,
                    "losses": {"gkd": {"weight": 1.0, "beta": 0.0, "lmbda": 0.25, "max_new_tokens": 32}}}),
}
SAME_TEXT = {"logit": "seqkd_logit", "feature": "seqkd_feature", "attention": "seqkd_attention", "gkd": "seqkd_gkd"}
SEQKD_GKD = {"teacher_input": "models/teacher", "targets": "data/teacher_targets",
             "target_splits": ["train", "unlabeled"], "with_references": True,
             "losses": {"gkd": {"weight": 1.0, "beta": 0.0, "lmbda": 0.25, "max_new_tokens": 32}}}
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


@dataclass(frozen=True)
class Run:
    name: str  # the run's file and directory name
    recipe: str  # the student's name under kd.students
    settings: Mapping[str, Any]  # its recipe (a pool run's targets are filled in by `run`)
    seed: int
    group: str  # labels | teacher_text | pool | check
    pool: int | None = None  # pool runs: unlabeled articles used


def plan(params: Mapping[str, Any]) -> list[Run]:
    """Every run of the experiment, in the order `run` trains them: seed 0's rows of both regimes, the
    once-vs-live check and the pool curve, then seeds 1 and 2 (so a partial experiment is a whole seed)."""
    students = params["kd"]["students"]
    same_text = {SEQKD: students[SEQKD], **{name: students[name] for name in SAME_TEXT.values() if name in students},
                 "seqkd_gkd": SEQKD_GKD}
    labels = {CONTROL: students[CONTROL], **{name: recipe for name, recipe in LABELS_ONLY.values()}}

    def seed_runs(seed: int) -> list[Run]:
        return ([Run(f"{name}-s{seed}", name, recipe, seed, "labels") for name, recipe in labels.items()]
                + [Run(f"{name}-s{seed}", name, recipe, seed, "teacher_text") for name, recipe in same_text.items()])

    runs = [Run("teacher", TEACHER, {}, 0, "teacher")] + seed_runs(SEEDS[0])
    runs.append(Run("seqkd_logit_live-s0", "seqkd_logit_live", {**students["seqkd_logit"], "teacher_pass": "live"}, 0,
                    "check"))
    for size in POOL_SIZES:
        recipe = {**students[SEQKD], "target_splits": ["train", "unlabeled"], "uncovered": "skip"}
        runs.append(Run(f"seqkd_pool{size}-s0", f"seqkd_pool{size}", recipe, 0, "pool", size))
    for seed in SEEDS[1:]:
        runs += seed_runs(seed)
    return runs


# --- running ---------------------------------------------------------------------------------------

def pool_file(targets_dir: Path, size: int, out: Path) -> Path:
    """A summaries file ({"id", "summary"} lines) of the teacher's summaries of every labelled article and
    of the first `size` articles of the unlabeled pool (the teacher_generate stage's, first per article)."""
    lines = []
    for split, limit in (("train", None), ("unlabeled", size)):
        rows = read_jsonl(targets_dir / f"{split}.jsonl")
        if limit is not None and len(rows) < limit:
            raise SystemExit(f"{targets_dir / (split + '.jsonl')}: {len(rows)} summaries, fewer than {limit}")
        lines += [{"id": row["id"], "summary": row["summaries"][0]} for row in rows[:limit]]
    atomic_write_text(out, dumps_lines(lines))
    return out


def run_params(base: Mapping[str, Any], run: Run, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The checkout's params with this run's recipe added and its training seed set."""
    params = json.loads(json.dumps(base))
    params["student"]["seed"] = run.seed
    params["kd"]["students"][run.recipe] = json.loads(json.dumps(settings))
    return params


def quality_means(quality: Mapping[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """{split: {decoding: {metric: mean}}} of a benchmark quality file (intervals dropped: one run)."""
    return {split: {dec: {m: v for m, v in scores.items() if m in METRICS}
                    for dec, scores in quality[split].items()}
            for split in ("validation", "test") if split in quality}


def teacher_fingerprint(teacher_dir: Path) -> str:
    """sha256 of the teacher's weights file: every run of one experiment must read the same teacher (its
    weights depend on the CPU it trained on, not only on the params)."""
    import hashlib

    files = sorted(Path(teacher_dir).glob("*.safetensors")) or sorted(Path(teacher_dir).glob("*.bin"))
    if not files:
        raise SystemExit(f"{teacher_dir}: no weights file; run `dvc repro train_teacher` in the workdir first")
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def record(run: Run, settings: Mapping[str, Any], quality: Mapping[str, Any], summary: Mapping[str, Any],
           teacher: str) -> dict:
    return {"run": run.name, "recipe": run.recipe, "seed": run.seed, "group": run.group, "pool": run.pool,
            "teacher": teacher, "settings": settings, "params": quality.get("params"),
            "quality": quality_means(quality), "cost": {k: summary.get(k) for k in (*COST_FIELDS, *RUN_FLAGS)}}


def _train_and_score(run: Run, workdir: Path, out_dir: Path, teacher: str) -> Path:
    base = yaml.safe_load((workdir / "params.yaml").read_text())
    scratch = workdir / "regimes" / run.name
    scratch.mkdir(parents=True, exist_ok=True)
    py, logs = sys.executable, str(scratch / "logs")
    if run.group == "teacher":  # scored only: the checkout's teacher, as every run reads it
        model, params_file, summary = workdir / paths.TEACHER_DIR, workdir / "params.yaml", {}
        settings: dict[str, Any] = {}
    else:
        settings = dict(run.settings)
        if run.group == "pool":
            settings["targets"] = str(pool_file(workdir / paths.TEACHER_TARGETS_DIR, run.pool,
                                                scratch / f"pool{run.pool}.jsonl").resolve())
        params_file = scratch / "params.yaml"
        atomic_write_text(params_file, yaml.safe_dump(run_params(base, run, settings), sort_keys=False))
        model, live = scratch / "model", scratch / "dvclive"
        subprocess.run([py, "-m", "stages.distill", "--params", str(params_file), "--log-dir", logs,
                        "--student", run.recipe, "--out", str(model), "--checkpoints", str(scratch / "checkpoints"),
                        "--live-dir", str(live)], cwd=workdir, check=True)
        summary = json.loads((live / "metrics.json").read_text())
    subprocess.run([py, "-m", "stages.benchmark", "--params", str(params_file), "--log-dir", logs,
                    "--name", run.recipe, "--model", str(model), "--out", str(scratch / "quality.json"),
                    "--examples", str(scratch / "examples.jsonl")], cwd=workdir, check=True)
    quality = json.loads((scratch / "quality.json").read_text())
    out = out_dir / RUNS_DIR / f"{run.name}.json"
    atomic_write_json(out, record(run, settings, quality, summary, teacher))
    return out


# --- collecting (pure) -----------------------------------------------------------------------------

def t_interval(values: Sequence[float], confidence_t: Mapping[int, float] = T95) -> dict[str, Any]:
    """Mean, sd and a 95% t-interval over per-seed values (None bounds with a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"mean": round(mean, 4), "sd": None, "low": None, "high": None, "n": n}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = confidence_t[n - 1] * sd / math.sqrt(n)
    return {"mean": round(mean, 4), "sd": round(sd, 4), "low": round(mean - half, 4), "high": round(mean + half, 4),
            "n": n}


def run_per_seed(records: Sequence[Mapping[str, Any]], recipe: str, split: str, decoding: str,
                 metric: str) -> dict[int, float]:
    return {r["seed"]: r["quality"][split][decoding][metric] for r in records if r["recipe"] == recipe}


def paired(mine: Mapping[int, float], other: Mapping[int, float]) -> dict[str, Any] | None:
    """The t-interval of the per-seed difference, over the seeds both have."""
    seeds = sorted(set(mine) & set(other))
    return t_interval([mine[s] - other[s] for s in seeds]) if seeds else None


def one_teacher(records: Sequence[Mapping[str, Any]]) -> str | None:
    """The teacher every run read; refuses runs of different teachers (or thread counts)."""
    teachers = sorted({r["teacher"] for r in records})
    if len(teachers) > 1:
        raise SystemExit(f"runs of {len(teachers)} different teachers ({', '.join(teachers)}): an experiment compares "
                         f"students of one fixed teacher; move the other runs' files out of {RUNS_DIR}/")
    threads = sorted({r["cost"].get("threads") for r in records if r["group"] != "teacher"}, key=str)
    if len(threads) > 1:
        raise SystemExit(f"runs made with different torch thread counts {threads}: not combined")
    return teachers[0] if teachers else None


def collect(records: Sequence[Mapping[str, Any]], *, decoding: str = "beam", select_decoding: str = "greedy",
            metric: str = HEADLINE, teacher_stages: Mapping[str, float | None] | None = None) -> dict[str, Any]:
    """Both regimes side by side (test at `decoding`, as the seeds tables; per loss: each regime's score over
    seeds, and its difference from that regime's reference row, paired by seed), the pool curve and the
    once-vs-live check (validation at `select_decoding`, the measure training settings are chosen by).
    Every row comes from this experiment's own runs, all of one teacher. `teacher_stages` (stage ->
    seconds) prices the teacher work each recipe reads (kd.report.results.teacher_charge)."""
    teacher = one_teacher(records)
    stages = dict(teacher_stages or {})

    def scores(name: str, split: str, m: str = metric, dec: str = decoding) -> dict[int, float]:
        return run_per_seed(records, name, split, dec, m)

    def cell(name: str, reference: str) -> dict[str, Any] | None:
        rows = [r for r in records if r["recipe"] == name and r["group"] in ("labels", "teacher_text")]
        if not rows:
            return None
        mine = scores(name, "test")  # check and pool runs have recipe names of their own
        return {"model": name, "seeds": sorted(mine), "score": t_interval([mine[s] for s in sorted(mine)]),
                "vs_reference": paired(mine, scores(reference, "test")), "reference": reference,
                "fact_precision": t_interval([r["quality"]["test"][decoding]["fact_precision"] for r in rows]),
                "converged": all(r["cost"]["converged"] is not False for r in rows),
                **{k: t_interval([r["cost"][k] or 0.0 for r in rows])["mean"]
                   for k in ("best_step", "steps", "examples_seen", "train_seconds")},
                CHARGED: t_interval([teacher_charge(r["settings"], r["cost"].get("teacher_seconds") or 0.0,
                                                    stages)[CHARGED] or 0.0 for r in rows])["mean"]}

    losses = [("none (cross-entropy only)", CONTROL, SEQKD)] + [
        (loss, LABELS_ONLY[loss][0], SAME_TEXT[loss]) for loss in LABELS_ONLY]
    table = [{"loss": loss, "labels_only": cell(labels_name, CONTROL), "teacher_text": cell(text_name, SEQKD)}
             for loss, labels_name, text_name in losses]
    pool = [{"unlabeled": r["pool"] if r["group"] == "pool" else FULL_POOL, "seed": r["seed"],
             "validation": r["quality"]["validation"][select_decoding][metric],
             "best_step": r["cost"]["best_step"], "converged": r["cost"]["converged"]}
            for r in records if r["group"] == "pool" or (r["recipe"] == SEQKD and r["seed"] == 0)]
    pool.sort(key=lambda p: p["unlabeled"])
    live = next((r for r in records if r["group"] == "check"), None)
    check = None
    if live is not None:
        once = scores("seqkd_logit", "validation", dec=select_decoding).get(live["seed"])
        got = live["quality"]["validation"][select_decoding][metric]
        check = {"seed": live["seed"], "once": once, "live": got, "difference": None if once is None else
                 round(once - got, 4), "within": None if once is None else abs(once - got) <= 0.5,
                 # the rule the default follows: the cache stays unless it scores more than 0.5 below live
                 "keeps_cache": None if once is None else once >= got - 0.5,
                 "tolerance": 0.5, "live_train_seconds": live["cost"]["train_seconds"]}
    teacher_row = next((r for r in records if r["group"] == "teacher"), None)
    return {"split": "test", "decoding": decoding, "select_decoding": select_decoding, "metric": metric,
            "interval": "95% t-interval over seeds' means", "teacher": teacher,
            # cross-entropy on the teacher's text against the control on the labels, paired by seed
            "text_gain": paired(scores(SEQKD, "test"), scores(CONTROL, "test")),
            "teacher_score": None if teacher_row is None else teacher_row["quality"]["test"][decoding][metric],
            "teacher_validation": None if teacher_row is None else
            teacher_row["quality"]["validation"][select_decoding][metric],
            "seeds": sorted({r["seed"] for r in records if r["group"] in ("labels", "teacher_text")}),
            "teacher_stages": stages, "regimes": table, "pool": pool, "once_vs_live": check}


def _fmt(stat: Mapping[str, Any] | None, signed: bool = False, total: int | None = None) -> str:
    """mean [interval]; the seeds it has when fewer than the table's (`total`)."""
    if not stat:
        return "—"
    sign = "+" if signed else ""
    if stat.get("low") is None:
        return f"{stat['mean']:{sign}.2f} (one seed)"
    fewer = f" ({stat['n']} seeds)" if total is not None and stat["n"] < total else ""
    return f"{stat['mean']:{sign}.2f} [{stat['low']:{sign}.1f}, {stat['high']:{sign}.1f}]{fewer}"


def _mark(c: Mapping[str, Any] | None) -> str:
    return "" if not c or c.get("converged") is not False else " †"


def _delta(c: Mapping[str, Any] | None, reference: str, total: int | None = None) -> str:
    if not c:
        return "—"
    return "(reference)" if c["model"] == reference else _fmt(c["vs_reference"], True, total)


def _side(stat: Mapping[str, Any] | None) -> str:
    """Where an interval lies against 0, as a sentence says it: "lies above 0", "lies below 0",
    "includes 0", or "has no interval (one seed)"."""
    if not stat or stat.get("low") is None:
        return "has no interval (one seed)"
    return "lies above 0" if stat["low"] > 0 else "lies below 0" if stat["high"] < 0 else "includes 0"


POOL_FLAT = 0.5  # rougeL points: the pool curve "rises" only if the full pool beats the smallest by more


def says(result: Mapping[str, Any]) -> list[str]:
    """What the numbers say, one sentence per finding, from the result itself (never typed by hand)."""
    out: list[str] = []
    rows = {row["loss"]: row for row in result["regimes"]}
    none = rows.get("none (cross-entropy only)", {})
    control, seqkd, gain = none.get("labels_only"), none.get("teacher_text"), result.get("text_gain")
    if control and seqkd and gain:
        out.append(f"The teacher's text with cross-entropy alone (`seqkd`, {seqkd['score']['mean']:.2f}) against the "
                   f"control on the labels only ({control['score']['mean']:.2f}): {_fmt(gain, True)} paired by seed, "
                   f"an interval that {_side(gain)}.")
    for regime, label, ref in (("teacher_text", "With the teacher's text", SEQKD), ("labels_only", "With the labels only", CONTROL)):
        cells = [(loss, row[regime]) for loss, row in rows.items() if row.get(regime) and row[regime]["model"] != ref]
        if not cells:
            continue
        sides = {loss: _side(c["vs_reference"]) for loss, c in cells}
        listed = ", ".join(f"{loss} {c['vs_reference']['mean']:+.2f}" for loss, c in cells if c["vs_reference"])
        beyond = [loss for loss, side in sides.items() if side in ("lies above 0", "lies below 0")]
        if not beyond:
            out.append(f"{label}, no loss moves `{ref}` beyond training noise: every Δ's interval over seeds includes "
                       f"0 ({listed}).")
        else:
            out.append(f"{label}, " + "; ".join(f"{loss}'s Δ {sides[loss]}" for loss in beyond)
                       + f"; the others' intervals include 0 ({listed}).")
    pool = result.get("pool") or []
    if len(pool) > 1:
        first, last = pool[0], pool[-1]
        best = max(pool, key=lambda p: p["validation"])
        rise = last["validation"] - first["validation"]
        trend = (f"rises by {rise:.2f} from {first['unlabeled']:,} to {last['unlabeled']:,} unlabeled articles"
                 if rise > POOL_FLAT else
                 f"does not rise with the pool: {last['unlabeled']:,} unlabeled articles score {rise:+.2f} against "
                 f"{first['unlabeled']:,} (within {POOL_FLAT} or below)")
        out.append(f"seqkd's validation score {trend}; the highest is at {best['unlabeled']:,} "
                   f"({best['validation']:.2f}), one seed per point.")
    cells = [c for row in result["regimes"] for c in (row["labels_only"], row["teacher_text"]) if c]
    capped = [c["model"] for c in cells if c.get("converged") is False]
    if cells:
        out.append(f"{len(capped)} of {len(cells)} students reached their step cap in some seed without stopping "
                   f"early (†)" + (f": {', '.join(capped)}." if capped else "."))
    return out


def markdown(result: Mapping[str, Any]) -> str:
    m, dec, sel = result["metric"], result["decoding"], result["select_decoding"]
    seeds = ", ".join(map(str, result.get("seeds", [])))
    teacher = (f" (its weights' fingerprint is in regimes.json); the teacher scores {result['teacher_score']:.2f}"
               if result.get("teacher_score") is not None else "")
    lines = [f"Seeds {seeds} (a cell with fewer says so), every row trained against one teacher{teacher}. "
             f"Test {m} ({dec}), mean over seeds with a {result['interval']}; Δ is the difference from the "
             f"regime's reference row, paired by seed (labels only: the label-only control `baseline`; with the "
             f"teacher's text: `seqkd`). † reached its step cap without stopping early (not converged).", "",
             "| loss | labels only | Δ vs control | with the teacher's text | Δ vs seqkd |", "|---|---|---|---|---|"]
    n = len(result.get("seeds", [])) or None
    for row in result["regimes"]:
        lo, tt = row["labels_only"], row["teacher_text"]
        lines.append(f"| {row['loss']} | {_fmt(lo and lo['score'], total=n)}{_mark(lo)} | {_delta(lo, CONTROL, n)} "
                     f"| {_fmt(tt and tt['score'], total=n)}{_mark(tt)} | {_delta(tt, SEQKD, n)} |")
    costs = [c for row in result["regimes"] for c in (row["labels_only"], row["teacher_text"]) if c]
    if costs:
        stages = ", ".join(f"{k} {v:.0f} s" for k, v in result.get("teacher_stages", {}).items() if v is not None)
        lines += ["", f"Training cost, mean over seeds: the step of the kept weights, the steps run, the training "
                  f"examples seen, the seconds of optimizer steps, and the teacher work charged (the teacher-side "
                  f"stages the recipe reads, each charged whole: {stages or 'unknown'}; plus any teacher pass of "
                  f"its own).", "",
                  "| student | best step | steps | examples seen | train_s | teacher_s |", "|---|---:|---:|---:|---:|---:|"]
        for c in costs:
            lines.append(f"| {c['model']}{_mark(c)} | {c['best_step']:,.0f} | {c['steps']:,.0f} | "
                         f"{c['examples_seen']:,.0f} | {c['train_seconds']:.0f} | {c[CHARGED]:.0f} |")
    if result["pool"]:
        lines += ["", f"seqkd against the size of the unlabeled pool (validation {m}, {sel}, seed 0; † not converged):", "",
                  "| unlabeled articles | validation | best step |", "|---|---|---|"]
        for p in result["pool"]:
            lines.append(f"| {p['unlabeled']:,} | {p['validation']:.2f}{' †' if p['converged'] is False else ''} "
                         f"| {p['best_step'] if p['best_step'] is None else int(p['best_step']):,} |")
    check = result["once_vs_live"]
    if check:
        verdict = "within" if check["within"] else "not within"
        rule = ("the cached pass does not score more than {t} below the live teacher, so the default keeps it"
                if check["keeps_cache"] else "the cached pass scores more than {t} below the live teacher, so the "
                "default should use the live teacher").format(t=check["tolerance"])
        lines += ["", f"seqkd_logit's teacher pass, seed {check['seed']}, validation {m} ({sel}): once (cached top-k) "
                  f"{check['once']:.2f}, live {check['live']:.2f} (once − live {check['difference']:+.2f}): "
                  f"{verdict} {check['tolerance']} of each other; {rule}."]
    found = says(result)
    if found:
        lines += ["", "What these numbers say:", ""] + [f"- {sentence}" for sentence in found]
    return "\n".join(lines) + "\n"


def plot_pool(result: Mapping[str, Any], out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = result["pool"]
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot([p["unlabeled"] for p in pts], [p["validation"] for p in pts], "o-", label="seqkd student")
    if result.get("teacher_validation") is not None:
        ax.axhline(result["teacher_validation"], color="gray", linestyle="--", label="teacher")
        ax.legend(loc="lower right")
    ax.set_xscale("log", base=2)
    ax.set_xticks([p["unlabeled"] for p in pts], [f"{p['unlabeled']:,}" for p in pts])
    ax.set_xlabel("unlabeled articles the teacher summarized")
    ax.set_ylabel(f"validation {result['metric']} ({result['select_decoding']})")
    ax.set_title("seqkd: what unlabeled text buys (seed 0)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)


def stage_seconds(live_dir: Path) -> dict[str, float | None]:
    """The teacher-side stages' wall times as this checkout's pipeline measured them (dvclive/<stage>/)."""
    out = {}
    for stage in TEACHER_STAGES:
        f = Path(live_dir) / stage / "metrics.json"
        out[stage] = json.loads(f.read_text()).get("seconds") if f.is_file() else None
    return out


def read_records(out_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((out_dir / RUNS_DIR).glob("*.json"))]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("plan")
    r = sub.add_parser("run")
    r.add_argument("--workdir", type=Path, required=True, help="a checkout with the teacher's stages reproduced")
    r.add_argument("--only", default=None, help="a regular expression on run names")
    r.add_argument("--out-dir", type=Path, default=OUT_DIR)
    c = sub.add_parser("collect")
    c.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = p.parse_args(argv)
    params = yaml.safe_load(Path("params.yaml").read_text())
    if args.cmd == "plan":
        for run in plan(params):
            print(f"{run.name:24s} {run.group:12s} seed {run.seed}  {json.dumps(run.settings)}")
        return 0
    if args.cmd == "run":
        todo = [r for r in plan(params) if (args.only is None or re.search(args.only, r.name))
                and not (args.out_dir / RUNS_DIR / f"{r.name}.json").exists()]
        teacher = teacher_fingerprint(args.workdir / paths.TEACHER_DIR)
        one_teacher([*read_records(args.out_dir), {"teacher": teacher, "group": "teacher", "cost": {}}])
        for i, run in enumerate(todo, 1):
            print(f"[{i}/{len(todo)}] {run.name}", flush=True)
            out = _train_and_score(run, args.workdir.resolve(), args.out_dir.resolve(), teacher)
            print(f"  wrote {out}", flush=True)
        return 0
    result = collect(read_records(args.out_dir), teacher_stages=stage_seconds(paths.DVCLIVE_DIR))
    atomic_write_json(args.out_dir / "regimes.json", result)
    atomic_write_text(args.out_dir / "regimes.md", markdown(result))
    if result["pool"]:
        plot_pool(result, args.out_dir / "pool.png")
    print(markdown(result), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
