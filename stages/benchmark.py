"""Stage benchmark@<name>: one model (--model DIR) or the lead-N baseline (--lead) on the test split:
ROUGE/BLEU as a flat metrics file (--out) and its predictions (--predictions). No timing here
(stages/speed.py times every model side by side), so an unchanged model rewrites the same bytes.
Under `accelerate launch` each process decodes a shard; the main process writes.
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
    p.add_argument("--name", required=True, help="the model's row name (teacher, a student name, lead3)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", type=Path, help="the model directory (model + tokenizer)")
    which.add_argument("--lead", action="store_true", help="score the lead-N baseline (benchmark.lead_n)")
    p.add_argument("--test", type=Path, default=paths.raw_split("test"))
    p.add_argument("--out", type=Path, required=True, help="the flat metrics JSON")
    p.add_argument("--predictions", type=Path, required=True, help="the predictions, one JSON line per example")
    args = p.parse_args(argv)
    cli.setup_logging(f"benchmark_{args.name}", args.log_dir)
    bench, tok = load_section("benchmark", args.params), load_section("tokenizer", args.params)
    cli.log_config(benchmark=bench, prefix=tok.prefix, max_source_length=tok.max_source_length)

    from kd.benchmark import score_lead, score_model, scored_records, write_quality
    from kd.data.sources import read_jsonl

    records = scored_records(read_jsonl(args.test), bench.max_samples)
    if args.lead:
        metrics, predictions = score_lead(records=records, n=bench.lead_n)
    else:
        metrics, predictions = score_model(model_dir=args.model, records=records, bench=bench, prefix=tok.prefix,
                                           max_source_length=tok.max_source_length)
    if cli.is_main_process():  # under `accelerate launch` every process holds all predictions; one writes
        write_quality(metrics=metrics, out=args.out, records=records, predictions=predictions,
                      predictions_out=args.predictions)
        cli.log.info("%s: %s; wrote %s and %s", args.name, metrics, args.out, args.predictions)


if __name__ == "__main__":
    cli.run("benchmark", main)
