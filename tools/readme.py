"""The generated tables of the README and the docs pages, rendered from committed result files (never
typed by hand).

    python -m tools.readme            # rewrite every generated section of every document below
    python -m tools.readme --check    # exit 1 when a section differs from its results file, both as
                                      # committed (HEAD) and as in the working tree
    python -m tools.readme docs/results.md   # one document only

Each section sits between `<!-- <name>:start (python -m tools.readme) -->` and `<!-- <name>:end -->`:

    summary          benchmark_results/seeds.json + benchmark_results.json: the README's short table (test
                     split, beam, mean ± sd over training seeds, training cost) and its two sentences on
                     which method wins
    verdict          benchmark_results/seeds.json + seeds_validation/seeds.json: what the numbers say, every
                     claim computed (the student best on validation, its share of the teacher on test, each
                     recipe's gap closed with its interval and whether it beats the control)
    seeds            benchmark_results/seeds.json (python -m kd.seeds collect): mean ± sd over training seeds
                     and the paired bootstrap against the baseline and the teacher, test split
    seeds_validation benchmark_results/seeds_validation/seeds.json: the same on the validation split
    results          benchmark_results/benchmark_results.json (the report stage): the committed run, test split
    cnndm            benchmark_results/cnndm/lead3.json: lead-3 on a sample of real CNN/DailyMail articles
    rehearsal        benchmark_results/rehearsal/rehearsal.json (python -m tools.bench rehearsal): the real
                     job rehearsed on a CPU, each row labelled measured or estimate
    real_job         the same file: the real job's estimated time and disk per stage on one GPU
    serve            benchmark_results/serve/serve_cpu.json (python -m tools.bench serve): decoding speed at
                     the published T5 shapes on a CPU, fp32 and int8
    regimes          benchmark_results/regimes/regimes.json (python -m tools.regimes collect): each loss with the
                     labels only and with the teacher's text, over seeds, the unlabeled-pool curve and the
                     once-vs-live check of seqkd_logit's teacher pass
    int8             benchmark_results/serve/int8_{validation,test}.json (python -m tools.bench int8): the
                     trained students in int8 against fp32, over training seeds

`DOCUMENTS` says which document holds which sections. tests/test_readme.py runs the check, so a document
that disagrees with benchmark_results/ fails CI. The check accepts the results committed at HEAD as well
as the working tree's: `dvc repro` rewrites the run's timings (and, on another machine, its scores) in the
working tree, and the documents still show the committed run. Results made under a profile
(`python -m kd.profile`, recorded as the `profile` param of the report stage in dvc.lock) are refused:
the documents show the default's results.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Callable, Mapping

from kd import paths
from kd.io import atomic_write_text
from kd.report.results import (CHARGED, ONE_RUN_INTERVALS, display_rows, faithfulness_key, headline, markdown_table,
                               not_converged_notes, with_intervals)

RESULTS = paths.BENCHMARK_DIR / "benchmark_results.json"
SEEDS = paths.BENCHMARK_DIR / "seeds.json"
SEEDS_VALIDATION = paths.BENCHMARK_DIR / "seeds_validation" / "seeds.json"
CNNDM = paths.BENCHMARK_DIR / "cnndm" / "lead3.json"
REHEARSAL = paths.BENCHMARK_DIR / "rehearsal" / "rehearsal.json"
SERVE = paths.BENCHMARK_DIR / "serve" / "serve_cpu.json"
REGIMES = paths.BENCHMARK_DIR / "regimes" / "regimes.json"
INT8 = {split: paths.BENCHMARK_DIR / "serve" / f"int8_{split}.json" for split in ("validation", "test")}


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start (python -m tools.readme) -->", f"<!-- {name}:end -->"


def results_table(results_file: Path = RESULTS) -> str:
    """The committed run's test-split table: headline decoding with its interval, greedy beside it,
    faithfulness, the paired difference to the baseline, size, speed and training cost."""
    results = json.loads(Path(results_file).read_text())
    rows = headline(results, "test")
    table = markdown_table(display_rows(rows, faithfulness_key(rows[0])))
    table += f"\nIntervals: 95% bootstrap {ONE_RUN_INTERVALS}.\n"
    table += "".join(f"\n{note}\n" for note in not_converged_notes(rows))
    train = results.get("teacher", {}).get("train_split")
    if train:  # the teacher_generate stage's summaries of the students' labelled set: seqkd targets
        test = results["teacher"]["test"].get(train["decoding"], {})
        table += (f"\nThe teacher on the students' labelled set: its summaries of those {train['n_examples']} "
                  f"articles (beam {train['num_beams']}, among the `seqkd` targets) score rougeL {train['rougeL']:.2f} "
                  f"against their references, against {test.get('rougeL', float('nan')):.2f} on test.\n")
    return table


NO_SEEDS = "(no seeds collected yet: `python -m kd.seeds run --seeds 0 1 2`, then `collect`)\n"


def seeds_section(seeds_file: Path = SEEDS) -> str:
    from kd.seeds import markdown

    if not Path(seeds_file).is_file():
        return NO_SEEDS
    return markdown(json.loads(Path(seeds_file).read_text()))


def _cost_cells(r: Mapping, model: str, heuristic: bool) -> dict[str, str]:
    """A model's training cost over seeds as the README's summary shows it: mean (± sd) of the step of its
    kept weights, the steps run, the training examples seen, the seconds of optimizer steps and the teacher
    work charged to it; "–" where its runs did not record one (older summaries) or for a heuristic."""
    from kd.report import format as fmt

    cost = {} if heuristic else r.get("cost", {}).get(model, {})
    sd = len(r["seeds"]) > 1

    def cell(key: str, count: bool) -> str:
        s = cost.get(key)
        if s is None:
            return "–"
        return fmt.count_spread(s["mean"], s["sd"] if sd else None) if count else \
            fmt.spread(s["mean"], s["sd"] if sd else None, 0)

    return {"best step": cell("best_step", True), "steps": cell("steps", True),
            "examples seen": cell("examples_seen", True), "train_s": cell("train_seconds", False),
            "teacher_s": cell(CHARGED, False)}


def summary_section(seeds_file: Path = SEEDS, results_file: Path = RESULTS,
                    validation_file: Path = SEEDS_VALIDATION) -> str:
    """The README's short table: one row per model on the test split with the beam decoding, mean ± sd over
    training seeds, the share of the teacher's lead each student closes, its training cost, and two
    sentences on which wins."""
    if not Path(seeds_file).is_file():
        return NO_SEEDS
    from kd.metrics.registry import headline_keys
    from kd.report import format as fmt
    from kd.seeds import interval_words, not_converged_footnote, retention, shown_name

    r = json.loads(Path(seeds_file).read_text())
    sizes = {}
    if Path(results_file).is_file():
        sizes = {m: v.get("params") for m, v in json.loads(Path(results_file).read_text()).items()}
    decoding = "beam"
    teacher, baseline = r["teacher"], r["baseline"]
    heuristics = list(r["heuristics"])
    students = [m for m in r["models"] if m not in heuristics and m not in (teacher, baseline)]
    gap = {m: r.get("gap_closed", {}).get(m, {}).get(decoding, {}).get("bootstrap") for m in students}
    students.sort(key=lambda m: -(gap[m] or {}).get("mean", float("-inf")))
    faith = next((k for k in headline_keys() if k != "rougeL" and k in r["models"][teacher][decoding]
                  and k.endswith("precision")), None)

    def stat(model, key):
        block = r["models"][model]
        s = (block.get(decoding) or next(iter(block.values()))).get(key)
        return "–" if s is None else fmt.spread(s["mean"], s["sd"] if len(r["seeds"]) > 1 else None)

    served = any("speedup_greedy" in e for e in r.get("efficiency", {}).values())
    rows = []
    for model in [teacher, baseline, *students, *heuristics]:
        kept = retention(r, model, decoding if decoding in r["models"][model] else next(iter(r["models"][model])))
        speed = r.get("efficiency", {}).get(model, {}).get("speedup")
        g = gap.get(model)
        rows.append({
            "model": shown_name(r, model) if model not in heuristics else f"{model} (heuristic)",
            "parameters": f"{sizes[model]:,}" if sizes.get(model) else "–",
            "rougeL": stat(model, "rougeL"),
            "% of teacher": "–" if kept is None else f"{kept:.1f}%",
            "gap closed [95%]": "–" if not g else fmt.percent_interval(g["mean"], g["low"], g["high"]),
            **({faith: stat(model, faith)} if faith else {}),
            "speedup": "–" if not speed else f"{fmt.spread(speed['mean'], speed['sd'])}x",
            **({"greedy speedup": _greedy_speedup(r, model)} if served else {}),
            **_cost_cells(r, model, model in heuristics)})
    seeds = ", ".join(map(str, r["seeds"]))
    head = (f"Test split, {r['n_examples']} articles, beam decoding; mean ± sd over training seeds {seeds}. "
            f"Gap closed: (student − {baseline}) / ({teacher} − {baseline}) in rougeL, with its interval "
            f"({r['bootstrap']['confidence']:.0%} {interval_words(r)}). Speedup: samples/s over the teacher's, "
            f"both at beam search"
            + ("; greedy speedup: the student decoded greedily (as it is served) over the teacher at beam search, "
               "timed in the same run" if served else "")
            + ". Training cost: the step of the kept weights, the steps run, the training examples seen, seconds "
              "of optimizer steps (train_s) and the teacher work charged to the student (teacher_s: the "
              "teacher-side stages its recipe reads, and any teacher pass of its own).\n\n")
    text = head + markdown_table(rows)
    if (footnote := not_converged_footnote(r)) is not None:
        text += f"\n{footnote}\n"
    v = json.loads(Path(validation_file).read_text()) if Path(validation_file).is_file() else None
    chosen = served_best(r, v)
    if chosen in students and gap[chosen]:
        best, g = chosen, gap[chosen]
        def mean(model):
            return r["models"][model][decoding]["rougeL"]["mean"]

        others = ", ".join(f"`{m}` {gap[m]['mean']:.0f}%" for m in students if m != best and gap[m])
        text += (f"\n`{best}` is the best student on validation: on test it closes {g['mean']:.0f}% "
                 f"({g['low']:.0f}–{g['high']:.0f}%) of the teacher's lead "
                 f"over the label-only `{baseline}` (rougeL {mean(best):.2f} against {mean(baseline):.2f}; the teacher "
                 f"{mean(teacher):.2f}) and keeps {retention(r, best, decoding):.1f}% of the teacher's score. "
                 + (f"The other methods close: {others}." if others else ""))
        if (line := served_headline(r, v, sizes)) is not None:
            text += " " + line
        e = r.get("efficiency", {}).get(best, {})
        if "speedup_greedy" in e:
            slowest = min(e["speedup_greedy"]["per_seed"].values())
            text += (f" It decodes {e['speedup_greedy']['mean']:.1f}x faster than the teacher at beam search "
                     f"(slowest seed {slowest:.1f}x).")
        text += "\n"
    return text


def _greedy_speedup(r: dict, model: str) -> str:
    """`7.10 ± 0.30x (min 6.80x)`: a student greedy over the teacher at beam, and its slowest seed."""
    from kd.report import format as fmt

    s = r.get("efficiency", {}).get(model, {}).get("speedup_greedy")
    if not s:
        return "–"
    return f"{fmt.spread(s['mean'], s['sd'])}x (min {min(s['per_seed'].values()):.2f}x)"


def _decoding(result: Mapping, model: str, wanted: str = "beam") -> str:
    blocks = result["models"][model]
    return wanted if wanted in blocks else next(iter(blocks))


def _rouge(result: Mapping, model: str) -> Mapping | None:
    return result["models"][model][_decoding(result, model)].get("rougeL")


def _beats(gap: Mapping, control: str) -> str:
    """Whether a gap-closed interval puts a recipe above the control, in words."""
    if gap["low"] > 0:
        return f"its interval is above 0, so it beats `{control}`"
    if gap["high"] < 0:
        return f"its interval is below 0, so it is worse than `{control}`"
    return f"its interval includes 0, so it does not beat `{control}`"


def _students(r: Mapping) -> list[str]:
    return [m for m in r["models"] if m not in set(r["heuristics"]) and m != r["teacher"]]


def _covers(r: Mapping, v: Mapping | None) -> bool:
    """`v` (a validation seeds summary) holds every student of `r`: the choice can be made there."""
    return v is not None and all(m in v["models"] for m in _students(r))


def served_best(r: Mapping, v: Mapping | None) -> str | None:
    """The student to serve, chosen on validation (`v`, the validation seeds summary) by its greedy rougeL
    (greedy is how it is served), else on `r` when no validation summary covers every student."""
    by = v if _covers(r, v) else r
    students = _students(r)

    def greedy(m):
        block = by["models"][m].get("greedy") or by["models"][m].get(_decoding(by, m))
        return block["rougeL"]["mean"] if block and "rougeL" in block else float("-inf")

    return max(students, key=greedy) if students else None


def served_headline(r: Mapping, v: Mapping | None, sizes: Mapping[str, int] | None = None) -> str | None:
    """One sentence: the student best on validation, served greedily, against the teacher at beam search on
    `r`'s split: its share of the teacher's rougeL (mean over seeds, and the lowest seed), of its
    fact_precision and fact_recall, and how many times fewer parameters it has; every number computed."""
    best = served_best(r, v)
    teacher = r["teacher"]
    if best is None or "greedy" not in r["models"][best] or "beam" not in r["models"][teacher]:
        return None
    mine, theirs = r["models"][best]["greedy"], r["models"][teacher]["beam"]

    def kept(metric: str) -> tuple[float, float] | None:
        if metric not in mine or metric not in theirs:
            return None
        per = [100.0 * mine[metric]["per_seed"][s] / theirs[metric]["per_seed"][s]
               for s in mine[metric]["per_seed"] if theirs[metric]["per_seed"].get(s)]
        return (100.0 * mine[metric]["mean"] / theirs[metric]["mean"], min(per)) if per else None

    rouge, precision, recall = kept("rougeL"), kept("fact_precision"), kept("fact_recall")
    if rouge is None:
        return None
    chosen = "on validation" if _covers(r, v) else f"on {r['split']}, no validation seeds collected"
    text = (f"Served greedily, `{best}` (the best student {chosen}) keeps {rouge[0]:.1f}% of the teacher's beam "
            f"rougeL on {r['split']} (mean over seeds {', '.join(map(str, r['seeds']))}; lowest seed {rouge[1]:.1f}%)")
    if precision:
        text += f", {precision[0]:.1f}% of its fact_precision"
    if recall:
        text += f" and {recall[0]:.1f}% of its fact_recall"
    if sizes and sizes.get(best) and sizes.get(teacher):
        text += f", with {sizes[teacher] / sizes[best]:.1f}x fewer parameters"
    return text + "."


def verdict_section(seeds_file: Path = SEEDS, validation_file: Path = SEEDS_VALIDATION,
                    results_file: Path = RESULTS) -> str:
    """What the numbers say, every number and every claim computed from the seeds summaries: the student
    best on validation (where the choice is made) and, on test, its share of the teacher's rougeL (mean and
    lowest seed) and of the teacher's lead over the control; the headroom; each other recipe's gap closed
    with its interval and whether that interval clears 0; faithfulness; the spread over seeds."""
    if not Path(seeds_file).is_file():
        return NO_SEEDS
    from kd.seeds import interval_words, not_converged_footnote, retention, shown_name, two_level

    r = json.loads(Path(seeds_file).read_text())
    v = json.loads(Path(validation_file).read_text()) if Path(validation_file).is_file() else None
    sizes = ({m: e.get("params") for m, e in json.loads(Path(results_file).read_text()).items()}
             if Path(results_file).is_file() else None)
    teacher, control = r["teacher"], r["baseline"]
    heuristics = set(r["heuristics"])
    students = [m for m in r["models"] if m not in heuristics and m != teacher]
    recipes = [m for m in students if m != control]
    decoding = _decoding(r, teacher)
    gaps = {m: r.get("gap_closed", {}).get(m, {}).get(decoding, {}).get("bootstrap") for m in recipes}
    conf = f"{r['bootstrap']['confidence']:.0%}"

    def name(m: str) -> str:
        return f"`{shown_name(r, m)}`"

    def fmt_gap(g: Mapping) -> str:
        return f"{g['mean']:.0f}% [{g['low']:.0f}, {g['high']:.0f}]"

    lines = [f"Seeds {', '.join(map(str, r['seeds']))}; {r['split']} split ({r['n_examples']} articles), {decoding} "
             f"decoding, rougeL unless said; intervals: {conf} {interval_words(r)}.", ""]
    chooser = v if _covers(r, v) else None
    by = chooser or r
    best = served_best(r, v)  # by its greedy rougeL, as it is served
    score = (by["models"][best].get("greedy") or by["models"][best][_decoding(by, best)])["rougeL"]["mean"]
    where = (f"the best student on validation (greedy rougeL {score:.2f} there, mean over seeds)"
             if chooser else f"the best student on {r['split']} (no validation seeds collected)")
    t_mean = _rouge(r, teacher)
    kept = retention(r, best, _decoding(r, best))
    mine = _rouge(r, best)
    per_seed = [100.0 * mine["per_seed"][s] / t_mean["per_seed"][s] for s in mine["per_seed"]
                if t_mean["per_seed"].get(s)]
    sentence = f"- **Best:** {name(best)} is {where}."
    if kept is not None and per_seed:
        sentence += (f" On {r['split']} it keeps {kept:.1f}% of the teacher's rougeL ({mine['mean']:.2f} against "
                     f"{t_mean['mean']:.2f}; lowest seed {min(per_seed):.1f}%)")
        if best == control:
            sentence += f"; it is the control, so no recipe beats `{control}` there."
        elif gaps.get(best):
            sentence += (f" and closes {fmt_gap(gaps[best])} of the teacher's lead over the label-only "
                         f"`{control}` ({_beats(gaps[best], control)}).")
        else:
            sentence += "."
    lines.append(sentence)
    if (line := served_headline(r, v, sizes)) is not None:
        lines.append(f"- **Served:** {line}")
    lead = r.get("vs_teacher", {}).get(control, {}).get(decoding, {}).get("rougeL", {}).get("bootstrap")
    if lead:
        lines.append(f"- **Headroom:** the teacher leads `{control}` by {-lead['mean_diff']:.2f} rougeL "
                     f"[{-lead['high']:.2f}, {-lead['low']:.2f}] ({t_mean['mean']:.2f} against "
                     f"{_rouge(r, control)['mean']:.2f}).")
    others = sorted((m for m in recipes if m != best and gaps.get(m)), key=lambda m: -gaps[m]["mean"])
    if others:
        lines.append("- **Against the control:** " + "; ".join(
            f"{name(m)} closes {fmt_gap(gaps[m])} of the gap ({_beats(gaps[m], control)})" for m in others) + ".")
    scored = [m for m in recipes if gaps.get(m)]
    if scored:
        above = [m for m in scored if gaps[m]["low"] > 0]
        behind = [m for m in scored if gaps[m]["low"] <= 0]
        count = ("every recipe beats" if not behind else f"{len(above)} of {len(scored)} recipes beat")
        lines.append(f"- **In all:** {count} `{control}` with an interval above 0"
                     + (f"; {', '.join(f'`{m}`' for m in behind)} "
                        f"{'does' if len(behind) == 1 else 'do'} not." if behind else "."))
    faith = next((k for k in ("fact_precision", "entity_precision") if k in r["models"][teacher][decoding]), None)
    if faith:
        order = sorted((m for m in [teacher, *students] if faith in r["models"][m][_decoding(r, m)]),
                       key=lambda m: -r["models"][m][_decoding(r, m)][faith]["mean"])
        lines.append(f"- **Faithfulness** (`{faith}`, mean over seeds): " + ", ".join(
            f"{'the teacher' if m == teacher else name(m)} {r['models'][m][_decoding(r, m)][faith]['mean']:.2f}"
            for m in order) + ".")
    spreads = {m: _rouge(r, m)["sd"] for m in students if _rouge(r, m) and _rouge(r, m)["sd"] is not None}
    if spreads:
        widest = max(spreads, key=spreads.get)
        lines.append(f"- **Spread:** over seeds a student's rougeL has a standard deviation of up to "
                     f"{spreads[widest]:.2f} points ({name(widest)}); the intervals above "
                     f"{'include' if two_level(r) else 'do not include'} this training noise.")
    if (footnote := not_converged_footnote(r)) is not None:
        lines += ["", footnote]
    return "\n".join(lines) + "\n"


def cnndm_table(lead_file: Path = CNNDM) -> str:
    """Lead-3 on the real sample, per split: ROUGE with intervals, entity precision and shape."""
    if not Path(lead_file).is_file():
        return "(not run yet: see the command above)\n"
    quality = json.loads(Path(lead_file).read_text())
    rows = []
    for split, blocks in quality.items():
        m = blocks["lead"]
        rows.append({"split": split, "articles": m["n_examples"], **{
            f"{k} [95% CI]": with_intervals(m, k) for k in ("rouge1", "rouge2", "rougeL", "rougeLsum")},
            "entity_precision": m.get("entity_precision"), "novel_bigram_pct": m.get("novel_bigram_pct"),
            "length": m.get("length")})
    return markdown_table(rows)


def _bytes(n) -> str:
    from kd.report.format import human_bytes

    return human_bytes(n) if n else "-"


def _seconds(s) -> str:
    from kd.report.format import human_seconds

    return human_seconds(s) if s else "-"


NO_REHEARSAL = "(not run yet: `python -m tools.bench rehearsal --out benchmark_results/rehearsal/rehearsal.json`)\n"


def rehearsal_table(rehearsal_file: Path = REHEARSAL) -> str:
    """The rehearsal's stages as measured here, then the full job's estimates (this CPU; one H100 from
    FLOPs at the stated utilisation), then its budgets: every row says which it is."""
    if not Path(rehearsal_file).is_file():
        return NO_REHEARSAL
    r = json.loads(Path(rehearsal_file).read_text())
    job = r["full_job"]
    rows = []
    for st in r["stages"]:
        rate = st.get("throughput") or {}
        full = st.get("full") or {}
        rows.append({
            "stage": st["stage"], "measured here, on": st["kind"], "time": _seconds(st["wall_s"]),
            "peak RSS": f"{st['peak_rss_mb'] / 1024:.1f} GB",
            "disk written (each inode once)": _bytes(st["disk_bytes"]["total"]),
            "throughput": f"{rate['value']:g} {rate['unit']}" if rate else "-",
            "full job, same CPU (estimate)": _seconds(full.get("cpu_s")),
            "full job, one H100 (estimate)": _seconds(full.get("h100_s")),
            "full job, disk (estimate)": _bytes(full.get("disk_bytes"))})
    rows.append({"stage": "**whole job**", "measured here, on": f"rehearsal wall time {_seconds(r['wall_s'])}",
                 "time": "", "peak RSS": "", "disk written (each inode once)": "", "throughput": "",
                 "full job, same CPU (estimate)": _seconds(job["cpu_s"]),
                 "full job, one H100 (estimate)": _seconds(job["h100_box_s"]),
                 "full job, disk (estimate)": _bytes(job["disk_bytes"])})
    hf = sum(st["disk_bytes"].get("hf_cache", 0) for st in r["stages"])
    cached = sum(st["disk_bytes"]["dvc_cache"] for st in r["stages"])
    disk_note = (f"Disk written counts the workspace, the DVC cache ({_bytes(cached)} of objects, each the same inode "
                 f"as its workspace file) and the datasets library's cache ({_bytes(hf)}: `load_dataset` keeps an "
                 f"Arrow copy of the corpus' text), each inode once.")
    budgets = "; ".join(f"{k} {b['value']:g} (limit {b['limit']:g}) {'ok' if b['ok'] else 'OVER'}"
                        for k, b in r["budgets"].items())
    return (f"Measured on {r['host']['cpus']} CPU cores, scale {r['options']['scale']:g}, "
            f"utilisation assumed for the H100 estimates: {job['utilisation']:.0%} training, "
            f"{job['decode_utilisation']:.0%} decoding.\n\n{markdown_table(rows)}\n{disk_note} Budgets: {budgets}.\n")


# The rehearsal's stage names -> what each is in the real job.
REAL_JOB_STAGES = {
    "download": "download (CNN/DailyMail from the hub)",
    "tokenize": "tokenize (all splits, 512/128 tokens)",
    "train_teacher": "train_teacher (t5-base, 1 epoch)",
    "teacher_outputs": "teacher_outputs (top-64 logits per target token)",
    "teacher_generate": "teacher_generate (summaries of the training split, beam 4)",
    "distill_baseline": "distill@baseline (t5-small, 3 epochs)",
    "distill_t5_small": "distill@ another t5-small student",
    "distill_flan_t5_small": "distill@ a flan-t5-small student",
    "benchmark_teacher": "benchmark_teacher",
    "benchmark_baseline": "benchmark@baseline",
    "benchmark_t5_small": "benchmark@ another t5-small student",
    "benchmark_flan_t5_small": "benchmark@ a flan-t5-small student",
}
# Stages that run on the CPU of a GPU machine too (as tools.rehearsal counts them).
CPU_STAGES = frozenset({"download", "tokenize", "benchmark_lead3", "report"})


def real_job_table(rehearsal_file: Path = REHEARSAL) -> str:
    """The real job's time and disk per stage on one GPU machine, as the rehearsal estimates them: GPU stages
    from model FLOPs at an assumed utilisation, CPU stages from the rates measured on the rehearsal's CPU."""
    if not Path(rehearsal_file).is_file():
        return NO_REHEARSAL
    r = json.loads(Path(rehearsal_file).read_text())
    job = r["full_job"]
    rows = []
    for st in r["stages"]:
        full = st.get("full") or {}
        at_size = st["kind"].startswith("measured, full size")  # run over the whole corpus, not a slice
        if st["stage"] in CPU_STAGES:
            time = f"{_seconds(full.get('cpu_s'))} ({'measured on the CPU' if at_size else 'estimate, CPU'})"
        else:
            time = f"{_seconds(full.get('h100_s'))} (estimate)"
        rows.append({"stage": REAL_JOB_STAGES.get(st["stage"], st["stage"]), "time, one H100 machine": time,
                     "disk": f"{_bytes(full.get('disk_bytes'))} ({'measured' if at_size else 'estimate'})"})
    rows.append({"stage": "**the whole job**", "time, one H100 machine": f"{_seconds(job['h100_box_s'])} (estimate)",
                 "disk": f"{_bytes(job['disk_bytes'])} (estimate)"})
    return (f"GPU stages: model FLOPs at {job['utilisation']:.0%} of an H100's bf16 peak for training and "
            f"{job['decode_utilisation']:.0%} for decoding, every summary decoded to its token limit (a worst case). "
            f"CPU stages: rates measured on {r['host']['cpus']} CPU cores. Validation passes during training are "
            f"not counted.\n\n{markdown_table(rows)}")


def serve_table(serve_file: Path = SERVE) -> str:
    """The serving bench (tools.servebench): latency at batch 1, throughput at the serving batch, the
    like-for-like and served ratios, and each model's size, load time and memory."""
    if not Path(serve_file).is_file():
        return "(not run yet: `python -m tools.bench serve --out benchmark_results/serve/serve_cpu.json`)\n"
    r = json.loads(Path(serve_file).read_text())
    plan, h = r["plan"], r["host"]
    where = "one GPU" if h.get("gpu") else f"{h['logical_cores']} CPU cores"  # the model is in the JSON
    parts = [f"Measured on {where} with {h['torch_threads']} torch threads (torch {h['torch']}); "
             f"{plan['source_len']}-token articles, every summary forced to its length; median of "
             f"{plan['rounds']} interleaved rounds; int8: `{plan['int8']}`. Not timed, to keep the run within "
             f"20 minutes: " + ("; ".join(plan["left_out"]) or "nothing") + f". The run took {r['wall_s']:.0f} s.\n"]
    cells = r["cells"]
    for n in plan["new_tokens"]:
        rows = {}
        for c in cells:
            if c["new_tokens"] == n and c["batch"] == 1:
                row = rows.setdefault((c["model"], c["precision"]), {"model": c["model"], "precision": c["precision"]})
                row[f"{c['decoding']} p50 s"] = f"{c['p50_s']:.2f}"
                row[f"{c['decoding']} p95 s"] = f"{c['p95_s']:.2f}"
        if rows:
            parts.append(f"**Latency, one article at a time, {n}-token summaries:**\n\n"
                         + markdown_table(list(rows.values())))
        rows = {}
        for c in cells:
            if c["new_tokens"] == n and c["batch"] > 1:
                row = rows.setdefault((c["model"], c["precision"]), {"model": c["model"], "precision": c["precision"]})
                row[f"{c['decoding']} articles/s"] = f"{c['articles_per_s']:.2f}"
        if rows:
            parts.append(f"**Throughput, batches of {plan['serve_batch']}, {n}-token summaries:**\n\n"
                         + markdown_table(list(rows.values())))
    ratio_rows = [{"group": group, "kind": kind.replace("_", " "), "student vs teacher": name, "faster": f"{v:.2f}x"}
                  for group, blocks in r["ratios"].items() for kind, values in blocks.items()
                  for name, v in values.items() if kind == "served" or "fp32" in name]
    parts.append("**How many times faster the student decodes** (served: the student greedy against the fp32 "
                 "teacher at beam 4; like for like: the same decoding, fp32):\n\n" + markdown_table(ratio_rows))
    facts = [{"model": m, "precision": p, "parameters": f"{f['parameters']:,}", "on disk": _bytes(f["disk_bytes"]),
              "load s": f"{f['load_s']:.2f}", "peak RSS": f"{f['peak_rss_mb']:.0f} MB"}
             for m, by in r["models"].items() for p, f in by.items()]
    parts.append("**Each model** (load: `from_pretrained` from a local directory, plus quantizing for int8; peak "
                 "RSS: a process that loads it and decodes one article):\n\n" + markdown_table(facts))
    if "int8_paths" in r:
        paths_rows = [{"model and int8 path": k, "faster than fp32 (greedy, batch 1)": f"{v:.2f}x"}
                      for k, v in r["int8_paths"]["speedup_over_fp32"].items()]
        parts.append("**int8 paths side by side:**\n\n" + markdown_table(paths_rows))
    if "greedy_paths" in r:
        g = r["greedy_paths"]
        parts.append(f"**Greedy decoding paths** ({g['model']}, fp32, batch 1, {g['new_tokens']} tokens, "
                     f"{g['articles']} articles per round): `generate` {g['seconds_per_article']['generate']:.3f} s, "
                     f"`kd.models.greedy` {g['seconds_per_article']['kd.models.greedy']:.3f} s per article; the "
                     f"lean path is {g['lean_speedup']:.2f}x as fast, token ids identical: "
                     f"{'yes' if g['identical_ids'] else 'NO'}.\n")
    return "\n".join(parts)


def int8_table(files: Mapping[str, Path] = INT8) -> str:
    """The trained students in int8 against fp32 (tools.int8check), validation first (where the choice is
    made), then test: per student the fp32 and int8 means over seeds and the paired difference."""
    parts = []
    for split, path in files.items():
        if not Path(path).is_file():
            parts.append(f"({split}: not run yet: `python -m tools.bench int8 --split {split} --seeds 0 1 2 "
                         f"--out benchmark_results/serve/int8_{split}.json`)\n")
            continue
        r = json.loads(Path(path).read_text())
        seeds = list(r["per_seed"])
        rows = []
        for student, metrics in r["int8_minus_fp32"].items():
            row = {"student": student}
            for key, stat in metrics.items():
                fp32 = statistics.fmean(r["per_seed"][s][student][key]["fp32"] for s in seeds)
                row[f"{key} fp32"] = f"{fp32:.2f}"
                row[f"{key} int8 − fp32"] = f"{stat['mean']:+.2f} (" + ", ".join(
                    f"{v:+.2f}" for v in stat["per_seed"].values()) + ")"
            rows.append(row)
        ci = {student: r["per_seed"][seeds[0]][student]["rougeL"]["int8_minus_fp32"] for student in r["int8_minus_fp32"]}
        parts.append(f"**{split.capitalize()} split, {r['n_examples']} articles, greedy; means over seeds "
                     f"{', '.join(seeds)} (each seed's difference in brackets):**\n\n" + markdown_table(rows)
                     + f"\nSeed {seeds[0]}'s paired 95% interval of int8 − fp32 in rougeL: "
                     + "; ".join(f"{m} [{c['low']:+.2f}, {c['high']:+.2f}]" for m, c in ci.items()) + ".\n")
    return "\n".join(parts)


NO_REGIMES = "(not run yet: `python -m tools.regimes run --workdir DIR`, then `python -m tools.regimes collect`)\n"


def regimes_section(regimes_file: Path = REGIMES) -> str:
    from tools.regimes import markdown

    if not Path(regimes_file).is_file():
        return NO_REGIMES
    return markdown(json.loads(Path(regimes_file).read_text()))


# name -> its rendering from a benchmark_results/ directory (the working tree's or a commit's)
SECTIONS: dict[str, Callable[[Path], str]] = {
    "summary": lambda d: summary_section(d / SEEDS.relative_to(paths.BENCHMARK_DIR),
                                         d / RESULTS.relative_to(paths.BENCHMARK_DIR),
                                         d / SEEDS_VALIDATION.relative_to(paths.BENCHMARK_DIR)),
    "seeds": lambda d: seeds_section(d / SEEDS.relative_to(paths.BENCHMARK_DIR)),
    "verdict": lambda d: verdict_section(d / SEEDS.relative_to(paths.BENCHMARK_DIR),
                                         d / SEEDS_VALIDATION.relative_to(paths.BENCHMARK_DIR),
                                         d / RESULTS.relative_to(paths.BENCHMARK_DIR)),
    "seeds_validation": lambda d: seeds_section(d / SEEDS_VALIDATION.relative_to(paths.BENCHMARK_DIR)),
    "results": lambda d: results_table(d / RESULTS.relative_to(paths.BENCHMARK_DIR)),
    "cnndm": lambda d: cnndm_table(d / CNNDM.relative_to(paths.BENCHMARK_DIR)),
    "regimes": lambda d: regimes_section(d / REGIMES.relative_to(paths.BENCHMARK_DIR)),
    "rehearsal": lambda d: rehearsal_table(d / REHEARSAL.relative_to(paths.BENCHMARK_DIR)),
    "real_job": lambda d: real_job_table(d / REHEARSAL.relative_to(paths.BENCHMARK_DIR)),
    "serve": lambda d: serve_table(d / SERVE.relative_to(paths.BENCHMARK_DIR)),
    "int8": lambda d: int8_table({s: d / f.relative_to(paths.BENCHMARK_DIR) for s, f in INT8.items()}),
}

# document -> the generated sections it must hold
DOCUMENTS: dict[Path, tuple[str, ...]] = {
    Path("README.md"): ("summary",),
    Path("docs/results.md"): ("seeds", "seeds_validation", "verdict", "regimes", "results", "cnndm"),
    Path("docs/real-job.md"): ("real_job",),
    Path("docs/real_scale.md"): ("rehearsal",),
    Path("docs/serving.md"): ("serve", "int8"),
}


def render(readme: str, name: str, body: str) -> str:
    """`readme` with the text between `name`'s markers replaced by `body`."""
    start, end = markers(name)
    if start not in readme or end not in readme:
        raise SystemExit(f"document has no {name} markers ({start} ... {end})")
    head, rest = readme.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}{end}{tail}"


def sections_in(text: str) -> tuple[str, ...]:
    """The known sections whose start marker `text` holds."""
    return tuple(name for name in SECTIONS if markers(name)[0] in text)


def render_all(text: str, results_dir: Path = paths.BENCHMARK_DIR, names=None) -> str:
    """`text` with every section in `names` (default: those it has markers for) rendered from `results_dir`."""
    for name in (sections_in(text) if names is None else names):
        text = render(text, name, SECTIONS[name](Path(results_dir)))
    return text


def results_profile(lock_text: str | None) -> str | None:
    """The profile the report stage's results were made under, from a dvc.lock's text (None: the default)."""
    if not lock_text:
        return None
    import yaml

    lock = yaml.safe_load(lock_text) or {}
    params = ((lock.get("stages") or {}).get("report") or {}).get("params") or {}
    return (params.get(paths.PARAMS_FILE.name) or {}).get("profile")


def committed_results(dest: Path, rev: str = "HEAD") -> Path | None:
    """benchmark_results/ as committed at `rev`, extracted under `dest`; None outside a git checkout or
    when `rev` has no such directory."""
    from kd.errors import ConfigError
    from kd.git import git

    try:
        archive = git(".", "archive", "--format=tar", rev, paths.BENCHMARK_DIR.as_posix(), binary=True)
    except ConfigError:
        return None
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return Path(dest) / paths.BENCHMARK_DIR


def _head_lock(rev: str = "HEAD") -> str | None:
    from kd.errors import ConfigError
    from kd.git import git

    try:
        return git(".", "show", f"{rev}:dvc.lock")
    except ConfigError:
        return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("documents", nargs="*", type=Path,
                   help=f"documents to render (default: {', '.join(map(str, DOCUMENTS))})")
    p.add_argument("--check", action="store_true", help="only compare; exit 1 when one differs")
    args = p.parse_args(argv)
    documents = args.documents or list(DOCUMENTS)
    lock = Path("dvc.lock")
    profile = results_profile(lock.read_text() if lock.is_file() else None)
    texts = {}
    for doc in documents:
        if not doc.is_file():
            print(f"{doc}: not found", file=sys.stderr)
            return 1
        texts[doc] = doc.read_text()
        missing = [n for n in DOCUMENTS.get(doc, ()) if n not in sections_in(texts[doc])]
        if missing:
            print(f"{doc}: no markers for section(s) {', '.join(missing)}", file=sys.stderr)
            return 1
    if not args.check:
        if profile:
            print(f"benchmark_results/ was made under the profile {profile!r} (dvc.lock); the documents show the "
                  f"default's results: `git checkout params.yaml && dvc repro` first", file=sys.stderr)
            return 1
        for doc, text in texts.items():
            atomic_write_text(doc, render_all(text))
        return 0
    differ = [doc for doc, text in texts.items() if profile or render_all(text) != text]
    if differ:
        with tempfile.TemporaryDirectory() as tmp:
            committed = None if results_profile(_head_lock()) else committed_results(Path(tmp))
            if committed is not None:
                differ = [doc for doc in differ if render_all(texts[doc], committed) != texts[doc]]
    if not differ:
        return 0
    for doc in differ:
        print(f"{doc}: a generated section differs from benchmark_results/ (both the working tree's and HEAD's, "
              f"made without a profile); run python -m tools.readme", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
