"""Stage benchmark: score the teacher, every student and lead-3 on the test split, side by side."""

from __future__ import annotations

import sys
from pathlib import Path

# The repo root replaces stages/ on the path: run from anywhere, and stages/tokenize.py must not
# shadow the stdlib module of the same name.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from kd import cli, paths  # noqa: E402
from kd.errors import ConfigError  # noqa: E402
from kd.params import load_section  # noqa: E402


def parse_model(spec: str) -> tuple[str, Path]:
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise ConfigError(f"--model {spec!r}: expected NAME=PATH, e.g. teacher=models/teacher")
    return name, Path(path)


def main(argv=None) -> None:
    p = cli.parser(__doc__)
    p.add_argument("--model", action="append", default=None, metavar="NAME=PATH",
                   help="a model to benchmark (repeat); must include teacher=... "
                        "(default: the teacher and models/student_* that exist)")
    p.add_argument("--test", type=Path, default=paths.raw_split("test"))
    p.add_argument("--out", type=Path, default=paths.BENCHMARK_DIR)
    args = p.parse_args(argv)
    cli.setup_logging("benchmark", args.log_dir)
    bench, tok = load_section("benchmark", args.params), load_section("tokenizer", args.params)
    cli.log_config(benchmark=bench, prefix=tok.prefix, max_source_length=tok.max_source_length)
    if args.model:
        models = dict(parse_model(m) for m in args.model)
    else:
        models = {"teacher": paths.TEACHER_DIR} | {
            d.name: d for d in sorted(paths.MODELS_DIR.glob("student_*")) if (d / "config.json").is_file()}

    from kd.benchmark import run_benchmark, write_outputs
    from kd.data.sources import read_jsonl
    from kd.modeling import resolve_device

    rows, examples = run_benchmark(models=models, test_records=read_jsonl(args.test), bench=bench,
                                   prefix=tok.prefix, max_source_length=tok.max_source_length,
                                   device=resolve_device(bench.device))
    if cli.is_main_process():  # under `accelerate launch`, every process measured its shard; one writes
        write_outputs(rows, examples, bench, args.out)
        cli.log.info("wrote %s", args.out)


if __name__ == "__main__":
    cli.run("benchmark", main)
