"""The teacher_generate stage's worker: the teacher's summaries of the articles of the splits its
parameters name (the students' labelled set, the unlabeled pool), the targets of sequence-level KD
(Kim & Rush 2016; DistilBART's pseudo-labels, Shleifer & Rush 2020).

Output directory (a DVC output, written atomically; kd.teacher.targets reads it):

    <split>.jsonl   one line per article of each split, in the tokenized split's order:
                    {"id", "labels": [[token ids, EOS last unless cut at max_new_tokens], ...],
                     "summaries": [text, ...]}: `num_return_sequences` of them, the best distinct beams
                    first, or samples
    manifest.json   settings, what it was made from (teacher digest, tokenizer; per split the data
                    fingerprint and size) and the teacher's ROUGE on the labelled split against its references

Generation is resumable in shards: each shard of `shard_size` articles is written atomically to
`checkpoints/teacher_generate/<split>/` with the identity of the run; a rerun after a crash skips the
shards it finds for the same identity and only then assembles the output. Samples are drawn with a seed
per shard, so a resumed run writes what an uninterrupted one would. Students check the manifest
against the teacher and data they train with (kd.teacher.targets), never silently reading stale targets.
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

from kd.training.checkpoint import fingerprint
from kd.jsonl import dumps_lines, iter_jsonl, read_jsonl
from kd.errors import ConfigError
from kd.io import atomic_dir, atomic_write_json, atomic_write_text
from kd.metrics.rouge import ROUGE_KEYS, rouge_per_example
from kd.models.modeling import generate_kwargs, load_model, resolve_device
from kd.training.objective import freeze_teacher
from kd.params import TeacherGenerateParams
from kd.training.run import file_digest, load_tokenized
from kd.teacher.targets import FORMAT_VERSION, MANIFEST_FILE, targets_file
from kd.teacher.cache import cache_identity
from kd.data.tokenization import load_tokenizer

log = logging.getLogger(__name__)


def decoding(params: TeacherGenerateParams) -> dict:
    """The generate_labels() settings the summaries are made with."""
    settings = {"num_beams": params.num_beams, "num_return_sequences": params.num_return_sequences,
                "do_sample": params.do_sample, "max_new_tokens": params.max_new_tokens,
                "length_penalty": params.length_penalty}
    return settings | ({"temperature": params.temperature} if params.do_sample else {})


def generate_targets(*, params: TeacherGenerateParams, teacher_dir: Path, tokenizer_dir: Path,
                     tokenized_dir: Path, raw_train: Path, out_dir: Path, work_dir: Path) -> dict:
    """Write the teacher's summaries of every article of `params.splits` to `out_dir`; returns the manifest."""
    teacher_path = Path(teacher_dir)
    if not (teacher_path / "config.json").is_file():
        raise ConfigError(f"{teacher_path}: no trained teacher here; run the train_teacher stage first")
    tokenized = load_tokenized(tokenized_dir)
    for split in params.splits:  # before any model is loaded or output touched
        if split not in tokenized:
            raise ConfigError(f"params: teacher_generate.splits names {split!r}, but the data has no such pool "
                              f"(set its size in the data section, e.g. data.builtin.{split}_size)")
    tokenizer = load_tokenizer(str(tokenizer_dir))
    device = torch.device(resolve_device(params.device, "teacher_generate.device"))
    settings = decoding(params)
    recorded = settings | ({"seed": params.seed} if params.do_sample else {})  # what the manifest and shards record
    teacher_id = file_digest(teacher_path / "model.safetensors")
    teacher = freeze_teacher(load_model(teacher_path), device)
    made = {}
    for split in params.splits:
        ds = tokenized[split]
        identity = cache_identity(teacher_id=teacher_id, tokenizer=tokenizer, train_ds=ds)
        shards = ShardStore(Path(work_dir) / split, fingerprint({"identity": identity, "settings": recorded,
                                                                 "shard_size": params.shard_size}))
        _generate_split(teacher, tokenizer, ds, shards, params=params, settings=settings, device=device, split=split)
        made[split] = (identity, shards)

    references = _references(raw_train, tokenized["train"]["id"]) if "train" in params.splits else {}
    identity = next(iter(made.values()))[0]
    manifest = {"format_version": FORMAT_VERSION, **recorded, "teacher": identity["teacher"],
                "tokenizer": identity["tokenizer"], "splits": {}}
    with atomic_dir(out_dir) as tmp:
        for split, (identity, shards) in made.items():
            n = identity["n_examples"]
            scores, cut = {key: 0.0 for key in ROUGE_KEYS}, 0
            with open(tmp / targets_file(split), "w", encoding="utf-8") as f:
                for rows in shards.read_all(n, params.shard_size):
                    for row in rows:
                        f.write(json.dumps(row, ensure_ascii=False) + "\n")
                        cut += sum(labels[-1:] != [tokenizer.eos_token_id] for labels in row["labels"])
                    if split == "train":  # the best summary of each article against its reference
                        for score in rouge_per_example([r["summaries"][0] for r in rows],
                                                       [references[r["id"]] for r in rows]):
                            for key in ROUGE_KEYS:
                                scores[key] += score[key]
            manifest["splits"][split] = {"data": identity["data"], "n_examples": n, "cut_at_max_new_tokens": cut}
            if split == "train":
                manifest["train_rouge"] = {key: round(v / n, 4) for key, v in scores.items()}
        atomic_write_json(tmp / MANIFEST_FILE, manifest)
    shutil.rmtree(work_dir, ignore_errors=True)  # every split's shards are in the output now
    log.info("teacher summaries (%d per article) of %s in %s%s", params.num_return_sequences,
             ", ".join(f"{s} ({m['n_examples']} articles, {m['cut_at_max_new_tokens']} cut at max_new_tokens)"
                       for s, m in manifest["splits"].items()), out_dir,
             "; teacher on the labelled split: " + ", ".join(f"{k} {v:.2f}" for k, v in manifest["train_rouge"].items())
             if "train_rouge" in manifest else "")
    return manifest


def _generate_split(teacher, tokenizer, ds, shards: "ShardStore", *, params: TeacherGenerateParams, settings: dict,
                    device, split: str) -> None:
    """Every shard of `ds` not finished yet, each written when done."""
    n = len(ds)
    # Redraw often on a terminal, rarely into a log file (DVC), as the training progress bar does.
    bar = tqdm(total=n, desc=f"teacher_generate {split}", unit="ex",
               mininterval=0.5 if sys.stderr.isatty() else 30.0)
    for start in range(0, n, params.shard_size):
        stop = min(start + params.shard_size, n)
        if shards.done(start):
            bar.update(stop - start)
            continue
        if params.do_sample:  # a seed per shard: a resumed run draws what an uninterrupted one would
            torch.manual_seed(params.seed * 1_000_003 + start)
        rows = []
        for lo in range(start, stop, params.batch_size):
            chunk = ds.select(range(lo, min(lo + params.batch_size, stop)))
            labels = generate_labels(teacher, tokenizer, chunk["input_ids"], device=device, **settings)
            k = params.num_return_sequences
            for j, rid in enumerate(chunk["id"]):
                mine = labels[j * k:(j + 1) * k]  # generate returns an article's sequences together
                rows.append({"id": rid, "labels": mine,
                             "summaries": [s.strip() for s in tokenizer.batch_decode(mine, skip_special_tokens=True)]})
            bar.update(len(chunk))
        shards.write(start, rows)
    bar.close()


def generate_labels(teacher, tokenizer, input_ids: list[list[int]], *, device, num_beams: int,
                    max_new_tokens: int, length_penalty: float, num_return_sequences: int = 1,
                    do_sample: bool = False, temperature: float = 1.0) -> list[list[int]]:
    """The teacher's summaries of these (unpadded) sources as label token ids, `num_return_sequences`
    per source, each source's together: the decoder start token dropped, cut after the first EOS, no
    padding. (Samples draw from torch's global generator, which the caller seeds per shard.)"""
    enc = tokenizer.pad({"input_ids": input_ids}, return_tensors="pt").to(device)
    sampling = {"do_sample": True, "temperature": temperature} if do_sample else {"do_sample": False}
    with torch.inference_mode():
        out = teacher.generate(**enc, num_beams=num_beams, max_new_tokens=max_new_tokens,
                               length_penalty=length_penalty, num_return_sequences=num_return_sequences,
                               **sampling, **generate_kwargs(teacher))  # (B * num_return_sequences, 1 + T)
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
        atomic_write_text(self.path(start), dumps_lines(rows))

    def read_all(self, n: int, shard_size: int) -> Iterator[list[dict]]:
        for start in range(0, n, shard_size):
            yield read_jsonl(self.path(start))
