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

from fleet.errors import ConfigError, DependencyUnavailable

Backend = Literal["sqlite", "postgresql"]

#: Seconds a PostgreSQL connection attempt may take before the store counts as unreachable.
CONNECT_TIMEOUT_SECONDS = 5
#: How libpq says the server was not reached at all (as opposed to a refused user or database).
UNREACHABLE_SIGNS = (
    "connection refused",
    "timeout expired",
    "could not translate host name",
    "no route to host",
    "network is unreachable",
    "no such file or directory",  # a Unix socket path with no server behind it
    "server closed the connection",
    "terminating connection",
    "the connection is closed",
    "connection is lost",
)


def postgres_failure(exc: Exception) -> ConfigError | DependencyUnavailable:
    """What a psycopg failure to connect (or a connection lost) means, in one line: the server
    not answering (exit 3, and a pause for a running consumer) or a setting to fix (exit 2)."""
    detail = _first_line(exc)
    if any(sign in detail.lower() for sign in UNREACHABLE_SIGNS):
        return DependencyUnavailable(
            f"the PostgreSQL state store named by WOOFLEET_STATE_URL is not answering "
            f"({detail}); start it, or point WOOFLEET_STATE_URL at one"
        )
    return ConfigError(
        f"cannot open the PostgreSQL state store named by WOOFLEET_STATE_URL "
        f"({detail}); check the user, password and database in the URL"
    )


def postgres_lost(exc: Exception) -> DependencyUnavailable:
    """A PostgreSQL connection that failed under a call, in one line (the next call connects
    again)."""
    return DependencyUnavailable(
        f"the PostgreSQL state store named by WOOFLEET_STATE_URL stopped answering "
        f"({_first_line(exc)})"
    )


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
