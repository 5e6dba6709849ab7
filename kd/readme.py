"""The README's results table, generated from the committed benchmark results (never typed by hand).

    python -m kd.readme            # rewrite the table between the README's results markers
    python -m kd.readme --check    # exit 1 when the README's table differs from the results file

tests/test_readme.py runs the check, so a README that disagrees with benchmark_results/ fails CI.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kd import paths
from kd.io import atomic_write_text
from kd.report import markdown_table

START, END = "<!-- results:start (python -m kd.readme) -->", "<!-- results:end -->"
COLUMNS = ("model", "rouge1", "rouge2", "rougeL", "rougeLsum", "bleu4", "params", "compression",
           "samples_per_s", "speedup", "retention_rougeL")
RESULTS = paths.BENCHMARK_DIR / "benchmark_results.json"


def results_table(results_file: Path = RESULTS) -> str:
    results = json.loads(Path(results_file).read_text())
    rows = [{"model": name, **values} for name, values in results.items()]
    return markdown_table(rows, [c for c in COLUMNS if any(c in r for r in rows)])


def render(readme: str, table: str) -> str:
    if START not in readme or END not in readme:
        raise SystemExit(f"README has no results markers ({START} ... {END})")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}{END}{tail}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--readme", type=Path, default=Path("README.md"))
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--check", action="store_true", help="only compare; exit 1 when they differ")
    args = p.parse_args(argv)
    current = args.readme.read_text()
    wanted = render(current, results_table(args.results))
    if args.check:
        if wanted != current:
            print(f"{args.readme}: results table differs from {args.results}; run python -m kd.readme",
                  file=sys.stderr)
            return 1
        return 0
    atomic_write_text(args.readme, wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
