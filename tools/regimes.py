"""The losses in two regimes, and what unlabeled text buys: an experiment outside `dvc repro`.

    python -m tools.regimes plan                          # the runs, one line each
    python -m tools.regimes run --workdir DIR [--only RE] # train + benchmark each missing run, one at a time
    python -m tools.regimes collect                       # benchmark_results/regimes/regimes.{json,md}, pool.png

`DIR` is a checkout where `dvc repro teacher_generate teacher_outputs` has run (the fixed teacher, its
summaries and its cached logits); the default students' own seeds come from `python -m kd.seeds`
(benchmark_results/seeds.json and seeds_validation/seeds.json), so this experiment trains only what the
default does not:

- **labels only**: today's documented recipes that learn on the 500 labelled articles alone (`vanilla`
  logit KD, `feature`, `attention`, `gkd`), seeds 0, 1, 2. Their reference row is the label-only control
  (`baseline`).
- **with the teacher's text**: gkd on seqkd's text (`seqkd_gkd`), seeds 0, 1, 2, beside the default's
  seqkd, seqkd_logit, seqkd_feature and seqkd_attention. Their reference row is `seqkd`.
- **pool**: seqkd on the references plus the teacher's summaries of the labelled articles and of the first
  1,000, 2,000 or 4,000 unlabeled articles (seed 0; the 8,000 point is the default's seqkd, seed 0).
  The summaries are the teacher_generate stage's, written to a summaries file (`targets: <file>`).
- **check**: seqkd_logit with the live teacher (`teacher_pass: live`), seed 0, against the default's
  cached pass (`once`) on validation.

Each run is the distill and benchmark stage scripts run with a params file of its own (the checkout's
params.yaml, the recipe under `kd.students`, `student.seed`), outputs in `DIR/regimes/<run>/`; what is
kept is `benchmark_results/regimes/runs/<run>.json` (the recipe, the seed, the means per split and
decoding, the training cost). Every setting is the default's: the labels-only recipes keep their
documented KD weights, which were tuned on that regime; nothing here is tuned on this experiment.

Intervals over seeds here are 95% t-intervals over the per-seed means (three seeds: t = 4.30), so they
hold training noise but not the test set's own; the seeds tables of `kd.seeds` give two-level bootstraps.
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
from kd.report.results import COST_FIELDS, RUN_FLAGS

OUT_DIR = paths.BENCHMARK_DIR / "regimes"
RUNS_DIR = "runs"
SEEDS = (0, 1, 2)
POOL_SIZES = (1000, 2000, 4000)
FULL_POOL = 8000  # data.builtin.unlabeled_size: the default's seqkd
METRICS = ("rougeL", "rougeLsum", "fact_precision", "fact_recall")
HEADLINE = "rougeL"
CONTROL, SEQKD = "baseline", "seqkd"
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
    """Every run of the experiment, in the order `run` trains them (the cheap, single-seed ones first)."""
    students = params["kd"]["students"]
    runs = [Run("seqkd_logit_live-s0", "seqkd_logit_live", {**students["seqkd_logit"], "teacher_pass": "live"}, 0,
                "check")]
    for size in POOL_SIZES:
        recipe = {**students[SEQKD], "target_splits": ["train", "unlabeled"], "uncovered": "skip"}
        runs.append(Run(f"seqkd_pool{size}-s0", f"seqkd_pool{size}", recipe, 0, "pool", size))
    for seed in SEEDS:
        for _, (name, recipe) in LABELS_ONLY.items():
            runs.append(Run(f"{name}-s{seed}", name, recipe, seed, "labels"))
        runs.append(Run(f"seqkd_gkd-s{seed}", "seqkd_gkd", SEQKD_GKD, seed, "teacher_text"))
    return runs


# --- running ---------------------------------------------------------------------------------------

def pool_file(targets_dir: Path, size: int, out: Path) -> Path:
    """A summaries file ({"id", "summary"} lines) of the teacher's summaries of every labelled article and
    of the first `size` articles of the unlabeled pool (the teacher_generate stage's, first per article)."""
    lines = []
    for split, limit in (("train", None), ("unlabeled", size)):
        with open(targets_dir / f"{split}.jsonl", encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        if limit is not None and len(rows) < limit:
            raise SystemExit(f"{targets_dir / (split + '.jsonl')}: {len(rows)} summaries, fewer than {limit}")
        for row in rows[:limit]:
            lines.append(json.dumps({"id": row["id"], "summary": row["summaries"][0]}, ensure_ascii=False))
    atomic_write_text(out, "\n".join(lines) + "\n")
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


def record(run: Run, settings: Mapping[str, Any], quality: Mapping[str, Any], summary: Mapping[str, Any]) -> dict:
    return {"run": run.name, "recipe": run.recipe, "seed": run.seed, "group": run.group, "pool": run.pool,
            "settings": settings, "params": quality.get("params"), "quality": quality_means(quality),
            "cost": {k: summary.get(k) for k in (*COST_FIELDS, *RUN_FLAGS)}}


def _train_and_score(run: Run, workdir: Path, out_dir: Path) -> Path:
    base = yaml.safe_load((workdir / "params.yaml").read_text())
    scratch = workdir / "regimes" / run.name
    scratch.mkdir(parents=True, exist_ok=True)
    settings = dict(run.settings)
    if run.group == "pool":
        settings["targets"] = str(pool_file(workdir / paths.TEACHER_TARGETS_DIR, run.pool,
                                            scratch / f"pool{run.pool}.jsonl").resolve())
    params_file = scratch / "params.yaml"
    atomic_write_text(params_file, yaml.safe_dump(run_params(base, run, settings), sort_keys=False))
    model, live = scratch / "model", scratch / "dvclive"
    py = sys.executable
    subprocess.run([py, "-m", "stages.distill", "--params", str(params_file), "--log-dir", str(scratch / "logs"),
                    "--student", run.recipe, "--out", str(model), "--checkpoints", str(scratch / "checkpoints"),
                    "--live-dir", str(live)], cwd=workdir, check=True)
    subprocess.run([py, "-m", "stages.benchmark", "--params", str(params_file), "--log-dir", str(scratch / "logs"),
                    "--name", run.recipe, "--model", str(model), "--out", str(scratch / "quality.json"),
                    "--examples", str(scratch / "examples.jsonl")], cwd=workdir, check=True)
    quality = json.loads((scratch / "quality.json").read_text())
    summary = json.loads((live / "metrics.json").read_text())
    out = out_dir / RUNS_DIR / f"{run.name}.json"
    atomic_write_json(out, record(run, settings, quality, summary))
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


def default_per_seed(seeds_result: Mapping[str, Any], model: str, decoding: str, metric: str) -> dict[int, float]:
    """{seed: mean} of a default model in a `kd.seeds` summary."""
    return {int(s): v for s, v in seeds_result["models"][model][decoding][metric]["per_seed"].items()}


def run_per_seed(records: Sequence[Mapping[str, Any]], recipe: str, split: str, decoding: str,
                 metric: str) -> dict[int, float]:
    return {r["seed"]: r["quality"][split][decoding][metric] for r in records if r["recipe"] == recipe}


def paired(mine: Mapping[int, float], other: Mapping[int, float]) -> dict[str, Any] | None:
    """The t-interval of the per-seed difference, over the seeds both have."""
    seeds = sorted(set(mine) & set(other))
    return t_interval([mine[s] - other[s] for s in seeds]) if seeds else None


def collect(records: Sequence[Mapping[str, Any]], seeds_test: Mapping[str, Any], seeds_validation: Mapping[str, Any],
            *, decoding: str = "greedy", metric: str = HEADLINE) -> dict[str, Any]:
    """Both regimes side by side (test, per loss: each regime's score over seeds, and its difference from
    that regime's reference row, paired by seed), the pool curve and the once-vs-live check (validation)."""
    def scores(name: str, split: str, m: str = metric) -> dict[int, float]:
        if any(r["recipe"] == name for r in records):
            return run_per_seed(records, name, split, decoding, m)
        seeds = seeds_test if split == "test" else seeds_validation
        return default_per_seed(seeds, name, decoding, m) if name in seeds["models"] else {}

    def cost(name: str) -> dict[str, Any]:
        rows = [r for r in records if r["recipe"] == name]
        if rows:
            return {"best_step": t_interval([r["cost"]["best_step"] for r in rows])["mean"],
                    "train_seconds": t_interval([r["cost"]["train_seconds"] for r in rows])["mean"],
                    "converged": all(r["cost"]["converged"] for r in rows)}
        best = seeds_test.get("cost", {}).get(name, {})
        conv = seeds_test.get("converged", {}).get(name)
        return {"best_step": best.get("best_step", {}).get("mean"), "train_seconds": best.get("train_seconds", {}).get("mean"),
                "converged": None if conv is None else all(conv.values())}

    def cell(name: str, reference: str) -> dict[str, Any] | None:
        mine = scores(name, "test")
        if not mine:
            return None
        return {"model": name, "seeds": sorted(mine), "score": t_interval([mine[s] for s in sorted(mine)]),
                "vs_reference": paired(mine, scores(reference, "test")), "reference": reference,
                "fact_precision": t_interval(list(scores(name, "test", "fact_precision").values())),
                **cost(name)}

    losses = [("none (cross-entropy only)", CONTROL, SEQKD)] + [
        (loss, LABELS_ONLY[loss][0], SAME_TEXT[loss]) for loss in LABELS_ONLY]
    table = []
    for loss, labels_name, text_name in losses:
        table.append({"loss": loss,
                      "labels_only": cell(labels_name, CONTROL) if labels_name != CONTROL else cell(CONTROL, CONTROL),
                      "teacher_text": cell(text_name, SEQKD)})
    pool = [{"unlabeled": r["pool"], "seed": r["seed"], "validation": r["quality"]["validation"][decoding][metric],
             "best_step": r["cost"]["best_step"], "converged": r["cost"]["converged"]}
            for r in records if r["group"] == "pool"]
    full = scores(SEQKD, "validation").get(0)
    if full is not None:
        conv = seeds_test.get("converged", {}).get(SEQKD, {}).get("0")
        pool.append({"unlabeled": FULL_POOL, "seed": 0, "validation": full, "best_step":
                     seeds_test.get("cost", {}).get(SEQKD, {}).get("best_step", {}).get("per_seed", {}).get("0"),
                     "converged": conv})
    pool.sort(key=lambda p: p["unlabeled"])
    live = next((r for r in records if r["group"] == "check"), None)
    check = None
    if live is not None:
        once = scores("seqkd_logit", "validation").get(live["seed"])
        got = live["quality"]["validation"][decoding][metric]
        check = {"seed": live["seed"], "once": once, "live": got, "difference": None if once is None else
                 round(once - got, 4), "within": None if once is None else abs(once - got) <= 0.5,
                 "tolerance": 0.5, "live_train_seconds": live["cost"]["train_seconds"]}
    return {"split": "test", "decoding": decoding, "metric": metric, "interval": "95% t-interval over seeds' means",
            "regimes": table, "pool": pool, "once_vs_live": check}


def _fmt(stat: Mapping[str, Any] | None, signed: bool = False) -> str:
    if not stat:
        return "—"
    sign = "+" if signed else ""
    if stat.get("low") is None:
        return f"{stat['mean']:{sign}.2f} (one seed)"
    return f"{stat['mean']:{sign}.2f} [{stat['low']:{sign}.1f}, {stat['high']:{sign}.1f}]"


def _mark(c: Mapping[str, Any] | None) -> str:
    return "" if not c or c.get("converged") is not False else " †"


def markdown(result: Mapping[str, Any]) -> str:
    m, dec = result["metric"], result["decoding"]
    lines = [f"Test {m} ({dec}), mean over seeds with a {result['interval']}; Δ is the difference from the "
             f"regime's reference row, paired by seed (labels only: the label-only control `baseline`; with the "
             f"teacher's text: `seqkd`). † reached its step cap without stopping early (not converged).", "",
             "| loss | labels only | Δ vs control | with the teacher's text | Δ vs seqkd |", "|---|---|---|---|---|"]
    for row in result["regimes"]:
        lo, tt = row["labels_only"], row["teacher_text"]
        lines.append(f"| {row['loss']} | {_fmt(lo and lo['score'])}{_mark(lo)} "
                     f"| {_fmt(lo and lo['vs_reference'], True) if lo and lo['model'] != CONTROL else '(reference)'} "
                     f"| {_fmt(tt and tt['score'])}{_mark(tt)} "
                     f"| {_fmt(tt and tt['vs_reference'], True) if tt and tt['model'] != SEQKD else '(reference)'} |")
    if result["pool"]:
        lines += ["", f"seqkd against the size of the unlabeled pool (validation {m}, {dec}, seed 0):", "",
                  "| unlabeled articles | validation | best step |", "|---|---|---|"]
        for p in result["pool"]:
            lines.append(f"| {p['unlabeled']:,} | {p['validation']:.2f}{' †' if p['converged'] is False else ''} "
                         f"| {p['best_step'] if p['best_step'] is None else int(p['best_step']):,} |")
    check = result["once_vs_live"]
    if check:
        verdict = "within" if check["within"] else "not within"
        lines += ["", f"seqkd_logit's teacher pass, seed {check['seed']}, validation {m} ({dec}): once (cached top-k) "
                  f"{check['once']:.2f}, live {check['live']:.2f}: {verdict} {check['tolerance']} of each other."]
    return "\n".join(lines) + "\n"


def plot_pool(result: Mapping[str, Any], out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = result["pool"]
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot([p["unlabeled"] for p in pts], [p["validation"] for p in pts], "o-")
    ax.set_xscale("log", base=2)
    ax.set_xticks([p["unlabeled"] for p in pts], [f"{p['unlabeled']:,}" for p in pts])
    ax.set_xlabel("unlabeled articles the teacher summarized")
    ax.set_ylabel(f"validation {result['metric']} ({result['decoding']})")
    ax.set_title("seqkd: what unlabeled text buys (seed 0)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)


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
        for i, run in enumerate(todo, 1):
            print(f"[{i}/{len(todo)}] {run.name}", flush=True)
            print(f"  wrote {_train_and_score(run, args.workdir.resolve(), args.out_dir.resolve())}", flush=True)
        return 0
    seeds_test = json.loads((paths.BENCHMARK_DIR / "seeds.json").read_text())
    seeds_val = json.loads((paths.BENCHMARK_DIR / "seeds_validation" / "seeds.json").read_text())
    result = collect(read_records(args.out_dir), seeds_test, seeds_val)
    atomic_write_json(args.out_dir / "regimes.json", result)
    atomic_write_text(args.out_dir / "regimes.md", markdown(result))
    if result["pool"]:
        plot_pool(result, args.out_dir / "pool.png")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
