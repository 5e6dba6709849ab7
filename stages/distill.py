"""Stage distill: train one student with the recipe params.yaml gives it (kd.students.<name>)."""

from __future__ import annotations

from pathlib import Path

from kd import cli, paths
from kd.params import load_section


def main(argv=None) -> None:
    p = cli.parser(__doc__)
    p.add_argument("--student", required=True, help="a name under kd.students in params.yaml")
    p.add_argument("--teacher", type=Path, default=paths.TEACHER_DIR)
    p.add_argument("--tokenizer", type=Path, default=paths.TOKENIZER_DIR)
    p.add_argument("--tokenized", type=Path, default=paths.TOKENIZED_DIR)
    p.add_argument("--teacher-outputs", type=Path, default=paths.TEACHER_OUTPUTS_DIR,
                   help="the teacher_outputs stage's cache (read when the recipe's teacher_input names it)")
    p.add_argument("--teacher-targets", type=Path, default=paths.TEACHER_TARGETS_DIR,
                   help="the teacher_generate stage's summaries (read when the recipe's targets name them)")
    p.add_argument("--out", type=Path, default=None, help="default: models/student_<name>")
    p.add_argument("--checkpoints", type=Path, default=None, help="default: checkpoints/student_<name>")
    p.add_argument("--live-dir", type=Path, default=None, help="default: dvclive/student_<name>")
    p.add_argument("--resume-from-checkpoint", type=Path, default=None, metavar="PATH",
                   help="checkpoint dir to resume from (default: <checkpoints>/last when it matches)")
    args = p.parse_args(argv)
    cli.setup_logging(f"distill_{args.student}", args.log_dir)
    spec, train, kd = (load_section(s, args.params) for s in ("student", "train", "kd"))
    # a summaries file is tokenized like the references
    max_target_length = load_section("tokenizer", args.params).max_target_length

    from kd.students.recipe import resolve  # imports the loss modules the recipe names

    recipe = resolve(args.student, kd, spec, train)  # every setting validated before anything is loaded
    cli.log_config(recipe=recipe.to_json(), teacher_device=kd.teacher_device)
    cli.set_threads(recipe.train.threads)
    run_name = f"student_{args.student}"

    from kd.students.distill import distill_student  # heavy imports only after argv and params are valid

    distill_student(recipe=recipe, teacher_device=kd.teacher_device, teacher_dir=args.teacher,
                    tokenizer_dir=args.tokenizer, teacher_outputs_dir=args.teacher_outputs,
                    teacher_targets_dir=args.teacher_targets,
                    tokenized_dir=args.tokenized, out_dir=args.out or paths.student_dir(args.student),
                    ckpt_dir=args.checkpoints or paths.CHECKPOINTS_DIR / run_name,
                    live_dir=args.live_dir or paths.DVCLIVE_DIR / run_name,
                    resume_from=args.resume_from_checkpoint, max_target_length=max_target_length)


if __name__ == "__main__":
    cli.run("distill", main)
