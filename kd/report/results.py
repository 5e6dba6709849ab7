"""The report stage: every model's quality file, per-example scores, speed and training cost side by
side, as JSON, a CSV table, a text report and plots.

A model's results (`gather`) are its kind ("teacher", "student" or "baseline-heuristic"), its cost
(params, size_mb from benchmark_results/quality/<model>.json; samples_per_s, ms_per_sample, peak_mem_mb
from benchmark_results/speed.json; COST_FIELDS and RUN_FLAGS from its dvclive summary; compression and
speedup relative to the teacher; for a student, the teacher work charged to it, `charge_teacher_work`)
and, per split and decoding, its scores with intervals, retention relative to the teacher and the paired
bootstrap of its per-example differences to the baseline student and to the teacher. Any cost may be
missing (lead-3 has no parameters and no speed; an older training summary has fewer fields).

Every interval here is from one training run, so it is over articles only: it says how much a score
could move on another test set, not on another training seed (kd.seeds has those). The report says so
wherever it prints one.
All writes go through `kd.io`, so an interrupted stage leaves no half-written file.
"""

import csv
import io
import json
import math
import textwrap
from numbers import Real
from pathlib import Path
from typing import Any, Mapping, Sequence

from kd import paths
from kd.errors import ConfigError
from kd.report import format as fmt
from kd.io import atomic_file, atomic_write_json, atomic_write_text
from kd.metrics.rouge import ROUGE_KEYS

# As kd.evaluation.benchmark.SPLITS; not imported from there, since that module's decoding code (kd.models.generation,
# kd.models.modeling) would join this stage's import closure and so its deps.
SPLITS = ("validation", "test")

Row = Mapping[str, Any]

_EXAMPLE_FIELDS = ("id", "article", "reference")
# What the report takes from speed.json for each model (the raw rounds stay there).
SPEED_FIELDS = ("samples_per_s", "ms_per_sample", "peak_mem_mb")

RESULTS_JSON = "benchmark_results.json"
TABLE_CSV = "comparison_table.csv"
REPORT_TXT = "benchmark_report.txt"
SCORES_PNG = "scores.png"
SPEED_PNG = "quality_vs_speed.png"

# What a single run's intervals are over: said beside every one the report, README and docs print.
ONE_RUN_INTERVALS = "over articles only (one training run; training noise is not in them)"
# A model whose training summary says converged: false is marked in every table, with this footnote.
NOT_CONVERGED_MARK = "†"
NOT_CONVERGED_NOTE = "† not converged: reached its step cap while still improving on validation"


def marked(name: str, converged: Any) -> str:
    """`name`, or `name†` when its training summary says it did not converge (False; None is unknown)."""
    return f"{name}{NOT_CONVERGED_MARK}" if converged is False else name


def _ratio(numerator: Any, denominator: Any) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is zero."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return float(numerator) / float(denominator)


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _columns_of(rows: Sequence[Row], columns: Sequence[str] | None) -> list[str]:
    """The given columns, or every key of every row in first-seen order."""
    if columns is not None:
        return list(columns)
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def _numeric_columns(rows: Sequence[Row], columns: Sequence[str]) -> set[str]:
    """Columns whose present values are all numbers; they are right-aligned."""
    return {
        column
        for column in columns
        if all(_is_number(row.get(column)) for row in rows if row.get(column) is not None)
        and any(row.get(column) is not None for row in rows)
    }


def format_table(rows: Sequence[Row], columns: Sequence[str] | None = None) -> str:
    """A fixed-width plain-text table: header, rule, one line per row; numbers right-aligned."""
    names = _columns_of(rows, columns)
    numeric = _numeric_columns(rows, names)
    cells = [[fmt.cell(row.get(column)) for column in names] for row in rows]
    widths = [max([len(name)] + [len(line[i]) for line in cells]) for i, name in enumerate(names)]

    def line(values: Sequence[str]) -> str:
        padded = [
            value.rjust(width) if name in numeric else value.ljust(width)
            for name, value, width in zip(names, values, widths)
        ]
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(names), rule, *(line(values) for values in cells)]) + "\n"


def markdown_table(rows: Sequence[Row], columns: Sequence[str] | None = None) -> str:
    """The same table as GitHub markdown, numbers right-aligned."""
    names = _columns_of(rows, columns)
    numeric = _numeric_columns(rows, names)

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(value.replace("|", "\\|") for value in values) + " |"

    rule = "|" + "|".join("---:" if name in numeric else "---" for name in names) + "|"
    body = [line([fmt.cell(row.get(column)) for column in names]) for row in rows]
    return "\n".join([line(names), rule, *body]) + "\n"


def write_csv(rows: Sequence[Row], path: str, columns: Sequence[str] | None = None) -> None:
    """All rows as CSV (raw values, None as an empty cell), written atomically."""
    names = _columns_of(rows, columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=names, restval="", extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def _truncate(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3].rstrip() + "..."


def _labelled(label: str, text: str, label_width: int, width: int = 100) -> str:
    """`label: text` wrapped to `width`, continuation lines indented under the text."""
    prefix = f"{label}:".ljust(label_width + 2)
    return textwrap.fill(
        " ".join(text.split()) or "(empty)",
        width=width,
        initial_indent=prefix,
        subsequent_indent=" " * len(prefix),
    )


def render_report(
    tables: Sequence[tuple[str, Sequence[Row]]],
    examples: Sequence[Row],
    decoding: Mapping[str, Any],
    *,
    max_examples: int = 3,
    article_chars: int = 400,
    host: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> str:
    """The text report: the titled tables, their footnotes (`notes`), decoding parameters, where speed
    was measured (`host`, the speed stage's host block) and a few examples, one model per line."""
    parts = [
        "Benchmark report",
        "================",
        "",
        "Scores: ROUGE F1, BLEU and faithfulness x100 (see docs/metrics.md); [low, high] is a 95% bootstrap "
        f"interval {ONE_RUN_INTERVALS}; Δ vs baseline is the paired bootstrap of the per-example difference, "
        "with the share of resamples <= 0, also over articles only; speed: the median of interleaved rounds "
        "(see Speed).",
        "",
    ]
    for title, rows in tables:
        parts += [title, "-" * len(title), format_table(rows)]
    if notes:
        parts += [*notes, ""]
    parts += [
        "Decoding",
        "--------",
        *(f"  {key}: {value}" for key, value in decoding.items()),
        "",
    ]
    if host is not None:
        parts += ["Speed", "-----", f"  {host_line(host)}", ""]
    shown = list(examples[:max_examples])
    heading = f"Examples ({len(shown)} of {len(examples)})"
    parts += [heading, "-" * len(heading)]
    for number, example in enumerate(shown, start=1):
        models = [key for key in example if key not in _EXAMPLE_FIELDS]
        label_width = max(len(name) for name in ["reference", "article", *models])
        parts += [
            "",
            f"[{number}] id: {example.get('id', '-')}",
            _labelled("article", _truncate(str(example.get("article", "")), article_chars),
                      label_width),
            _labelled("reference", str(example.get("reference", "")), label_width),
            *(_labelled(model, str(example[model]), label_width) for model in models),
        ]
    return "\n".join(parts) + "\n"


def write_report(path: str, *args, **kwargs) -> None:
    """Write `render_report(*args, **kwargs)` to `path` atomically."""
    atomic_write_text(path, render_report(*args, **kwargs))


def host_line(host: Mapping[str, Any]) -> str:
    """The speed stage's host block in one line, e.g. `64 samples, median of 3 interleaved rounds; cpu
    on box (Intel Xeon, 2 cores, 2 torch threads); torch 2.13.0, transformers 5.23.0; <date>`."""
    def get(key: str) -> Any:
        return host.get(key, "?")

    where = host.get("gpu") or get("cpu")
    return (f"{get('n_samples')} samples, median of {get('rounds')} interleaved rounds; {get('device')} on "
            f"{get('hostname')} ({where}, {get('logical_cores')} cores, {get('torch_threads')} torch threads); "
            f"torch {get('torch')}, transformers {get('transformers')}; {get('date')}")


def _pyplot():
    """pyplot on the non-interactive Agg backend; imported here so importing kd.report.results stays cheap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> None:
    # The format comes from the target's suffix (PNG if none), not from the temp file's name.
    image_format = Path(path).suffix.lstrip(".").lower() or "png"
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format=image_format, dpi=120, bbox_inches="tight")


def plot_scores(rows: Sequence[Row], path: str) -> None:
    """Grouped bar chart: for each model, one bar per ROUGE variant (missing scores drawn as 0), with its
    95% bootstrap interval as an error bar where the row has one."""
    plt = _pyplot()
    models = [str(row["model"]) for row in rows]
    bar_width = 0.8 / len(ROUGE_KEYS)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(models) + 2), 4.5))
    try:
        for offset, key in enumerate(ROUGE_KEYS):
            positions = [i + (offset - (len(ROUGE_KEYS) - 1) / 2) * bar_width
                         for i in range(len(models))]
            heights = [row.get(key) or 0.0 for row in rows]
            errors = None
            if all(row.get(f"{key}_low") is not None for row in rows):
                errors = [[h - row[f"{key}_low"] for h, row in zip(heights, rows)],
                          [row[f"{key}_high"] - h for h, row in zip(heights, rows)]]
            ax.bar(positions, heights, width=bar_width, label=key, yerr=errors, capsize=2)
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(models, rotation=20, ha="right")
        ax.set_ylabel("F1 x100 (95% bootstrap interval)")
        ax.set_title("ROUGE by model (test)")
        ax.legend(ncol=len(ROUGE_KEYS), fontsize="small", loc="upper right")
        ax.grid(axis="y", alpha=0.3)
        _save(fig, path)
    finally:
        plt.close(fig)


def draw_quality_vs_speed(ax, rows: Sequence[Row]) -> int:
    """Draw ROUGE-L against samples/s (log x) on `ax`: every model that has both gets a filled point (its
    headline decoding, beam) labelled with its name; a student timed greedy as well gets a hollow point
    there (how it is served), in the same colour, labelled too and joined to its beam point. The legend
    (one entry per model, plus what filled and hollow mean) sits outside the axes, so it hides no point.
    Returns the number of models drawn."""
    points = [row for row in rows if row.get("samples_per_s") and row.get("rougeL") is not None]
    if not points:
        return 0
    import matplotlib

    colors = matplotlib.colormaps["tab10" if len(points) <= 10 else "tab20"]  # a colour per model
    greedy_any = False
    for i, row in enumerate(points):
        color = colors(i % colors.N)
        name = marked(str(row["model"]), row.get("converged"))
        ax.scatter(row["samples_per_s"], row["rougeL"], s=40, color=color, label=name, zorder=3)
        ax.annotate(name, (row["samples_per_s"], row["rougeL"]), textcoords="offset points", xytext=(5, 4),
                    fontsize="x-small")
        if row.get("greedy_samples_per_s") and row.get("rougeL_greedy") is not None:
            greedy_any = True
            ax.plot([row["samples_per_s"], row["greedy_samples_per_s"]], [row["rougeL"], row["rougeL_greedy"]],
                    color=color, alpha=0.4, lw=1, zorder=2)
            ax.scatter(row["greedy_samples_per_s"], row["rougeL_greedy"], s=40, facecolors="none",
                       edgecolors=[color], linewidths=1.5, zorder=3)
            ax.annotate(f"{name} greedy", (row["greedy_samples_per_s"], row["rougeL_greedy"]),
                        textcoords="offset points", xytext=(5, -9), fontsize="x-small")
    ax.scatter([], [], s=40, color="grey", label="filled: headline decoding (beam)")
    if greedy_any:
        ax.scatter([], [], s=40, facecolors="none", edgecolors="grey", label="hollow: greedy (served)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    ax.set_xscale("log")
    ax.margins(x=0.15, y=0.08)
    return len(points)


def plot_quality_vs_speed(rows: Sequence[Row], path: str) -> None:
    """The quality-vs-speed chart (draw_quality_vs_speed) as an image; with no timed model, a figure that
    says so (DVC expects the output to exist)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    try:
        if not draw_quality_vs_speed(ax, rows):
            ax.text(0.5, 0.5, "no speed measurements", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("samples / s (log scale)")
        ax.set_ylabel("ROUGE-L F1 x100")
        ax.set_title("Quality vs speed (test)")
        ax.grid(alpha=0.3, which="both")
        _save(fig, path)
    finally:
        plt.close(fig)


def live_run(model: str, teacher: str = "teacher") -> str:
    """The training stage's dvclive directory name of a model: `teacher`, or `student_<name>`."""
    return model if model == teacher else f"student_{model}"


def read_curve(path: Path) -> tuple[list[float], list[float]]:
    """(steps, values) of one dvclive metric file (TSV with a `step` column and the value last)."""
    steps, values = [], []
    header, *lines = Path(path).read_text(encoding="utf-8").splitlines()
    at = header.split("\t").index("step")
    for line in lines:
        cells = line.split("\t")
        steps.append(float(cells[at]))
        values.append(float(cells[-1]))
    return steps, values


def _smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing moving average over `window` points (per-step training losses are noisy)."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def curve_files(live_dir: Path, runs: Mapping[str, str]) -> dict[str, dict[str, Path]]:
    """{quantity: {model: tsv}}: val/loss and every train/<term> (ce, each KD loss, total) that any run
    logged, except the learning rate."""
    curves: dict[str, dict[str, Path]] = {}
    for model, run in runs.items():
        metrics = Path(live_dir) / run / "plots" / "metrics"
        for tsv in sorted(metrics.rglob("*.tsv")):
            quantity = tsv.relative_to(metrics).with_suffix("").as_posix()
            if quantity != "train/lr":
                curves.setdefault(quantity, {})[model] = tsv
    return curves


def plot_curves(live_dir: Path, models: Sequence[str], out_dir: Path, *, teacher: str = "teacher",
                smooth: int = 50) -> list[Path]:
    """One chart per quantity (validation loss, each training loss term), every model that logged it
    overlaid: `<out_dir>/<quantity with / as _>.png`. Training terms are smoothed (moving average of
    `smooth` steps); the validation loss is drawn as logged, once per epoch."""
    plt = _pyplot()
    runs = {m: live_run(m, teacher) for m in models}
    written = []
    for quantity, files in curve_files(live_dir, runs).items():
        fig, ax = plt.subplots(figsize=(6.5, 4.0))
        try:
            for model, tsv in files.items():
                steps, values = read_curve(tsv)
                if quantity.startswith("train/"):
                    values = _smooth(values, smooth)
                ax.plot(steps, values, label=model, marker="o" if quantity.startswith("val/") else None,
                        markersize=3)
            ax.set_xlabel("optimizer step")
            ax.set_ylabel(quantity + ("" if quantity.startswith("val/") else f" (moving average, {smooth} steps)"))
            ax.set_title(quantity)
            ax.legend(fontsize="small")
            ax.grid(alpha=0.3)
            path = Path(out_dir) / (quantity.replace("/", "_") + ".png")
            _save(fig, str(path))
            written.append(path)
        finally:
            plt.close(fig)
    return written


# ----------------------------------------------------------------------------- the report stage

# Training cost, from the training stage's dvclive summary: seconds of optimizer steps and real tokens
# trained on, the optimizer step of the kept weights, the steps run and the cap, the training examples
# seen (steps x batch x grad_accum x processes), seconds of a one-off teacher pass inside the stage (0 if
# none) and the torch threads it trained with. An older summary lacks some: they are None, shown as "-".
COST_FIELDS = ("train_seconds", "train_tokens", "best_step", "steps", "step_cap", "examples_seen",
               "teacher_seconds", "threads")
# Yes/no facts of the same summary: validation patience ended the run; it converged (None: unknown).
RUN_FLAGS = ("stopped_early", "converged")
# The teacher work charged to a student, in seconds: `charge_teacher_work`.
CHARGED = "charged_teacher_seconds"
# The teacher-side stages a recipe may read, with the recipe key and value that mean it reads them.
TEACHER_STAGES = {"teacher_generate": ("targets", paths.TEACHER_TARGETS_DIR),
                  "teacher_outputs": ("teacher_input", paths.TEACHER_OUTPUTS_DIR)}
METRICS_JSON = "metrics.json"
CURVES_DIR = "curves"


def primary_decoding(blocks: Mapping[str, Any]) -> str:
    """The decoding a split's headline numbers use: beam search when scored, else greedy, else lead."""
    for decoding in ("beam", "greedy", "lead"):
        if decoding in blocks:
            return decoding
    raise ValueError(f"no known decoding among {list(blocks)}")


def faithfulness_key(metrics: Mapping[str, Any]) -> str:
    """fact_precision on the builtin corpus (the generator records each article's facts), else
    entity_precision (any text)."""
    return "fact_precision" if "fact_precision" in metrics else "entity_precision"


def _rerun_hint(name: str) -> str:
    return f"run `dvc repro benchmark@{name}`"


def _read_json_file(path: Path, missing: str, hint: str) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: {missing}; {hint}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read it ({e}); {hint}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}; {hint}")
    return data


def read_quality(quality_dir: Path, name: str) -> dict:
    """benchmark_results/quality/<name>.json: {params, size_mb, <split>: {<decoding>: metrics}}."""
    path = Path(quality_dir) / f"{name}.json"
    quality = _read_json_file(path, f"no quality results for {name!r}", _rerun_hint(name))
    for split in SPLITS:
        if not isinstance(quality.get(split), dict) or not quality[split]:
            raise ConfigError(f"{path}: no {split!r} scores (an older benchmark?); {_rerun_hint(name)}")
    return quality


def read_examples(examples_dir: Path, name: str, ids: Mapping[str, Sequence[str]]) -> dict[tuple[str, str], list[dict]]:
    """benchmark_results/examples/<name>.jsonl -> {(split, decoding): rows in split order}, each split's ids
    checked against `ids[split]` (the scored records)."""
    from kd.evaluation.examples import examples_file, grouped, read_examples_file

    path = examples_file(name, examples_dir)
    if not path.is_file():
        raise ConfigError(f"{path}: no per-example scores for {name!r}; {_rerun_hint(name)}")
    try:
        groups = grouped(read_examples_file(path))
    except ConfigError as e:
        raise ConfigError(f"{e}; {_rerun_hint(name)}") from None
    except (TypeError, KeyError) as e:
        raise ConfigError(f"{path}: not an examples file ({type(e).__name__}: {e}); {_rerun_hint(name)}") from None
    for (split, decoding), rows in groups.items():
        want = list(ids.get(split, ()))
        if [row.get("id") for row in rows] != want[: len(rows)] or not rows:
            raise ConfigError(f"{path}: its {split} ids ({decoding}) are not the {split} split's first "
                              f"{len(rows)}; stale? {_rerun_hint(name)}")
    return groups


def paired_block(rows: Sequence[Mapping[str, Any]], other: Sequence[Mapping[str, Any]]) -> dict[str, dict]:
    """{metric: paired bootstrap of rows minus other (mean_diff, low, high, share_le_0)} for every compared
    key of the metric registry both have; rows pair up by position (the same ids, checked by read_examples)."""
    from kd.metrics.bootstrap import paired
    from kd.metrics.registry import compared_keys

    return {key: paired([r[key] for r in rows], [o[key] for o in other]).as_dict()
            for key in compared_keys() if key in rows[0] and key in other[0]}


def gap_block(rows, control, teacher) -> dict[str, float] | None:
    """The share of the teacher's rougeL lead over the control that these rows close (kd.metrics.bootstrap.gap_closed:
    percent, with its paired interval over the same examples); None without all three, example for example."""
    if not rows or not control or not teacher or not len(rows) == len(control) == len(teacher):
        return None
    if not all("rougeL" in r for r in (rows[0], control[0], teacher[0])):
        return None
    from kd.metrics.bootstrap import gap_closed  # numpy, as paired_block imports it: only when scoring

    return gap_closed([r["rougeL"] for r in rows], [r["rougeL"] for r in control],
                      [r["rougeL"] for r in teacher]).as_dict()


def gather(*, students: Sequence[str], lead: str, quality_dir: Path, examples_dir: Path, speed_path: Path,
           live_dir: Path, ids: Mapping[str, Sequence[str]], teacher: str = "teacher",
           baseline: str | None = "baseline") -> tuple[dict[str, dict[str, Any]], dict, dict[str, Any] | None]:
    """(results, examples, host): every model's results in one nested dict: {model: {kind, params, size_mb, samples_per_s, ...,
    COST_FIELDS, RUN_FLAGS, <split>: {<decoding>: {metrics, retention_<rouge>, vs_baseline: {...},
    vs_teacher: {...}}}}}.

    The teacher first, then `students` in order, then the `lead` heuristic. Retention is relative to the
    teacher's same split and decoding (its headline decoding for lead rows); `vs_baseline` / `vs_teacher`
    are paired bootstraps over the same examples, for students (vs_baseline also for the teacher).
    `examples` is {model: {(split, decoding): rows}} (kd.evaluation.benchmark's per-example rows); `host` is the
    speed stage's host block."""
    models = [(teacher, "teacher"), *((name, "student") for name in students), (lead, "baseline-heuristic")]
    quality = {name: read_quality(quality_dir, name) for name, _ in models}
    speed = _read_json_file(Path(speed_path), "no speed results", "run `dvc repro speed`")
    untimed = [name for name, kind in models if kind != "baseline-heuristic" and name not in speed]
    if untimed:
        raise ConfigError(f"{speed_path}: no speed results for {untimed}; run `dvc repro speed`")
    examples = {name: read_examples(examples_dir, name, ids) for name, _ in models}
    if baseline is not None and baseline not in students:
        baseline = None
    results: dict[str, dict[str, Any]] = {}
    for name, kind in models:
        timing = speed.get(name, {})
        cost = _training_cost(live_dir, name, teacher) if kind != "baseline-heuristic" else {}
        entry: dict[str, Any] = {"kind": kind, "params": quality[name].get("params"),
                                 "size_mb": quality[name].get("size_mb"),
                                 **{k: timing.get(k) for k in SPEED_FIELDS}, **cost}
        for split in SPLITS:
            entry[split] = {}
            for decoding, metrics in quality[name][split].items():
                block = dict(metrics)
                t_blocks = quality[teacher][split]
                t_metrics = t_blocks.get(decoding) or t_blocks[primary_decoding(t_blocks)]
                for key in ROUGE_KEYS:
                    fraction = _ratio(metrics.get(key), t_metrics.get(key))
                    block[f"retention_{key}"] = None if fraction is None else 100.0 * fraction
                rows = examples[name].get((split, decoding))
                for other, label in ((baseline, "vs_baseline"), (teacher, "vs_teacher")):
                    if other is None or other == name or kind == "baseline-heuristic":
                        continue
                    theirs = examples[other].get((split, decoding))
                    if rows and theirs and len(rows) == len(theirs):
                        block[label] = paired_block(rows, theirs)
                if baseline not in (None, name) and kind == "student":
                    share = gap_block(rows, examples[baseline].get((split, decoding)),
                                      examples[teacher].get((split, decoding)))
                    if share is not None:
                        block["gap_closed"] = share
                entry[split][decoding] = block
        results[name] = entry
    teacher_params, teacher_speed = results[teacher]["params"], results[teacher].get("samples_per_s")
    for entry in results.values():
        entry["compression"] = _ratio(teacher_params, entry.get("params"))
        entry["speedup"] = _ratio(entry.get("samples_per_s"), teacher_speed)
    for name, entry in results.items():
        if entry["kind"] == "student":
            entry.update(served(entry, speed.get(name, {}), results[teacher], teacher_speed))
    return results, examples, speed.get("host")


def served(entry: Mapping[str, Any], timing: Mapping[str, Any], teacher: Mapping[str, Any],
           teacher_speed: float | None, split: str = "test") -> dict[str, Any]:
    """A student as it is served (greedy) against the teacher as it is benchmarked (its headline
    decoding, beam search): `greedy_samples_per_s`, `speedup_greedy` (greedy student / teacher
    samples/s, timed in the same speed run) and `retention_greedy` (the student's greedy rougeL as a
    percentage of the teacher's headline rougeL on `split`). Empty when the speed stage did not time
    the student greedy (benchmark.num_beams is 1: its headline already is greedy)."""
    greedy_speed = timing.get("greedy", {}).get("samples_per_s")
    if greedy_speed is None:
        return {}
    mine = entry[split].get("greedy", {}).get("rougeL")
    theirs = teacher[split][primary_decoding(teacher[split])].get("rougeL")
    kept = _ratio(mine, theirs)
    return {"greedy_samples_per_s": greedy_speed, "speedup_greedy": _ratio(greedy_speed, teacher_speed),
            "retention_greedy": None if kept is None else 100.0 * kept}


def train_split_block(manifest: Mapping[str, Any]) -> dict[str, Any] | None:
    """The teacher on the students' labelled split, from the teacher_generate stage's manifest: its
    summaries (the seqkd targets) scored against those references, with the decoding that made them;
    None when it did not summarize that split. A teacher that reproduced the references would make
    pseudo-labels that teach nothing new."""
    if "train_rouge" not in manifest:
        return None
    return {"decoding": "beam" if manifest["num_beams"] > 1 else "greedy", "num_beams": manifest["num_beams"],
            "n_examples": manifest["splits"]["train"]["n_examples"],
            **{k: manifest["train_rouge"][k] for k in ROUGE_KEYS}}


def _training_cost(live_dir: Path, name: str, teacher: str) -> dict[str, Any]:
    """COST_FIELDS and RUN_FLAGS from dvclive/<teacher | student_name>/metrics.json (None when the run did
    not record one: an older summary, or none at all)."""
    path = Path(live_dir) / live_run(name, teacher) / "metrics.json"
    summary = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    cost = {key: summary.get(key) if _is_number(summary.get(key)) else None for key in COST_FIELDS}
    return cost | {key: summary.get(key) if isinstance(summary.get(key), bool) else None for key in RUN_FLAGS}


def stage_seconds(summary: Mapping[str, Any] | None, manifest: Mapping[str, Any] | None) -> float | None:
    """A teacher-side stage's wall time: `seconds` from its cost summary (dvclive/<stage>/metrics.json),
    else the top-level `seconds` of its output's manifest; None (unknown) when neither has it (older
    files)."""
    for source in (summary or {}, manifest or {}):
        if _is_number(source.get("seconds")):
            return float(source["seconds"])
    return None


def teacher_charge(recipe: Mapping[str, Any] | None, own: float | None,
                   stages: Mapping[str, float | None]) -> dict[str, Any]:
    """The teacher work a student costs, in seconds: the wall time of each teacher-side stage whose output
    its resolved recipe reads (teacher_generate for `targets: data/teacher_targets`, teacher_outputs for
    `teacher_input: data/teacher_outputs`; each reader is charged the whole stage, since each would need
    it alone), plus its own one-off teacher pass (`own`, the summary's teacher_seconds; a live teacher's
    per-batch work is already in its train_seconds). Returns {CHARGED: total, "teacher_charge": {part:
    seconds}}; the total is None (unknown) when the recipe or any part is."""
    if recipe is None:
        return {CHARGED: None, "teacher_charge": {}}
    parts: dict[str, float | None] = {}
    for stage, (key, artifact) in TEACHER_STAGES.items():
        if recipe.get(key) is not None and Path(str(recipe[key])) == artifact:
            parts[stage] = stages.get(stage)
    parts["own"] = own
    total = None if any(v is None for v in parts.values()) else round(sum(parts.values()), 1)
    return {CHARGED: total, "teacher_charge": parts}


# kd.students.recipe.RECIPE_FILE, the resolved recipe beside a student's weights; not imported from there,
# since that module (losses, training) would join this stage's import closure and so its deps.
RECIPE_JSON = "recipe.json"


def _optional_json(path: Path | None, hint: str) -> dict | None:
    """The JSON object at `path`, None when there is no such file; a file that is not one is an error."""
    if path is None or not Path(path).is_file():
        return None
    return _read_json_file(Path(path), "", hint)


def read_teacher_stages(live_dir: Path, manifests: Mapping[str, Path | None]) -> dict[str, float | None]:
    """Each teacher-side stage's wall time (stage_seconds): from its cost summary <live_dir>/<stage>/metrics.json,
    else from its output's manifest (`manifests[stage]`); None when unknown."""
    return {stage: stage_seconds(_optional_json(Path(live_dir) / stage / "metrics.json", f"run `dvc repro {stage}`"),
                                 _optional_json(manifests.get(stage), f"run `dvc repro {stage}`"))
            for stage in TEACHER_STAGES}


def read_recipe(models_dir: Path, name: str) -> dict | None:
    """models/student_<name>/recipe.json, the recipe the student was trained with; None without one."""
    return _optional_json(Path(models_dir) / paths.student_dir(name).name / RECIPE_JSON,
                          f"run `dvc repro distill@{name}`")


def charge_teacher_work(results: dict[str, dict[str, Any]], recipes: Mapping[str, Mapping[str, Any] | None],
                        stages: Mapping[str, float | None]) -> None:
    """Add `teacher_charge` (kd.report.results.teacher_charge) to every student of `results`, from its
    recipe (`recipes[name]`: its recipe.json, or at least `targets` and `teacher_input`) and the teacher
    stages' wall times (`stages`: name -> seconds, None when unknown)."""
    for name, entry in results.items():
        if entry["kind"] == "student":
            entry.update(teacher_charge(recipes.get(name), entry.get("teacher_seconds"), stages))


def _clean(value: Any) -> Any:
    """Numbers rounded to 4 decimals, None and non-finite numbers dropped, recursively (strict JSON)."""
    if isinstance(value, Mapping):
        out = {k: _clean(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not None}
    if isinstance(value, bool) or isinstance(value, int) or isinstance(value, str):
        return value
    if _is_number(value):
        return round(float(value), 4) if math.isfinite(value) else None
    return value


def headline(results: Mapping[str, Mapping[str, Any]], split: str = "test") -> list[dict[str, Any]]:
    """One flat row per model: the split's headline decoding (with its interval and paired differences),
    greedy's rougeL beside it, and the model-level fields (params, speed, cost, ratios)."""
    rows = []
    for name, entry in results.items():
        blocks = entry[split]
        decoding = primary_decoding(blocks)
        m = blocks[decoding]
        row: dict[str, Any] = {"model": name, "kind": entry["kind"], "decoding": decoding}
        row.update({k: v for k, v in m.items() if not isinstance(v, Mapping)})
        if decoding != "greedy" and "greedy" in blocks:
            row["rougeL_greedy"] = blocks["greedy"].get("rougeL")
        for label in ("vs_baseline", "vs_teacher"):
            diff = m.get(label, {}).get("rougeL")
            if diff:
                row[f"rougeL_{label}"] = diff["mean_diff"]
                row[f"rougeL_{label}_low"], row[f"rougeL_{label}_high"] = diff["low"], diff["high"]
                row[f"rougeL_{label}_p_le_0"] = diff["share_le_0"]
        if gap := m.get("gap_closed"):
            row["gap_closed"], row["gap_closed_low"], row["gap_closed_high"] = gap["mean"], gap["low"], gap["high"]
        # model-level numbers only (not the splits, nor the teacher's train_split block)
        row.update({k: v for k, v in entry.items() if k not in ("kind", *SPLITS) and not isinstance(v, Mapping)})
        rows.append(row)
    return rows


def long_rows(results: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every (model, split, decoding) as one flat row: the CSV table."""
    rows = []
    for name, entry in results.items():
        fields = {k: v for k, v in entry.items() if k not in SPLITS and not isinstance(v, Mapping)}
        for split in SPLITS:
            for decoding, m in entry[split].items():
                row = {"model": name, "kind": entry["kind"], "split": split, "decoding": decoding}
                row.update({k: v for k, v in m.items() if not isinstance(v, Mapping)})
                if gap := m.get("gap_closed"):
                    row["gap_closed"], row["gap_closed_low"], row["gap_closed_high"] = gap["mean"], gap["low"], gap["high"]
                for label in ("vs_baseline", "vs_teacher"):
                    for key, diff in m.get(label, {}).items():
                        row[f"{key}_{label}"] = diff["mean_diff"]
                        row[f"{key}_{label}_low"], row[f"{key}_{label}_high"] = diff["low"], diff["high"]
                        row[f"{key}_{label}_p_le_0"] = diff["share_le_0"]
                row.update({k: v for k, v in fields.items() if k != "kind"})
                rows.append(row)
    return rows


def small_metrics(results: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """The DVC metrics file, a few keys per model so `dvc exp show` fits a terminal: validation rougeL and
    faithfulness (what experiments compare), test rougeL (what is reported), each at its headline decoding."""
    out = {}
    for name, entry in results.items():
        val = entry["validation"][primary_decoding(entry["validation"])]
        test = entry["test"][primary_decoding(entry["test"])]
        key = faithfulness_key(val)
        out[name] = _clean({"val_rougeL": val.get("rougeL"), f"val_{key}": val.get(key),
                            "test_rougeL": test.get("rougeL")})
    return out


def with_intervals(row: Mapping[str, Any], key: str) -> str:
    """`39.19 [37.20, 41.10]`, or `-`."""
    value = row.get(key)
    if value is None:
        return "-"
    return fmt.with_interval(value, row.get(f"{key}_low"), row.get(f"{key}_high"))


def diff_cell(row: Mapping[str, Any], key: str) -> str:
    """`+1.20 [-0.30, 2.70] p=0.07`: mean paired difference, its interval, share of resamples <= 0."""
    value = row.get(key)
    if value is None:
        return "-"
    return f"{fmt.signed_interval(value, row[key + '_low'], row[key + '_high'])} p≤0={row[key + '_p_le_0']:.2f}"


def gap_cell(row: Mapping[str, Any]) -> str:
    """`62% [48, 75]`: the share of the teacher's lead over the baseline a student closes, its interval."""
    if row.get("gap_closed") is None:
        return "-"
    return fmt.percent_interval(row["gap_closed"], row["gap_closed_low"], row["gap_closed_high"])


def cost_cells(r: Mapping[str, Any]) -> dict[str, Any]:
    """A model's training cost as the tables show it: the step of its kept weights, steps run, training
    examples seen, seconds of optimizer steps, and the teacher work charged to it (None where unknown)."""
    return {"best step": r.get("best_step"), "steps": r.get("steps"), "examples seen": r.get("examples_seen"),
            "train_s": r.get("train_seconds"), "teacher_s": r.get(CHARGED)}


def not_converged_notes(rows: Sequence[Row]) -> list[str]:
    """The footnote of the mark `marked` puts on a model that did not converge, when a row has one."""
    return [NOT_CONVERGED_NOTE] if any(r.get("converged") is False for r in rows) else []


def display_rows(rows: Sequence[Row], faithfulness: str) -> list[dict[str, Any]]:
    """The headline rows as the report and README show them: intervals and differences as text, a model
    that did not converge marked (`marked`), its training cost last."""
    return [{"model": marked(r["model"], r.get("converged")), "decoding": r["decoding"],
             "rougeL [95% CI]": with_intervals(r, "rougeL"),
             "rouge1": r.get("rouge1"), "rouge2": r.get("rouge2"), "rougeLsum": r.get("rougeLsum"),
             "rougeL greedy": r.get("rougeL_greedy"), faithfulness: r.get(faithfulness),
             **({"fact_recall": r.get("fact_recall")} if faithfulness == "fact_precision" else {}),
             "Δ rougeL vs baseline": diff_cell(r, "rougeL_vs_baseline"),
             "gap closed": gap_cell(r),
             "params": r.get("params"), "compression": r.get("compression"), "speedup": r.get("speedup"),
             **cost_cells(r)}
            for r in rows]


def examples_side_by_side(records: Sequence[Mapping[str, Any]], examples: Mapping[str, Sequence[Mapping[str, Any]]],
                          n: int) -> list[dict[str, Any]]:
    """The first `n` test records with every model's headline summary: {"id", "article", "reference", <model>: ...}."""
    return [{"id": r["id"], "article": r["article"], "reference": r["highlights"],
             **{name: rows[i]["prediction"] for name, rows in examples.items() if i < len(rows)}}
            for i, r in enumerate(records[:n])]


def write_benchmark(out_dir: Path, results: Mapping[str, Mapping[str, Any]], examples: Sequence[Row], *,
                    decoding: Mapping[str, Any], host: Mapping[str, Any] | None, max_examples: int,
                    live_dir: Path | None = None, teacher: str = "teacher") -> None:
    """benchmark_results.json (everything, nested), metrics.json (a few keys per model, for `dvc exp show`),
    the CSV table (every model, split and decoding), the text report and the plots."""
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / RESULTS_JSON, _clean(results))
    atomic_write_json(out_dir / METRICS_JSON, small_metrics(results))
    write_csv(long_rows(results), str(out_dir / TABLE_CSV))
    test_rows = headline(results, "test")
    faithful = faithfulness_key(test_rows[0])
    val_rows = headline(results, "validation")
    tables = [("Test split (one training run: intervals over articles only)", display_rows(test_rows, faithful)),
              ("Validation split (what experiments compare; intervals over articles only)",
               display_rows(val_rows, faithful)),
              ("Faithfulness and shape (test)", [
                  {"model": marked(r["model"], r.get("converged")),
                   **{k: r.get(k) for k in ("entity_precision", "fact_precision", "fact_recall",
                                            "novel_bigram_pct", "repeated_trigram_pct", "length")
                      if any(k in x for x in test_rows)}} for r in test_rows])]
    if any("speedup_greedy" in r for r in test_rows):  # each student served greedy vs the teacher at beam
        tables.append(("Served (test): each student greedy against the teacher at its headline decoding", [
            {"model": marked(r["model"], r.get("converged")), "rougeL beam": r.get("rougeL"),
             "rougeL greedy": r.get("rougeL_greedy"),
             "% of teacher rougeL": r.get("retention_greedy"), "speedup greedy": r.get("speedup_greedy"),
             "speedup same decoding": r.get("speedup"), "samples/s greedy": r.get("greedy_samples_per_s")}
            for r in test_rows if "speedup_greedy" in r]))
    if "train_split" in results[teacher]:  # the teacher_generate stage ran: memorised or generalising?
        train = results[teacher]["train_split"]
        test = results[teacher]["test"].get(train["decoding"]) or results[teacher]["test"][
            primary_decoding(results[teacher]["test"])]
        tables.append(("Teacher: its summaries of the students' labelled set (the seqkd targets) vs its test summaries", [
            {"split": split, **{k: m.get(k) for k in ROUGE_KEYS}} for split, m in (("train", train), ("test", test))]))
    write_report(str(out_dir / REPORT_TXT), tables, examples, decoding, max_examples=max_examples, host=host,
                 notes=not_converged_notes(test_rows))
    plot_scores(test_rows, str(out_dir / SCORES_PNG))
    plot_quality_vs_speed(test_rows, str(out_dir / SPEED_PNG))
    if live_dir is not None:
        plot_curves(live_dir, [name for name in results if results[name]["kind"] != "baseline-heuristic"],
                    out_dir / CURVES_DIR, teacher=teacher)
