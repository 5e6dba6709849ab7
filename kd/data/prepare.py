"""The download stage's worker: stream every split from the configured source, validate, write JSONL.

Records pass one at a time from the loader through the checks into the output file, so memory stays
bounded (only the ids seen so far are kept, to catch duplicates) whatever the size of a split.
"""

from __future__ import annotations

import contextlib
import itertools
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

from kd.data import builtin, sources
from kd.io import atomic_file
from kd.params import DataParams
from kd.paths import raw_split


def _builtin(split: str, data: DataParams) -> Iterator[dict]:
    size = getattr(data.builtin, f"{split}_size")
    return builtin.stream(split, size, data.seed, n_distractors=data.builtin.n_distractors,
                          entity_pool=data.builtin.entity_pool)


def _jsonl(split: str, data: DataParams) -> Iterator[dict]:
    j = data.jsonl
    return sources.iter_records(getattr(j, split), article_field=j.article_field,
                                summary_field=j.summary_field, id_field=j.id_field)


def _hub(split: str, data: DataParams) -> Iterator[dict]:
    return sources.load_hub(split, name=data.hub.name, config=data.hub.config,
                            max_samples=getattr(data, f"max_{split}_samples"), cache_dir=data.hub.cache_dir)


LOADERS: dict[str, Callable[[str, DataParams], Iterable[dict]]] = {
    "builtin": _builtin,
    "jsonl": _jsonl,
    "hub": _hub,
}


def split_records(split: str, data: DataParams) -> Iterator[dict]:
    """One split's records as they are read, capped by data.max_<split>_samples, each validated as it passes.

    Every source passes `sources.validated` here: non-empty texts and no id twice within a split (the
    benchmark's per-example results are keyed on it), whatever the loader already checked. The cap stops
    the reading: records after it are neither read nor checked.
    """
    records = LOADERS[data.source](split, data)
    cap = getattr(data, f"max_{split}_samples")
    return sources.validated(itertools.islice(records, cap), where=f"data.source={data.source} split {split!r}")


def load_splits(data: DataParams) -> dict[str, Iterator[dict]]:
    """Every split's records, streamed (see `split_records`): nothing is read until they are iterated."""
    return {split: split_records(split, data) for split in sources.SPLITS}


def write_splits(splits: Mapping[str, Iterable[dict]], out_dir: Path) -> dict[str, int]:
    """Writes each split's records, as they come, to a temp file beside its JSONL file; only once every
    split was written without an error are the temp files renamed into place, so bad input in any split
    leaves every existing output untouched. Returns the number of records per split."""
    out_dir = Path(out_dir)
    new_dir = not out_dir.exists()
    counts = {}
    try:
        with contextlib.ExitStack() as stack:  # on leaving: every temp file renamed, or on an error deleted
            for split, records in splits.items():
                tmp = stack.enter_context(atomic_file(raw_split(split, out_dir)))
                counts[split] = sources.write_jsonl(records, tmp)
    except BaseException:
        if new_dir:  # made for the temp files, now gone: a failed download leaves no trace
            with contextlib.suppress(OSError):
                out_dir.rmdir()
        raise
    return counts
