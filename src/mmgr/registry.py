"""Named registries of interchangeable components (formats, encoders, tokenizers, ...).

A registry's names come from its map in `mmgr.parts` (name -> registering module): `names()` imports nothing,
`get(name)` imports the name's module on first use.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Generic, TypeVar

from mmgr.errors import ConfigError
from mmgr.parts import PARTS, part_names

T = TypeVar("T")
PACKAGE = "mmgr"


class Registry(Generic[T]):
    """name -> component, filled by the `register` decorator; unknown names list the known ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._modules = PARTS[kind]        # shared with config validation: names added at run time join it
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Register a component as `name`: a module of mmgr only under a name `mmgr.parts` maps to it; code outside
        the package adds a new name."""
        self._claim(name, sys._getframe(1).f_globals["__name__"])

        def add(component: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = component
            return component
        return add

    def get(self, name: str) -> T:
        if name not in self._entries and name in self._modules:
            importlib.import_module(self._modules[name])
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return part_names(self.kind)

    def _claim(self, name: str, module: str) -> None:
        mapped = self._modules.get(name)
        inside = module == PACKAGE or module.startswith(f"{PACKAGE}.")
        if mapped is None and not inside:
            self._modules[name] = module
        elif mapped != module:
            where = f"maps it to {mapped}" if mapped else "does not list it"
            raise ValueError(f"{module} registers {self.kind} {name!r}, but mmgr.parts {where}")
