"""The data source `jsonl`: your own JSON lines files, one per split and pool (settings: data.jsonl)."""

from __future__ import annotations

from typing import Iterator

from kd.data import sources
from kd.data.registry import register


@register("jsonl")
def load(split: str, data) -> Iterator[dict]:
    """The records of `data.jsonl.<split>` (a .jsonl or .jsonl.gz file), with the field names data.jsonl
    gives; the unlabeled pool's file needs only the article and id fields."""
    j = data.jsonl
    if split == "unlabeled":
        return sources.iter_articles(j.unlabeled, article_field=j.article_field, id_field=j.id_field)
    return sources.iter_records(getattr(j, split), article_field=j.article_field,
                                summary_field=j.summary_field, id_field=j.id_field)
