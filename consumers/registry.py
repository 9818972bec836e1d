"""Consumer name → the module that implements it (imported only when that consumer runs)."""

from __future__ import annotations

import importlib
from types import ModuleType

from topology.fleet import CONSUMER_NAMES

MODULES: dict[str, str] = {name: f"consumers.{name.replace('-', '_')}" for name in CONSUMER_NAMES}


class UnknownConsumer(KeyError):
    def __str__(self) -> str:
        return f"unknown consumer {self.args[0]!r}; valid consumers: {', '.join(MODULES)}"


def load(name: str) -> ModuleType:
    """The module of consumer ``name``: it has ``SPEC`` and ``build(settings)``."""
    if name not in MODULES:
        raise UnknownConsumer(name)
    return importlib.import_module(MODULES[name])
