"""SQLite implementation of the publisher store (the embedded default under ./var).

Calls run on the event loop's thread: each is a short local transaction, and not yielding
inside one is what makes a ``transition`` atomic for this process. ``BEGIN IMMEDIATE`` takes
SQLite's write lock first, so other processes on the same file (``woofleet reconcile``) are
serialised too. Transitions are group-committed (see :meth:`SqliteStore.transition`). The
fsyncs happen in WAL checkpoints, in a worker thread on a connection of their own (see
:meth:`SqliteStore.open`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from fleet.errors import ConfigError
from fleet.state import connect_sqlite, sqlite_path
from publisher.outgoing import Outgoing
from publisher.store import Decide, KeptDelivery, OutboxRow, ResourceKey, SetAsideRow

SCHEMA = """
CREATE TABLE IF NOT EXISTS publisher_resource_state (
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    resource_id INTEGER NOT NULL,
    state TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (source, kind, resource_id)
);
CREATE TABLE IF NOT EXISTS publisher_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    body BLOB NOT NULL,
    properties TEXT NOT NULL,
    queued_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS publisher_cursor (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS publisher_lease (
    name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS publisher_outbox_aside (
    seq INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    body BLOB NOT NULL,
    properties TEXT NOT NULL,
    queued_at TEXT NOT NULL,
    reason TEXT NOT NULL,
    set_aside_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS publisher_kept (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    topic TEXT NOT NULL,
    reason TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    replayed_at TEXT NOT NULL DEFAULT ''
);
"""


log = logging.getLogger(__name__)

#: How often the WAL is checkpointed (and so fsync'd) off the event loop.
CHECKPOINT_SECONDS = 1.0
#: Every this many checkpoints, one that also rewinds the WAL to its start (see _checkpoint).
RESTART_EVERY = 5
#: A rewound WAL file is cut back to this size (it keeps its size otherwise, to be reused).
WAL_SIZE_LIMIT = 64 * 1024 * 1024

#: Rows this process committed and the relay has not read yet, kept in memory at most; past
#: that (the broker is away) the relay reads them back from the table.
FRESH_LIMIT = 5_000


def seq_runs(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """``[1, 2, 3, 7, 9, 10]`` → ``[(1, 3), (7, 7), (9, 10)]``."""
    runs: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if runs and seq == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs


def _checkpoint(connection: sqlite3.Connection, restart: bool) -> None:
    """One checkpoint, on a worker thread: the WAL copied into the database, both fsync'd.

    PASSIVE never waits for, nor blocks, the writer on the event loop. But a writer rewinds
    the WAL to its start only when it begins with every frame copied, which under steady
    deliveries never happens (some commit always lands during the checkpoint): the WAL would
    grow without end (12 MB/s at 300 deliveries/s). So every RESTART_EVERY-th time a RESTART
    follows: it holds the write lock only to copy what was committed during the PASSIVE one
    (a few ms), and the next commit starts the WAL over.
    """
    # Each cursor is read to its end, which resets its statement: left unfinished (the
    # cursor kept alive), it held the WAL and stalled the event loop's next commit ~15 ms.
    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    if restart:
        connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


_KEPT_COLUMNS = "id, received_at, topic, reason, headers, body, replayed_at"


def _kept(row: Sequence[Any]) -> KeptDelivery:
    kept_id, received_at, topic, reason, headers, body, replayed_at = row
    return KeptDelivery(
        int(kept_id),
        str(received_at),
        str(topic),
        str(reason),
        orjson.loads(headers),
        bytes(body),
        str(replayed_at or ""),
    )


class SqliteStore:
    def __init__(self, connection: sqlite3.Connection, path: Path | None = None) -> None:
        self._db = connection
        self._path = path
        self._checkpointer: asyncio.Task[None] | None = None
        self._batch: list[tuple[ResourceKey, Decide, asyncio.Future[list[int]]]] = []
        # Outbox rows committed here, by seq, for the relay in this process (see pending).
        self._fresh: deque[OutboxRow] = deque()

    @classmethod
    def open(cls, state_url: str) -> SqliteStore:
        try:
            connection = connect_sqlite(state_url)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot open the SQLite state store {sqlite_path(state_url)} named by "
                f"WOOFLEET_STATE_URL ({exc}); make its directory writable or point the URL "
                "elsewhere"
            ) from None
        # The webhook answers 2xx once its events are committed here. A commit is in the WAL
        # at once, safe from any crash of woofleet (synchronous=NORMAL); the WAL reaches the
        # disk itself at the next checkpoint, at most CHECKPOINT_SECONDS later, in a worker
        # thread (an fsync per commit on the event loop stalls every delivery in flight).
        # A power cut can lose that last stretch, state and outbox together: `woofleet
        # reconcile` then finds those orders unannounced and announces them.
        connection.execute("PRAGMA wal_autocheckpoint=0")
        connection.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        connection.executescript(SCHEMA)
        return cls(connection, sqlite_path(state_url))

    async def transition(self, key: ResourceKey, decide: Decide) -> list[int]:
        # Group commit: transitions submitted in the same loop iteration share one transaction
        # (one WAL write instead of one per delivery); a delivery whose decide()
        # raises fails alone. Items run in submission order, so two deliveries of one order in
        # a batch still see each other's state.
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[int]] = loop.create_future()
        self._batch.append((key, decide, future))
        if self._checkpointer is None and self._path is not None:
            self._checkpointer = asyncio.ensure_future(self._checkpoints(self._path))
        if len(self._batch) == 1:
            loop.call_soon(self._commit_batch)
        return await future

    def _commit_batch(self) -> None:
        batch, self._batch = self._batch, []
        db = self._db
        outcomes: list[tuple[asyncio.Future[list[int]], list[OutboxRow] | BaseException]] = []
        now = _now()
        try:
            db.execute("BEGIN IMMEDIATE")
            for key, decide, future in batch:
                # A delivery whose decide() raises has written nothing yet, so it fails alone;
                # a failing write (disk full, I/O error) fails the whole batch below.
                previous = self._read_state(key)
                try:
                    new_state, messages = decide(previous)
                except Exception as exc:
                    outcomes.append((future, exc))
                    continue
                outcomes.append((future, self._write(key, new_state, messages, now)))
            db.execute("COMMIT")
        except Exception as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            outcomes = [(future, exc) for _, _, future in batch]
        for future, result in outcomes:
            if isinstance(result, BaseException):
                if not future.cancelled():
                    future.set_exception(result)
                continue
            self._fresh.extend(result)
            if not future.cancelled():
                future.set_result([row.seq for row in result])
        if len(self._fresh) > FRESH_LIMIT:
            self._fresh.clear()

    def _read_state(self, key: ResourceKey) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT state FROM publisher_resource_state "
            "WHERE source = ? AND kind = ? AND resource_id = ?",
            (key.source, key.kind, key.resource_id),
        ).fetchone()
        state: dict[str, Any] | None = orjson.loads(row[0]) if row else None
        return state

    def _write(
        self,
        key: ResourceKey,
        new_state: dict[str, Any] | None,
        messages: Sequence[Outgoing],
        now: str,
    ) -> list[OutboxRow]:
        db = self._db
        if new_state is not None:
            db.execute(
                "INSERT INTO publisher_resource_state VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (source, kind, resource_id) "
                "DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                (key.source, key.kind, key.resource_id, orjson.dumps(new_state).decode(), now),
            )
        queued = []
        for message in messages:
            cursor = db.execute(
                "INSERT INTO publisher_outbox "
                "(message_id, routing_key, body, properties, queued_at) VALUES (?, ?, ?, ?, ?)",
                (
                    message.message_id,
                    message.routing_key,
                    message.body,
                    message.properties_json(),
                    now,
                ),
            )
            queued.append(OutboxRow(int(cursor.lastrowid or 0), message))
        return queued

    async def pending(self, limit: int, after: int = 0) -> list[OutboxRow]:
        fresh = self._fresh_after(after, limit)
        if fresh:
            return fresh
        rows = self._db.execute(
            "SELECT seq, routing_key, body, properties FROM publisher_outbox "
            "WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        ).fetchall()
        return [OutboxRow(seq, Outgoing.from_row(rk, body, props)) for seq, rk, body, props in rows]

    def _fresh_after(self, after: int, limit: int) -> list[OutboxRow]:
        """The rows right after ``after`` from memory, when this process committed all of them.

        Only an unbroken run of seqs starting at ``after + 1`` qualifies: a gap is a row some
        other writer committed (or one that was never committed), and the table decides then.
        """
        # Rows leave memory as they are handed out: sent again (the relay starting over after
        # a failure), they come from the table, which holds only the unconfirmed ones.
        fresh = self._fresh  # in commit order, which is seq order
        while fresh and fresh[0].seq <= after:
            fresh.popleft()
        rows: list[OutboxRow] = []
        expected = after + 1
        while fresh and fresh[0].seq == expected and len(rows) < limit:
            rows.append(fresh.popleft())
            expected += 1
        return rows

    async def delete(self, seqs: Sequence[int]) -> None:
        # Confirmed rows are mostly one unbroken run of seqs: one range per run, one commit.
        if not seqs:
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for first, last in seq_runs(seqs):
                db.execute("DELETE FROM publisher_outbox WHERE seq BETWEEN ? AND ?", (first, last))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def depth(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM publisher_outbox").fetchone()[0])

    async def oldest_age(self) -> float | None:
        row = self._db.execute("SELECT min(queued_at) FROM publisher_outbox").fetchone()
        if row is None or row[0] is None:
            return None
        return max((datetime.now(UTC) - datetime.fromisoformat(row[0])).total_seconds(), 0.0)

    async def take_lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        now = time.time()
        cursor = self._db.execute(
            "INSERT INTO publisher_lease VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE "
            "SET holder = excluded.holder, expires_at = excluded.expires_at "
            "WHERE publisher_lease.holder = excluded.holder OR publisher_lease.expires_at < ?",
            (name, holder, now + ttl_seconds, now),
        )
        return cursor.rowcount == 1

    async def release_lease(self, name: str, holder: str) -> None:
        self._db.execute(
            "DELETE FROM publisher_lease WHERE name = ? AND holder = ?", (name, holder)
        )

    async def get_cursor(self, name: str) -> str | None:
        row = self._db.execute(
            "SELECT value FROM publisher_cursor WHERE name = ?", (name,)
        ).fetchone()
        return str(row[0]) if row else None

    async def set_cursor(self, name: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO publisher_cursor VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    async def set_aside(self, seq: int, reason: str) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT OR REPLACE INTO publisher_outbox_aside SELECT seq, message_id, "
                "routing_key, body, properties, queued_at, ?, ? FROM publisher_outbox "
                "WHERE seq = ?",
                (reason, _now(), seq),
            )
            db.execute("DELETE FROM publisher_outbox WHERE seq = ?", (seq,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        # The gap it leaves sends the relay to the table, which no longer holds it.
        self._fresh = deque(row for row in self._fresh if row.seq != seq)

    async def set_aside_rows(self, limit: int) -> list[SetAsideRow]:
        rows = self._db.execute(
            "SELECT seq, routing_key, body, properties, reason, set_aside_at "
            "FROM publisher_outbox_aside ORDER BY seq LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            SetAsideRow(seq, Outgoing.from_row(rk, body, props), reason, at)
            for seq, rk, body, props, reason, at in rows
        ]

    async def set_aside_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM publisher_outbox_aside").fetchone()[0])

    async def keep(self, headers: dict[str, str], body: bytes, topic: str, reason: str) -> int:
        cursor = self._db.execute(
            "INSERT INTO publisher_kept (received_at, topic, reason, headers, body) "
            "VALUES (?, ?, ?, ?, ?)",
            (_now(), topic, reason, orjson.dumps(headers).decode(), body),
        )
        return int(cursor.lastrowid or 0)

    async def kept_deliveries(
        self, limit: int, *, include_replayed: bool = False
    ) -> list[KeptDelivery]:
        where = "" if include_replayed else "WHERE replayed_at = '' "
        rows = self._db.execute(
            f"SELECT {_KEPT_COLUMNS} FROM publisher_kept {where}ORDER BY id LIMIT ?", (limit,)
        ).fetchall()
        return [_kept(row) for row in rows]

    async def kept_delivery(self, kept_id: int) -> KeptDelivery | None:
        row = self._db.execute(
            f"SELECT {_KEPT_COLUMNS} FROM publisher_kept WHERE id = ?", (kept_id,)
        ).fetchone()
        return _kept(row) if row else None

    async def mark_replayed(self, kept_id: int) -> None:
        self._db.execute(
            "UPDATE publisher_kept SET replayed_at = ? WHERE id = ?", (_now(), kept_id)
        )

    async def kept_count(self) -> int:
        query = "SELECT count(*) FROM publisher_kept WHERE replayed_at = ''"
        return int(self._db.execute(query).fetchone()[0])

    async def writable(self) -> bool:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            return False
        return True

    async def _checkpoints(self, path: Path) -> None:
        """Copy the WAL into the database file, and fsync both, every CHECKPOINT_SECONDS."""
        # A short busy timeout: a RESTART holds off new commits while it waits for the write
        # lock and for readers (another process, a person's sqlite3 shell); it gives up after
        # 0.1 s and tries again RESTART_EVERY checkpoints later.
        connection = sqlite3.connect(path, check_same_thread=False, timeout=0.1)
        loop = asyncio.get_running_loop()
        running: asyncio.Future[None] | None = None
        try:
            for count in itertools.count(1):
                await asyncio.sleep(CHECKPOINT_SECONDS)
                restart = count % RESTART_EVERY == 0
                running = loop.run_in_executor(None, _checkpoint, connection, restart)
                try:
                    await asyncio.shield(running)
                except sqlite3.Error as exc:
                    log.warning("state store: WAL checkpoint failed (%s); trying again", exc)
        finally:
            if running is not None:
                await asyncio.wait([running])  # it runs on in its thread even when cancelled
            connection.close()

    async def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
            self._checkpointer = None
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()
