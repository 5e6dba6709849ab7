"""What a student learns to generate: the references, the teacher's summaries (sequence-level KD,
Kim & Rush 2016), or a mix; a recipe's `targets`, `teacher_share` and `with_references`.

The teacher's summaries come from the teacher_generate stage (kd.teacher_generate writes them; this
module reads them, so the distill stage does not import generation code). Only the training split's
targets change: validation loss is always against the references.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import torch

from kd.errors import ConfigError

TARGETS_FILE = "targets.jsonl"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1
RERUN = "rerun the teacher_generate stage (dvc repro)"


def read_targets(path: Path, *, identity: dict) -> list[list[int]]:
    """The teacher's label ids per training example, checked against the teacher and data the caller
    trains with (`identity`: kd.teacher_cache.cache_identity); a clear error on any mismatch."""
    path = Path(path)
    manifest_file, targets_file = path / MANIFEST_FILE, path / TARGETS_FILE
    if not manifest_file.is_file() or not targets_file.is_file():
        raise ConfigError(f"{path}: no teacher targets here (missing {MANIFEST_FILE} or {TARGETS_FILE}); "
                          f"run the teacher_generate stage first")
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"{manifest_file}: format_version {manifest.get('format_version')!r}, this code reads "
                          f"{FORMAT_VERSION}; {RERUN}")
    bad = [f"{k}: made for {manifest.get(k, '<missing>')!r}, this run has {v!r}"
           for k, v in identity.items() if manifest.get(k) != v]
    if bad:
        raise ConfigError(f"{path}: teacher targets were made for another teacher/data/tokenizer "
                          f"({'; '.join(bad)}); {RERUN}")
    labels = []
    with open(targets_file, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            labels.append(json.loads(line)["labels"])
            if not labels[-1]:
                raise ConfigError(f"{targets_file}:{lineno}: empty target; {RERUN}")
    if len(labels) != manifest["n_examples"]:
        raise ConfigError(f"{targets_file}: {len(labels)} targets, the manifest says {manifest['n_examples']}; "
                          f"{RERUN}")
    return labels


def teacher_rows(n: int, share: float, seed: int) -> list[int]:
    """Which of `n` training examples take the teacher's target: all for share 1, else the first
    round(share * n) of a permutation drawn with `seed` (sorted)."""
    if share >= 1.0:
        return list(range(n))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[:round(share * n)])


def training_split(train: datasets.Dataset, teacher_labels: list[list[int]], *, share: float,
                   with_references: bool, seed: int) -> datasets.Dataset:
    """The training split with the teacher's targets: on the examples `teacher_rows` picks (share,
    seed), or, `with_references`, appended after the reference split (every article twice)."""
    if len(teacher_labels) != len(train):
        raise ConfigError(f"teacher targets: {len(teacher_labels)} for {len(train)} training examples; {RERUN}")
    if with_references:
        return datasets.concatenate_datasets([train, _with_labels(train, teacher_labels)])
    chosen = set(teacher_rows(len(train), share, seed))
    labels = [t if i in chosen else r for i, (r, t) in enumerate(zip(train["labels"], teacher_labels))]
    return _with_labels(train, labels)


def _with_labels(train: datasets.Dataset, labels: list[list[int]]) -> datasets.Dataset:
    # add_column builds the new column in memory with the split's own feature type: no map, so no
    # cache file is written into the tokenize stage's output (a DVC output must never change under it).
    return train.remove_columns("labels").add_column("labels", labels, feature=train.features["labels"])
