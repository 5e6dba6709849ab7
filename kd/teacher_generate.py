"""The teacher_generate stage's worker: the teacher's beam-search summaries of the training split, the
targets of sequence-level KD (Kim & Rush 2016; DistilBART's pseudo-labels, Shleifer & Rush 2020).

Output directory (a DVC output, written atomically):

    targets.jsonl   one line per training example, in the tokenized split's order:
                    {"id", "labels": [token ids, EOS last unless cut at max_new_tokens], "summary"}
    manifest.json   settings (num_beams, max_new_tokens, length_penalty), what it was made from
                    (teacher digest, tokenizer, data fingerprint, n_examples) and the teacher's ROUGE
                    on the training split against the references

Generation is resumable in shards: each shard of `shard_size` examples is written atomically to
`checkpoints/teacher_generate/` with the identity of the run; a rerun after a crash skips the
shards it finds for the same identity and only then assembles the output. Students check the manifest
against the teacher and data they train with (kd.targets), never silently reading stale targets.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Iterator

import torch
from tqdm.auto import tqdm

from kd.checkpoint import fingerprint
from kd.data.sources import iter_jsonl
from kd.errors import ConfigError
from kd.io import atomic_dir, atomic_write_json, atomic_write_text
from kd.metrics import ROUGE_KEYS, rouge_per_example
from kd.modeling import generate_kwargs, load_model, resolve_device
from kd.objective import freeze_teacher
from kd.params import TeacherGenerateParams
from kd.run import file_digest, load_tokenized
from kd.targets import FORMAT_VERSION, MANIFEST_FILE, TARGETS_FILE
from kd.teacher_cache import cache_identity
from kd.tokenization import load_tokenizer

log = logging.getLogger(__name__)


def generate_targets(*, params: TeacherGenerateParams, teacher_dir: Path, tokenizer_dir: Path,
                     tokenized_dir: Path, raw_train: Path, out_dir: Path, work_dir: Path) -> dict:
    """Write the teacher's summaries of every training example to `out_dir`; returns the manifest."""
    teacher_path = Path(teacher_dir)
    if not (teacher_path / "config.json").is_file():
        raise ConfigError(f"{teacher_path}: no trained teacher here; run the train_teacher stage first")
    train = load_tokenized(tokenized_dir)["train"]
    tokenizer = load_tokenizer(str(tokenizer_dir))
    references = _references(raw_train, train["id"])
    device = torch.device(resolve_device(params.device, "teacher_generate.device"))
    settings = {"num_beams": params.num_beams, "max_new_tokens": params.max_new_tokens,
                "length_penalty": params.length_penalty}
    identity = cache_identity(teacher_id=file_digest(teacher_path / "model.safetensors"), tokenizer=tokenizer,
                              train_ds=train)
    shards = ShardStore(work_dir, fingerprint({"identity": identity, "settings": settings,
                                               "shard_size": params.shard_size}))
    teacher = freeze_teacher(load_model(teacher_path), device)
    n = len(train)
    # Redraw often on a terminal, rarely into a log file (DVC), as the training progress bar does.
    bar = tqdm(total=n, desc="teacher_generate", unit="ex", mininterval=0.5 if sys.stderr.isatty() else 30.0)
    for start in range(0, n, params.shard_size):
        stop = min(start + params.shard_size, n)
        if shards.done(start):
            bar.update(stop - start)
            continue
        rows = []
        for lo in range(start, stop, params.batch_size):
            chunk = train.select(range(lo, min(lo + params.batch_size, stop)))
            labels = generate_labels(teacher, tokenizer, chunk["input_ids"], device=device, **settings)
            summaries = tokenizer.batch_decode(labels, skip_special_tokens=True)
            rows += [{"id": i, "labels": lab, "summary": s.strip()}
                     for i, lab, s in zip(chunk["id"], labels, summaries)]
            bar.update(len(labels))
        shards.write(start, rows)
    bar.close()

    scores = {key: 0.0 for key in ROUGE_KEYS}
    cut = 0
    with atomic_dir(out_dir) as tmp:
        with open(tmp / TARGETS_FILE, "w", encoding="utf-8") as f:
            for rows in shards.read_all(n, params.shard_size):
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
                    cut += row["labels"][-1:] != [tokenizer.eos_token_id]
                for score in rouge_per_example([r["summary"] for r in rows], [references[r["id"]] for r in rows]):
                    for key in ROUGE_KEYS:
                        scores[key] += score[key]
        manifest = {"format_version": FORMAT_VERSION, **settings, **identity,
                    "train_rouge": {key: round(v / n, 4) for key, v in scores.items()},
                    "cut_at_max_new_tokens": cut}
        atomic_write_json(tmp / MANIFEST_FILE, manifest)
    shards.clear()
    log.info("teacher summaries of %d training examples in %s; teacher on the training split: %s "
             "(%d cut at max_new_tokens)", n, out_dir,
             ", ".join(f"{k} {v:.2f}" for k, v in manifest["train_rouge"].items()), cut)
    return manifest


def generate_labels(teacher, tokenizer, input_ids: list[list[int]], *, device, num_beams: int,
                    max_new_tokens: int, length_penalty: float) -> list[list[int]]:
    """The teacher's beam-search summaries of these (unpadded) sources, as label token ids: the
    decoder start token dropped, cut after the first EOS, no padding."""
    enc = tokenizer.pad({"input_ids": input_ids}, return_tensors="pt").to(device)
    with torch.inference_mode():
        out = teacher.generate(**enc, num_beams=num_beams, max_new_tokens=max_new_tokens,
                               length_penalty=length_penalty, do_sample=False,
                               **generate_kwargs(teacher))  # (B, 1 + T)
    eos = tokenizer.eos_token_id
    labels = []
    for row in out[:, 1:].tolist():
        labels.append(row[:row.index(eos) + 1] if eos in row else [t for t in row if t != tokenizer.pad_token_id])
    return labels


def _references(raw_train: Path, ids: list[str]) -> dict[str, str]:
    """id -> reference summary of the raw training split (streamed), for every tokenized example."""
    wanted = set(ids)
    refs = {}
    for _, obj in iter_jsonl(raw_train):
        if obj.get("id") in wanted:
            refs[obj["id"]] = obj["highlights"]
    missing = wanted - set(refs)
    if missing:
        raise ConfigError(f"{raw_train}: no record for {len(missing)} tokenized training example(s) "
                          f"(e.g. id {sorted(missing)[0]!r}); rerun the tokenize stage (dvc repro)")
    return refs


class ShardStore:
    """Finished shards of one run (`run_id`) under `root`: `shard-<start>.jsonl`, each written atomically.
    Shards of another run (other teacher, data or settings) are deleted, never reused."""

    def __init__(self, root: Path, run_id: str):
        self.root = Path(root)
        stamp = self.root / "run.json"
        if stamp.is_file() and json.loads(stamp.read_text()).get("run") != run_id:
            log.warning("%s: shards of another teacher/data/settings; starting over", self.root)
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        if not stamp.is_file():
            atomic_write_json(stamp, {"run": run_id})
        found = sorted(self.root.glob("shard-*.jsonl"))
        if found:
            log.info("resuming: %d finished shard(s) in %s", len(found), self.root)

    def path(self, start: int) -> Path:
        return self.root / f"shard-{start:09d}.jsonl"

    def done(self, start: int) -> bool:
        return self.path(start).is_file()

    def write(self, start: int, rows: list[dict]) -> None:
        atomic_write_text(self.path(start), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))

    def read_all(self, n: int, shard_size: int) -> Iterator[list[dict]]:
        for start in range(0, n, shard_size):
            with open(self.path(start), encoding="utf-8") as f:
                yield [json.loads(line) for line in f]

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
