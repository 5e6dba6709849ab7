"""Stage benchmark@<name>: one model (--model DIR) or the lead-N baseline (--lead) on the validation and
test splits, beam and greedy: every example's scores and prediction (--examples, one JSON line each) and
the means with bootstrap intervals (--out). No timing here
(stages/speed.py times every model side by side), so an unchanged model rewrites the same bytes.
Under `accelerate launch` each process decodes a shard; the main process writes.
"""

from __future__ import annotations

from pathlib import Path

from kd import cli, paths
from kd.params import load_section


def main(argv=None) -> None:
    p = cli.parser(__doc__)
    p.add_argument("--name", required=True, help="the model's row name (teacher, a student name, lead3)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", type=Path, help="the model directory (model + tokenizer)")
    which.add_argument("--lead", action="store_true", help="score the lead-N baseline (benchmark.lead_n)")
    p.add_argument("--validation", type=Path, default=paths.raw_split("validation"))
    p.add_argument("--test", type=Path, default=paths.raw_split("test"))
    p.add_argument("--out", type=Path, required=True, help="the quality JSON: {split: {decoding: metrics}}")
    p.add_argument("--examples", type=Path, required=True, help="per-example scores, one JSON line per example")
    args = p.parse_args(argv)
    cli.setup_logging(f"benchmark_{args.name}", args.log_dir)
    bench, tok = load_section("benchmark", args.params), load_section("tokenizer", args.params)
    cli.set_threads(load_section("train", args.params).threads)
    cli.log_config(benchmark=bench, prefix=tok.prefix, max_source_length=tok.max_source_length)

    from kd.evaluation.benchmark import SPLITS, score_lead, score_model, scored_records, write_quality
    from kd.data.sources import read_jsonl

    splits = {split: scored_records(read_jsonl(getattr(args, split)), bench.max_samples, split)
              for split in SPLITS}
    if args.lead:
        quality, rows = score_lead(splits=splits, n=bench.lead_n)
    else:
        quality, rows = score_model(model_dir=args.model, splits=splits, bench=bench, prefix=tok.prefix,
                                    max_source_length=tok.max_source_length)
    if cli.is_main_process():  # under `accelerate launch` every process holds all predictions; one writes
        write_quality(quality=quality, out=args.out, rows=rows, examples_out=args.examples)
        test = quality["test"]
        cli.log.info("%s: test %s; wrote %s and %s", args.name,
                     {d: {k: m[k] for k in ("rougeL", "rougeL_low", "rougeL_high") if k in m} for d, m in test.items()},
                     args.out, args.examples)


if __name__ == "__main__":
    cli.run("benchmark", main)
