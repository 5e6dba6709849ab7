"""The data source `hub`: a Hugging Face dataset (CNN/DailyMail by default), from the hub or a local
dataset directory (settings: data.hub)."""

from __future__ import annotations

from typing import Iterator

from kd.data import sources
from kd.data.registry import register


@register("hub")
def load(split: str, data) -> Iterator[dict]:
    """The dataset's split, capped at data.max_<split>_samples; the pools are its training articles after
    the students' labelled ones, the teacher's first (their references dropped for unlabeled)."""
    h = data.hub
    if split in sources.POOLS:
        start = data.max_train_samples + (h.teacher_train_samples if split == "unlabeled" else 0)
        records = sources.load_hub("train", name=h.name, config=h.config, cache_dir=h.cache_dir, start=start,
                                   max_samples=data.pool_size(split))
        return sources.articles_only(records) if split == "unlabeled" else records
    return sources.load_hub(split, name=h.name, config=h.config,
                            max_samples=getattr(data, f"max_{split}_samples"), cache_dir=h.cache_dir)
