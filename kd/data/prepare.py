"""The download stage's worker: stream every split from the configured source, validate, write JSONL.

Records pass one at a time from the loader through the checks into the output file, so memory stays
bounded (only the ids seen so far are kept, to catch duplicates) whatever the size of a split.
"""

from __future__ import annotations

import contextlib
import itertools
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from kd.data import sources
from kd.data.registry import loader
from kd.errors import ConfigError
from kd.io import atomic_file
from kd.params import DataParams
from kd.paths import raw_split


def split_records(split: str, data: DataParams) -> Iterator[dict]:
    """One split's (or pool's) records as they are read, capped by data.max_<split>_samples, each
    validated as it passes.

    Every source passes `sources.validated` here: non-empty texts and no id twice within a split (the
    benchmark's per-example results are keyed on it), whatever the loader already checked. The cap stops
    the reading: records after it are neither read nor checked. Unlabeled articles need no reference.
    """
    records = loader(data.source)(split, data)
    cap = getattr(data, f"max_{split}_samples", None)
    fields = ("id", "article") if split == "unlabeled" else sources.FIELDS
    return sources.validated(itertools.islice(records, cap), where=f"data.source={data.source} split {split!r}",
                             fields=fields)


def load_splits(data: DataParams) -> dict[str, Iterator[dict]]:
    """Every split's records, and every pool the source gives, streamed (see `split_records`), each
    checked against the others' articles (see `Disjoint`): nothing is read until they are iterated."""
    names = [*sources.SPLITS, *(pool for pool in sources.POOLS if data.pool_size(pool) != 0)]
    disjoint = Disjoint()
    return {name: disjoint.track(name, split_records(name, data)) for name in names}


class Disjoint:
    """Checks that no article is in two splits or pools (students' labels, the teacher's, unlabeled,
    validation and test), by a digest of its normalized text (`sources.text_key`): an overlap would let
    a model train on what it is scored on, or count one article as both labelled and unlabeled.

    `track` passes a split's records on while recording their keys; once a split is exhausted its
    overlaps with every split read before it are counted, and any overlap is a ConfigError giving the
    count and one example id, before `write_splits` renames any output into place."""

    def __init__(self):
        self.keys: dict[str, dict[bytes, str]] = {}  # split -> {text key: the first id with it}

    def track(self, name: str, records: Iterable[dict]) -> Iterator[dict]:
        keys = self.keys.setdefault(name, {})
        for record in records:
            keys.setdefault(sources.text_key(record["article"]), record["id"])
            yield record
        for other, seen in self.keys.items():
            if other == name:
                continue
            shared = [k for k in keys if k in seen]
            if shared:
                raise ConfigError(
                    f"data: {len(shared)} article(s) of split {name!r} are also in {other!r} (same text after "
                    f"normalizing case and spaces; e.g. id {keys[shared[0]]!r} = {seen[shared[0]]!r}); the "
                    f"splits and pools must be disjoint: remove them from one of the two")


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
        for pool in sources.POOLS:  # a pool this source no longer gives must not linger from an earlier run
            if pool not in splits:
                raw_split(pool, out_dir).unlink(missing_ok=True)
    except BaseException:
        if new_dir:  # made for the temp files, now gone: a failed download leaves no trace
            with contextlib.suppress(OSError):
                out_dir.rmdir()
        raise
    return counts
