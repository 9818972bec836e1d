"""Where woofleet keeps state: SQLite under ./var by default, PostgreSQL in a fleet.

``WOOFLEET_STATE_URL`` chooses: ``sqlite:///var/woofleet.db`` (relative) or
``sqlite:////abs/path.db``, or ``postgresql://user@host/db``. Publisher and consumers each own
their tables; this module only opens connections, the same way for both.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from fleet.errors import ConfigError

Backend = Literal["sqlite", "postgresql"]


def backend_of(state_url: str) -> Backend:
    scheme = urlsplit(state_url).scheme
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    raise ConfigError(
        f"WOOFLEET_STATE_URL has scheme {scheme!r}; use sqlite:///var/woofleet.db "
        "or postgresql://user@host/dbname"
    )


def sqlite_path(state_url: str) -> Path:
    """``sqlite:///var/x.db`` → ``var/x.db``; ``sqlite:////tmp/x.db`` → ``/tmp/x.db``."""
    if not state_url.startswith("sqlite:///"):
        raise ConfigError(f"not a SQLite URL: {state_url!r} (expected sqlite:///path/to/file.db)")
    return Path(state_url[len("sqlite:///") :])


def connect_sqlite(state_url: str) -> sqlite3.Connection:
    """A SQLite connection in WAL mode (readers never block the writer), creating ./var."""
    path = sqlite_path(state_url)
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable in WAL mode except on power loss, where the last commits may roll back.
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA busy_timeout=30000")
    return connection
