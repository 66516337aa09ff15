"""A tiny name -> factory registry, one per kind of model (retriever, captioner, text similarity).

Configs select implementations by name (``name: open_clip``); adding a backend is one decorated
class, never another branch in an if-chain over model names.
"""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

from ..errors import CGRSInputError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            return factory
        return decorate

    def names(self) -> list[str]:
        return sorted(self._factories)

    def factory(self, name: str) -> Callable[..., T]:
        try:
            return self._factories[name]
        except KeyError:
            raise CGRSInputError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def build(self, spec: dict, **context) -> T:
        """Build from a config mapping ``{name: ..., <options>}``; unknown names/options are named."""
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise CGRSInputError(f"{self.kind} config needs a 'name' (one of {', '.join(self.names())})")
        options = {k: v for k, v in spec.items() if k != "name"}
        factory = self.factory(spec["name"])
        try:
            return factory(**options, **context)
        except TypeError as exc:
            if "unexpected keyword argument" in str(exc) or "missing" in str(exc):
                raise CGRSInputError(f"{self.kind} {spec['name']!r}: bad options {sorted(options)}: {exc}") from exc
            raise
