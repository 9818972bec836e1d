"""Consumer name → the module that implements it (imported only when that consumer runs)."""

from __future__ import annotations

import importlib
from types import ModuleType

from topology.fleet import CONSUMER_NAMES, DEFAULT_FLEET

MODULES: dict[str, str] = {name: f"consumers.{name.replace('-', '_')}" for name in CONSUMER_NAMES}


def load(name: str) -> ModuleType:
    """The module of consumer ``name``: it has ``SPEC`` and ``build(settings)``.

    An unknown name raises :class:`~topology.errors.UnknownConsumer` (listing the valid ones).
    """
    DEFAULT_FLEET.check([name])
    return importlib.import_module(MODULES[name])
