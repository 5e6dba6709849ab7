"""Budget checks, run by hand or by a scheduled job (not by the test suite: timings are not tests).

    python -m tools.bench pipeline   # fresh clone of HEAD, `dvc repro`: wall time and peak RSS (--keep DIR keeps it)
    python -m tools.bench quick      # the quick profile as documented (`python -m kd.profile quick --exp`)
    python -m tools.bench tests      # the README's test command: wall time
    python -m tools.bench gpu-smoke  # every stage on a tiny config with CUDA + bf16, 50 steps: throughput
    python -m tools.bench speed      # training loop vs Seq2SeqTrainer, cached vs live KD, generation
    python -m tools.bench distill-memory  # the seqkd_logit distill stage, teacher once vs live: peak RSS, time
    python -m tools.bench rehearsal  # the real-scale job offline: CNN/DM-sized data, T5-sized models (tools.rehearsal)
    python -m tools.bench gpu-real   # t5-base -> t5-small shapes, bf16, 512/128 on one GPU (tools.gpu_real)
    python -m tools.bench serve      # decoding at the published T5 shapes: greedy/beam 4, fp32/int8 (tools.servebench)
    python -m tools.bench int8       # the trained students in int8 vs fp32: quality, paired (tools.int8check)

Each prints a line per measurement, writes JSON (`--out`), and exits 1 when a budget is missed.
Budgets: pipeline <= 2400 s with peak RSS < 4 GiB, quick <= 180 s and tests <= 600 s (2-core CPU, no GPU);
gpu-smoke <= 300 s on one H100.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Optional
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGETS = {"pipeline": {"wall_s": 2400.0, "peak_rss_mb": 4096.0}, "quick": {"wall_s": 180.0, "peak_rss_mb": 4096.0},
           "tests": {"wall_s": 600.0},
           "gpu-smoke": {"wall_s": 300.0}, "distill-memory": {}}


def _timed(cmd: list[str], cwd: Path, *, code: Optional[Path] = None) -> dict:
    """Wall time and peak RSS of `cmd` and the descendants it waited for (tools.peakrss.measure: os.wait4
    reports this one child's tree, not the high-water mark of everything this process ever ran)."""
    from tools.peakrss import measure

    env = dict(os.environ, TQDM_DISABLE="1")
    if code is not None:  # stages run as `python -m stages.<name>` from a work dir outside the checkout
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")]))
    with tempfile.TemporaryFile("w+") as out:
        m = measure(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        if m["returncode"] != 0:
            out.seek(0)
            sys.stderr.write(out.read()[-8000:])
            raise SystemExit(f"{' '.join(cmd)} failed with exit status {m['returncode']}")
    return {"wall_s": round(m["wall_s"], 1), "peak_rss_mb": m["peak_rss_mb"]}


def bench_pipeline(profile: Optional[str] = None, keep: Optional[Path] = None) -> dict:
    """`dvc repro` in a fresh clone of HEAD, or with `profile` the documented run of that profile (`python
    -m kd.profile NAME --exp`: a DVC experiment in a temporary directory). With `keep` the clone is made
    there and kept, with its outputs, dvc.lock and logs/ (a profile's are in its experiment)."""
    from kd.git import git

    def run(clone: Path) -> dict:
        git(ROOT, "clone", "-q", str(ROOT), str(clone))
        if profile is not None:
            return _timed([sys.executable, "-m", "kd.profile", profile, "--exp"], clone)
        return _timed([sys.executable, "-m", "dvc", "repro", "--force"], clone)

    if keep is not None:
        if Path(keep).exists():
            raise SystemExit(f"--keep {keep}: already exists; name a new directory")
        return run(Path(keep))
    with tempfile.TemporaryDirectory() as tmp:
        return run(Path(tmp) / "t5-distill")


def bench_tests(args) -> dict:
    return _timed([sys.executable, "-m", "pytest", "-q"], ROOT)


def smoke_params(*, steps: int, device: str, precision: str, batch_size: int = 16, eval_size: int = 64,
                 max_new_tokens: int = 64) -> dict:
    """A tiny config whose teacher and students each train `steps` optimizer steps (one epoch); the
    benchmark decodes `eval_size` validation and test articles up to `max_new_tokens` each."""
    model = {"num_heads": 4, "dropout": 0.0, "epochs": 1, "lr": 0.001}
    return {
        "data": {"source": "builtin", "builtin": {"train_size": steps * batch_size, "validation_size": eval_size,
                                                  "test_size": eval_size, "n_distractors": 1, "entity_pool": 15}},
        "tokenizer": {"vocab_size": 2000, "max_source_length": 320, "max_target_length": 64},
        "teacher": {"d_model": 256, "d_ff": 1024, "d_kv": 64, "num_layers": 4, "num_decoder_layers": 4, **model},
        "student": {"d_model": 128, "d_ff": 512, "d_kv": 32, "num_layers": 2, "num_decoder_layers": 2, **model},
        "train": {"batch_size": batch_size, "device": device, "precision": precision, "checkpoint_every": 25},
        "kd": {"students": {
            "vanilla": {"teacher_input": "data/teacher_outputs", "targets": "data/tokenized", "label_weight": 0.1,
                        "losses": {"logit": {"weight": 0.9}}},
            "attention": {"teacher_input": "models/teacher", "targets": "data/tokenized", "losses": {"attention": {}}},
            # sequence-level KD, the real profile's distillation path: the teacher's summaries as targets
            "seqkd": {"teacher_input": "models/teacher", "targets": "data/teacher_targets", "target_splits": ["train"],
                      "with_references": True, "losses": {}}}},
        "teacher_outputs": {"device": device},
        "teacher_generate": {"splits": ["train"], "device": device, "num_beams": 2, "max_new_tokens": max_new_tokens,
                             "batch_size": 32},
        "benchmark": {"device": device, "num_beams": 2, "max_new_tokens": max_new_tokens, "batch_size": 32,
                      "speed_samples": min(64, eval_size)},
    }


def live_throughput(live_dir: Path) -> Optional[dict]:
    """A training run's steps, steps/s and tokens/s per process, from the summary its stage writes
    (dvclive/<run>/metrics.json: steps, train_seconds, train_tokens); None without one."""
    summary = Path(live_dir) / "metrics.json"
    if not summary.is_file():
        return None
    s = json.loads(summary.read_text())
    if "train_seconds" not in s:  # a teacher-side stage's cost summary (seconds only), not a training run
        return None
    seconds = max(float(s["train_seconds"]), 1e-9)
    return {"steps": int(s["steps"]), "steps_per_s": round(s["steps"] / seconds, 3),
            "tokens_per_s": round(s["train_tokens"] / seconds, 1)}


def bench_gpu_smoke(args) -> dict:
    """Every stage, as the pipeline runs it, on a tiny config: CUDA, bf16, `--steps` steps per model.
    The vanilla student reads the cached teacher outputs; the attention student runs the teacher live;
    the seqkd student learns from the teacher's summaries, made by teacher_generate (beam 2)."""

    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("gpu-smoke: no CUDA device here (run it on a GPU machine, or pass --device cpu "
                             "to exercise the same path on the CPU)")
    import yaml

    precision = "bf16" if args.device == "cuda" else args.precision
    result: dict = {"device": args.device, "precision": precision, "steps": args.steps}
    quality = [("benchmark", ["--name", n, "--model", m, "--out", f"benchmark_results/quality/{n}.json",
                              "--examples", f"benchmark_results/examples/{n}.jsonl"])
               for n, m in (("teacher", "models/teacher"), ("vanilla", "models/student_vanilla"),
                            ("attention", "models/student_attention"), ("seqkd", "models/student_seqkd"))]
    stages = [("download", []), ("tokenize", []), ("train_teacher", []), ("teacher_outputs", []),
              ("teacher_generate", []), ("distill", ["--student", "vanilla"]), ("distill", ["--student", "attention"]),
              ("distill", ["--student", "seqkd"]), *quality,
              ("benchmark", ["--name", "lead3", "--lead", "--out", "benchmark_results/quality/lead3.json",
                             "--examples", "benchmark_results/examples/lead3.jsonl"]),
              ("speed", []), ("report", [])]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "params.yaml").write_text(yaml.safe_dump(
            smoke_params(steps=args.steps, device=args.device, precision=precision, eval_size=args.eval_size,
                         max_new_tokens=args.max_new_tokens)))
        start = time.perf_counter()
        for stage, extra in stages:
            key = f"{stage}_{extra[1]}" if stage in ("distill", "benchmark") else stage
            t0 = time.perf_counter()
            _timed([sys.executable, "-m", f"stages.{stage}", *extra], work, code=ROOT)
            result[f"{key}_s"] = round(time.perf_counter() - t0, 1)
        result["wall_s"] = round(time.perf_counter() - start, 1)
        for run in sorted(p for p in (work / "dvclive").iterdir() if p.is_dir()):
            if (measured := live_throughput(run)) is not None:
                result[f"{run.name}_steps_per_s"] = measured["steps_per_s"]
                result[f"{run.name}_tokens_per_s"] = measured["tokens_per_s"]
        bench = json.loads((work / "benchmark_results" / "benchmark_results.json").read_text())
        for model, row in bench.items():
            if "samples_per_s" in row:
                result[f"{model}_generate_samples_per_s"] = row["samples_per_s"]
    return result


def bench_distill_memory(args) -> dict:
    """Runs the distill stage for a logit-KD student twice on the workspace's data, teacher and teacher
    summaries (`dvc repro` or `dvc pull` first), once per `teacher_pass` (once: the teacher's top-k over
    the training set computed once; live: the teacher on every batch), into temporary outputs; reports
    each run's peak RSS, wall time and training throughput."""
    import yaml

    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    result: dict = {"student": args.student}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("once", "live"):
            work = Path(tmp) / mode
            work.mkdir()
            base["kd"]["students"][args.student]["teacher_pass"] = mode
            (work / "params.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
            cmd = [sys.executable, "-m", "stages.distill", "--student", args.student,
                   "--params", str(work / "params.yaml"), "--out", str(work / "model"),
                   "--checkpoints", str(work / "ckpt"), "--live-dir", str(work / "live"),
                   "--log-dir", str(work / "logs")]
            measured = _timed(cmd, ROOT)
            throughput = live_throughput(work / "live")
            result |= {f"{mode}_{k}": v for k, v in measured.items()}
            result[f"{mode}_steps_per_s"] = throughput["steps_per_s"] if throughput else None
    result["once_over_live_peak_rss"] = round(result["once_peak_rss_mb"] / result["live_peak_rss_mb"], 3)
    result["once_over_live_wall"] = round(result["once_wall_s"] / result["live_wall_s"], 3)
    return result


# Checks that live in their own module: `add_arguments(parser)` brings their options (--out included),
# `run(args) -> dict` measures, prints and writes its JSON, and says {"ok": bool} against its own budgets.
MODULE_CHECKS = {"speed": "tools.speedbench", "rehearsal": "tools.rehearsal", "gpu-real": "tools.gpu_real",
                 "serve": "tools.servebench", "int8": "tools.int8check"}


def _module(check: str):
    import importlib

    return importlib.import_module(MODULE_CHECKS[check])


CHECKS = {"pipeline": lambda args: bench_pipeline(keep=args.keep), "quick": lambda args: bench_pipeline("quick", args.keep), "tests": bench_tests, "gpu-smoke": bench_gpu_smoke,
          "distill-memory": bench_distill_memory,
          **{name: (lambda args, name=name: _module(name).run(args)) for name in MODULE_CHECKS}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="check", required=True)
    for name in CHECKS:
        q = sub.add_parser(name)
        if name not in MODULE_CHECKS:  # those bring their own options, --out included
            q.add_argument("--out", type=Path, default=None, help="write the measurements as JSON here")
        if name in ("pipeline", "quick"):
            q.add_argument("--keep", type=Path, default=None, metavar="DIR",
                           help="clone into DIR (new) and keep it, outputs and logs included")
        if name == "gpu-smoke":
            q.add_argument("--steps", type=int, default=50, help="optimizer steps per model")
            q.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                           help="cpu runs the same path without a GPU (a check of the script, not of speed)")
            q.add_argument("--precision", choices=["no", "bf16"], default="no", help="with --device cpu")
            q.add_argument("--eval-size", type=int, default=64, help="validation and test articles")
            q.add_argument("--max-new-tokens", type=int, default=64, help="the benchmark's decoding length")
        if name == "distill-memory":
            q.add_argument("--student", default="seqkd_logit", help="a logit-KD student under kd.students")
        if name in MODULE_CHECKS and name in (sys.argv[1:] if argv is None else argv)[:1]:
            _module(name).add_arguments(q)  # imported only when asked for: each has its own dependencies
    args = p.parse_args(argv)
    result = CHECKS[args.check](args)
    if args.check in MODULE_CHECKS:
        return 0 if result.get("ok", True) else 1
    budget = BUDGETS[args.check]
    if args.check == "gpu-smoke" and args.device == "cpu":
        budget = {}  # the budget is one H100's; on the CPU the run checks the script, not its speed
    ok = all(result[k] <= limit for k, limit in budget.items())
    for key, value in result.items():
        limit = budget.get(key)
        verdict = "" if limit is None else (" ok" if value <= limit else f" OVER (budget {limit})")
        print(f"{args.check}.{key}: {value}{verdict}")
    if args.out:
        args.out.write_text(json.dumps({"check": args.check, **result, "budget": budget, "ok": ok}, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
