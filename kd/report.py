"""The report stage: every model's quality file, predictions and speed side by side, as tables, a
text report and plots.

A row is one model's results: `model`, `kind` ("teacher", "student" or "baseline-heuristic"), scores
(rouge1, rouge2, rougeL, rougeLsum, bleu*, from benchmark_results/quality/<model>.json) and cost
fields (params, size_mb from the same file; samples_per_s, ms_per_sample, peak_mem_mb from
benchmark_results/speed.json), any of which may be None (lead-3 has no parameters and no speed).
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

from kd.errors import ConfigError
from kd.io import atomic_file, atomic_write_json, atomic_write_text
from kd.metrics import ROUGE_KEYS

Row = Mapping[str, Any]

RETENTION_COLUMNS = {key: f"retention_{key}" for key in ROUGE_KEYS}
_TEXT_COLUMNS = ("model", "kind")
# The report's table: the full set is in the CSV, this keeps the text report readable.
REPORT_COLUMNS = (
    "model", "kind", *ROUGE_KEYS, "bleu1", "bleu4", "params", "samples_per_s", "peak_mem_mb",
    "compression", "speedup", "retention_rougeL",
)
_EXAMPLE_FIELDS = ("id", "article", "reference")
# What the report takes from speed.json for each model (the raw rounds stay there).
SPEED_FIELDS = ("samples_per_s", "ms_per_sample", "peak_mem_mb")

RESULTS_JSON = "benchmark_results.json"
TABLE_CSV = "comparison_table.csv"
REPORT_TXT = "benchmark_report.txt"
SCORES_PNG = "scores.png"
SPEED_PNG = "quality_vs_speed.png"


def _ratio(numerator: Any, denominator: Any) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is zero."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return float(numerator) / float(denominator)


def add_relative_columns(rows: Sequence[Row], teacher: str = "teacher") -> list[dict[str, Any]]:
    """New rows with `compression`, `speedup` and `retention_<rouge>` relative to the `teacher` row.

    compression = teacher params / model params; speedup = model samples/s / teacher samples/s;
    retention = model score as % of the teacher's. Each is None where an input is missing.
    """
    teacher_rows = [row for row in rows if row.get("model") == teacher]
    if len(teacher_rows) != 1:
        models = [row.get("model") for row in rows]
        raise ValueError(
            f"expected exactly one row for teacher model {teacher!r}, found {len(teacher_rows)} "
            f"among {models}"
        )
    reference = teacher_rows[0]
    relative_rows = []
    for row in rows:
        relative = dict(row)
        relative["compression"] = _ratio(reference.get("params"), row.get("params"))
        relative["speedup"] = _ratio(row.get("samples_per_s"), reference.get("samples_per_s"))
        for key, column in RETENTION_COLUMNS.items():
            fraction = _ratio(row.get(key), reference.get(key))
            relative[column] = None if fraction is None else 100.0 * fraction
        relative_rows.append(relative)
    return relative_rows


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def flat_metrics(rows: Sequence[Row]) -> dict[str, float]:
    """`{"<model>.<field>": value}` for every numeric field, rounded to 4 decimals (the DVC metrics file).

    None, booleans, text and non-finite numbers are skipped so the result is strict JSON.
    """
    metrics: dict[str, float] = {}
    for row in rows:
        model = row["model"]
        for key, value in row.items():
            if key in _TEXT_COLUMNS or not _is_number(value) or not math.isfinite(value):
                continue
            metrics[f"{model}.{key}"] = value if isinstance(value, int) else round(float(value), 4)
    return metrics


def _columns_of(rows: Sequence[Row], columns: Sequence[str] | None) -> list[str]:
    """The given columns, or every key of every row in first-seen order."""
    if columns is not None:
        return list(columns)
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


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
    cells = [[_cell(row.get(column)) for column in names] for row in rows]
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
    body = [line([_cell(row.get(column)) for column in names]) for row in rows]
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
    rows: Sequence[Row],
    examples: Sequence[Row],
    decoding: Mapping[str, Any],
    *,
    max_examples: int = 3,
    article_chars: int = 400,
    columns: Sequence[str] | None = None,
    host: Mapping[str, Any] | None = None,
) -> str:
    """The text report: score table, decoding parameters, where speed was measured (`host`, the
    speed stage's host block) and a few examples, one model per line.

    `columns` defaults to the REPORT_COLUMNS that any row has.
    """
    if columns is None:
        columns = [column for column in REPORT_COLUMNS if any(column in row for row in rows)]
    parts = [
        "Benchmark report",
        "================",
        "",
        "Scores: ROUGE F1 and BLEU x100; retention in % of the teacher; speed: the median of interleaved "
        "rounds (see Speed).",
        "",
        format_table(rows, columns),
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
    row_models = [row["model"] for row in rows]
    for number, example in enumerate(shown, start=1):
        # Models in table order first, then any summary the table does not list.
        models = [model for model in row_models if model in example]
        models += [key for key in example if key not in _EXAMPLE_FIELDS and key not in models]
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


def write_report(
    path: str,
    rows: Sequence[Row],
    examples: Sequence[Row],
    decoding: Mapping[str, Any],
    *,
    max_examples: int = 3,
    article_chars: int = 400,
    columns: Sequence[str] | None = None,
    host: Mapping[str, Any] | None = None,
) -> None:
    """Write `render_report(...)` to `path` atomically."""
    atomic_write_text(
        path,
        render_report(rows, examples, decoding, max_examples=max_examples,
                      article_chars=article_chars, columns=columns, host=host),
    )


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
    """pyplot on the non-interactive Agg backend; imported here so importing kd.report stays cheap."""
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
    """Grouped bar chart: for each model, one bar per ROUGE variant (missing scores drawn as 0)."""
    plt = _pyplot()
    models = [str(row["model"]) for row in rows]
    bar_width = 0.8 / len(ROUGE_KEYS)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(models) + 2), 4.5))
    try:
        for offset, key in enumerate(ROUGE_KEYS):
            positions = [i + (offset - (len(ROUGE_KEYS) - 1) / 2) * bar_width
                         for i in range(len(models))]
            heights = [row.get(key) or 0.0 for row in rows]
            ax.bar(positions, heights, width=bar_width, label=key)
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(models, rotation=20, ha="right")
        ax.set_ylabel("F1 x100")
        ax.set_title("ROUGE by model")
        ax.legend(ncol=len(ROUGE_KEYS), fontsize="small", loc="upper right")
        ax.grid(axis="y", alpha=0.3)
        _save(fig, path)
    finally:
        plt.close(fig)


def plot_quality_vs_speed(rows: Sequence[Row], path: str) -> None:
    """Scatter of ROUGE-L against samples/s (log x), one labelled point per model that has both."""
    plt = _pyplot()
    points = [row for row in rows
              if row.get("samples_per_s") and row.get("rougeL") is not None]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    try:
        if points:
            for row in points:
                ax.scatter(row["samples_per_s"], row["rougeL"], s=40)
                ax.annotate(str(row["model"]), (row["samples_per_s"], row["rougeL"]),
                            textcoords="offset points", xytext=(5, 4), fontsize="small")
            ax.set_xscale("log")
        else:
            # Still write a figure: DVC expects the output to exist.
            ax.text(0.5, 0.5, "no speed measurements", ha="center", va="center",
                    transform=ax.transAxes)
        ax.set_xlabel("samples / s (log scale)")
        ax.set_ylabel("ROUGE-L F1 x100")
        ax.set_title("Quality vs speed")
        ax.grid(alpha=0.3, which="both")
        _save(fig, path)
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------- the report stage


def nested_metrics(rows: Sequence[Row]) -> dict[str, dict[str, Any]]:
    """`{model: {field: value}}` for the metrics file (`dvc metrics show/diff` flattens it to
    teacher.rouge1 etc.): numbers only, floats rounded to 4 decimals, None left out."""
    return {
        row["model"]: {key: value if isinstance(value, int) else round(float(value), 4)
                       for key, value in row.items()
                       if key not in _TEXT_COLUMNS and _is_number(value) and math.isfinite(value)}
        for row in rows
    }


def benchmark_rows(models: Sequence[tuple[str, str]], quality: Mapping[str, Mapping[str, Any]],
                   speed: Mapping[str, Mapping[str, Any]], teacher: str = "teacher") -> list[dict[str, Any]]:
    """One row per (name, kind) in order: the model's quality metrics plus its SPEED_FIELDS (None where
    `speed` has no entry), with the columns relative to `teacher` (see add_relative_columns)."""
    rows = []
    for name, kind in models:
        timing = speed.get(name, {})
        rows.append({"model": name, "kind": kind, **quality[name], **{k: timing.get(k) for k in SPEED_FIELDS}})
    return add_relative_columns(rows, teacher=teacher)


def side_by_side(records: Sequence[Mapping[str, Any]], predictions: Mapping[str, Sequence[str]],
                 n: int) -> list[dict[str, Any]]:
    """The first `n` test records with every model's summary: {"id", "article", "reference", <model>: ...}."""
    return [{"id": r["id"], "article": r["article"], "reference": r["highlights"],
             **{name: preds[i] for name, preds in predictions.items()}}
            for i, r in enumerate(records[:n])]


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
    """benchmark_results/quality/<name>.json, the benchmark stage's flat metrics for one model."""
    return _read_json_file(Path(quality_dir) / f"{name}.json", f"no quality results for {name!r}",
                           _rerun_hint(name))


def read_predictions(predictions_dir: Path, name: str, test_ids: Sequence[str]) -> list[str]:
    """benchmark_results/predictions/<name>.jsonl -> the predictions, checked against the test ids."""
    path = Path(predictions_dir) / f"{name}.jsonl"
    if not path.is_file():
        raise ConfigError(f"{path}: no predictions for {name!r}; {_rerun_hint(name)}")
    try:
        lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        ids, predictions = [x["id"] for x in lines], [x["prediction"] for x in lines]
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as e:
        raise ConfigError(f"{path}: not a predictions file ({type(e).__name__}: {e}); {_rerun_hint(name)}") from None
    if ids != list(test_ids[: len(ids)]) or not ids:
        raise ConfigError(f"{path}: its ids are not the test split's first {len(ids)}; stale? "
                          f"{_rerun_hint(name)}")
    return predictions


def gather(*, students: Sequence[str], lead: str, quality_dir: Path, predictions_dir: Path, speed_path: Path,
           records: Sequence[Mapping[str, Any]], num_examples: int, teacher: str = "teacher"
           ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any] | None]:
    """(rows, examples, host): the teacher, `students` in order and the `lead` baseline, from the
    benchmark stages' quality and predictions files and the speed stage's speed.json."""
    models = [(teacher, "teacher"), *((name, "student") for name in students), (lead, "baseline-heuristic")]
    quality = {name: read_quality(quality_dir, name) for name, _ in models}
    counts = {name: q.get("n_examples") for name, q in quality.items()}
    if len(set(counts.values())) != 1:
        raise ConfigError(f"{quality_dir}: the models were scored on different numbers of examples {counts}; "
                          f"rerun the stale ones (`dvc repro`)")
    speed = _read_json_file(Path(speed_path), "no speed results", "run `dvc repro speed`")
    untimed = [name for name, kind in models if kind != "baseline-heuristic" and name not in speed]
    if untimed:
        raise ConfigError(f"{speed_path}: no speed results for {untimed}; run `dvc repro speed`")
    test_ids = [r["id"] for r in records]
    predictions = {name: read_predictions(predictions_dir, name, test_ids) for name, _ in models}
    for name, preds in predictions.items():
        if len(preds) != counts[name]:
            raise ConfigError(f"{Path(predictions_dir) / f'{name}.jsonl'}: {len(preds)} predictions, but "
                              f"{name}.json scored {counts[name]}; {_rerun_hint(name)}")
    rows = benchmark_rows(models, quality, speed, teacher=teacher)
    examples = side_by_side(records, predictions, min(num_examples, counts[teacher]))
    return rows, examples, speed.get("host")


def write_benchmark(out_dir: Path, rows: Sequence[Row], examples: Sequence[Row], *, decoding: Mapping[str, Any],
                    host: Mapping[str, Any] | None, max_examples: int) -> dict:
    """benchmark_results.json (nested metrics), the CSV table, the text report and both plots."""
    out_dir = Path(out_dir)
    nested = nested_metrics(rows)
    atomic_write_json(out_dir / RESULTS_JSON, nested)
    write_csv(rows, str(out_dir / TABLE_CSV))
    write_report(str(out_dir / REPORT_TXT), rows, examples, decoding, max_examples=max_examples, host=host)
    plot_scores(rows, str(out_dir / SCORES_PNG))
    plot_quality_vs_speed(rows, str(out_dir / SPEED_PNG))
    return nested
