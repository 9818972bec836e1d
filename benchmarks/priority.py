"""Priority overtake: one priority-5 event published behind a backlog of priority-0 events on one
work queue, and the time until the consumer's handler receives it. Prints figures; not a test.

In a throw-away vhost, --backlog (default 50,000) priority-0 OrderEvents fill the work queue of
--consumer (default stock: a classic queue with x-max-priority 5, the consumer's own prefetch).
The consumer runtime then consumes it with a handler standing in for a target call of
--handler-ms (default 5 ms), and once it has handled --warm (default 500) of the backlog, one
priority-5 event is published; the figure is the time from its publish to its handler's start.
It must wait only for what the consumer already holds (its prefetch), not for the backlog.

Baseline, same run: the time the same consumer took per --warm backlog events, scaled to the
whole backlog: how long a priority-0 event at the back would wait.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from typing import Any

import aio_pika

from benchmarks.common import Figure, main, parser_for, throwaway_vhost, vhost_of
from benchmarks.runtime import PUBLISH_WINDOW, events
from consumers.runtime import Delivery, HandlerSpec, Supervisor
from consumers.runtime.handler import AnyEnvelope
from contracts.messages import message_body, message_properties
from contracts.orders import OrderEvent
from fleet.amqp import connect
from topology import names
from topology.apply import apply_fleet
from topology.fleet import DEFAULT_FLEET
from topology.management import Management


async def run(args: argparse.Namespace) -> list[Figure]:
    fleet = DEFAULT_FLEET.only(args.consumer)
    queue_name = names.work_queue(args.consumer)
    prefetch = fleet.consumer(args.consumer).effective_prefetch
    backlog = events(args.backlog)
    urgent = events(1)[0]
    with throwaway_vhost("bench-priority") as settings:
        connection = await connect(settings, name="bench-priority")
        with Management(settings.management_url.get_secret_value()) as management:
            await apply_fleet(connection, fleet, vhost=vhost_of(settings), management=management)
        channel = await connection.channel(publisher_confirms=True)
        exchange = channel.default_exchange

        async def send(batch: list[OrderEvent], priority: int) -> None:
            messages = []
            for e in batch:
                props: dict[str, Any] = dict(message_properties(e, priority=priority))
                messages.append(aio_pika.Message(body=message_body(e), **props))
            await asyncio.gather(*(exchange.publish(m, queue_name) for m in messages))

        started = time.perf_counter()
        for i in range(0, len(backlog), PUBLISH_WINDOW):
            await send(backlog[i : i + PUBLISH_WINDOW], 0)
        print(
            f"backlog of {args.backlog:,} priority-0 events in {time.perf_counter() - started:.1f}s"
            f" on {queue_name} (prefetch {prefetch}, handler {args.handler_ms:g} ms)",
            flush=True,
        )
        warm = asyncio.Event()
        arrived = asyncio.Event()
        handled = 0
        first_at = warm_at = arrived_at = 0.0

        async def handler(event: AnyEnvelope, delivery: Delivery) -> None:
            nonlocal handled, first_at, warm_at, arrived_at
            if event.event_id == urgent.event_id:
                arrived_at = time.perf_counter()
                arrived.set()
                return
            handled += 1
            if handled == 1:
                first_at = time.perf_counter()
            if handled == args.warm:
                warm_at = time.perf_counter()
                warm.set()
            await asyncio.sleep(args.handler_ms / 1000)

        supervisor = Supervisor(
            [args.consumer],
            settings,
            fleet=fleet,
            handlers={args.consumer: (HandlerSpec(business_key=None), handler)},
        )
        await supervisor.start()
        try:
            await asyncio.wait_for(warm.wait(), 120)
            sent_at = time.perf_counter()
            await send([urgent], 5)
            await asyncio.wait_for(arrived.wait(), 60)
        finally:
            await supervisor.stop(5)
            await connection.close()
    overtake_ms = (arrived_at - sent_at) * 1000
    back_ms = (warm_at - first_at) / (args.warm - 1) * args.backlog * 1000
    print(
        f"priority 5 handled {overtake_ms:.1f} ms after its publish, ahead of "
        f"{args.backlog - handled:,} waiting; a priority-0 event at the back would wait "
        f"~{back_ms / 1000:,.0f} s"
    )
    return [
        Figure(
            f"priority ({args.backlog:,} backlog, {args.consumer})",
            "priority 5 publish -> handler",
            overtake_ms,
            "ms",
            "priority 0 at the back (est.)",
            back_ms,
            higher_is_better=False,
            target_value=100,
        )
    ]


def parser() -> argparse.ArgumentParser:
    result = parser_for(__doc__, "scripts/bench-priority")
    result.add_argument("--consumer", default="stock", help="whose work queue (stock)")
    result.add_argument("--backlog", type=int, default=50_000, help="priority-0 events (50,000)")
    result.add_argument("--handler-ms", type=float, default=5, help="handler time (5 ms)")
    result.add_argument("--warm", type=int, default=500, help="handled before publishing (500)")
    return result


def cli(argv: Sequence[str] | None = None) -> None:
    main(parser(), run, argv)


if __name__ == "__main__":
    cli()
