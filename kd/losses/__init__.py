"""The distiller zoo: one loss per module, found by name.

A distiller is an `nn.Module` with `forward(student, teacher, batch) -> scalar`, where `student` and
`teacher` are the models' `Seq2SeqLMOutput`s and `batch` holds `attention_mask` and `labels`
(-100 marks padding). Each class declares in `needs` which outputs it reads, so the training step
asks the models for exactly those. The teacher side is always detached.

Adding a loss (see README, "Extending"): create `kd/losses/<name>.py` with

    @dataclass(frozen=True)
    class MySettings(LossSettings):          # `weight` comes with LossSettings
        margin: float = 1.0

    @register("<name>")                      # the module's own file name
    class MyKD(Distiller):
        Settings = MySettings
        needs = frozenset({"logits"})
        @classmethod
        def from_settings(cls, settings, teacher_config, student_config, *, where): ...
        def forward(self, student, teacher, batch): ...

and name it in a recipe: `kd.students.<student>.losses.<name>: {margin: 2.0}`. There is no import
list to edit: `loss_class(name)` imports `kd.losses.<name>`.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

from kd.errors import ConfigError
from kd.losses.base import Distiller

REGISTRY: dict[str, type[Distiller]] = {}
# Modules of this package that hold shared helpers, not losses.
HELPERS = frozenset({"base", "layermap"})


def register(name: str) -> Callable[[type[Distiller]], type[Distiller]]:
    def add(cls: type[Distiller]) -> type[Distiller]:
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return add


def available() -> list[str]:
    """Every loss module in this package (imports them all; for error messages and docs)."""
    names = [m.name for m in pkgutil.iter_modules(__path__) if m.name not in HELPERS]
    return sorted(n for n in names if _load(n) is not None)


def _load(name: str) -> type[Distiller] | None:
    if name not in REGISTRY and name.isidentifier() and name not in HELPERS:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":  # the module exists but one of its imports does not
                raise
    return REGISTRY.get(name)


def loss_class(name: str, *, where: str = "kd.students") -> type[Distiller]:
    """The loss registered by module kd/losses/<name>.py; `where` is the dotted key naming it."""
    cls = _load(name)
    if cls is None:
        raise ConfigError(f"params: {where}: unknown loss {name!r}; known: {available()} "
                          f"(a loss is a module kd/losses/<name>.py)")
    return cls
