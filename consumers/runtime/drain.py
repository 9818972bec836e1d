"""Drain until idle (burst mode, as arq's): wait until a supervisor's consumers have nothing
left to do, instead of guessing with a sleep.

"Nothing left" is what the broker and the workers say, twice in a row across a broker round
trip: every worker is idle (no delivery in flight, every ack sent), and the work queue and the
retry queues of each consumer hold no message (a retry waiting out its delay is work to come).
A channel that closed with deliveries unacked puts them back in the work queue, so it shows.
"""

from __future__ import annotations

import asyncio
import time

from aio_pika.abc import AbstractRobustConnection

from consumers.runtime.supervisor import Supervisor
from topology import names

#: Pause between two looks while something is still pending.
POLL = 0.02


async def _pending(connection: AbstractRobustConnection, queues: list[str]) -> int:
    async with connection.channel() as channel:
        total = 0
        for queue in queues:
            declared = await channel.declare_queue(queue, passive=True)
            total += declared.declaration_result.message_count or 0
        return total


async def until_drained(supervisor: Supervisor, timeout: float = 30.0) -> None:
    """Return once ``supervisor``'s consumers are drained (see the module); ``TimeoutError``
    naming what is still pending after ``timeout`` seconds."""
    connection = supervisor.connection
    if connection is None:
        raise RuntimeError("the supervisor is not started")
    queues = [
        queue
        for name in supervisor.names
        for policy in (supervisor.fleet.consumer(name),)
        for queue in (
            policy.work_queue,
            *(names.retry_queue(name, delay) for delay in policy.declared_tiers),
        )
    ]
    deadline = time.monotonic() + timeout
    quiet_looks, pending, settled = 0, 0, -1
    while quiet_looks < 2:
        for worker in supervisor.workers.values():
            await asyncio.wait_for(worker.wait_idle(), max(0.0, deadline - time.monotonic()))
        pending = await _pending(connection, queues)
        # Deliveries settled so far: a change between two looks means work happened between.
        now_settled = sum(sum(w.stats.values()) for w in supervisor.workers.values())
        quiet = not pending and now_settled == settled
        quiet_looks, settled = (quiet_looks + 1 if quiet else 0), now_settled
        if time.monotonic() > deadline:
            raise TimeoutError(f"not drained after {timeout:g}s: {pending} messages in {queues}")
        if pending:
            await asyncio.sleep(POLL)
