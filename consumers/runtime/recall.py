"""Messages waiting out an outage come back when their target does.

An outage tier is a queue with a fixed TTL (30 s up to an hour): a message that reached the
30-minute tier would wait its thirty minutes even when the target is back after one. So when a
worker's breaker closes (its probe succeeded: the target answers again) the worker moves what
waits in its outage tiers back into its work queue at once. And while the breaker is half-open
with nothing in the work queue to probe with (the outage outlasted the orders), it takes one
message from the tiers early to be the probe; should the target still fail, that message goes
back to the tier it came from, counting nothing (it was taken before its time, see
:data:`PROBE_FROM_HEADER`).

A move is a confirmed publish, then the ack of the original, on a channel of its own (a
basic.get's delivery tag must never meet the consumer channel's batched acks): a crash between
the two leaves two copies, and the ledger makes the second a duplicate. The copy goes through
the consumer's own retry exchange, bound to its work queue under the work queue's name, so the
consumer's broker user needs no permission it did not have.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiormq.exceptions
from aio_pika.abc import AbstractConnection, AbstractExchange

from consumers.runtime.failure import copy_message
from contracts.messages import PROBE_FROM_HEADER
from fleet.amqp import publish_confirmed
from fleet.errors import TopologyError
from topology import names
from topology.fleet import ConsumerPolicy

#: Seconds to wait for the broker's answer to one basic.get.
GET_TIMEOUT = 10.0


def recallable_tiers(policy: ConsumerPolicy) -> tuple[float, ...]:
    """The outage tiers, shortest first; a delay the ladder also uses is left to wait (those
    messages are retries of the message, not of an outage)."""
    return tuple(d for d in sorted(policy.outage_tiers) if d not in policy.used_tiers)


def probe_tier(headers: dict[str, Any]) -> float | None:
    """The tier a probe taken early came from (None for any other message)."""
    value = headers.get(PROBE_FROM_HEADER)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return float(value)


async def move_to_work_queue(
    connection: AbstractConnection,
    retry_exchange: AbstractExchange,
    policy: ConsumerPolicy,
    *,
    limit: int | None = None,
    probe: bool = False,
    keep_going: Callable[[], bool] = lambda: True,
) -> Counter[str]:
    """Move up to ``limit`` messages (all, when None) from ``policy``'s outage tiers to its work
    queue, shortest tier first, while ``keep_going()``; ``probe`` marks each with the tier it
    came from. Only what waited when a tier was looked at moves: what is sent there meanwhile
    (a flapping target) waits its turn. Returns the count moved per tier queue."""
    moved: Counter[str] = Counter()
    channel = await connection.channel()
    try:
        for delay in recallable_tiers(policy):
            tier = names.retry_queue(policy.name, delay)
            try:
                queue = await channel.declare_queue(tier, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                raise TopologyError(
                    f"queue {tier} does not exist; run `woofleet topology apply`"
                ) from None
            waiting = queue.declaration_result.message_count or 0
            for _ in range(waiting):
                if (limit is not None and moved.total() >= limit) or not keep_going():
                    return moved
                message = await queue.get(no_ack=False, fail=False, timeout=GET_TIMEOUT)
                if message is None:
                    break
                headers = dict(message.headers or {})
                if probe:
                    headers[PROBE_FROM_HEADER] = delay
                try:
                    await publish_confirmed(
                        retry_exchange, copy_message(message, headers), policy.work_queue
                    )
                except BaseException:
                    with contextlib.suppress(Exception):  # a broken channel gives it back anyway
                        await message.nack(requeue=True)
                    raise
                await message.ack()
                moved[tier] += 1
    finally:
        if not channel.is_closed:
            await channel.close()
    return moved
