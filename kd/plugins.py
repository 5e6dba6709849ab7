"""The one registry shape every extension point shares: things registered by name in the modules of one
package, each module imported only when something asks for it.

Losses (`kd.losses.registry`), data sources (`kd.data.registry`) and per-example metrics
(`kd.metrics.registry`) each hold one `Registry`. Adding a thing is one new module in that package that
calls the package's `register(name)`; nothing else lists it. A package's helper modules (shared code
that registers nothing) are named in `helpers`, so a scan never imports them as plugins.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Generic, Iterable, Optional, TypeVar

from kd.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one `kind` ("loss", "data source", "metric") registered in the package `package`."""

    def __init__(self, package: str, *, kind: str, helpers: Iterable[str]):
        self.package, self.kind = package, kind
        self.helpers = frozenset(helpers) | {"registry"}
        self.entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        self.entries[name] = entry
        return entry

    def modules(self) -> list[str]:
        """The package's plugin modules (its helpers left out), by name."""
        path = importlib.import_module(self.package).__path__
        return sorted(m.name for m in pkgutil.iter_modules(path) if m.name not in self.helpers)

    def load_all(self) -> dict[str, T]:
        """Imports every plugin module once, so everything the package registers is in `entries`."""
        for name in self.modules():
            importlib.import_module(f"{self.package}.{name}")
        return self.entries

    def find(self, name: str) -> Optional[T]:
        """The entry `name`, importing module `<package>.<name>` first when it is not registered yet."""
        if name not in self.entries and name.isidentifier() and name not in self.helpers:
            module = f"{self.package}.{name}"
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as e:
                if e.name != module:  # the module exists but one of its imports does not
                    raise
        return self.entries.get(name)

    def available(self) -> list[str]:
        """Every registered name, the package's modules all imported (for error messages and docs)."""
        return sorted(self.load_all())

    def get(self, name: str, *, where: str) -> T:
        """The entry `name`, or one ConfigError naming the params key `where`, the known names and the
        file that would define it."""
        entry = self.find(name)
        if entry is None:
            folder = self.package.replace(".", "/")
            raise ConfigError(f"params: {where}: unknown {self.kind} {name!r}; known: {self.available()} "
                              f"(a {self.kind} is a module {folder}/<name>.py)")
        return entry
