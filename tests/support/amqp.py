"""Small helpers for tests that talk to the real broker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from contracts.envelope import Envelope
from contracts.messages import message_body, message_properties
from fleet.amqp import publish_confirmed
from tests.conftest import MANAGEMENT_URL
from topology import names
from topology.apply import ApplyReport, apply_fleet
from topology.fleet import DEFAULT_FLEET, FleetSpec
from topology.management import Management

#: Retry tiers short enough for tests, long enough to measure.
FAST_TIERS = (0.3, 0.6)


def fast_fleet(
    *consumer_names: str,
    tiers: tuple[float, ...] = FAST_TIERS,
    outage_tiers: tuple[float, ...] = (),
    **changes: Any,
) -> FleetSpec:
    """The default fleet's consumers (all, or those named) with short retry tiers and, unless
    asked for, no outage tiers (a handler failing alone then meets the ladder's end)."""
    fleet = DEFAULT_FLEET.only(*consumer_names) if consumer_names else DEFAULT_FLEET
    return replace(
        fleet,
        consumers=tuple(
            replace(c, retry_tiers=tiers, outage_tiers=outage_tiers, **changes)
            for c in fleet.consumers
        ),
    )


async def apply(connection: AbstractRobustConnection, fleet: FleetSpec, vhost: str) -> ApplyReport:
    with Management(MANAGEMENT_URL) as management:
        return await apply_fleet(connection, fleet, vhost=vhost, management=management)


async def publish(
    connection: AbstractRobustConnection,
    event: Envelope[Any],
    *,
    priority: int = 0,
    body: bytes | None = None,
    routing_key: str | None = None,
) -> None:
    """Publish an event to woo.events the way the publisher does (confirmed, mandatory)."""
    async with connection.channel(publisher_confirms=True, on_return_raises=True) as channel:
        exchange = await channel.get_exchange(names.EVENTS_EXCHANGE, ensure=False)
        props = message_properties(event, priority=priority)
        message = aio_pika.Message(body=body if body is not None else message_body(event), **props)
        await publish_confirmed(exchange, message, routing_key or event.event_type)


async def drain(connection: AbstractRobustConnection, queue: str) -> list[AbstractIncomingMessage]:
    """Take (and ack) every message now in ``queue``."""
    messages = []
    async with connection.channel() as channel:
        q = await channel.declare_queue(queue, passive=True)
        while (message := await q.get(fail=False)) is not None:
            await message.ack()
            messages.append(message)
    return messages


async def depth(connection: AbstractRobustConnection, queue: str) -> int:
    async with connection.channel() as channel:
        q = await channel.declare_queue(queue, passive=True)
        return q.declaration_result.message_count or 0


async def wait_until(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout: float = 10.0,
    interval: float = 0.05,
) -> None:
    """Poll ``check`` until true; fail the test with a clear message after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
