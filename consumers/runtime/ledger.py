"""The idempotency ledger: which (consumer, business key) effects are already done.

It also counts redeliveries of messages that were never acknowledged (a consumer killed in the
middle of a handler), so a message that crashes its consumer every time is dead-lettered instead
of looping forever.

A store that cannot be reached raises :class:`DependencyUnavailable` from every call: the worker
pauses on it (consumers/runtime/pause.py) rather than requeueing in a loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import psycopg

from fleet.errors import ConfigError, DependencyUnavailable
from fleet.state import (
    CONNECT_TIMEOUT_SECONDS,
    backend_of,
    connect_sqlite,
    postgres_failure,
    postgres_lost,
)


class Ledger(Protocol):
    async def check(self) -> None:
        """Reach the store and make its tables: ConfigError for a setting to fix,
        DependencyUnavailable for a store that does not answer."""
        ...

    async def is_done(self, consumer: str, key: str) -> bool:
        """Whether the effect for ``key`` was already recorded by ``consumer``."""
        ...

    async def mark_done(self, consumer: str, key: str) -> None:
        """Record the effect for ``key`` as done (idempotent)."""
        ...

    async def count_redelivery(self, consumer: str, message_id: str) -> int:
        """Add one to the redeliveries of ``message_id`` and return the new count."""
        ...

    async def close(self) -> None: ...


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS consumer_ledger (
        consumer TEXT NOT NULL, business_key TEXT NOT NULL, done_at TEXT NOT NULL,
        PRIMARY KEY (consumer, business_key))""",
    """CREATE TABLE IF NOT EXISTS consumer_redeliveries (
        consumer TEXT NOT NULL, message_id TEXT NOT NULL, count INTEGER NOT NULL,
        PRIMARY KEY (consumer, message_id))""",
)

_REDELIVERY_UPSERT = """INSERT INTO consumer_redeliveries (consumer, message_id, count)
    VALUES ({p}, {p}, 1) ON CONFLICT (consumer, message_id)
    DO UPDATE SET count = consumer_redeliveries.count + 1 RETURNING count"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _sqlite_unavailable(exc: sqlite3.Error) -> DependencyUnavailable:
    return DependencyUnavailable(
        f"the SQLite state store named by WOOFLEET_STATE_URL failed ({exc}); "
        "check the disk and the file's permissions"
    )


class SQLiteLedger:
    """The embedded default. Calls are short single-row statements, so they run inline."""

    def __init__(self, state_url: str) -> None:
        try:
            self._db: sqlite3.Connection = connect_sqlite(state_url)
            for statement in _SCHEMA:
                self._db.execute(statement)
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(
                f"cannot open the SQLite state store named by WOOFLEET_STATE_URL ({exc}); "
                "check the path and its permissions"
            ) from None

    async def check(self) -> None:
        try:
            self._db.execute("SELECT 1 FROM consumer_ledger LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise _sqlite_unavailable(exc) from None

    async def is_done(self, consumer: str, key: str) -> bool:
        try:
            row = self._db.execute(
                "SELECT 1 FROM consumer_ledger WHERE consumer = ? AND business_key = ?",
                (consumer, key),
            ).fetchone()
        except sqlite3.Error as exc:
            raise _sqlite_unavailable(exc) from None
        return row is not None

    async def mark_done(self, consumer: str, key: str) -> None:
        try:
            self._db.execute(
                "INSERT OR IGNORE INTO consumer_ledger (consumer, business_key, done_at) "
                "VALUES (?, ?, ?)",
                (consumer, key, _now()),
            )
        except sqlite3.Error as exc:
            raise _sqlite_unavailable(exc) from None

    async def count_redelivery(self, consumer: str, message_id: str) -> int:
        try:
            row = self._db.execute(
                _REDELIVERY_UPSERT.format(p="?"), (consumer, message_id)
            ).fetchone()
        except sqlite3.Error as exc:
            raise _sqlite_unavailable(exc) from None
        return int(row[0])

    async def close(self) -> None:
        self._db.close()


class PostgresLedger:
    """The fleet's ledger, shared by every replica of a consumer.

    With ``batch`` (the default) the lookups and records of a worker's concurrent deliveries
    share statements: a call made while a statement is out waits for it, and every call that
    gathered meanwhile goes out as one statement (no added wait when the ledger is idle). A call
    still returns only once its own statement has answered, so mark_done has committed before
    the delivery is acked, as with one statement per call (``batch=False``).
    """

    def __init__(self, state_url: str, *, batch: bool = True) -> None:
        self._url = state_url
        self._batch = batch
        self._lock = asyncio.Lock()
        self._conn: psycopg.AsyncConnection[Any] | None = None
        #: Calls waiting for the next statement, per consumer: (key, future).
        self._lookups: dict[str, list[tuple[str, asyncio.Future[bool]]]] = {}
        self._marks: dict[str, list[tuple[str, asyncio.Future[None]]]] = {}
        self._flusher: asyncio.Task[None] | None = None
        #: Lookup and record statements sent, and the calls they answered (calls per statement).
        self.statements = 0
        self.calls = 0

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        async with self._lock:
            if self._conn is None or self._conn.closed:
                try:
                    conn = await psycopg.AsyncConnection.connect(
                        self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
                    )
                    for statement in _SCHEMA:
                        await conn.execute(statement)
                except psycopg.OperationalError as exc:
                    raise postgres_failure(exc) from None
                self._conn = conn
            return self._conn

    def _lost(self, exc: psycopg.Error) -> DependencyUnavailable:
        """The connection failed mid-call: the next call connects again."""
        self._conn = None
        return postgres_lost(exc)

    async def check(self) -> None:
        conn = await self._connection()
        try:
            await conn.execute("SELECT 1")
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise self._lost(exc) from None

    async def is_done(self, consumer: str, key: str) -> bool:
        if self._batch:
            future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            self._lookups.setdefault(consumer, []).append((key, future))
            self._wake()
            return await future
        done = await self._lookup(consumer, [key])
        return key in done

    async def mark_done(self, consumer: str, key: str) -> None:
        if self._batch:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._marks.setdefault(consumer, []).append((key, future))
            self._wake()
            await future
            return
        await self._record(consumer, [key])

    async def _lookup(self, consumer: str, keys: list[str]) -> set[str]:
        """Which of ``keys`` are done for ``consumer``: one statement."""
        self.statements += 1
        self.calls += len(keys)
        try:
            conn = await self._connection()
            if len(keys) == 1:
                cur = await conn.execute(
                    "SELECT business_key FROM consumer_ledger "
                    "WHERE consumer = %s AND business_key = %s",
                    (consumer, keys[0]),
                )
            else:
                cur = await conn.execute(
                    "SELECT business_key FROM consumer_ledger "
                    "WHERE consumer = %s AND business_key = ANY(%s)",
                    (consumer, keys),
                )
            return {row[0] for row in await cur.fetchall()}
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise self._lost(exc) from None
        except ConfigError as exc:  # the role or database went away while running
            raise DependencyUnavailable(str(exc)) from None

    async def _record(self, consumer: str, keys: list[str]) -> None:
        """Record ``keys`` as done for ``consumer``: one statement, committed on return."""
        self.statements += 1
        self.calls += len(keys)
        try:
            conn = await self._connection()
            if len(keys) == 1:
                await conn.execute(
                    "INSERT INTO consumer_ledger (consumer, business_key, done_at) "
                    "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                    (consumer, keys[0], _now()),
                )
            else:
                await conn.execute(
                    "INSERT INTO consumer_ledger (consumer, business_key, done_at) "
                    "SELECT %s, k, %s FROM unnest(%s::text[]) AS k ON CONFLICT DO NOTHING",
                    (consumer, _now(), keys),
                )
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise self._lost(exc) from None
        except ConfigError as exc:
            raise DependencyUnavailable(str(exc)) from None

    def _wake(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        """Send what gathered, one statement per kind and consumer, until nothing waits."""
        while self._marks or self._lookups:
            marks, self._marks = self._marks, {}
            lookups, self._lookups = self._lookups, {}
            for consumer, waiting in marks.items():
                try:
                    await self._record(consumer, list(dict.fromkeys(k for k, _ in waiting)))
                except Exception as exc:
                    _fail(waiting, exc)
                    continue
                for _, future in waiting:
                    if not future.done():
                        future.set_result(None)
            for consumer, asked in lookups.items():
                try:
                    done = await self._lookup(consumer, list(dict.fromkeys(k for k, _ in asked)))
                except Exception as exc:
                    _fail(asked, exc)
                    continue
                for key, answer in asked:
                    if not answer.done():
                        answer.set_result(key in done)

    async def count_redelivery(self, consumer: str, message_id: str) -> int:
        try:
            conn = await self._connection()
            cur = await conn.execute(_REDELIVERY_UPSERT.format(p="%s"), (consumer, message_id))
            row = await cur.fetchone()
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise self._lost(exc) from None
        except ConfigError as exc:
            raise DependencyUnavailable(str(exc)) from None
        assert row is not None  # RETURNING always yields the row
        return int(row[0])

    async def close(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            await asyncio.wait([self._flusher], timeout=CONNECT_TIMEOUT_SECONDS)
        if self._conn is not None:
            await self._conn.close()


def _fail(waiting: Sequence[tuple[str, asyncio.Future[Any]]], exc: Exception) -> None:
    for _, future in waiting:
        if not future.done():
            future.set_exception(exc)


def open_ledger(state_url: str) -> Ledger:
    """The ledger WOOFLEET_STATE_URL names: SQLite (default) or PostgreSQL."""
    if backend_of(state_url) == "postgresql":
        return PostgresLedger(state_url)
    return SQLiteLedger(state_url)
