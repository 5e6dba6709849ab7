"""int8 against fp32 for the same trained students: does quantizing a student for serving keep its quality?

    python -m tools.bench int8 --split validation                  # the workspace's students (models/student_*)
    python -m tools.bench int8 --split test --seeds 0 1 2 --out F  # the commit's students (seed 0) and the
                                                                   # seed-1, seed-2 experiments' students

Each student is decoded greedily (how it is served: kd.models.generation, the benchmark's prefix, lengths
and batch) in fp32 and with its linear layers in int8 (kd.models.generation.quantize_int8), on the whole
split. Per student and seed: rougeL and fact_precision in both, the paired bootstrap of int8 - fp32 over
the split's articles, and the decoding time of each (one run each, for orientation; speed claims come
from `python -m tools.bench serve`). Over seeds: the mean int8 - fp32 difference of each metric.

An experiment's students are read from DVC's cache: the experiment's dvc.lock names each model
directory's hash, and the cache holds its files (`dvc exp run` stores them there).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Mapping, Sequence

import yaml

from kd import paths
from kd.errors import ConfigError
from kd.git import git

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("rougeL", "fact_precision")


# ----------------------------------------------------------------------------- models of an experiment


def cache_file(repo: Path, md5: str) -> Path:
    """Where DVC 3 keeps an object: .dvc/cache/files/md5/<first two hex>/<the rest>."""
    return repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def materialize(repo: Path, rev: str, out: str, dest: Path) -> Path:
    """Copy the directory output `out` (e.g. models/student_seqkd) as recorded in `rev`'s dvc.lock from
    the DVC cache into `dest`; a ConfigError naming what is missing."""
    lock = yaml.safe_load(git(repo, "show", f"{rev}:dvc.lock"))
    md5 = next((o["md5"] for stage in lock["stages"].values() for o in stage.get("outs", [])
                if o["path"] == out), None)
    if md5 is None or not md5.endswith(".dir"):
        raise ConfigError(f"{rev}: dvc.lock has no directory output {out!r}")
    listing = cache_file(repo, md5)
    if not listing.is_file():
        raise ConfigError(f"{out} of {rev}: not in the DVC cache ({listing}); run the experiment here first")
    dest.mkdir(parents=True, exist_ok=True)
    for entry in json.loads(listing.read_text()):
        src = cache_file(repo, entry["md5"])
        if not src.is_file():
            raise ConfigError(f"{out}/{entry['relpath']} of {rev}: not in the DVC cache ({src})")
        (dest / entry["relpath"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest / entry["relpath"])
    return dest


def experiment_rev(repo: Path, seed: int) -> str:
    """The experiment seed-<seed> (kd.seeds' naming) run on HEAD."""
    from kd.seeds import experiment_name, experiment_refs, find_experiment

    head = git(repo, "rev-parse", "HEAD").strip()
    return find_experiment(experiment_refs(repo), experiment_name(seed), baseline=head).ref


# ----------------------------------------------------------------------------- scoring


def compare(fp32_rows: Sequence[Mapping], int8_rows: Sequence[Mapping], *, resamples: int = 1000) -> dict:
    """Per metric: the fp32 and int8 means and the paired bootstrap of int8 - fp32 over the same examples."""
    from kd.metrics.bootstrap import paired

    out = {}
    for key in METRICS:
        a, b = [r[key] for r in int8_rows], [r[key] for r in fp32_rows]
        out[key] = {"fp32": round(statistics.fmean(b), 4), "int8": round(statistics.fmean(a), 4),
                    "int8_minus_fp32": paired(a, b, resamples=resamples).as_dict(4)}
    return out


def check_student(model_dir: Path, records: Sequence[Mapping], *, split: str, bench, tok) -> dict:
    """fp32 and int8 greedy on `records`: compare() plus each one's decoding seconds."""
    from kd.evaluation.benchmark import example_rows
    from kd.models.generation import generate_all, load_summarizer

    rows, seconds = {}, {}
    for precision in ("fp32", "int8"):
        model, tokenizer = load_summarizer(model_dir, "cpu", int8=precision == "int8")
        start = time.perf_counter()
        predictions = generate_all(model, tokenizer, [r["article"] for r in records], batch_size=bench.batch_size,
                                   prefix=tok.prefix, max_source_length=tok.max_source_length, num_beams=1,
                                   max_new_tokens=bench.max_new_tokens)
        seconds[precision] = round(time.perf_counter() - start, 3)
        rows[precision] = example_rows(records, predictions, split=split, decoding="greedy")
    return {**compare(rows["fp32"], rows["int8"]), "seconds": seconds}


def summary(per_seed: Mapping[str, Mapping[str, Mapping]]) -> dict:
    """student -> metric -> the int8 - fp32 difference of the means, per seed and its mean over seeds."""
    out: dict = {}
    for seed, students in per_seed.items():
        for student, result in students.items():
            for key in METRICS:
                d = result[key]["int8"] - result[key]["fp32"]
                out.setdefault(student, {}).setdefault(key, {"per_seed": {}})["per_seed"][seed] = round(d, 4)
    for student in out.values():
        for stat in student.values():
            stat["mean"] = round(statistics.fmean(stat["per_seed"].values()), 4)
    return out


def check(*, split: str, seeds: Sequence[int] | None, params: Path, repo: Path = ROOT) -> dict:
    from kd.data.sources import read_jsonl
    from kd.params import load_section

    bench, tok = load_section("benchmark", params), load_section("tokenizer", params)
    students = list(load_section("kd", params).students)
    records = read_jsonl(repo / paths.raw_split(split))
    per_seed: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="int8check-") as tmp:
        for seed in seeds if seeds else [None]:
            label = "workspace" if seed is None else str(seed)
            rev = None if seed in (None, 0) else experiment_rev(repo, seed)
            per_seed[label] = {}
            for name in students:
                model_dir = paths.student_dir(name)
                if rev is not None:
                    model_dir = materialize(repo, rev, model_dir.as_posix(), Path(tmp) / label / name)
                else:
                    model_dir = repo / model_dir
                per_seed[label][name] = check_student(model_dir, records, split=split, bench=bench, tok=tok)
                r = per_seed[label][name]
                print(f"seed {label} {name}: rougeL fp32 {r['rougeL']['fp32']:.2f} int8 {r['rougeL']['int8']:.2f}, "
                      f"fact_precision fp32 {r['fact_precision']['fp32']:.2f} int8 {r['fact_precision']['int8']:.2f}; "
                      f"{r['seconds']}", flush=True)
    return {"split": split, "n_examples": len(records), "decoding": "greedy", "per_seed": per_seed,
            "int8_minus_fp32": summary(per_seed)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", choices=("validation", "test"), default="validation")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="training seeds: 0 is the commit's own students, others the seed-N experiments")
    p.add_argument("--params", type=Path, default=ROOT / paths.PARAMS_FILE)
    p.add_argument("--out", type=Path, default=None, help="write the comparison as JSON here")


def run(args) -> dict:
    """`python -m tools.bench int8`: measure, print, write --out."""
    result = check(split=args.split, seeds=args.seeds, params=args.params)
    for student, metrics in result["int8_minus_fp32"].items():
        print(f"{student}: int8 - fp32, mean over seeds: "
              + ", ".join(f"{k} {v['mean']:+.2f}" for k, v in metrics.items()))
    if args.out:
        from kd.io import atomic_write_json

        atomic_write_json(args.out, result)
    return result
