"""The loss registry: `register(name)` on a Distiller class, `loss_class(name)` to find it (see the
package docstring for how to add a loss)."""


from __future__ import annotations

from typing import Callable

from kd.losses.base import Distiller
from kd.plugins import Registry

# Modules of this package that hold shared helpers, not losses.
LOSSES: Registry[type[Distiller]] = Registry("kd.losses", kind="loss", helpers={"base", "layermap"})


def register(name: str) -> Callable[[type[Distiller]], type[Distiller]]:
    def add(cls: type[Distiller]) -> type[Distiller]:
        cls.name = name
        return LOSSES.add(name, cls)

    return add


def available() -> list[str]:
    """Every loss of this package (imports them all; for error messages and docs)."""
    return LOSSES.available()


def loss_class(name: str, *, where: str = "kd.students") -> type[Distiller]:
    """The loss registered by module kd/losses/<name>.py; `where` is the dotted key naming it."""
    return LOSSES.get(name, where=where)
