"""The loss registry: `register(name)` on a Distiller class, `loss_class(name)` to find it (see the
package docstring for how to add a loss)."""


from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

from kd.errors import ConfigError
from kd.losses.base import Distiller

REGISTRY: dict[str, type[Distiller]] = {}
# Modules of this package that hold shared helpers, not losses.
HELPERS = frozenset({"base", "layermap", "registry"})


def register(name: str) -> Callable[[type[Distiller]], type[Distiller]]:
    def add(cls: type[Distiller]) -> type[Distiller]:
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return add


def available() -> list[str]:
    """Every loss module in this package (imports them all; for error messages and docs)."""
    names = [m.name for m in pkgutil.iter_modules(importlib.import_module("kd.losses").__path__) if m.name not in HELPERS]
    return sorted(n for n in names if _load(n) is not None)


def _load(name: str) -> type[Distiller] | None:
    if name not in REGISTRY and name.isidentifier() and name not in HELPERS:
        try:
            importlib.import_module(f"kd.losses.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"kd.losses.{name}":  # the module exists but one of its imports does not
                raise
    return REGISTRY.get(name)


def loss_class(name: str, *, where: str = "kd.students") -> type[Distiller]:
    """The loss registered by module kd/losses/<name>.py; `where` is the dotted key naming it."""
    cls = _load(name)
    if cls is None:
        raise ConfigError(f"params: {where}: unknown loss {name!r}; known: {available()} "
                          f"(a loss is a module kd/losses/<name>.py)")
    return cls
