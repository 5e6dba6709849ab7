"""Stage report: the teacher, every student and lead-N side by side, from the benchmark@<name> stages'
quality and per-example files, the speed stage's speed.json, the training stages' dvclive summaries and
the teacher_generate stage's manifest (the teacher's ROUGE on its training split).

Writes benchmark_results.json (everything, nested {model: {..., split: {decoding: metrics}}}), metrics.json
(a few keys per model: the DVC metrics file), comparison_table.csv, benchmark_report.txt, scores.png,
quality_vs_speed.png and curves/*.png (validation loss and each training loss term, every model overlaid).
"""

from __future__ import annotations

from pathlib import Path

from kd import cli, paths
from kd.params import load_section


def main(argv=None) -> None:
    p = cli.parser(__doc__)
    p.add_argument("--quality-dir", type=Path, default=paths.BENCHMARK_DIR / "quality")
    p.add_argument("--examples-dir", type=Path, default=paths.BENCHMARK_DIR / "examples")
    p.add_argument("--speed", type=Path, default=paths.BENCHMARK_DIR / "speed.json")
    p.add_argument("--live-dir", type=Path, default=Path("dvclive"), help="the training stages' dvclive dirs")
    p.add_argument("--validation", type=Path, default=paths.raw_split("validation"))
    p.add_argument("--test", type=Path, default=paths.raw_split("test"))
    p.add_argument("--teacher-targets", type=Path, default=paths.TEACHER_TARGETS_DIR / "manifest.json",
                   help="the teacher_generate stage's manifest: the teacher's ROUGE on its training split")
    p.add_argument("--out", type=Path, default=paths.BENCHMARK_DIR)
    args = p.parse_args(argv)
    cli.setup_logging("report", args.log_dir)
    bench = load_section("benchmark", args.params)
    students = list(load_section("kd", args.params).students)
    cli.log_config(benchmark=bench, students=students)

    import dataclasses

    from kd.data.sources import read_jsonl
    from kd.report.results import examples_side_by_side, gather, primary_decoding, write_benchmark

    records = {split: read_jsonl(getattr(args, split)) for split in ("validation", "test")}
    results, examples, host = gather(students=students, lead=f"lead{bench.lead_n}", quality_dir=args.quality_dir,
                               examples_dir=args.examples_dir, speed_path=args.speed, live_dir=args.live_dir,
                               ids={split: [r["id"] for r in rs] for split, rs in records.items()})
    if args.teacher_targets.is_file():
        import json

        from kd.report.results import train_split_block

        if (block := train_split_block(json.loads(args.teacher_targets.read_text()))) is not None:
            results["teacher"]["train_split"] = block
    # the examples in the report: each model's test summaries at its headline decoding
    shown = {name: examples[name][("test", primary_decoding(entry["test"]))] for name, entry in results.items()}
    decoding = {k: v for k, v in dataclasses.asdict(bench).items() if k != "num_examples"}
    write_benchmark(args.out, results, examples_side_by_side(records["test"], shown, bench.num_examples),
                    decoding=decoding, host=host, max_examples=bench.num_examples,
                    live_dir=args.live_dir)
    cli.log.info("wrote %s", args.out)


if __name__ == "__main__":
    cli.run("report", main)
