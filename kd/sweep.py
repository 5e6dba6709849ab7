"""A sweep's table: the validation metrics of every model in a set of DVC experiments.

    dvc exp run --queue -n sw-logit-t2 -S kd.students.seqkd_logit.losses.logit.temperature=2.0
    ...                                             # one experiment per configuration, then `dvc queue start`
    python -m kd.sweep --prefix sw-                 # benchmark_results/sweep/sweep.json and sweep.md

Why: settings are chosen on the validation split, and a sweep is only evidence if the table can be
regenerated from the experiments themselves, not typed by hand. Each row is one (experiment, model):
the params the experiment changed against its baseline commit, and the model's validation scores
from `benchmark_results/quality/<model>.json` in the experiment's commit. Test scores are left out on
purpose: nothing here may be chosen on them. The one non-validation column is `speedup` (the model's
samples/s over the teacher's, as the report stage wrote it in the experiment's `benchmark_results.json`,
from the `speed` stage): a timing of decoding
the first test articles, which reads no reference. It is timed afresh in every experiment, so it moves
between experiments for unchanged models too (the machine's noise, not the model's).

An experiment may rerun only some stages (a target such as `benchmark_teacher`, or a change that
touches one recipe): a model whose quality file is byte-identical to the baseline commit's was not
retrained for it, and its row is marked `rerun: false` (shown as "= base" in the markdown), so a stale
result never passes as the experiment's own. The baseline commit's own models are the rows of the
experiment named `base`.

Like `kd.seeds`, the summarising is pure (`changed_params`, `rows`, `markdown`); git sits at the end.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path, PurePosixPath
from typing import Any, Mapping, Optional, Sequence

import yaml

from kd import paths
from kd.errors import ConfigError
from kd.io import atomic_write_json, atomic_write_text
from kd.git import git, ls_tree, show
from kd.report import format as fmt
from kd.seeds import NONE, RESULTS_JSON, experiment_refs, parse_experiment_ref, resolve_commit

QUALITY_DIR = PurePosixPath(paths.BENCHMARK_DIR.as_posix()) / "quality"
SPLIT = "validation"
# (decoding, metric) pairs in the markdown; sweep.json keeps every metric of both decodings.
TABLE_COLUMNS = (("beam", "rougeL"), ("greedy", "rougeL"), ("beam", "rouge1"), ("beam", "fact_precision"))
SWEEP_JSON, SWEEP_MD = "sweep.json", "sweep.md"


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists are leaves (a layer map is one setting)."""
    if not isinstance(tree, Mapping):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            out |= flatten(value, name)
        else:
            out[name] = value
    return out


def changed_params(base: Mapping[str, Any], exp: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted key -> the experiment's value, for every key that differs (a removed key -> None)."""
    flat_base, flat_exp = flatten(base), flatten(exp)
    keys = sorted(set(flat_base) | set(flat_exp))

    def filled(k: str) -> bool:
        """An empty mapping on one side whose keys the other side lists: shown by those keys alone."""
        side, other = (flat_base, flat_exp) if k in flat_base else (flat_exp, flat_base)
        return side[k] == {} and any(o.startswith(k + ".") for o in other)

    return {k: flat_exp.get(k) for k in keys if flat_base.get(k, ...) != flat_exp.get(k, ...) and not filled(k)}


def rows(name: str, changed: Mapping[str, Any], quality: Mapping[str, Mapping[str, Any]],
         base_quality: Mapping[str, Mapping[str, Any]],
         speedups: Optional[Mapping[str, float]] = None) -> list[dict[str, Any]]:
    """One row per model of `quality` (model -> its quality JSON), validation scores only, with its
    speedup from `speedups` (model -> the report's ratio; None when it was not timed)."""
    ratios = speedups or {}
    out = []
    for model in sorted(quality):
        split = quality[model].get(SPLIT)
        if not isinstance(split, Mapping):
            raise ConfigError(f"experiment {name!r}: {QUALITY_DIR}/{model}.json has no {SPLIT!r} block")
        scores = {decoding: {k: v for k, v in block.items() if isinstance(v, (int, float))}
                  for decoding, block in split.items() if isinstance(block, Mapping)}
        out.append({"experiment": name, "changed": dict(changed), "model": model,
                    "rerun": quality[model] != base_quality.get(model), "params": quality[model].get("params"),
                    "speedup": ratios.get(model), SPLIT: scores})
    return out


def _value(row: Mapping[str, Any], decoding: str, metric: str) -> str:
    scores = row[SPLIT]
    if decoding not in scores and len(scores) == 1:  # lead-3 has one "decoding" of its own
        decoding = next(iter(scores))
    value = scores.get(decoding, {}).get(metric)
    return fmt.number(value, missing=NONE)


def _changes(changed: Mapping[str, Any]) -> str:
    return ", ".join(f"`{k}={json.dumps(v)}`" for k, v in changed.items()) or "(baseline commit)"


def markdown(result: Mapping[str, Any]) -> str:
    """The table: experiments in the given order, each model's validation scores; models not retrained
    by an experiment are collapsed into one "= base" note."""
    header = ["experiment", "changed params", "model"] + [f"{m} {d}" for d, m in TABLE_COLUMNS] + ["params", "speedup"]
    also = "".join(f" (and {c[:7]}, same results)" for c in result.get("also_baselines", []))
    lines = [f"Sweep on baseline commit {result['baseline_commit'][:7]}{also} · split {SPLIT} · "
             f"{result['n_experiments']} experiments (`python -m kd.sweep`). One training seed each; "
             "choose on these, confirm over seeds.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * 3 + "---:|" * (len(TABLE_COLUMNS) + 2)]
    for name in result["order"]:
        exp_rows = [r for r in result["rows"] if r["experiment"] == name]
        changes = _changes(exp_rows[0]["changed"]) if exp_rows else ""
        shown = [r for r in exp_rows if r["rerun"] or name == "base"]
        for r in shown:
            cells = [name, changes, r["model"]] + [_value(r, d, m) for d, m in TABLE_COLUMNS]
            speedup = fmt.ratio(r.get("speedup"), missing=NONE)
            lines.append("| " + " | ".join(cells + [fmt.cell(r["params"] or None, missing=NONE), speedup]) + " |")
            changes = "〃"
        same = sorted(r["model"] for r in exp_rows if not r["rerun"] and name != "base")
        if same and shown:
            lines.append(f"| {name} | 〃 | = base: {', '.join(same)} |" + " |" * (len(TABLE_COLUMNS) + 2))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Reading the experiments (git).


def read_quality(repo: Path, rev: str) -> dict[str, dict[str, Any]]:
    files = sorted(PurePosixPath(p) for p in ls_tree(repo, rev, str(QUALITY_DIR)) if p.endswith(".json"))
    if not files:
        raise ConfigError(f"{rev} has no {QUALITY_DIR}/*.json")
    return {f.stem: json.loads(show(repo, rev, str(f))) for f in files}


def read_speedups(repo: Path, rev: str) -> dict[str, float]:
    """model -> its `speedup` in the revision's report (kd.report.results); {} when the revision has none."""
    if not git(repo, "ls-tree", "--full-tree", "--name-only", rev, "--", str(RESULTS_JSON)):
        return {}
    report = json.loads(show(repo, rev, str(RESULTS_JSON)))
    return {m: e["speedup"] for m, e in report.items() if isinstance(e, Mapping) and e.get("speedup") is not None}


def read_params(repo: Path, rev: str) -> dict[str, Any]:
    return yaml.safe_load(show(repo, rev, "params.yaml"))


def collect(repo: Path, *, rev: str = "HEAD", prefixes: Sequence[str] = (), also_revs: Sequence[str] = ()) -> dict[str, Any]:
    """The table of the experiments run on `rev`, and on each of `also_revs`: later commits that changed no
    result (their committed quality files equal `rev`'s, e.g. a commit of docs or of a new option left
    off), so that one sweep queued across them stays one table. Each experiment's changed params are
    against its own baseline commit's; the base rows are `rev`'s."""
    baseline = resolve_commit(repo, rev)
    base_params, base_quality = read_params(repo, baseline), read_quality(repo, baseline)
    baselines = {baseline: base_params}
    for other in also_revs:
        commit = resolve_commit(repo, other)
        if read_quality(repo, commit) != base_quality:
            raise ConfigError(f"{commit[:7]}'s committed results differ from {baseline[:7]}'s: its experiments "
                              "have another base; sweep them in a table of their own")
        baselines[commit] = read_params(repo, commit)
    experiments = sorted((e for e in map(parse_experiment_ref, experiment_refs(repo))
                          if e is not None and e.baseline in baselines
                          and (not prefixes or e.name.startswith(tuple(prefixes)))),
                         key=lambda e: e.name)
    if not experiments:
        raise ConfigError(f"no experiments{' named ' + '|'.join(p + '*' for p in prefixes) if prefixes else ''}"
                          f" on baseline {baseline[:7]} (pass --rev the commit they ran on)")
    table = rows("base", {}, base_quality, base_quality, read_speedups(repo, baseline))
    for e in experiments:
        table += rows(e.name, changed_params(baselines[e.baseline], read_params(repo, e.ref)),
                      read_quality(repo, e.ref), base_quality, read_speedups(repo, e.ref))
    return {"baseline_commit": baseline, "also_baselines": list(baselines)[1:], "split": SPLIT,
            "n_experiments": len(experiments), "order": ["base"] + [e.name for e in experiments],
            "commits": {e.name: resolve_commit(repo, e.ref) for e in experiments}, "rows": table}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prefix", nargs="*", default=[], help="only experiments whose name starts with one of these")
    p.add_argument("--rev", default="HEAD", help="the baseline commit the experiments were run on")
    p.add_argument("--also-rev", nargs="*", default=[], metavar="REV",
                   help="later baseline commits with the same committed results whose experiments join the table")
    p.add_argument("--out-dir", type=Path, default=paths.BENCHMARK_DIR / "sweep")
    args = p.parse_args(argv)
    try:
        result = collect(Path.cwd(), rev=args.rev, prefixes=args.prefix, also_revs=args.also_rev)
    except ConfigError as e:
        print(f"error: {e}")
        return 2
    atomic_write_json(args.out_dir / SWEEP_JSON, result)
    atomic_write_text(args.out_dir / SWEEP_MD, markdown(result))
    print(markdown(result))
    print(f"wrote {args.out_dir / SWEEP_JSON} and {args.out_dir / SWEEP_MD}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
