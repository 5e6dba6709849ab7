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

import importlib
import pkgutil
from typing import Callable, Iterable

from kd.errors import ConfigError

Loader = Callable[[str, object], Iterable[dict]]
REGISTRY: dict[str, Loader] = {}
# Modules of this package that are not sources.
HELPERS = frozenset({"registry", "sources", "prepare", "tokenization"})


def register(name: str) -> Callable[[Loader], Loader]:
    def add(load: Loader) -> Loader:
        REGISTRY[name] = load
        return load

    return add


def _load(name: str) -> Loader | None:
    if name not in REGISTRY and name.isidentifier() and name not in HELPERS:
        try:
            importlib.import_module(f"kd.data.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"kd.data.{name}":  # the module exists but one of its imports does not
                raise
    return REGISTRY.get(name)


def available() -> list[str]:
    """Every source module of this package (imports them all; for error messages and docs)."""
    names = [m.name for m in pkgutil.iter_modules(importlib.import_module("kd.data").__path__)]
    return sorted({n for n in names if n not in HELPERS and _load(n) is not None} | set(REGISTRY))


def loader(name: str, *, where: str = "data.source") -> Loader:
    """The source registered by module kd/data/<name>.py; `where` is the key naming it."""
    load = _load(name)
    if load is None:
        raise ConfigError(f"params: {where}: unknown data source {name!r}; known: {available()} "
                          f"(a source is a module kd/data/<name>.py)")
    return load
