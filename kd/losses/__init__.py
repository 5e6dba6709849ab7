"""The distiller zoo: one loss per module, looked up by name in one registry.

A distiller is an `nn.Module` with `forward(student, teacher, batch) -> scalar`, where `student` and
`teacher` are the models' `Seq2SeqLMOutput`s and `batch` holds `attention_mask` and `labels`
(-100 marks padding). Each class declares in `needs` which outputs it reads, so the training step
asks the models for exactly those. The teacher side is always detached.
"""

from __future__ import annotations

from typing import Callable

from kd.errors import ConfigError
from kd.losses.base import Distiller

REGISTRY: dict[str, type[Distiller]] = {}


def register(name: str) -> Callable[[type[Distiller]], type[Distiller]]:
    def add(cls: type[Distiller]) -> type[Distiller]:
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return add


def distiller_class(name: str) -> type[Distiller]:
    if name not in REGISTRY:
        raise ConfigError(f"params: kd.students: unknown loss {name!r}; known: {sorted(REGISTRY)}")
    return REGISTRY[name]


def needs_of(names) -> frozenset[str]:
    """The model outputs a set of losses reads (validates the names on the way)."""
    return frozenset().union(*(distiller_class(n).needs for n in names))


def build_distiller(name: str, kd, teacher_config, student_config) -> Distiller:
    """Instantiate the loss called `name` from the `kd` params and both model configs."""
    return distiller_class(name).from_params(kd, teacher_config, student_config)


# Importing the modules registers them; kept at the bottom because they import `register`.
from kd.losses import attention, feature, logit  # noqa: E402,F401
