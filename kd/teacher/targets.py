"""What a student learns to generate: the references, the teacher's summaries (sequence-level KD,
Kim & Rush 2016; DistilBART's pseudo-labels), any system's summaries from a file, or a mix; a recipe's
`targets`, `target_splits`, `per_article`, `uncovered`, `teacher_share` and `with_references`.

The teacher's summaries come from the teacher_generate stage (kd.teacher.generate writes them; this
module reads them, so the distill stage does not import generation code):

    data/teacher_targets/<split>.jsonl   one line per article of that split, in the tokenized split's order:
                                         {"id", "labels": [[token ids], ...], "summaries": [text, ...]}
    data/teacher_targets/manifest.json   settings, the teacher and tokenizer they were made with, and per
                                         split the data fingerprint and size (checked here)

Only the training set changes: validation loss is always against the references.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import datasets

from kd.data.sources import record_id
from kd.jsonl import iter_jsonl
from kd.errors import ConfigError

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 2
RERUN = "rerun the teacher_generate stage (dvc repro)"


def targets_file(split: str) -> str:
    return f"{split}.jsonl"


def read_manifest(path: Path) -> dict:
    path = Path(path)
    manifest_file = path / MANIFEST_FILE
    if not manifest_file.is_file():
        raise ConfigError(f"{path}: no teacher targets here (missing {MANIFEST_FILE}); run the teacher_generate "
                          f"stage first")
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"{manifest_file}: format_version {manifest.get('format_version')!r}, this code reads "
                          f"{FORMAT_VERSION}; {RERUN}")
    return manifest


def write_nothing_generated(out_dir: Path, *, num_return_sequences: int) -> dict:
    """The teacher_generate stage's output when teacher_generate.splits is empty: a manifest of no
    splits, so a recipe asking for summaries fails naming the key, and no model is loaded."""
    from kd.io import atomic_dir, atomic_write_json

    manifest = {"format_version": FORMAT_VERSION, "num_return_sequences": num_return_sequences, "splits": {}}
    with atomic_dir(out_dir) as tmp:
        atomic_write_json(tmp / MANIFEST_FILE, manifest)
    return manifest


def check_generated(manifest: dict, *, splits: Sequence[str], per_article: int, where: str) -> None:
    """A recipe (`where`: kd.students.<name>) asks only for summaries the teacher_generate stage made."""
    made = list(manifest["splits"])
    missing = [s for s in splits if s not in made]
    if missing:
        raise ConfigError(f"params: {where}.target_splits asks for the teacher's summaries of {missing}, but "
                          f"teacher_generate.splits made only {made}; add them there")
    if per_article > manifest["num_return_sequences"]:
        raise ConfigError(f"params: {where}.per_article is {per_article}, but teacher_generate.num_return_sequences "
                          f"made {manifest['num_return_sequences']} per article; raise it there")


def read_targets(path: Path, *, split: str, identity: dict, per_article: int) -> list[list[list[int]]]:
    """The teacher's first `per_article` label-id sequences for every article of `split`, checked against
    the teacher, tokenizer and data the caller trains with (`identity`: kd.teacher.cache.cache_identity
    of that split); a clear error on any mismatch."""
    path = Path(path)
    manifest = read_manifest(path)
    made = {"teacher": manifest.get("teacher"), "tokenizer": manifest.get("tokenizer"),
            **manifest["splits"].get(split, {})}
    bad = [f"{k}: made for {made.get(k, '<missing>')!r}, this run has {v!r}"
           for k, v in identity.items() if made.get(k) != v]
    if bad:
        raise ConfigError(f"{path}: teacher targets of {split!r} were made for another teacher/data/tokenizer "
                          f"({'; '.join(bad)}); {RERUN}")
    labels = []
    file = path / targets_file(split)
    for lineno, row in iter_jsonl(file):
        sequences = row["labels"][:per_article]
        if len(sequences) < per_article or not all(sequences):
            raise ConfigError(f"{file}:{lineno}: fewer than {per_article} non-empty summaries; {RERUN}")
        labels.append(sequences)
    if len(labels) != made["n_examples"]:
        raise ConfigError(f"{file}: {len(labels)} articles, the manifest says {made['n_examples']}; {RERUN}")
    return labels


def read_summary_file(path: Path, *, known: dict[str, str]) -> dict[str, list[str]]:
    """{id: [summary, ...]} from a JSON lines file of {"id", "summary"} written by any system (a line per
    summary; an id may come back for several). `known` maps every id the recipe may use to its split;
    an id outside it is an error naming the line."""
    summaries: dict[str, list[str]] = {}
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        rid = record_id(obj, "id", where, default="")
        if rid not in known:
            raise ConfigError(f"{where}: unknown id {rid!r}: not an article of the recipe's target_splits")
        summary = obj.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            raise ConfigError(f"{where}: 'summary' must be a non-empty string, got {summary!r:.40}")
        summaries.setdefault(rid, []).append(summary.strip())
    if not summaries:
        raise ConfigError(f"{path}: no summaries in the file")
    return summaries


def teacher_rows(n: int, share: float, seed: int) -> list[int]:
    """Which of `n` training examples take the teacher's target: all for share 1, else the first
    round(share * n) of a permutation drawn with `seed` (sorted)."""
    if share >= 1.0:
        return list(range(n))
    import torch

    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[:round(share * n)])


def with_summaries(split_ds: datasets.Dataset, labels: Sequence[Sequence[list[int]]]) -> datasets.Dataset:
    """One row per (article, summary): `labels[i]` holds article i's summaries (none: the article is
    left out), each row the article's inputs with one of them as its labels."""
    if len(labels) != len(split_ds):
        raise ConfigError(f"summaries for {len(labels)} articles, the split has {len(split_ds)}; {RERUN}")
    rows = [i for i, seqs in enumerate(labels) for _ in seqs]
    flat = [seq for seqs in labels for seq in seqs]
    # keep_in_memory: the indices mapping must not be cached into the tokenize stage's output directory
    return _with_labels(split_ds.select(rows, keep_in_memory=True), flat)


def training_split(train: datasets.Dataset, pieces: Mapping[str, datasets.Dataset], *, share: float = 1.0,
                   with_references: bool = False, seed: int = 0,
                   train_summaries: Sequence[Sequence[list[int]]] | None = None) -> datasets.Dataset:
    """The training set of a recipe with summaries: `pieces` ({split: kd.teacher.targets.with_summaries of it}),
    after train's references when `with_references`. With `share` < 1, `train_summaries` (one summary
    per train article) replaces the references of the train examples `teacher_rows` picks instead of
    train's piece; the other splits' pieces follow as they are."""
    parts = [train] if with_references else []
    if share < 1.0:
        if train_summaries is None or len(train_summaries) != len(train):
            raise ConfigError(f"teacher targets: none or the wrong number for the {len(train)} training examples; "
                              f"{RERUN}")
        chosen = set(teacher_rows(len(train), share, seed))
        labels = [t[0] if i in chosen else r for i, (r, t) in enumerate(zip(train["labels"], train_summaries))]
        pieces = {**pieces, "train": _with_labels(train, labels)}
    parts += pieces.values()
    return datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]


def training_sources(n_train: int, piece_sizes: Mapping[str, int], *, share: float = 1.0,
                     with_references: bool = False, seed: int = 0) -> list[str]:
    """Where each row of `training_split`'s result takes its target from, in its order: "references"
    (train's references) or the split whose article a summary belongs to ("train", "unlabeled").
    `piece_sizes` ({split: rows of its piece}) in the order of `training_split`'s `pieces`."""
    sources = ["references"] * n_train if with_references else []
    for split, size in piece_sizes.items():
        if split == "train" and share < 1.0:  # train's piece: the chosen rows on a summary, the rest references
            chosen = set(teacher_rows(n_train, share, seed))
            sources += ["train" if i in chosen else "references" for i in range(n_train)]
        else:
            sources += [split] * size
    return sources


def _with_labels(ds: datasets.Dataset, labels: list[list[int]]) -> datasets.Dataset:
    # add_column builds the new column in memory with the split's own feature type: no map, so no
    # cache file is written into the tokenize stage's output (a DVC output must never change under it).
    return ds.remove_columns("labels").add_column("labels", labels, feature=ds.features["labels"])
