"""Stage report: the teacher, every student and lead-N side by side, from the benchmark@<name> stages'
quality and per-example files, the speed stage's speed.json, the training stages' dvclive summaries, the
teacher_generate stage's manifest (the teacher's ROUGE on its training split) and the teacher-side stages'
wall times (their cost summaries under --live-dir, else their manifests' `seconds`), charged to the
recipes that read their outputs (each student's recipe.json under --models-dir, else its params).

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
    p.add_argument("--teacher-outputs", type=Path, default=paths.TEACHER_OUTPUTS_DIR / "manifest.json",
                   help="the teacher_outputs stage's manifest: its `seconds`, when no cost summary has them")
    p.add_argument("--models-dir", type=Path, default=paths.MODELS_DIR,
                   help="where student_<name>/recipe.json says what each student read from the teacher "
                        "(its params' kd.students.<name> when absent)")
    p.add_argument("--out", type=Path, default=paths.BENCHMARK_DIR)
    args = p.parse_args(argv)
    cli.setup_logging("report", args.log_dir)
    bench = load_section("benchmark", args.params)
    recipes = load_section("kd", args.params).students
    students = list(recipes)
    cli.log_config(benchmark=bench, students=students)

    import dataclasses

    from kd.data.sources import read_jsonl
    from kd.report.results import (charge_teacher_work, examples_side_by_side, gather, primary_decoding,
                                   read_recipe, read_teacher_stages, write_benchmark)

    records = {split: read_jsonl(getattr(args, split)) for split in ("validation", "test")}
    results, examples, host = gather(students=students, lead=f"lead{bench.lead_n}", quality_dir=args.quality_dir,
                               examples_dir=args.examples_dir, speed_path=args.speed, live_dir=args.live_dir,
                               ids={split: [r["id"] for r in rs] for split, rs in records.items()})
    if args.teacher_targets.is_file():
        import json

        from kd.report.results import train_split_block

        if (block := train_split_block(json.loads(args.teacher_targets.read_text()))) is not None:
            results["teacher"]["train_split"] = block
    stages = read_teacher_stages(args.live_dir, {"teacher_generate": args.teacher_targets,
                                                 "teacher_outputs": args.teacher_outputs})
    charge_teacher_work(results, {name: read_recipe(args.models_dir, name)
                                  or {"targets": r.targets, "teacher_input": r.teacher_input}
                                  for name, r in recipes.items()}, stages)
    # the examples in the report: each model's test summaries at its headline decoding
    shown = {name: examples[name][("test", primary_decoding(entry["test"]))] for name, entry in results.items()}
    decoding = {k: v for k, v in dataclasses.asdict(bench).items() if k != "num_examples"}
    write_benchmark(args.out, results, examples_side_by_side(records["test"], shown, bench.num_examples),
                    decoding=decoding, host=host, max_examples=bench.num_examples,
                    live_dir=args.live_dir)
    cli.log.info("wrote %s", args.out)


if __name__ == "__main__":
    cli.run("report", main)
