"""The data source registry: a source is one function registered by name, found by `data.source`.

A source yields the records of one split or pool, as they are read:

    from kd.data.registry import register

    @register("<name>")                      # the module's own file name: kd/data/<name>.py
    def load(split: str, data: DataParams) -> Iterable[dict]:
        # split: train | validation | test, or a pool: teacher_train | unlabeled
        # records: {"id", "article", "highlights"} (unlabeled: {"id", "article"})
        ...

and select it with `data.source: <name>`. The download stage passes every record through the same
checks whatever its source (non-empty texts, ids unique within a split, splits disjoint), caps each split
at `data.max_<split>_samples`, and writes data/raw/<split>.jsonl. There is no import list to edit:
`loader(name)` imports `kd.data.<name>`. Settings of the source go in a section `data.<name>` of
params.yaml, typed by a dataclass in kd/params.py (as `data.builtin`, `data.jsonl` and `data.hub` are).
"""

from __future__ import annotations

from typing import Callable, Iterable

from kd.plugins import Registry

Loader = Callable[[str, object], Iterable[dict]]
# Modules of this package that are not sources.
SOURCES: Registry[Loader] = Registry("kd.data", kind="data source",
                                     helpers={"sources", "prepare", "tokenization"})


def register(name: str) -> Callable[[Loader], Loader]:
    def add(load: Loader) -> Loader:
        return SOURCES.add(name, load)

    return add


def available() -> list[str]:
    """Every source of this package (imports them all; for error messages and docs)."""
    return SOURCES.available()


def loader(name: str, *, where: str = "data.source") -> Loader:
    """The source registered by module kd/data/<name>.py; `where` is the key naming it."""
    return SOURCES.get(name, where=where)
