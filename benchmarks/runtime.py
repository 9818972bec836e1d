"""Consumer runtime throughput against a plain aio-pika consumer. Prints figures; not a test.

Both consumers drain the same work queue (woo.analytics, a classic queue with x-max-priority 5)
in a throw-away vhost of the local RabbitMQ, deleted afterwards, N pre-published real-shaped
OrderEvent messages (default 50,000) at a time, with manual acks and the same prefetch
(default 100):

* runtime — a Supervisor running the analytics consumer with a no-op handler: contract
  validation on, no idempotency ledger key (HandlerSpec(business_key=None)), and the
  standard middleware (metrics, Sentry) unless --middleware none;
* plain — aio-pika on a robust connection: consume, ack, count.

After a warm-up drain of each (not counted), each round fills the queue and drains it once with
each consumer. Printed: msg/s (wall clock, from connecting to the last ack) and this process's
CPU time per message, the best round of each, and the ratio runtime/plain (target: 0.8 or
more). On a busy machine the wall-clock figures move a lot between runs; the CPU column moves
less.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from benchmarks.common import Figure, main, parser_for, with_vhost
from consumers.runtime import Delivery, HandlerSpec, Supervisor
from consumers.runtime.handler import AnyEnvelope
from contracts.messages import message_body, message_properties
from contracts.orders import OrderEvent, order_data_from_woo
from fleet.amqp import connect
from fleet.settings import Settings
from topology import names
from topology.apply import apply_fleet
from topology.fleet import DEFAULT_FLEET, FleetSpec
from topology.management import Management

CONSUMER = "analytics"
ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "woocommerce" / "real-delivery-order-created.json"
STORE = "https://shop.example/"
#: Publishes in flight at once while filling the queue (each waits for its confirm).
PUBLISH_WINDOW = 500
#: Messages drained once by each consumer before measuring.
WARM_UP = 2000


def sample_event() -> OrderEvent:
    """A real-shaped OrderEvent v1, normalised by contracts/ from a WooCommerce order sample."""
    raw = json.loads(SAMPLE.read_text())
    order = raw.get("body_json", raw)
    return OrderEvent(
        event_id=uuid.uuid4(),
        event_type="order.paid",
        schema_version=1,
        occurred_at=datetime.now(UTC),
        source=STORE,
        data=order_data_from_woo(order),
    )


def events(count: int) -> list[OrderEvent]:
    """``count`` events of the same order, each its own business fact (event id)."""
    template = sample_event()
    return [template.model_copy(update={"event_id": uuid.uuid4()}) for _ in range(count)]


def wire(batch: list[OrderEvent]) -> list[tuple[bytes, dict[str, Any]]]:
    """Body and AMQP properties of each event, as the publisher sends them."""
    return [(message_body(e), dict(message_properties(e))) for e in batch]


async def fill(connection: AbstractRobustConnection, batch: list[tuple[bytes, Any]]) -> float:
    """Publish ``batch`` to woo.events (confirmed); return the publish rate in msg/s."""
    started = time.perf_counter()
    async with connection.channel(publisher_confirms=True) as channel:
        exchange = await channel.get_exchange(names.EVENTS_EXCHANGE, ensure=False)
        for i in range(0, len(batch), PUBLISH_WINDOW):
            await asyncio.gather(
                *(
                    exchange.publish(aio_pika.Message(body=body, **props), "order.paid")
                    for body, props in batch[i : i + PUBLISH_WINDOW]
                )
            )
    return len(batch) / (time.perf_counter() - started)


def settle_garbage() -> None:
    """Collect, then freeze what is alive (the pre-built bodies), so neither consumer's drain
    pays for garbage collection passes over the benchmark's own data."""
    gc.collect()
    gc.freeze()


async def ready_count(connection: AbstractRobustConnection) -> int:
    async with connection.channel() as channel:
        queue = await channel.declare_queue(names.work_queue(CONSUMER), passive=True)
        return queue.declaration_result.message_count or 0


@dataclass
class Drain:
    """One drain of the queue: wall-clock rate and this process's CPU time per message."""

    rate: float
    cpu_us: float


async def drain_with_runtime(
    settings: Settings, fleet: FleetSpec, count: int, standard_middleware: bool
) -> Drain:
    done = asyncio.Event()
    handled = 0

    async def noop(event: AnyEnvelope, delivery: Delivery) -> None:
        nonlocal handled
        handled += 1
        if handled == count:
            done.set()

    spec = HandlerSpec(business_key=None)
    supervisor = Supervisor(
        [CONSUMER],
        settings,
        fleet=fleet,
        handlers={CONSUMER: (spec, noop)},
        middleware=None if standard_middleware else [],
    )
    started, cpu = time.perf_counter(), time.process_time()
    await supervisor.start()
    await done.wait()
    await supervisor.workers[CONSUMER].wait_idle()  # the last ack is sent
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    stats = dict(supervisor.workers[CONSUMER].stats)
    await supervisor.stop(5)
    if stats != {"handled": count}:
        raise SystemExit(f"runtime did not just handle every message: {stats}")
    return Drain(count / elapsed, cpu / count * 1e6)


async def drain_with_aio_pika(settings: Settings, prefetch: int, count: int) -> Drain:
    done = asyncio.Event()
    acked = 0

    async def on_message(message: AbstractIncomingMessage) -> None:
        nonlocal acked
        await message.ack()
        acked += 1
        if acked == count:
            done.set()

    started, cpu = time.perf_counter(), time.process_time()
    connection = await aio_pika.connect_robust(settings.amqp_url.get_secret_value())
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=prefetch)
    queue = await channel.declare_queue(names.work_queue(CONSUMER), passive=True)
    await queue.consume(on_message)
    await done.wait()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await connection.close()
    return Drain(count / elapsed, cpu / count * 1e6)


async def run(args: argparse.Namespace) -> list[Figure]:
    vhost = f"bench-runtime-{uuid.uuid4().hex[:8]}"
    only = DEFAULT_FLEET.only(CONSUMER)
    fleet = replace(
        only, consumers=tuple(replace(c, prefetch=args.prefetch) for c in only.consumers)
    )
    print(f"preparing {args.messages:,} OrderEvent messages ...", flush=True)
    batch = wire(events(args.messages))
    standard = args.middleware == "standard"
    print(f"body {len(batch[0][0]):,} bytes; prefetch {args.prefetch}; vhost {vhost}")
    with Management(args.management_url) as management, tempfile.TemporaryDirectory() as tmp:
        management.create_vhost(vhost)
        try:
            settings = Settings(
                amqp_url=with_vhost(args.amqp_url, vhost),
                management_url=args.management_url,
                state_url=f"sqlite:///{tmp}/state.db",
                var_dir=Path(tmp) / "var",
                targets={},
            )
            connection = await connect(settings, name="bench-runtime")
            await apply_fleet(connection, fleet, vhost=vhost, management=management)
            # Warm up both paths (imports, first validations, the ledger file), not counted.
            warm_up = batch[:WARM_UP]
            await fill(connection, warm_up)
            await drain_with_runtime(settings, fleet, len(warm_up), standard)
            await fill(connection, warm_up)
            await drain_with_aio_pika(settings, args.prefetch, len(warm_up))
            runtime: list[Drain] = []
            plain: list[Drain] = []
            for round_no in range(1, args.rounds + 1):
                for label, results in (("runtime", runtime), ("plain", plain)):
                    fill_rate = await fill(connection, batch)
                    settle_garbage()
                    if label == "runtime":
                        drain = await drain_with_runtime(settings, fleet, args.messages, standard)
                    else:
                        drain = await drain_with_aio_pika(settings, args.prefetch, args.messages)
                    results.append(drain)
                    left = await ready_count(connection)
                    print(
                        f"round {round_no}: {label:<8} {drain.rate:>8,.0f} msg/s, "
                        f"{drain.cpu_us:>5.0f} us CPU/msg "
                        f"(queue filled at {fill_rate:,.0f} msg/s; {left} left after)",
                        flush=True,
                    )
            await connection.close()
        finally:
            management.delete_vhost(vhost)
    best_runtime = max(runtime, key=lambda d: d.rate)
    best_plain = max(plain, key=lambda d: d.rate)
    cpu_runtime = min(d.cpu_us for d in runtime)
    cpu_plain = min(d.cpu_us for d in plain)
    print(f"CPU per message runtime/plain: {cpu_runtime / cpu_plain:.2f}")
    bench = f"runtime ({args.messages:,} msgs, {args.middleware} middleware)"
    return [
        Figure(
            bench,
            "runtime drain",
            best_runtime.rate,
            "msg/s",
            "plain aio-pika",
            best_plain.rate,
            0.8,
        ),
        Figure(
            bench,
            "runtime CPU per message",
            cpu_runtime,
            "us",
            "plain aio-pika",
            cpu_plain,
            None,
            higher_is_better=False,
        ),
    ]


def parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__, "scripts/bench-runtime")
    parser.add_argument("--messages", type=int, default=50_000, help="messages per drain")
    parser.add_argument("--prefetch", type=int, default=100, help="prefetch of both consumers")
    parser.add_argument("--rounds", type=int, default=1, help="drains per consumer; best counts")
    parser.add_argument(
        "--middleware",
        choices=("standard", "none"),
        default="standard",
        help="the runtime's middleware: metrics and Sentry (as in production), or none",
    )
    parser.add_argument(
        "--amqp-url",
        default=os.environ.get("WOOFLEET_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        help="the broker (default: WOOFLEET_AMQP_URL or the local one); its vhost is replaced",
    )
    parser.add_argument(
        "--management-url",
        default=os.environ.get("WOOFLEET_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672"),
        help="management API of the same broker (default: WOOFLEET_MANAGEMENT_URL or local)",
    )
    return parser


def cli(argv: Sequence[str] | None = None) -> None:
    main(parser(), run, argv)


if __name__ == "__main__":
    cli()
