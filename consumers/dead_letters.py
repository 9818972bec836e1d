"""Browsing, replaying and purging a consumer's dead-letter queue ``woo.<consumer>.dlq``.

Browsing never changes the queue. Every operation takes a *snapshot*: it gets the messages the
queue held when it started, one by one and without acking, and closing its channel gives back
the ones it did not settle. A classic queue (the DLQs are classic for this reason, see
topology/fleet.py) puts a message given back where it was and counts no delivery, so the order
and the headers stay as they were. Replay and purge walk the same snapshot with the same
:class:`LetterFilter` and settle only what it selects: they act on exactly what ``list`` shows.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from consumers.runtime.failure import copy_message
from contracts.messages import (
    ATTEMPT_HEADER,
    CONSUMER_HEADER,
    ERROR_HEADER,
    FIRST_FAILED_HEADER,
    LAST_FAILED_HEADER,
)
from fleet.amqp import publish_confirmed
from fleet.errors import WoofleetError
from topology import names

FAILURE_HEADERS = (
    ATTEMPT_HEADER,
    ERROR_HEADER,
    FIRST_FAILED_HEADER,
    LAST_FAILED_HEADER,
    CONSUMER_HEADER,
)


class UnknownDeadLetter(WoofleetError):
    """An id named on the command line is not in the queue."""


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter as an operator reads it: what failed, for which order, when and why."""

    consumer: str
    message_id: str
    event_type: str
    #: The order id (the message's correlation id).
    ref: str
    #: The order number shoppers and staff see, from the body (may differ from the id).
    order_number: str
    priority: int
    attempt: int
    reason: str
    first_failed_at: str
    last_failed_at: str
    headers: dict[str, Any]
    body: bytes

    @classmethod
    def of(cls, consumer: str, message: AbstractIncomingMessage) -> DeadLetter:
        headers = dict(message.headers or {})
        return cls(
            consumer=consumer,
            message_id=message.message_id or "",
            event_type=message.type or "",
            ref=message.correlation_id or "",
            order_number=_order_number(message.body),
            priority=message.priority or 0,
            attempt=int(str(headers.get(ATTEMPT_HEADER, 0) or 0)),
            reason=str(headers.get(ERROR_HEADER, "")),
            first_failed_at=str(headers.get(FIRST_FAILED_HEADER, "")),
            last_failed_at=str(headers.get(LAST_FAILED_HEADER, "")),
            headers=headers,
            body=message.body,
        )

    def age(self, now: datetime) -> float | None:
        """Seconds since it was dead-lettered; None when the header is missing or unreadable."""
        try:
            failed = datetime.fromisoformat(self.last_failed_at)
        except ValueError:
            return None
        if failed.tzinfo is None:
            failed = failed.replace(tzinfo=UTC)
        return (now - failed).total_seconds()

    def as_dict(self) -> dict[str, Any]:
        """What ``show`` prints and ``purge`` archives (the body parsed when it is JSON)."""
        body: Any
        try:
            body = json.loads(self.body)
        except ValueError:
            body = self.body.decode("utf-8", "replace")
        return {
            "consumer": self.consumer,
            "message_id": self.message_id,
            "event_type": self.event_type,
            "order_id": self.ref,
            "order_number": self.order_number,
            "priority": self.priority,
            "attempt": self.attempt,
            "reason": self.reason,
            "first_failed_at": self.first_failed_at,
            "last_failed_at": self.last_failed_at,
            "headers": self.headers,
            "body": body,
        }


def _order_number(body: bytes) -> str:
    try:
        data = json.loads(body).get("data") or {}
    except (ValueError, AttributeError):
        return ""
    return str(data.get("number", "")) if isinstance(data, dict) else ""


@dataclass(frozen=True)
class LetterFilter:
    """Which dead letters an operation is about; every condition given must hold."""

    ids: frozenset[str] = frozenset()
    #: Case-insensitive text the reason must contain.
    reason: str | None = None
    #: An event type, or a pattern like ``order.*``.
    event_type: str | None = None
    #: An order id or order number.
    order: str | None = None
    older_than: float | None = None
    newer_than: float | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def selects_all(self) -> bool:
        return not self.ids and all(
            v is None
            for v in (self.reason, self.event_type, self.order, self.older_than, self.newer_than)
        )

    def matches(self, letter: DeadLetter) -> bool:
        if self.ids and letter.message_id not in self.ids:
            return False
        if self.reason is not None and self.reason.casefold() not in letter.reason.casefold():
            return False
        if self.event_type is not None and not fnmatch.fnmatchcase(
            letter.event_type, self.event_type
        ):
            return False
        if self.order is not None and self.order not in (letter.ref, letter.order_number):
            return False
        if self.older_than is not None or self.newer_than is not None:
            age = letter.age(self.now)
            if age is None:
                return False
            if self.older_than is not None and age < self.older_than:
                return False
            if self.newer_than is not None and age > self.newer_than:
                return False
        return True


@dataclass
class Snapshot:
    """The messages a DLQ held when the snapshot began, in queue order, none settled yet."""

    consumer: str
    #: How many messages the queue held (exact: from the broker, not from statistics).
    total: int
    held: list[tuple[DeadLetter, AbstractIncomingMessage]]

    def select(
        self, letter_filter: LetterFilter, limit: int | None = None
    ) -> list[tuple[DeadLetter, AbstractIncomingMessage]]:
        """The held messages the filter selects, in queue order, at most ``limit``."""
        chosen = [(d, m) for d, m in self.held if letter_filter.matches(d)]
        missing = sorted(letter_filter.ids - {d.message_id for d, _ in chosen})
        if missing:
            raise UnknownDeadLetter(
                f"no dead letter {', '.join(missing)} in {names.dead_letter_queue(self.consumer)}"
                f"; `woofleet dlq list {self.consumer}` shows the ids it holds"
            )
        return chosen if limit is None else chosen[:limit]


@asynccontextmanager
async def snapshot(
    connection: AbstractRobustConnection, consumer: str, *, stop_after: int | None = None
) -> AsyncIterator[Snapshot]:
    """Hold the queue's messages (at most ``stop_after``) until the block ends.

    Whatever was not acked inside the block goes back to its place when the channel closes.
    """
    channel = await connection.channel()
    try:
        queue = await channel.declare_queue(names.dead_letter_queue(consumer), passive=True)
        total = queue.declaration_result.message_count or 0
        wanted = total if stop_after is None else min(total, stop_after)
        held = []
        # Never more than the queue held at the start: later arrivals are not part of it.
        for _ in range(wanted):
            message = await queue.get(fail=False, no_ack=False)
            if message is None:
                break
            held.append((DeadLetter.of(consumer, message), message))
        yield Snapshot(consumer, total, held)
    finally:
        await channel.close()


async def list_dead_letters(
    connection: AbstractRobustConnection,
    consumer: str,
    letter_filter: LetterFilter | None = None,
    *,
    limit: int | None = None,
) -> tuple[int, list[DeadLetter]]:
    """(how many the queue holds, the letters the filter selects in queue order)."""
    chosen_filter = letter_filter or LetterFilter()
    # Without a filter the first ``limit`` messages are all that is needed.
    stop_after = limit if chosen_filter.selects_all else None
    async with snapshot(connection, consumer, stop_after=stop_after) as snap:
        return snap.total, [d for d, _ in snap.select(chosen_filter, limit)]


Progress = Callable[[int, int], None]


async def replay(
    connection: AbstractRobustConnection,
    consumer: str,
    letter_filter: LetterFilter | None = None,
    *,
    limit: int | None = None,
    rate: float | None = None,
    progress: Progress | None = None,
) -> list[DeadLetter]:
    """Send the selected dead letters back to their consumer's work queue only, as first
    attempts (the failure headers dropped), at most ``rate`` per second.

    Each is published, confirmed, before it is removed from the DLQ: a crash between the two
    replays it twice, never loses it (the consumer's ledger absorbs the repeat).
    """
    replayed: list[DeadLetter] = []
    async with connection.channel(publisher_confirms=True, on_return_raises=True) as pub:
        work = await pub.get_exchange(names.WORK_EXCHANGE, ensure=False)
        chosen_filter = letter_filter or LetterFilter()
        stop_after = limit if chosen_filter.selects_all else None
        async with snapshot(connection, consumer, stop_after=stop_after) as snap:
            chosen = snap.select(chosen_filter, limit)
            interval = 1.0 / rate if rate else 0.0
            next_at = time.monotonic()
            for letter, message in chosen:
                if interval:
                    await asyncio.sleep(max(next_at - time.monotonic(), 0.0))
                    next_at = max(next_at, time.monotonic()) + interval
                headers = {k: v for k, v in letter.headers.items() if k not in FAILURE_HEADERS}
                await publish_confirmed(
                    work, copy_message(message, headers), names.work_queue(consumer)
                )
                await message.ack()
                replayed.append(letter)
                if progress is not None:
                    progress(len(replayed), len(chosen))
    return replayed


async def purge(
    connection: AbstractRobustConnection,
    consumer: str,
    letter_filter: LetterFilter | None = None,
    *,
    archive: Callable[[list[DeadLetter]], None],
    confirm: Callable[[int, int], bool] = lambda selected, total: True,
) -> list[DeadLetter]:
    """Delete the selected dead letters once ``archive`` has kept them and ``confirm`` agreed.

    ``archive`` runs (and must raise on failure) before anything is deleted; ``confirm`` gets
    (selected, total) and may refuse, in which case nothing changes.
    """
    async with snapshot(connection, consumer) as snap:
        chosen = snap.select(letter_filter or LetterFilter())
        # Both may block (a prompt, an upload): off the loop, so the connection's heartbeats go on.
        if not chosen or not await asyncio.to_thread(confirm, len(chosen), snap.total):
            return []
        letters = [d for d, _ in chosen]
        await asyncio.to_thread(archive, letters)
        for _, message in chosen:
            await message.ack()
        return letters


@dataclass(frozen=True)
class ReasonGroup:
    reason: str
    count: int
    consumers: tuple[str, ...]
    oldest_failed_at: str
    newest_failed_at: str


def group_by_reason(letters: list[DeadLetter]) -> list[ReasonGroup]:
    """One group per distinct reason, largest first (ties: the reason's text)."""
    groups: dict[str, list[DeadLetter]] = {}
    for letter in letters:
        groups.setdefault(letter.reason, []).append(letter)
    result = []
    for reason, members in groups.items():
        times = sorted(m.last_failed_at for m in members)
        result.append(
            ReasonGroup(
                reason,
                len(members),
                tuple(sorted({m.consumer for m in members})),
                times[0],
                times[-1],
            )
        )
    return sorted(result, key=lambda g: (-g.count, g.reason))
