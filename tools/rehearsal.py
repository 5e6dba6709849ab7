"""The real-scale job rehearsed offline: CNN/DailyMail-sized data, T5-sized models, the real stage scripts.

    python -m tools.bench rehearsal --out rehearsal.json            # full size (35-60 min on 2 cores, ~12 GB)
    python -m tools.bench rehearsal --scale 0.01 --out r.json       # 1% of the articles
    python -m tools.bench rehearsal --tiny --scale 0.0001           # tiny models and corpus: the test suite's

What it does, in a work directory (a temp dir unless --work-dir), everything but the pretrained weights
and the GPU:

1. Corpus (tools.rehearsal_corpus): CNN/DailyMail's split sizes times --scale, its published length
   statistics, sentences of the real sample; JSON lines in a local dataset directory that the profile
   reads with `data.source: hub` (`datasets.load_dataset(<dir>)`, the real job's code path).
2. Stand-ins for the pretrained models, saved with `save_pretrained`: a SentencePiece tokenizer trained
   on the same text (BPE, --vocab pieces asked; the model keeps T5's 32,128 embeddings), a t5-base-shaped
   teacher, a t5-small-shaped and a flan-t5-small-shaped (T5 v1.1: gated-GELU, 8+8 layers, 6 heads)
   student, random weights.
3. params.yaml: the repo's, with the real profile (`kd.profile.apply("cnndm-t5-base-small")`), then only
   what a rehearsal must change (see `overrides`): the data and model paths, CPU, this machine's cores,
   batch sizes and slice sizes. Source/target lengths (512/128), top-k 64 and beam 4 stay.
4. download and tokenize over the whole corpus with `dvc repro -s <stage>` in a fresh git + DVC repo
   (the repo's kd/, stages/, dvc.yaml and .dvc/config), so the DVC cache's disk is measured; then every
   later stage script on slices of the tokenized data at the real lengths: train_teacher and each
   student's distill on --train-rows articles (a few optimizer steps), teacher_outputs on the same rows,
   teacher_generate and the benchmark on --generate-rows articles (beam 4: random weights rarely stop
   early, so those timings are worst cases), speed on one batch, report.
5. Per stage: wall time, peak RSS (os.wait4 of the stage's process tree from a small launcher,
   tools.peakrss: its largest process, DVC's own included; with tokenizer.num_proc > 1 the workers are not summed), disk written (workspace, DVC
   cache and the datasets cache, each inode once: tools.diskuse), throughput. Then the full job
   extrapolated: on this CPU (measured rates times the full counts and the profile's epochs) and on one
   H100 (FLOPs counted by tools.flops against its 989 TFLOP/s dense bf16 peak at an assumed utilisation:
   an estimate), and the teacher-outputs cache's full size.

Budgets (exit 1 past any): peak RSS <= 16 GiB in every stage (the data stages are measured at --scale;
the slice stages' memory does not grow with the data: datasets are memory-mapped, batches bounded), no
DVC output stored twice (workspace + cache bytes, each inode once, against the outputs' apparent size),
the whole rehearsal within 45 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import yaml

from kd.errors import ConfigError
from kd.git import git
from kd.report.format import human_bytes, human_seconds
from tools.flops import (H100_BF16_FLOPS, VOCAB_SIZE, Shape, forward_flops, generate_flops, gpu_seconds,
                      training_flops)
from tools.peakrss import measured

ROOT = Path(__file__).resolve().parents[1]
PROFILE = "cnndm-t5-base-small"
BUDGETS = {"peak_rss_mb": 16 * 1024.0, "stored_ratio": 1.05, "wall_s": 45 * 60.0}
_T5 = {"d_kv": 64, "feed_forward_proj": "relu", "tie_word_embeddings": True}
# T5 v1.1 (flan-t5): gated-GELU, no output scaling, and an LM head of its own. transformers 5's T5Config
# always says tied and saves one tensor for both, so the stand-in's file is written as the released
# checkpoint's (write_own_head): both tensors, tie_word_embeddings false; 77.0M parameters at flan-t5-small's shape.
_V11 = {"d_kv": 64, "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False}
# The hub names the profile uses -> the shapes of their stand-ins (the published configs).
SHAPES = {
    "t5-base": dict(_T5, d_model=768, d_ff=3072, num_layers=12, num_decoder_layers=12, num_heads=12),
    "t5-small": dict(_T5, d_model=512, d_ff=2048, num_layers=6, num_decoder_layers=6, num_heads=8),
    "google/flan-t5-small": dict(_V11, d_model=512, d_ff=1024, num_layers=8, num_decoder_layers=8, num_heads=6),
}
TINY_SHAPES = {  # --tiny: the same three kinds, small enough for the test suite
    "t5-base": dict(_T5, d_model=32, d_ff=64, d_kv=8, num_layers=2, num_decoder_layers=2, num_heads=4),
    "t5-small": dict(_T5, d_model=16, d_ff=32, d_kv=8, num_layers=1, num_decoder_layers=1, num_heads=2),
    "google/flan-t5-small": dict(_V11, d_model=16, d_ff=16, d_kv=8, num_layers=2, num_decoder_layers=2,
                                 num_heads=2),
}
# --tiny decodes this many tokens (not the profile's 64 / 128): the test suite's time goes into decoding
TINY_MAX_NEW_TOKENS = 16
DVC_STAGES = ("download", "tokenize")
DVC_OUTPUTS = ("data/raw", "data/tokenizer", "data/tokenized")
TRAIN_SLICE, GENERATE_SLICE = "data/rehearsal_slices/train", "data/rehearsal_slices/generate"


# ----------------------------------------------------------------------------- pure helpers


def scaled_seconds(measured_s: float, measured_units: float, full_units: float) -> float:
    """A measured time scaled linearly from `measured_units` of work to `full_units`."""
    return measured_s * full_units / measured_units


def set_dotted(mapping: dict, dotted: str, value) -> None:
    """mapping["a"]["b"] = value for "a.b", making the mappings on the way."""
    *path, last = dotted.split(".")
    for key in path:
        mapping = mapping.setdefault(key, {})
    mapping[last] = value


def logical_bytes(paths: Iterable[Path]) -> int:
    """Apparent size of the files under `paths` as a reader sees them (symlinks followed): what one copy
    of the outputs takes."""
    total = 0
    for top in paths:
        for dirpath, _, filenames in os.walk(top):
            total += sum(os.stat(os.path.join(dirpath, f)).st_size for f in filenames)
    return total


def stored_ratio(outputs: Iterable[Path], cache: Path) -> dict:
    """Bytes the outputs occupy in the workspace and the DVC cache together (tools.diskuse: apparent sizes,
    each inode once, symlinks count nothing) over one copy of them: ~1 when stored once, ~2 when the
    cache holds a second copy."""
    from tools.diskuse import disk_usage

    outputs = list(outputs)
    stored, logical = disk_usage([*outputs, cache]), logical_bytes(outputs)
    return {"stored_bytes": stored, "logical_bytes": logical, "ratio": round(stored / max(logical, 1), 3)}


# ----------------------------------------------------------------------------- setup


def write_own_head(path: Path, seed: int) -> int:
    """Give the checkpoint saved in `path` an output head of its own, as T5 v1.1 / flan-t5 checkpoints have:
    a random `lm_head.weight` beside `shared.weight` and `tie_word_embeddings: false` in config.json (without
    the `scale_decoder_outputs` key transformers 5 adds, which a released config does not have). Returns
    the parameters it added."""
    import json

    import torch
    from safetensors.torch import load_file, save_file

    weights = {k: v.clone() for k, v in load_file(str(path / "model.safetensors")).items()}
    weights["lm_head.weight"] = torch.randn(weights["shared.weight"].shape,
                                            generator=torch.Generator().manual_seed(seed))
    save_file(weights, str(path / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((path / "config.json").read_text())
    config.pop("scale_decoder_outputs", None)
    (path / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": False}, indent=2))
    return weights["lm_head.weight"].numel()


def build_standins(out: Path, texts: Iterable[str], *, shapes: dict, vocab: int, seed: int) -> dict:
    """Tokenizer + one random-weight model per shape, each saved with save_pretrained in out/<name>."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    from kd.data.tokenization import train_sentencepiece

    tokenizer = train_sentencepiece(texts, vocab)
    dirs, params = {}, {}
    for i, (name, shape) in enumerate(shapes.items()):
        torch.manual_seed(seed + i)
        cfg = T5Config(vocab_size=VOCAB_SIZE, **shape, pad_token_id=tokenizer.pad_token_id,
                       eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id)
        model = T5ForConditionalGeneration(cfg)
        path = out / name.replace("/", "--")
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        dirs[name], params[name] = path, sum(p.numel() for p in model.parameters())
        if shape.get("tie_word_embeddings") is False:
            params[name] += write_own_head(path, seed + i)
        del model
    return {"dirs": dirs, "parameters": params, "tokenizer_pieces": len(tokenizer), "tokenizer_asked": vocab}


def overrides(params: dict, *, corpus: Path, hf_cache: Path, standins: dict[str, Path], num_proc: int,
              batch_size: int, generate_rows: int, max_new_tokens: Optional[int] = None) -> dict:
    """The dotted keys the rehearsal changes in the profile's params, and their values; every hub model
    name in the profile must have a stand-in. `max_new_tokens` (--tiny only) shortens decoding."""

    def local(name: Optional[str], key: str) -> str:
        if name not in standins:
            raise ConfigError(f"rehearsal: {key} is {name!r}, which has no stand-in; "
                              f"stand-ins: {sorted(standins)}")
        return str(standins[name])

    changed = {"data.hub.name": str(corpus), "data.hub.config": None, "data.hub.cache_dir": str(hf_cache),
               "tokenizer.num_proc": num_proc,
               "teacher.pretrained": local(params["teacher"].get("pretrained"), "teacher.pretrained"),
               "student.pretrained": local(params["student"].get("pretrained"), "student.pretrained"),
               "train.device": "cpu", "train.batch_size": batch_size,
               "teacher_outputs.device": "cpu", "teacher_outputs.batch_size": batch_size,
               "teacher_generate.device": "cpu", "teacher_generate.batch_size": batch_size,
               "benchmark.device": "cpu", "benchmark.batch_size": batch_size, "benchmark.max_samples": generate_rows,
               "benchmark.speed_samples": batch_size, "benchmark.warmup_batches": 0}
    if max_new_tokens is not None:
        changed |= {"benchmark.max_new_tokens": max_new_tokens, "teacher_generate.max_new_tokens": max_new_tokens}
    for name, recipe in params["kd"]["students"].items():
        model = (recipe.get("student") or {}).get("pretrained")
        if model is not None:
            key = f"kd.students.{name}.student.pretrained"
            changed[key] = local(model, key)
    return changed


def rehearsal_params(path: Path, **kwargs) -> tuple[dict, dict, dict]:
    """The repo's params.yaml with the real profile applied, then `overrides`; validated, written to
    `path`. Returns (the profile's params, the rehearsal's, the keys changed)."""
    import copy

    from kd import profile
    from kd.params import SECTIONS, section_from

    shutil.copyfile(ROOT / "params.yaml", path)
    # The copy is the rehearsal's own, untracked in its fresh repo: nothing of the user's to protect.
    profile.apply(PROFILE, path, force=True)
    params = yaml.safe_load(path.read_text())
    real = copy.deepcopy(params)
    changed = overrides(params, **kwargs)
    for key, value in changed.items():
        set_dotted(params, key, value)
    for section in SECTIONS:
        section_from(params, section)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return real, params, changed


def make_repo(repo: Path, site_cache: Path, env: dict) -> None:
    """A fresh git + DVC repo holding the pipeline's code, dvc.yaml and DVC config."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("kd", "stages"):
        shutil.copytree(ROOT / name, repo / name, ignore=ignore)
    for name in ("dvc.yaml", ".dvcignore"):
        if (ROOT / name).is_file():
            shutil.copyfile(ROOT / name, repo / name)
    git(repo, "init", "-q", env=env)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=repo, env=env, check=True, capture_output=True)
    shutil.copyfile(ROOT / ".dvc" / "config", repo / ".dvc" / "config")  # link types, as the real repo has them
    # DVC's hash index lives outside the repo by default; keep it in the work dir, measured and removed.
    subprocess.run([sys.executable, "-m", "dvc", "config", "--local", "core.site_cache_dir", str(site_cache)],
                   cwd=repo, env=env, check=True, capture_output=True)


def commit_all(repo: Path, env: dict) -> None:
    identity = ["-c", "user.name=kd rehearsal", "-c", "user.email=rehearsal@localhost"]
    git(repo, "add", "-A", env=env)
    git(repo, *identity, "commit", "-q", "-m", "rehearsal: code and params", env=env)


def write_slice(tokenized: Path, out: Path, rows: dict[str, int]) -> dict[str, int]:
    """The first `rows[split]` rows of each split of a tokenized DatasetDict, saved to `out`."""
    import datasets

    datasets.disable_progress_bars()
    full = datasets.load_from_disk(str(tokenized))
    part = datasets.DatasetDict({s: full[s].select(range(min(n, len(full[s])))) for s, n in rows.items()})
    part.save_to_disk(str(out))
    return {s: len(d) for s, d in part.items()}


def token_stats(tokenized: Path) -> dict:
    """Rows and mean source/target tokens (unpadded) per split of a tokenized DatasetDict."""
    import datasets
    import pyarrow.compute as pc

    out = {}
    for split, ds in datasets.load_from_disk(str(tokenized)).items():
        n = len(ds)
        src, tgt = (pc.sum(pc.list_value_length(ds.data.column(c))).as_py() or 0 for c in ("input_ids", "labels"))
        out[split] = {"rows": n, "mean_source_tokens": round(src / max(n, 1), 1),
                      "mean_target_tokens": round(tgt / max(n, 1), 1)}
    return out


# ----------------------------------------------------------------------------- measuring


class Rehearsal:
    """The work directory, the stage runs and their measurements."""

    def __init__(self, root: Path):
        self.root, self.repo = root, root / "repo"
        self.logs = root / "stage-output"
        self.hf_cache = root / "hf-datasets-cache"
        self.stages: list[dict] = []
        bin_dir = str(Path(sys.executable).parent)  # dvc.yaml's `python` is this interpreter
        self.env = dict(os.environ, TQDM_DISABLE="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
                        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")

    def areas(self) -> dict[str, int]:
        """Bytes stored in the workspace, the DVC cache, the datasets cache and all of them together
        (tools.diskuse: each inode once, so a hard-linked output counts once in `total`)."""
        from tools.diskuse import disk_usage

        dvc = self.repo / ".dvc"
        workspace = [p for p in (*self.repo.iterdir(), *dvc.iterdir()) if p not in (dvc, dvc / "cache")]
        return {"workspace": disk_usage(workspace), "dvc_cache": disk_usage([dvc / "cache"]),
                "hf_cache": disk_usage([self.hf_cache]), "total": disk_usage([self.repo, self.hf_cache])}

    def run(self, name: str, cmd: list[str], kind: str) -> dict:
        """Runs `cmd` in the repo; records wall time, peak RSS and the disk it added (per area, and in
        all, each inode once) under `name`. A failing stage stops the rehearsal with its output's tail."""
        before = self.areas()
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.txt"
        with open(log, "w") as out:  # kept: a stage's output is what explains a failure or a number
            # From a small launcher (tools.peakrss): started straight from this process, which holds the
            # stand-ins, a stage's peak RSS would be at least this process's.
            m = measured(cmd, cwd=self.repo, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        wall, code, peak_mb = m["wall_s"], m["returncode"], m["peak_rss_mb"]
        if code != 0:
            tail = log.read_text(errors="replace")[-4000:]
            raise SystemExit(f"rehearsal: stage {name} failed (exit {code}): {' '.join(cmd)}\n{tail}\n"
                             f"(full output: {log})")
        after = self.areas()
        disk = {area: after[area] - before[area] for area in after}
        record = {"stage": name, "kind": kind, "wall_s": round(wall, 2),
                  "peak_rss_mb": peak_mb, "disk_bytes": disk}
        self.stages.append(record)
        print(f"rehearsal: {name} ({kind}): {wall:.1f} s, peak RSS {peak_mb:.0f} MB, "
              f"disk +{human_bytes(disk['total'])}", file=sys.stderr, flush=True)
        return record

    def stage_script(self, name: str, script: str, *args: str, kind: str) -> dict:
        return self.run(name, [sys.executable, "-m", f"stages.{script}", *args], kind)


# ----------------------------------------------------------------------------- the full job, extrapolated


@dataclass(frozen=True)
class FullJob:
    """What the real job processes (the profile's counts and settings) and what the rehearsal measured on."""

    counts: dict  # split -> articles in the real job (CNN/DailyMail, capped by data.max_<split>_samples)
    rehearsal_rows: dict  # split -> rows the rehearsal's full-size stages processed
    tokens: dict  # split -> mean source/target tokens, measured on the rehearsal's tokenized corpus
    profile: dict  # the profile's params, before the rehearsal's overrides
    utilisation: float
    decode_utilisation: float

    @property
    def src(self) -> float:
        return self.tokens["train"]["mean_source_tokens"]

    @property
    def tgt(self) -> float:
        return self.tokens["train"]["mean_target_tokens"]

    @property
    def scale(self) -> float:
        """Full-job articles over the rehearsal's, for the stages that read every split."""
        return sum(self.counts.values()) / sum(self.rehearsal_rows.values())

    @property
    def benchmark_articles(self) -> int:
        cap = self.profile["benchmark"].get("max_samples")
        return sum(min(self.counts[s], cap or self.counts[s]) for s in ("validation", "test"))


def full_counts(profile: dict) -> dict:
    from tools.rehearsal_corpus import CNNDM_SIZES

    data = profile["data"]
    return {s: min(n, data.get(f"max_{s}_samples") or n) for s, n in CNNDM_SIZES.items()}


def _throughput(repo: Path, model: str) -> Optional[dict]:
    """The training stage's throughput, from the dvclive summary it wrote in `repo`."""
    from kd.report.results import live_run
    from tools.bench import live_throughput

    return live_throughput(repo / "dvclive" / live_run(model))


def annotate(reh: Rehearsal, job: FullJob, *, shapes: dict[str, Shape], epochs: dict[str, int],
             live_teacher: dict[str, bool], slice_rows: int, generate_rows: dict, params: dict) -> None:
    """Adds to each stage record its throughput and the full job's estimate: `cpu_s` (this CPU, measured
    rate x full counts), `h100_s` (FLOPs / (989 TFLOP/s x utilisation); None for CPU-only stages) and
    `disk_bytes` (this stage's disk grown to the full counts)."""
    tok = job.src + job.tgt
    train_n = job.counts["train"]
    tg, bench = job.profile["teacher_generate"], job.profile["benchmark"]
    bench_rows = sum(generate_rows[s] for s in ("validation", "test"))
    speed_units = job.profile["benchmark"].get("speed_samples", 64) / params["benchmark"]["speed_samples"]

    def gen(shape: Shape, beams: int, new: int) -> float:
        return generate_flops(shape, job.src, new, beams)

    for r in reh.stages:
        name, wall = r["stage"], r["wall_s"]
        rate, cpu, gpu, disk_scale = None, None, None, 1.0
        if name in DVC_STAGES:
            rate = {"value": round(sum(job.rehearsal_rows.values()) / wall, 1), "unit": "articles/s"}
            cpu, disk_scale = wall * job.scale, job.scale
        elif name == "train_teacher" or name.startswith("distill_"):
            model = "teacher" if name == "train_teacher" else name.removeprefix("distill_")
            measured = _throughput(reh.repo, model)
            if measured:
                rate = {"value": measured["tokens_per_s"], "unit": "tokens/s", "steps": measured["steps"]}
                cpu = epochs[model] * train_n * tok / measured["tokens_per_s"]
            flops = training_flops(shapes[model], job.src, job.tgt)
            if live_teacher.get(model):
                flops += forward_flops(shapes["teacher"], job.src, job.tgt)
            gpu = gpu_seconds(epochs[model] * train_n * flops, job.utilisation)
        elif name == "teacher_outputs":
            manifest = json.loads((reh.repo / "data" / "teacher_outputs" / "manifest.json").read_text())
            rate = {"value": round(manifest["n_tokens"] / wall, 1), "unit": "target tokens/s"}
            cpu = scaled_seconds(wall, slice_rows, train_n)
            gpu = gpu_seconds(train_n * forward_flops(shapes["teacher"], job.src, job.tgt), job.utilisation)
            # Per target token (the cache's rows), as the full cache's size below: the slice's few rows
            # need not have the corpus' mean summary length.
            disk_scale = train_n * job.tgt / manifest["n_tokens"]
        elif name == "teacher_generate":
            rate = {"value": round(generate_rows["train"] / wall, 3), "unit": "articles/s (worst case)"}
            cpu = scaled_seconds(wall, generate_rows["train"], train_n)
            gpu = gpu_seconds(train_n * gen(shapes["teacher"], tg["num_beams"], tg["max_new_tokens"]),
                              job.decode_utilisation)
            disk_scale = train_n / generate_rows["train"]
        elif name.startswith("benchmark_"):
            model = name.removeprefix("benchmark_")
            unit = "articles/s (beam + greedy, worst case)" if model in shapes else "articles/s"
            rate = {"value": round(bench_rows / wall, 3), "unit": unit}
            cpu = scaled_seconds(wall, bench_rows, job.benchmark_articles)
            if model in shapes:
                per_article = sum(gen(shapes[model], b, bench["max_new_tokens"]) for b in {bench["num_beams"], 1})
                gpu = gpu_seconds(job.benchmark_articles * per_article, job.decode_utilisation)
        elif name == "speed":
            cpu = wall * speed_units
            per_round = sum(gen(s, bench["num_beams"], bench["max_new_tokens"]) for s in shapes.values())
            gpu = gpu_seconds(bench.get("speed_samples", 64) * bench.get("speed_repeats", 3) * per_round,
                              job.decode_utilisation)
        else:  # report: small inputs whatever the data's size
            cpu = wall
        r["throughput"] = rate
        r["full"] = {"cpu_s": None if cpu is None else round(cpu, 1), "h100_s": None if gpu is None else round(gpu, 1),
                     "disk_bytes": round(r["disk_bytes"]["total"] * disk_scale)}


def verdicts(reh: Rehearsal, stored: dict, wall: float, scale: float) -> dict:
    worst = max(reh.stages, key=lambda r: r["peak_rss_mb"])
    rss = {"value": worst["peak_rss_mb"], "stage": worst["stage"], "limit": BUDGETS["peak_rss_mb"]}
    if scale < 1:
        rss["note"] = f"download and tokenize measured at --scale {scale}, not at full size"
    return {"peak_rss_mb": rss | {"ok": rss["value"] <= rss["limit"]},
            "stored_once": {"value": stored["ratio"], "limit": BUDGETS["stored_ratio"],
                            "ok": stored["ratio"] <= BUDGETS["stored_ratio"], **stored},
            "wall_s": {"value": round(wall, 1), "limit": BUDGETS["wall_s"], "ok": wall <= BUDGETS["wall_s"]}}


def table(result: dict) -> str:
    """stage | measured/estimate | wall | peak RSS | disk | throughput, measured rows then the full job."""
    rows = [("stage", "measured/estimate", "wall", "peak RSS", "disk", "throughput")]
    for r in result["stages"]:
        rate = r.get("throughput")
        rows.append((r["stage"], r["kind"], human_seconds(r["wall_s"]), f"{r['peak_rss_mb']:.0f} MB",
                     human_bytes(r["disk_bytes"]["total"]),
                     "-" if not rate else f"{rate['value']:g} {rate['unit']}"))
    job = result["full_job"]
    label = f"estimate: CPU here / H100 at {job['utilisation']:.0%} (decoding {job['decode_utilisation']:.0%})"
    for r in result["stages"]:
        full = r["full"]
        rows.append((f"{r['stage']} (full job)", label,
                     f"{human_seconds(full['cpu_s'])} / {human_seconds(full['h100_s'])}", "-",
                     human_bytes(full["disk_bytes"]), "-"))
    rows.append(("whole job (full)", label, f"{human_seconds(job['cpu_s'])} / {human_seconds(job['h100_box_s'])}",
                 "-", human_bytes(job["disk_bytes"]), "-"))
    rows.append(("teacher_outputs cache (full)", "estimate from the slice's bytes/token", "-", "-",
                 human_bytes(job["teacher_outputs_bytes"]), "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    for key, v in result["budgets"].items():
        lines.append(f"budget {key}: {v['value']} (limit {v['limit']}) {'ok' if v['ok'] else 'OVER'}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the command


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=None, help="write the measurements as JSON here")
    p.add_argument("--scale", type=float, default=1.0, help="share of CNN/DailyMail's articles (1.0: all)")
    p.add_argument("--tiny", action="store_true",
                   help=f"tiny model shapes and {TINY_MAX_NEW_TOKENS} decoded tokens (the test suite's); "
                        "the corpus is --scale's")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="an empty directory to work in, kept afterwards (default: a temp dir, removed)")
    p.add_argument("--sample", type=Path, default=ROOT.parent / "shared" / "data" / "cnn_dailymail",
                   help="the real CNN/DailyMail sample the corpus' sentences come from (else the builtin corpus)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-proc", type=int, default=os.cpu_count() or 1, help="tokenizer.num_proc")
    p.add_argument("--batch-size", type=int, default=2, help="every slice stage's batch (1-4)")
    p.add_argument("--train-rows", type=int, default=4, help="training articles of the slice stages")
    p.add_argument("--generate-rows", type=int, default=8,
                   help="articles teacher_generate summarises, and per split the benchmark (at most 32)")
    p.add_argument("--vocab", type=int, default=32_000, help="SentencePiece pieces asked of the stand-in tokenizer")
    p.add_argument("--utilisation", type=float, default=0.4, help="assumed share of the H100's bf16 peak: training")
    p.add_argument("--decode-utilisation", type=float, default=0.1,
                   help="assumed share of the peak for beam search (memory- and step-bound)")


def _check_args(args) -> None:
    checks = [(0 < args.scale <= 1, "--scale must be in (0, 1]"),
              (1 <= args.batch_size <= 4, "--batch-size must be 1-4"),
              (1 <= args.generate_rows <= 32, "--generate-rows must be 1-32"),
              (args.train_rows >= args.batch_size, "--train-rows must be >= --batch-size"),
              (args.num_proc >= 1, "--num-proc must be >= 1"),
              (0 < args.utilisation <= 1 and 0 < args.decode_utilisation <= 1, "utilisations must be in (0, 1]")]
    for ok, message in checks:
        if not ok:
            raise SystemExit(f"rehearsal: {message}")
    if args.work_dir is not None and args.work_dir.exists() and any(args.work_dir.iterdir()):
        raise SystemExit(f"rehearsal: --work-dir {args.work_dir} is not empty")


def run(args) -> dict:
    _check_args(args)
    root = args.work_dir or Path(tempfile.mkdtemp(prefix="kd-rehearsal-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        result = rehearse(args, root.resolve())
    finally:
        if args.work_dir is None:
            shutil.rmtree(root, ignore_errors=True)
    print(table(result))
    if args.out:
        from kd.io import atomic_write_json

        atomic_write_json(args.out, result)
    return result


def rehearse(args, root: Path) -> dict:
    start = time.perf_counter()
    reh = Rehearsal(root)
    setup, standin_dirs = prepare(args, root)
    reh.repo.mkdir()
    make_repo(reh.repo, root / "dvc-site-cache", reh.env)
    profile_params, params, changed = rehearsal_params(
        reh.repo / "params.yaml", corpus=root / "corpus", hf_cache=reh.hf_cache, standins=standin_dirs,
        num_proc=args.num_proc, batch_size=args.batch_size, generate_rows=args.generate_rows,
        max_new_tokens=TINY_MAX_NEW_TOKENS if args.tiny else None)
    commit_all(reh.repo, reh.env)  # dvclive, as the training stages use it, wants a commit to start from

    size_kind = "full size" if args.scale == 1 else f"scale {args.scale:g}"
    for stage in DVC_STAGES:
        reh.run(stage, [sys.executable, "-m", "dvc", "repro", "-s", stage], f"measured, {size_kind}, dvc repro")
    stored = stored_ratio([reh.repo / p for p in DVC_OUTPUTS], reh.repo / ".dvc" / "cache")
    tokenized = reh.repo / "data" / "tokenized"
    tokens = token_stats(tokenized)
    evaluated = {"validation": args.batch_size, "test": args.batch_size}  # one validation batch per epoch
    slice_rows = write_slice(tokenized, reh.repo / TRAIN_SLICE, {"train": args.train_rows, **evaluated})["train"]
    generate_rows = write_slice(tokenized, reh.repo / GENERATE_SLICE,
                                {"train": args.generate_rows, "validation": 1, "test": 1})["train"]
    run_slice_stages(reh, params, train_rows=slice_rows, generate_rows=generate_rows, batch_size=args.batch_size)

    job = FullJob(counts=full_counts(profile_params), rehearsal_rows={s: v["rows"] for s, v in tokens.items()},
                  tokens=tokens, profile=profile_params, utilisation=args.utilisation,
                  decode_utilisation=args.decode_utilisation)
    bench_rows = {s: min(args.generate_rows, tokens[s]["rows"]) for s in ("validation", "test")}
    full_job = extrapolate(reh, job, params, slice_rows=slice_rows,
                           generate_rows={"train": generate_rows, **bench_rows})
    wall = time.perf_counter() - start
    budgets = verdicts(reh, stored, wall, args.scale)
    return {"check": "rehearsal", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "host": {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version()},
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "check"},
            "setup": setup, "overrides": changed, "tokens": tokens, "stages": reh.stages, "full_job": full_job,
            "budgets": budgets, "wall_s": round(wall, 1), "ok": all(v["ok"] for v in budgets.values())}


def prepare(args, root: Path) -> tuple[dict, dict[str, Path]]:
    """The corpus and the stand-in models; what they are, how long they took and their disk."""
    from tools.diskuse import disk_usage
    from tools.rehearsal_corpus import load_pool, scaled_sizes, write_corpus

    pool = load_pool(args.sample)
    sizes = scaled_sizes(args.scale, minimum=max(args.train_rows, args.generate_rows, 2))
    t = time.perf_counter()
    corpus = write_corpus(root / "corpus", pool, sizes, args.seed)
    corpus |= {"wall_s": round(time.perf_counter() - t, 1), "disk_bytes": disk_usage([root / "corpus"])}
    t = time.perf_counter()
    texts = (" ".join(s for s, _ in doc) for doc in (*pool.articles, *pool.highlights))
    standins = build_standins(root / "standins", texts, shapes=TINY_SHAPES if args.tiny else SHAPES,
                              vocab=args.vocab, seed=args.seed)
    dirs = standins.pop("dirs")
    standins |= {"wall_s": round(time.perf_counter() - t, 1), "disk_bytes": disk_usage([root / "standins"]),
                 "model_vocab_size": VOCAB_SIZE}
    return {"corpus": corpus, "standins": standins}, dirs


def extrapolate(reh: Rehearsal, job: FullJob, params: dict, *, slice_rows: int, generate_rows: dict) -> dict:
    """Each stage's full-job estimate (`annotate`) and the whole job's: CPU time, H100-box time, disk and
    the teacher-outputs cache's size."""
    from kd.params import section_from
    from kd.students.recipe import resolve

    kd, student, train = (section_from(params, s) for s in ("kd", "student", "train"))
    recipes = {name: resolve(name, kd, student, train) for name in kd.students}
    shapes = {"teacher": _shape(params["teacher"]["pretrained"])} | {
        name: _shape(r.student.pretrained) for name, r in recipes.items()}
    epochs = {"teacher": params["teacher"]["epochs"]} | {name: r.student.epochs for name, r in recipes.items()}
    live = {name: bool(r.losses) and not r.cached for name, r in recipes.items()}
    annotate(reh, job, shapes=shapes, epochs=epochs, live_teacher=live, slice_rows=slice_rows,
             generate_rows=generate_rows, params=params)
    cache = reh.repo / "data" / "teacher_outputs"
    bytes_per_token = logical_bytes([cache]) / json.loads((cache / "manifest.json").read_text())["n_tokens"]
    # On a GPU box the data stages, lead-3 and the report still run on its CPU: at this CPU's speed here.
    cpu_only = {"download", "tokenize", "benchmark_lead3", "report"}
    return {
        "counts": job.counts, "epochs": epochs, "mean_source_tokens": job.src, "mean_target_tokens": job.tgt,
        "utilisation": job.utilisation, "decode_utilisation": job.decode_utilisation,
        "h100_bf16_peak_flops": H100_BF16_FLOPS,
        "cpu_s": round(sum(r["full"]["cpu_s"] or 0 for r in reh.stages), 1),
        "h100_box_s": round(sum((r["full"]["cpu_s"] if r["stage"] in cpu_only else r["full"]["h100_s"]) or 0
                                for r in reh.stages), 1),
        "disk_bytes": sum(r["full"]["disk_bytes"] for r in reh.stages),
        "teacher_outputs_bytes_per_token": round(bytes_per_token, 1),
        "teacher_outputs_bytes": round(bytes_per_token * job.counts["train"] * job.tgt),
        "notes": ["CPU: measured rates (model loading included) x the full counts and the profile's epochs",
                  "H100: FLOPs (forward_flops / generate_flops) at the stated utilisation: an estimate",
                  "decoding is timed and counted in the worst case: random weights rarely stop before "
                  "max_new_tokens", "validation passes during training are left out"],
    }


def _shape(model_dir: str) -> Shape:
    return Shape.from_config(json.loads((Path(model_dir) / "config.json").read_text()))


def run_slice_stages(reh: Rehearsal, params: dict, *, train_rows: int, generate_rows: int, batch_size: int) -> None:
    """Every stage after tokenize, through its script, on the slices (default paths otherwise)."""
    students = list(params["kd"]["students"])
    train = f"measured, slice: {train_rows} articles, batch {batch_size}"
    decode = f"measured, slice: {generate_rows} articles, worst case"
    reh.stage_script("train_teacher", "train_teacher", "--tokenized", TRAIN_SLICE, kind=train)
    reh.stage_script("teacher_outputs", "teacher_outputs", "--tokenized", TRAIN_SLICE, kind=train)
    reh.stage_script("teacher_generate", "teacher_generate", "--tokenized", GENERATE_SLICE, kind=decode)
    for name in students:
        reh.stage_script(f"distill_{name}", "distill", "--student", name, "--tokenized", TRAIN_SLICE, kind=train)
    models = {"teacher": "models/teacher"} | {name: f"models/student_{name}" for name in students}
    for name, model in (*models.items(), ("lead3", None)):
        which = ["--lead"] if model is None else ["--model", model]
        kind = f"measured, slice: {generate_rows} articles per split" + (", worst case" if model else "")
        reh.stage_script(f"benchmark_{name}", "benchmark", "--name", name, *which,
                         "--out", f"benchmark_results/quality/{name}.json",
                         "--examples", f"benchmark_results/examples/{name}.jsonl", kind=kind)
    reh.stage_script("speed", "speed", kind=f"measured, slice: {batch_size} articles x 3 rounds, worst case")
    reh.stage_script("report", "report", kind="measured")
