"""Stage train_teacher: train the T5 teacher on the tokenized training split."""

from __future__ import annotations

from pathlib import Path

from kd import cli, paths
from kd.params import load_section


def main(argv=None) -> None:
    p = cli.parser(__doc__)
    p.add_argument("--tokenizer", type=Path, default=paths.TOKENIZER_DIR)
    p.add_argument("--tokenized", type=Path, default=paths.TOKENIZED_DIR)
    p.add_argument("--out", type=Path, default=paths.TEACHER_DIR)
    p.add_argument("--checkpoints", type=Path, default=paths.CHECKPOINTS_DIR / "teacher")
    p.add_argument("--live-dir", type=Path, default=paths.DVCLIVE_DIR / "teacher")
    p.add_argument("--resume-from-checkpoint", type=Path, default=None, metavar="PATH",
                   help="checkpoint dir to resume from (default: checkpoints/teacher/last when it matches)")
    args = p.parse_args(argv)
    cli.setup_logging("train_teacher", args.log_dir)
    spec, train = load_section("teacher", args.params), load_section("train", args.params)
    cli.set_threads(train.threads)
    cli.log_config(teacher=spec, train=train)

    from kd.teacher.train import train_teacher  # heavy imports only after argv and params are valid

    train_teacher(spec=spec, train=train, tokenizer_dir=args.tokenizer, tokenized_dir=args.tokenized,
                  out_dir=args.out, ckpt_dir=args.checkpoints, live_dir=args.live_dir,
                  resume_from=args.resume_from_checkpoint)


if __name__ == "__main__":
    cli.run("train_teacher", main)
