"""The README's results tables, generated from committed result files (never typed by hand).

    python -m tools.readme            # rewrite every generated section of the README
    python -m tools.readme --check    # exit 1 when a section differs from its results file, both as
                                   # committed (HEAD) and as in the working tree

Each section sits between `<!-- <name>:start (python -m tools.readme) -->` and `<!-- <name>:end -->`:

    seeds     benchmark_results/seeds.json (python -m kd.seeds collect): mean ± sd over training seeds and
              the paired bootstrap against the baseline and the teacher
    results   benchmark_results/benchmark_results.json (the report stage): the committed run, test split
    cnndm     benchmark_results/cnndm/lead3.json: lead-3 on the real CNN/DailyMail sample (see README)
    rehearsal benchmark_results/rehearsal/rehearsal.json (python -m tools.bench rehearsal): the real-scale job
              rehearsed on this CPU, each row labelled measured or estimate

tests/test_readme.py runs the check, so a README that disagrees with benchmark_results/ fails CI. The check
accepts the results committed at HEAD as well as the working tree's: `dvc repro` rewrites the run's timings
(and, on another machine, its scores) in the working tree, and the README still shows the committed run.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Callable

from kd import paths
from kd.io import atomic_write_text
from kd.report.results import display_rows, faithfulness_key, headline, markdown_table, with_intervals

RESULTS = paths.BENCHMARK_DIR / "benchmark_results.json"
SEEDS = paths.BENCHMARK_DIR / "seeds.json"
CNNDM = paths.BENCHMARK_DIR / "cnndm" / "lead3.json"
REHEARSAL = paths.BENCHMARK_DIR / "rehearsal" / "rehearsal.json"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start (python -m tools.readme) -->", f"<!-- {name}:end -->"


def results_table(results_file: Path = RESULTS) -> str:
    """The committed run's test-split table: headline decoding with its interval, greedy beside it,
    faithfulness, the paired difference to the baseline, size, speed and training cost."""
    results = json.loads(Path(results_file).read_text())
    rows = headline(results, "test")
    table = markdown_table(display_rows(rows, faithfulness_key(rows[0])))
    train = results.get("teacher", {}).get("train_split")
    if train:  # the teacher_generate stage's summaries of the students' labelled set: seqkd targets
        test = results["teacher"]["test"].get(train["decoding"], {})
        table += (f"\nThe teacher on the students' labelled set: its summaries of those {train['n_examples']} "
                  f"articles (beam {train['num_beams']}, among the `seqkd` targets) score rougeL {train['rougeL']:.2f} "
                  f"against their references, against {test.get('rougeL', float('nan')):.2f} on test.\n")
    return table


def seeds_section(seeds_file: Path = SEEDS) -> str:
    from kd.seeds import markdown

    if not Path(seeds_file).is_file():
        return "(no seeds collected yet: `python -m kd.seeds run --seeds 0 1 2`, then `collect`)\n"
    return markdown(json.loads(Path(seeds_file).read_text()))


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


def rehearsal_table(rehearsal_file: Path = REHEARSAL) -> str:
    """The rehearsal's stages as measured here, then the full job's estimates (this CPU; one H100 from
    FLOPs at the stated utilisation), then its budgets: every row says which it is."""
    if not Path(rehearsal_file).is_file():
        return "(not run yet: `python -m tools.bench rehearsal --out benchmark_results/rehearsal/rehearsal.json`)\n"
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
            "full job, this CPU (estimate)": _seconds(full.get("cpu_s")),
            "full job, one H100 (estimate)": _seconds(full.get("h100_s")),
            "full job, disk (estimate)": _bytes(full.get("disk_bytes"))})
    rows.append({"stage": "**whole job**", "measured here, on": f"rehearsal wall time {_seconds(r['wall_s'])}",
                 "time": "", "peak RSS": "", "disk written (each inode once)": "", "throughput": "",
                 "full job, this CPU (estimate)": _seconds(job["cpu_s"]),
                 "full job, one H100 (estimate)": _seconds(job["h100_box_s"]),
                 "full job, disk (estimate)": _bytes(job["disk_bytes"])})
    hf = sum(st["disk_bytes"].get("hf_cache", 0) for st in r["stages"])
    cached = sum(st["disk_bytes"]["dvc_cache"] for st in r["stages"])
    disk_note = (f"Disk written counts the workspace, the DVC cache ({_bytes(cached)} of objects, each the same inode "
                 f"as its workspace file) and the datasets library's cache ({_bytes(hf)}: `load_dataset` keeps an "
                 f"Arrow copy of the corpus' text), each inode once.")
    budgets = "; ".join(f"{k} {b['value']:g} (limit {b['limit']:g}) {'ok' if b['ok'] else 'OVER'}"
                        for k, b in r["budgets"].items())
    return (f"Measured {r['date']} on {r['host']['cpus']} CPU cores, scale {r['options']['scale']:g}, "
            f"utilisation assumed for the H100 estimates: {job['utilisation']:.0%} training, "
            f"{job['decode_utilisation']:.0%} decoding.\n\n{markdown_table(rows)}\n{disk_note} Budgets: {budgets}.\n")


# name -> its rendering from a benchmark_results/ directory (the working tree's or a commit's)
SECTIONS: dict[str, Callable[[Path], str]] = {
    "seeds": lambda d: seeds_section(d / SEEDS.relative_to(paths.BENCHMARK_DIR)),
    "results": lambda d: results_table(d / RESULTS.relative_to(paths.BENCHMARK_DIR)),
    "cnndm": lambda d: cnndm_table(d / CNNDM.relative_to(paths.BENCHMARK_DIR)),
    "rehearsal": lambda d: rehearsal_table(d / REHEARSAL.relative_to(paths.BENCHMARK_DIR)),
}


def render(readme: str, name: str, body: str) -> str:
    """`readme` with the text between `name`'s markers replaced by `body`."""
    start, end = markers(name)
    if start not in readme or end not in readme:
        raise SystemExit(f"README has no {name} markers ({start} ... {end})")
    head, rest = readme.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}{end}{tail}"


def render_all(readme: str, results_dir: Path = paths.BENCHMARK_DIR) -> str:
    for name, section in SECTIONS.items():
        readme = render(readme, name, section(Path(results_dir)))
    return readme


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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--readme", type=Path, default=Path("README.md"))
    p.add_argument("--check", action="store_true", help="only compare; exit 1 when they differ")
    args = p.parse_args(argv)
    current = args.readme.read_text()
    wanted = render_all(current)
    if args.check:
        if wanted == current:
            return 0
        with tempfile.TemporaryDirectory() as tmp:
            committed = committed_results(Path(tmp))
            if committed is not None and render_all(current, committed) == current:
                return 0
        print(f"{args.readme}: a generated section differs from benchmark_results/ (both the working tree's and "
              f"HEAD's); run python -m tools.readme", file=sys.stderr)
        return 1
    atomic_write_text(args.readme, wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
