"""Stage teacher_outputs: run the trained teacher once over the training split and cache its top-k
logits per target token (and its logsumexp at each of `teacher_outputs.temperatures`), so logit
distillation does not run the teacher on every step."""

from __future__ import annotations

from pathlib import Path

from kd import cli, paths
from kd.params import load_section


def main(argv=None) -> None:
    p = cli.parser(__doc__)
    p.add_argument("--teacher", type=Path, default=paths.TEACHER_DIR)
    p.add_argument("--tokenizer", type=Path, default=paths.TOKENIZER_DIR)
    p.add_argument("--tokenized", type=Path, default=paths.TOKENIZED_DIR)
    p.add_argument("--out", type=Path, default=paths.TEACHER_OUTPUTS_DIR)
    p.add_argument("--cost-out", type=Path, default=paths.stage_cost("teacher_outputs"),
                   help="the stage's cost summary (seconds, threads) for the report")
    args = p.parse_args(argv)
    cli.setup_logging("teacher_outputs", args.log_dir)
    params = load_section("teacher_outputs", args.params)
    cli.set_threads(load_section("train", args.params).threads)
    cli.log_config(teacher_outputs=params)

    from kd.teacher.outputs import write_teacher_outputs  # heavy imports only after argv and params are valid

    with cli.cost_summary(args.cost_out):
        write_teacher_outputs(params=params, teacher_dir=args.teacher, tokenizer_dir=args.tokenizer,
                              tokenized_dir=args.tokenized, out_dir=args.out)


if __name__ == "__main__":
    cli.run("teacher_outputs", main)
