"""Inspecting, replaying and purging a consumer's dead-letter queue ``woo.<consumer>.dlq``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
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
from topology import names

FAILURE_HEADERS = (
    ATTEMPT_HEADER,
    ERROR_HEADER,
    FIRST_FAILED_HEADER,
    LAST_FAILED_HEADER,
    CONSUMER_HEADER,
)


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    event_type: str
    ref: str
    priority: int
    attempt: int
    error: str
    first_failed_at: str
    last_failed_at: str
    headers: dict[str, Any]
    body: bytes

    @classmethod
    def of(cls, message: AbstractIncomingMessage) -> DeadLetter:
        headers = dict(message.headers or {})
        return cls(
            message_id=message.message_id or "",
            event_type=message.type or "",
            ref=message.correlation_id or "",
            priority=message.priority or 0,
            attempt=int(str(headers.get(ATTEMPT_HEADER, 0) or 0)),
            error=str(headers.get(ERROR_HEADER, "")),
            first_failed_at=str(headers.get(FIRST_FAILED_HEADER, "")),
            last_failed_at=str(headers.get(LAST_FAILED_HEADER, "")),
            headers=headers,
            body=message.body,
        )


@asynccontextmanager
async def _browse(
    connection: AbstractRobustConnection, consumer: str
) -> AsyncIterator[AsyncIterator[AbstractIncomingMessage]]:
    """Yield the DLQ's messages one by one; whatever is not acked goes back when done."""
    channel = await connection.channel()
    queue = await channel.declare_queue(names.dead_letter_queue(consumer), passive=True)
    count = queue.declaration_result.message_count or 0

    async def messages() -> AsyncIterator[AbstractIncomingMessage]:
        # Never more than the queue held when we started: requeued messages are not seen twice.
        for _ in range(count):
            message = await queue.get(fail=False)
            if message is None:
                return
            yield message

    try:
        yield messages()
    finally:
        # Closing the channel returns every unacked message to the queue, in order.
        await channel.close()


async def list_dead_letters(
    connection: AbstractRobustConnection, consumer: str, *, limit: int = 100
) -> list[DeadLetter]:
    found: list[DeadLetter] = []
    async with _browse(connection, consumer) as messages:
        async for message in messages:
            found.append(DeadLetter.of(message))
            if len(found) >= limit:
                break
    return found


async def replay(
    connection: AbstractRobustConnection,
    consumer: str,
    *,
    message_ids: set[str] | None = None,
    limit: int | None = None,
) -> int:
    """Send dead letters back to their consumer's work queue (only), as first attempts.

    Each is published, confirmed, before it is removed from the DLQ.
    """
    replayed = 0
    async with connection.channel(publisher_confirms=True, on_return_raises=True) as pub:
        work = await pub.get_exchange(names.WORK_EXCHANGE, ensure=False)
        async with _browse(connection, consumer) as messages:
            async for message in messages:
                if message_ids is not None and message.message_id not in message_ids:
                    continue
                headers = {
                    k: v for k, v in (message.headers or {}).items() if k not in FAILURE_HEADERS
                }
                fresh = copy_message(message, headers)
                await publish_confirmed(work, fresh, names.work_queue(consumer))
                await message.ack()
                replayed += 1
                if limit is not None and replayed >= limit:
                    break
    return replayed


async def purge(connection: AbstractRobustConnection, consumer: str) -> int:
    async with connection.channel() as channel:
        queue = await channel.declare_queue(names.dead_letter_queue(consumer), passive=True)
        result = await queue.purge()
        return int(result.message_count or 0)
