"""Stage teacher_generate: the teacher's beam-search summaries of the training split, computed once
(resumable in shards), the targets of sequence-level KD students (`targets: data/teacher_targets`)."""

from __future__ import annotations

from pathlib import Path

from kd import cli, paths
from kd.params import load_section


def main(argv=None) -> None:
    p = cli.parser(__doc__)
    p.add_argument("--teacher", type=Path, default=paths.TEACHER_DIR)
    p.add_argument("--tokenizer", type=Path, default=paths.TOKENIZER_DIR)
    p.add_argument("--tokenized", type=Path, default=paths.TOKENIZED_DIR)
    p.add_argument("--raw-train", type=Path, default=paths.raw_split("train"),
                   help="the references, for the teacher's ROUGE on the training split")
    p.add_argument("--out", type=Path, default=paths.TEACHER_TARGETS_DIR)
    p.add_argument("--work-dir", type=Path, default=paths.CHECKPOINTS_DIR / "teacher_generate",
                   help="finished shards of an interrupted run (not a DVC output)")
    p.add_argument("--cost-out", type=Path, default=paths.stage_cost("teacher_generate"),
                   help="the stage's cost summary (seconds, threads) for the report")
    args = p.parse_args(argv)
    cli.setup_logging("teacher_generate", args.log_dir)
    params = load_section("teacher_generate", args.params)
    cli.set_threads(load_section("train", args.params).threads)
    cli.log_config(teacher_generate=params)

    if not params.splits:  # no recipe reads the teacher's summaries: nothing to decode
        from kd.teacher.targets import write_nothing_generated

        with cli.cost_summary(args.cost_out):
            write_nothing_generated(args.out, num_return_sequences=params.num_return_sequences)
        cli.log.info("teacher_generate.splits is empty: no summaries to generate, %s holds an empty manifest",
                     args.out)
        return
    from kd.teacher.generate import generate_targets  # heavy imports only after argv and params are valid

    with cli.cost_summary(args.cost_out):
        generate_targets(params=params, teacher_dir=args.teacher, tokenizer_dir=args.tokenizer,
                         tokenized_dir=args.tokenized, raw_train=args.raw_train, out_dir=args.out,
                         work_dir=args.work_dir)


if __name__ == "__main__":
    cli.run("teacher_generate", main)
