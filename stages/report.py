"""Stage report: the teacher, every student and lead-N side by side, from the benchmark@<name>
stages' quality and predictions files and the speed stage's speed.json.

Writes benchmark_results.json (nested {model: {metric: value}}, with compression, speedup and
retention relative to the teacher), comparison_table.csv, benchmark_report.txt, scores.png and
quality_vs_speed.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The repo root replaces stages/ on the path: run from anywhere, and stages/tokenize.py must not
# shadow the stdlib module of the same name.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from kd import cli, paths  # noqa: E402
from kd.params import load_section  # noqa: E402


def main(argv=None) -> None:
    p = cli.parser(__doc__)
    p.add_argument("--quality-dir", type=Path, default=paths.BENCHMARK_DIR / "quality")
    p.add_argument("--predictions-dir", type=Path, default=paths.BENCHMARK_DIR / "predictions")
    p.add_argument("--speed", type=Path, default=paths.BENCHMARK_DIR / "speed.json")
    p.add_argument("--test", type=Path, default=paths.raw_split("test"))
    p.add_argument("--out", type=Path, default=paths.BENCHMARK_DIR)
    args = p.parse_args(argv)
    cli.setup_logging("report", args.log_dir)
    bench = load_section("benchmark", args.params)
    students = list(load_section("kd", args.params).students)
    cli.log_config(benchmark=bench, students=students)

    import dataclasses

    from kd.data.sources import read_jsonl
    from kd.report import gather, write_benchmark

    rows, examples, host = gather(students=students, lead=f"lead{bench.lead_n}", quality_dir=args.quality_dir,
                                  predictions_dir=args.predictions_dir, speed_path=args.speed,
                                  records=read_jsonl(args.test), num_examples=bench.num_examples)
    decoding = {k: v for k, v in dataclasses.asdict(bench).items() if k != "num_examples"}
    write_benchmark(args.out, rows, examples, decoding=decoding, host=host, max_examples=bench.num_examples)
    cli.log.info("wrote %s", args.out)


if __name__ == "__main__":
    cli.run("report", main)
