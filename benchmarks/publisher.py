"""Confirmed publishing throughput: the outbox relay's confirming channel
(publisher.confirming_channel: pika on the asyncio loop, persistent, mandatory, confirmed) against
plain aio-pika publishing with confirms, same broker, same run, in a throw-away virtual host that
is deleted afterwards. Prints figures; it is not a test.

N small messages per run; R alternating rounds of each; the median round counts. The relay's
figure "from envelopes" includes building each message from a ProductEvent, as the outbox does
when it stores an event.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import aio_pika
from aio_pika.abc import AbstractConnection

from benchmarks.common import Figure, main, parser_for, throwaway_vhost
from contracts import ProductEvent, event_id_for
from contracts.catalog import ProductData
from fleet.settings import Settings
from publisher.confirming_channel import open_confirming_channel
from publisher.outgoing import Outgoing
from topology.names import EVENTS_EXCHANGE

BODY = b'{"event_type":"product.updated","data":{"id":93,"stock_quantity":12}}'
TARGET_RATIO = 0.8


async def plain(connection: AbstractConnection, n: int) -> float:
    """The usual aio-pika way: a confirming channel, every publish awaited together."""
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    exchange = await channel.get_exchange(EVENTS_EXCHANGE)
    started = time.perf_counter()
    await asyncio.gather(
        *(
            exchange.publish(
                aio_pika.Message(
                    BODY, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=str(i)
                ),
                "product.updated",
                mandatory=True,
            )
            for i in range(n)
        )
    )
    elapsed = time.perf_counter() - started
    await channel.close()
    return n / elapsed


async def relay(settings: Settings, items: list[Outgoing]) -> float:
    """Every item through one confirming channel, as the outbox relay sends a pass."""
    channel = await open_confirming_channel(settings, name="bench-publisher")
    try:
        started = time.perf_counter()
        await asyncio.gather(*(channel.publish(item) for item in items))
        return len(items) / (time.perf_counter() - started)
    finally:
        await channel.close()


async def relay_bytes(settings: Settings, n: int) -> float:
    properties = {"delivery_mode": 2, "priority": 0}
    items = [
        Outgoing("product.updated", BODY, {**properties, "message_id": str(i)}) for i in range(n)
    ]
    return await relay(settings, items)


async def relay_envelopes(settings: Settings, n: int) -> float:
    """Serialisation included: each message built from its envelope inside the clock."""
    now = datetime.now(UTC)
    data = ProductData(id=93, name="Woo Single #1", stock_quantity=12, date_modified_gmt=now)
    envelopes = [
        ProductEvent(
            event_id=event_id_for("bench", i),
            event_type="product.updated",
            schema_version=1,
            occurred_at=now,
            source="https://shop.example",
            data=data,
        )
        for i in range(n)
    ]
    started = time.perf_counter()
    items = [Outgoing.from_envelope(envelope) for envelope in envelopes]
    built = time.perf_counter() - started
    rate = await relay(settings, items)
    return n / (built + n / rate)


async def run(args: argparse.Namespace) -> list[Figure]:
    with throwaway_vhost("bench-publisher") as settings:
        connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
        setup = await connection.channel()
        exchange = await setup.declare_exchange(
            EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await setup.declare_queue(f"bench.{uuid.uuid4().hex[:8]}", durable=True)
        await queue.bind(exchange, "#")
        runs: dict[str, Callable[[int], Awaitable[float]]] = {
            "plain aio-pika": lambda n: plain(connection, n),
            "relay channel": lambda n: relay_bytes(settings, n),
            "relay, from envelopes": lambda n: relay_envelopes(settings, n),
        }
        rates: dict[str, list[float]] = {name: [] for name in runs}
        for round_ in range(1, args.rounds + 1):
            for name, measure in runs.items():
                rate = await measure(args.messages)
                rates[name].append(rate)
                print(f"round {round_}: {name:<22} {rate:>9,.0f} msg/s", flush=True)
                await queue.purge()
        await connection.close()
    median = {name: statistics.median(values) for name, values in rates.items()}
    bench = f"publisher ({args.messages:,} msgs, median of {args.rounds})"
    return [
        Figure(
            bench, what, median[what], "msg/s", "plain aio-pika", median["plain aio-pika"], target
        )
        for what, target in (("relay channel", TARGET_RATIO), ("relay, from envelopes", None))
    ]


def parser() -> argparse.ArgumentParser:
    result = parser_for(__doc__, "scripts/bench-publisher")
    result.add_argument("--messages", type=int, default=50_000, help="per run (default 50000)")
    result.add_argument("--rounds", type=int, default=3, help="rounds of each (default 3)")
    return result


def cli(argv: Sequence[str] | None = None) -> None:
    main(parser(), run, argv)


if __name__ == "__main__":
    cli()
