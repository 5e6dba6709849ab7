"""Stage speed: every model's decoding speed and peak memory, timed side by side in one run: the
teacher and every student in params `kd.students` (models/student_<name>), or the --model NAME=PATH
models given; every model at `benchmark.num_beams`, and all but the teacher greedy as well (how a
student is served). Each model runs in its own worker process; rounds interleave the models and each gets
the median of `benchmark.speed_repeats` rounds (kd/evaluation/speed.py).
"""

from __future__ import annotations

from pathlib import Path

from kd import cli, paths
from kd.errors import ConfigError
from kd.params import load_section


def parse_model(spec: str) -> tuple[str, Path]:
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise ConfigError(f"--model {spec!r}: expected NAME=PATH, e.g. teacher=models/teacher")
    return name, Path(path)


def models_to_time(specs: list[str] | None, teacher: Path, params: Path) -> dict[str, Path]:
    """The given NAME=PATH models, or the teacher and every student in params `kd.students` (in that
    case every model but the teacher is also timed greedy)."""
    if specs:
        models: dict[str, Path] = {}
        for name, path in map(parse_model, specs):
            if name in models:
                raise ConfigError(f"--model {name}: given twice")
            models[name] = path
        return models
    students = list(load_section("kd", params).students)
    return {"teacher": teacher} | {name: paths.student_dir(name) for name in students}


def main(argv=None) -> None:
    p = cli.parser(__doc__)
    p.add_argument("--teacher", type=Path, default=paths.TEACHER_DIR)
    p.add_argument("--model", action="append", default=None, metavar="NAME=PATH",
                   help="time this model instead of the teacher and params' students (repeat)")
    p.add_argument("--test", type=Path, default=paths.raw_split("test"))
    p.add_argument("--out", type=Path, default=paths.BENCHMARK_DIR / "speed.json")
    args = p.parse_args(argv)
    cli.setup_logging("speed", args.log_dir)
    bench, tok = load_section("benchmark", args.params), load_section("tokenizer", args.params)
    cli.set_threads(load_section("train", args.params).threads)
    models = models_to_time(args.model, args.teacher, args.params)
    cli.log_config(benchmark=bench, prefix=tok.prefix, max_source_length=tok.max_source_length,
                   models={name: str(path) for name, path in models.items()})

    from kd.data.sources import read_jsonl
    from kd.io import atomic_write_json
    from kd.evaluation.speed import time_models

    articles = [r["article"] for r in read_jsonl(args.test)[: bench.speed_samples]]
    result = time_models(models=models, articles=articles, prefix=tok.prefix, max_source_length=tok.max_source_length,
                         num_beams=bench.num_beams, max_new_tokens=bench.max_new_tokens, batch_size=bench.batch_size,
                         warmup_batches=bench.warmup_batches, repeats=bench.speed_repeats,
                         device=bench.device, greedy_too=[name for name in models if name != "teacher"])
    atomic_write_json(args.out, result)
    cli.log.info("wrote %s: samples/s %s", args.out,
                 {name: row["samples_per_s"] for name, row in result.items() if name != "host"})


if __name__ == "__main__":
    cli.run("speed", main)
