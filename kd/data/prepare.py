"""The download stage's worker: fetch every split from the configured source, validate, write JSONL."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from kd.data import builtin, sources
from kd.params import DataParams
from kd.paths import raw_split


def _builtin(split: str, data: DataParams) -> list[dict]:
    size = getattr(data.builtin, f"{split}_size")
    return builtin.generate(split, size, data.seed, n_distractors=data.builtin.n_distractors,
                            entity_pool=data.builtin.entity_pool)


def _jsonl(split: str, data: DataParams) -> list[dict]:
    j = data.jsonl
    return sources.read_jsonl(getattr(j, split), article_field=j.article_field,
                              summary_field=j.summary_field, id_field=j.id_field)


def _hub(split: str, data: DataParams) -> list[dict]:
    return sources.load_hub(split, name=data.hub.name, config=data.hub.config,
                            max_samples=getattr(data, f"max_{split}_samples"), cache_dir=data.hub.cache_dir)


LOADERS: dict[str, Callable[[str, DataParams], list[dict]]] = {
    "builtin": _builtin,
    "jsonl": _jsonl,
    "hub": _hub,
}


def load_splits(data: DataParams) -> dict[str, list[dict]]:
    """All splits, validated and capped by data.max_<split>_samples; raises before anything is written.

    Every source passes `validate_records` here: non-empty texts and no id twice within a split (the
    benchmark's per-example results are keyed on it), whatever the loader already checked.
    """
    splits = {}
    for split in sources.SPLITS:
        records = LOADERS[data.source](split, data)
        cap = getattr(data, f"max_{split}_samples")
        records = records[:cap] if cap else records
        sources.validate_records(records, where=f"data.source={data.source} split {split!r}")
        splits[split] = records
    return splits


def write_splits(splits: dict[str, list[dict]], out_dir: Path) -> None:
    for split, records in splits.items():
        sources.write_jsonl_atomic(records, raw_split(split, Path(out_dir)))
