"""Named registries of interchangeable components (formats, encoders, tokenizers, ...)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from mmgr.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """name -> component, filled by the `register` decorator; unknown names list the known ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(component: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = component
            return component
        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._entries))}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)
