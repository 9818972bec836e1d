"""PostgreSQL implementation of the publisher store, for several publisher processes.

A ``transition`` locks the resource's row (``SELECT ... FOR UPDATE``) for its transaction, so
concurrent deliveries of one order, in this process or any other, are serialised per order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import psycopg

from fleet.errors import DependencyUnavailable
from fleet.state import CONNECT_TIMEOUT_SECONDS, postgres_failure, postgres_lost
from publisher.outgoing import Outgoing
from publisher.store import Decide, KeptDelivery, OutboxRow, ResourceKey, SetAsideRow

SCHEMA = """
CREATE TABLE IF NOT EXISTS publisher_resource_state (
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    resource_id BIGINT NOT NULL,
    state JSONB,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (source, kind, resource_id)
);
CREATE TABLE IF NOT EXISTS publisher_outbox (
    seq BIGSERIAL PRIMARY KEY,
    message_id TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    body BYTEA NOT NULL,
    properties TEXT NOT NULL,
    queued_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS publisher_cursor (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS publisher_lease (
    name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS publisher_outbox_aside (
    seq BIGINT PRIMARY KEY,
    message_id TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    body BYTEA NOT NULL,
    properties TEXT NOT NULL,
    queued_at TIMESTAMPTZ NOT NULL,
    reason TEXT NOT NULL,
    set_aside_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS publisher_kept (
    id BIGSERIAL PRIMARY KEY,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    topic TEXT NOT NULL,
    reason TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BYTEA NOT NULL,
    replayed_at TIMESTAMPTZ
);
"""


#: How long closing waits for a group commit under way.
CLOSE_WAIT_SECONDS = 5.0
#: After a failed attempt to connect again, calls fail at once for this long instead of each
#: waiting for a connection of its own (a store down would otherwise hold every delivery).
RECONNECT_INTERVAL_SECONDS = 1.0

log = logging.getLogger(__name__)
Connection = psycopg.AsyncConnection[tuple[object, ...]]

#: One transition waiting for its group commit: the resource, its decision, its answer.
Pending = tuple[ResourceKey, Decide, "asyncio.Future[list[int]]"]

_INSERT_STATE = (
    "INSERT INTO publisher_resource_state (source, kind, resource_id) "
    "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"
)
_LOCK_STATE = (
    "SELECT state FROM publisher_resource_state "
    "WHERE source = %s AND kind = %s AND resource_id = %s FOR UPDATE"
)
_UPDATE_STATE = (
    "UPDATE publisher_resource_state SET state = %s, updated_at = now() "
    "WHERE source = %s AND kind = %s AND resource_id = %s"
)
_INSERT_OUTBOX = (
    "INSERT INTO publisher_outbox (message_id, routing_key, body, properties) "
    "VALUES (%s, %s, %s, %s) RETURNING seq"
)


_KEPT_COLUMNS = "id, received_at, topic, reason, headers, body, replayed_at"


def _iso(moment: Any) -> str:
    return moment.isoformat(timespec="milliseconds") if moment is not None else ""


def _kept(row: Sequence[Any]) -> KeptDelivery:
    kept_id, received_at, topic, reason, headers, body, replayed_at = row
    return KeptDelivery(
        int(kept_id),
        _iso(received_at),
        str(topic),
        str(reason),
        json.loads(headers),
        bytes(body),
        _iso(replayed_at),
    )


class PostgresStore:
    def __init__(self, connection: Connection, state_url: str) -> None:
        self._db = connection
        self._url = state_url
        self._retry_at = 0.0
        # One connection per process: its statements must not interleave.
        self._lock = asyncio.Lock()
        self._batch: list[Pending] = []
        self._committer: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, state_url: str) -> PostgresStore:
        connection = await cls._connect(state_url)
        # Two processes starting together may both create the tables: serialise that.
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(74101)")
            await connection.execute(SCHEMA)
        return cls(connection, state_url)

    @staticmethod
    async def _connect(state_url: str) -> Connection:
        try:
            return await psycopg.AsyncConnection.connect(
                state_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
            )
        except psycopg.OperationalError as exc:
            raise postgres_failure(exc) from None

    async def _live(self) -> Connection:
        """The connection, opened again if the server dropped it (a restart, a failover): the
        call that meets the loss fails, the next ones connect. Called holding the lock."""
        if not (self._db.closed or self._db.broken):
            return self._db
        if time.monotonic() < self._retry_at:
            raise DependencyUnavailable(
                "the PostgreSQL state store named by WOOFLEET_STATE_URL is not answering; "
                "it is tried again by itself, at most once a second"
            )
        try:
            self._db = await self._connect(self._url)
        except DependencyUnavailable:
            self._retry_at = time.monotonic() + RECONNECT_INTERVAL_SECONDS
            raise
        log.info("state store: connected again")
        return self._db

    def _lost(self, exc: BaseException, db: Connection) -> BaseException:
        """A connection that failed under a call is a dependency away, said in one line."""
        if isinstance(exc, psycopg.Error) and (db.closed or db.broken):
            return postgres_lost(exc)
        return exc

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        """The lock and a live connection; its loss raised as DependencyUnavailable."""
        async with self._lock:
            db = await self._live()
            try:
                yield db
            except psycopg.Error as exc:
                lost = self._lost(exc, db)
                if lost is exc:
                    raise
                raise lost from None

    async def transition(self, key: ResourceKey, decide: Decide) -> list[int]:
        # Group commit: the transitions submitted while a commit is under way, or in the same
        # loop iteration, share one transaction: one commit (one fsync on the server) and
        # four round trips for the group (BEGIN, the locks, the writes, COMMIT), where each
        # delivery took seven and a commit of its own.
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._batch.append((key, decide, future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_groups())
        return await future

    async def _commit_groups(self) -> None:
        while self._batch:
            await asyncio.sleep(0)  # let the deliveries of this loop iteration join
            async with self._lock:
                batch, self._batch = self._batch, []
                db = self._db
                try:
                    db = await self._live()
                    outcomes = await self._commit(db, batch)
                except BaseException as exc:
                    exc = self._lost(exc, db)
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(
                                exc if isinstance(exc, Exception) else ConnectionError(str(exc))
                            )
                    if not isinstance(exc, Exception):
                        raise
                    continue
            for (_, _, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    async def _commit(
        self, db: Connection, batch: list[Pending]
    ) -> list[list[int] | BaseException]:
        """One transaction for the group, in submission order; a delivery whose decide()
        raises has written nothing and fails alone, a failing statement fails the group."""
        idents = sorted({(k.source, k.kind, k.resource_id) for k, _, _ in batch})
        async with db.transaction(), db.pipeline():
            # Lock every resource of the group first, in one order for every process (no
            # deadlock between two publishers whose groups share orders), in one round trip.
            locked = []
            for ident in idents:
                await db.execute(_INSERT_STATE, ident)
                locked.append(await db.execute(_LOCK_STATE, ident))
            states: dict[tuple[str, str, int], dict[str, Any] | None] = {}
            for ident, cursor in zip(idents, locked, strict=True):
                row = await cursor.fetchone()
                states[ident] = row[0] if row and isinstance(row[0], dict) else None
            planned: list[list[psycopg.AsyncCursor[tuple[object, ...]]] | BaseException] = []
            for key, decide, _ in batch:
                ident = (key.source, key.kind, key.resource_id)
                try:
                    new_state, messages = decide(states[ident])
                except Exception as exc:
                    planned.append(exc)
                    continue
                if new_state is not None:
                    states[ident] = new_state  # a later delivery of it in the group sees it
                    await db.execute(_UPDATE_STATE, (json.dumps(new_state), *ident))
                inserts = []
                for message in messages:
                    inserts.append(
                        await db.execute(
                            _INSERT_OUTBOX,
                            (
                                message.message_id,
                                message.routing_key,
                                message.body,
                                message.properties_json(),
                            ),
                        )
                    )
                planned.append(inserts)
            outcomes: list[list[int] | BaseException] = []
            for item in planned:
                if isinstance(item, BaseException):
                    outcomes.append(item)
                    continue
                seqs = []
                for cursor in item:
                    inserted = await cursor.fetchone()
                    assert inserted is not None
                    seqs.append(int(str(inserted[0])))
                outcomes.append(seqs)
        return outcomes

    async def pending(self, limit: int, after: int = 0) -> list[OutboxRow]:
        async with self._connection() as db:
            cursor = await db.execute(
                "SELECT seq, routing_key, body, properties FROM publisher_outbox "
                "WHERE seq > %s ORDER BY seq LIMIT %s",
                (after, limit),
            )
            rows = await cursor.fetchall()
        return [
            OutboxRow(int(str(seq)), Outgoing.from_row(str(rk), bytes(body), str(props)))  # type: ignore[call-overload]
            for seq, rk, body, props in rows
        ]

    async def delete(self, seqs: Sequence[int]) -> None:
        if seqs:
            async with self._connection() as db:
                await db.execute("DELETE FROM publisher_outbox WHERE seq = ANY(%s)", (list(seqs),))

    async def depth(self) -> int:
        async with self._connection() as db:
            cursor = await db.execute("SELECT count(*) FROM publisher_outbox")
            row = await cursor.fetchone()
        return int(str(row[0])) if row else 0

    async def oldest_age(self) -> float | None:
        async with self._connection() as db:
            cursor = await db.execute(
                "SELECT extract(epoch FROM clock_timestamp() - min(queued_at)) "
                "FROM publisher_outbox"
            )
            row = await cursor.fetchone()
        return None if row is None or row[0] is None else max(float(str(row[0])), 0.0)

    async def take_lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        now = time.time()
        async with self._connection() as db:
            cursor = await db.execute(
                "INSERT INTO publisher_lease VALUES (%s, %s, %s) ON CONFLICT (name) DO UPDATE "
                "SET holder = excluded.holder, expires_at = excluded.expires_at "
                "WHERE publisher_lease.holder = excluded.holder "
                "OR publisher_lease.expires_at < %s",
                (name, holder, now + ttl_seconds, now),
            )
        return cursor.rowcount == 1

    async def release_lease(self, name: str, holder: str) -> None:
        async with self._connection() as db:
            await db.execute(
                "DELETE FROM publisher_lease WHERE name = %s AND holder = %s", (name, holder)
            )

    async def get_cursor(self, name: str) -> str | None:
        async with self._connection() as db:
            cursor = await db.execute("SELECT value FROM publisher_cursor WHERE name = %s", (name,))
            row = await cursor.fetchone()
        return str(row[0]) if row else None

    async def set_cursor(self, name: str, value: str) -> None:
        async with self._connection() as db:
            await db.execute(
                "INSERT INTO publisher_cursor VALUES (%s, %s) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

    async def set_aside(self, seq: int, reason: str) -> None:
        async with self._connection() as db, db.transaction():
            await db.execute(
                "INSERT INTO publisher_outbox_aside (seq, message_id, routing_key, body, "
                "properties, queued_at, reason) SELECT seq, message_id, routing_key, body, "
                "properties, queued_at, %s FROM publisher_outbox WHERE seq = %s "
                "ON CONFLICT (seq) DO NOTHING",
                (reason, seq),
            )
            await db.execute("DELETE FROM publisher_outbox WHERE seq = %s", (seq,))

    async def set_aside_rows(self, limit: int) -> list[SetAsideRow]:
        async with self._connection() as db:
            cursor = await db.execute(
                "SELECT seq, routing_key, body, properties, reason, set_aside_at "
                "FROM publisher_outbox_aside ORDER BY seq LIMIT %s",
                (limit,),
            )
            rows = await cursor.fetchall()
        return [
            SetAsideRow(
                int(str(seq)),
                Outgoing.from_row(str(rk), bytes(body), str(props)),  # type: ignore[call-overload]
                str(reason),
                _iso(at),
            )
            for seq, rk, body, props, reason, at in rows
        ]

    async def set_aside_count(self) -> int:
        return await self._count("SELECT count(*) FROM publisher_outbox_aside")

    async def keep(self, headers: dict[str, str], body: bytes, topic: str, reason: str) -> int:
        async with self._connection() as db:
            cursor = await db.execute(
                "INSERT INTO publisher_kept (topic, reason, headers, body) "
                "VALUES (%s, %s, %s, %s) RETURNING id",
                (topic, reason, json.dumps(headers), body),
            )
            row = await cursor.fetchone()
        return int(str(row[0])) if row else 0

    async def kept_deliveries(
        self, limit: int, *, include_replayed: bool = False
    ) -> list[KeptDelivery]:
        where = "" if include_replayed else "WHERE replayed_at IS NULL "
        async with self._connection() as db:
            cursor = await db.execute(
                f"SELECT {_KEPT_COLUMNS} FROM publisher_kept {where}ORDER BY id LIMIT %s",
                (limit,),
            )
            rows = await cursor.fetchall()
        return [_kept(row) for row in rows]

    async def kept_delivery(self, kept_id: int) -> KeptDelivery | None:
        async with self._connection() as db:
            cursor = await db.execute(
                f"SELECT {_KEPT_COLUMNS} FROM publisher_kept WHERE id = %s", (kept_id,)
            )
            row = await cursor.fetchone()
        return _kept(row) if row else None

    async def mark_replayed(self, kept_id: int) -> None:
        async with self._connection() as db:
            await db.execute(
                "UPDATE publisher_kept SET replayed_at = now() WHERE id = %s", (kept_id,)
            )

    async def kept_count(self) -> int:
        return await self._count("SELECT count(*) FROM publisher_kept WHERE replayed_at IS NULL")

    async def _count(self, query: str) -> int:
        async with self._connection() as db:
            cursor = await db.execute(query)
            row = await cursor.fetchone()
        return int(str(row[0])) if row else 0

    async def writable(self) -> bool:
        try:
            async with self._connection() as db:
                await db.execute("SELECT 1")
        except (psycopg.Error, DependencyUnavailable):
            return False
        return True

    async def close(self) -> None:
        if self._committer is not None:
            # Let a group being committed finish: its deliveries are waiting for the answer
            # (a few seconds at most: a server that stopped answering fails them instead).
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._committer, CLOSE_WAIT_SECONDS)
        left, self._batch = self._batch, []
        for _, _, future in left:
            if not future.done():
                future.set_exception(ConnectionError("the state store was closed"))
        await self._db.close()
