"""Finding a server's own programs (pg_ctl, rabbitmq-server), which are often off the PATH."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path


def find_tool(name: str, directories: Iterable[Path], package: str) -> str:
    """``name`` from the first of ``directories`` holding it, else from the PATH."""
    for directory in directories:
        if (directory / name).exists():
            return str(directory / name)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: install {package}")
    return found
