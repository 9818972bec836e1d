"""The chaos scenarios: each runs real processes against the real broker and returns its figures.

Every scenario is bounded in count and time and stops by itself. The criterion for each: nothing
lost, no duplicate effect, no dead letter caused by infrastructure, no 5xx to the store.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aio_pika

from publisher.signature import sign
from publisher.simulate.encoding import Delivery, delivery
from publisher.simulate.orders import make_order
from tests.chaos.harness import SECRET, ChaosFleet, Figures
from tests.chaos.local_cluster import LocalCluster
from tests.chaos.private_postgres import PrivatePostgres
from tests.support.http_target_server import Answer
from topology import names


@dataclass(frozen=True)
class Size:
    """How big a run is: the full suite's figures, or a fast subset's."""

    orders: int
    rate: float
    outage: float
    poison: int
    fuzz: int
    #: How long the fleet may take to finish its work once the chaos is over (messages may wait
    #: out a retry tier of minutes). The fast test's timeout is longer, so a run that does not
    #: settle still prints its figures.
    settle: float = 300.0


FULL = Size(orders=5_000, rate=100, outage=600, poison=1_000, fuzz=2_000)
FAST = Size(orders=150, rate=50, outage=8, poison=50, fuzz=200)


async def _while_sending(
    fleet: ChaosFleet, size: Size, chaos: Callable[[asyncio.Event], Coroutine[Any, Any, None]]
) -> tuple[Figures, float]:
    """Send the orders while ``chaos`` runs until sending is done, then let the fleet settle."""
    started = time.monotonic()
    done = asyncio.Event()
    chaos_task = asyncio.create_task(chaos(done))
    try:
        sent = await fleet.send_orders(size.orders, size.rate)
    finally:
        done.set()
        await chaos_task
    settled = await fleet.settle(size.settle)
    figures = fleet.figures("", sent, time.monotonic() - started)
    figures.notes.append(f"answers: {dict(sorted(sent.statuses.items()))}")
    if not settled:
        fleet.keep_work = True
        figures.notes.append(f"did not settle within the time limit; logs in {fleet.work}")
    return figures, time.monotonic() - started


async def consumer_kill(size: Size, every: float = 2.0) -> Figures:
    """kill -9 of a random consumer every ``every`` seconds while orders flow; each restarts."""
    async with ChaosFleet() as fleet:
        rng = random.Random(7)

        async def chaos(done: asyncio.Event) -> None:
            while not done.is_set():
                await asyncio.sleep(every)
                victim = rng.choice(list(fleet.processes))
                fleet.kill(victim)
                fleet.restart(victim)

        figures, _ = await _while_sending(fleet, size, chaos)
    figures.scenario = "consumer-kill"
    return figures


async def webhook_kill(size: Size) -> Figures:
    """kill -9 of the webhook in the middle of a burst; it comes back a second later."""
    async with ChaosFleet() as fleet:

        async def chaos(done: asyncio.Event) -> None:
            await asyncio.sleep(size.orders / size.rate / 3)
            fleet.kill("webhook")
            await asyncio.sleep(1)
            fleet.restart("webhook")

        figures, _ = await _while_sending(fleet, size, chaos)
    figures.scenario = "webhook-kill"
    figures.notes.append("deliveries refused while the webhook was down are the store's to resend")
    return figures


async def _rabbitmqctl(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    if await process.wait():
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed")


async def broker_restart(size: Size) -> Figures:
    """The local RabbitMQ stopped and started again under load (the whole node, not a vhost)."""
    async with ChaosFleet() as fleet:

        async def chaos(done: asyncio.Event) -> None:
            await asyncio.sleep(size.orders / size.rate / 3)
            await _rabbitmqctl("stop_app")
            await asyncio.sleep(5)
            await _rabbitmqctl("start_app")

        figures, _ = await _while_sending(fleet, size, chaos)
    figures.scenario = "broker-restart"
    return figures


async def target_down(size: Size, status: int = 503) -> Figures:
    """Every HTTP target answers ``status`` for ``size.outage`` seconds, then recovers."""
    async with ChaosFleet() as fleet:

        async def chaos(done: asyncio.Event) -> None:
            await asyncio.sleep(1)
            headers = {"Retry-After": "1"} if status == 429 else {}
            fleet.target.route = lambda request: Answer(status, {"error": "down"}, headers)
            await asyncio.sleep(size.outage)
            fleet.target.route = None

        figures, _ = await _while_sending(fleet, size, chaos)
    figures.scenario = f"target-down-{status}"
    return figures


async def state_down(size: Size) -> Figures:
    """The state store (PostgreSQL, what production runs) stops for ``size.outage`` seconds."""
    with PrivatePostgres() as postgres:
        async with ChaosFleet(state_url=postgres.url) as fleet:

            async def chaos(done: asyncio.Event) -> None:
                await asyncio.sleep(1)
                await asyncio.to_thread(postgres.stop)
                await asyncio.sleep(size.outage)
                await asyncio.to_thread(postgres.start)

            figures, _ = await _while_sending(fleet, size, chaos)
    figures.scenario = "state-down"
    return figures


async def node_loss(size: Size) -> Figures:
    """A three-node cluster of the run's own; the fleet talks to the first node. A third into the
    burst the third node is killed (kill -9) and the HTTP targets answer 503, so messages go
    through the quorum retry tiers while one of their three members is gone; the node comes back
    after ``size.outage`` seconds (at most 30) and rejoins by itself."""
    with LocalCluster(3) as cluster:
        first, _, victim = cluster.nodes
        async with ChaosFleet(
            amqp_url=first.amqp_url,
            management_url=first.management_url,
            broker_log=first.directory / "log" / f"{first.name}.log",
        ) as fleet:

            async def chaos(done: asyncio.Event) -> None:
                await asyncio.sleep(size.orders / size.rate / 3)
                await asyncio.to_thread(victim.kill)
                fleet.target.route = lambda request: Answer(503, {"error": "down"}, {})
                await asyncio.sleep(min(size.outage, 30))
                fleet.target.route = None
                await asyncio.to_thread(victim.start)

            figures, _ = await _while_sending(fleet, size, chaos)
            tiers = [
                q
                for q in fleet.management.get(
                    f"/queues/{quote(fleet.vhost, safe='')}", columns="name,type,members"
                )
                if q.get("type") == "quorum"
            ]
            whole = sum(1 for q in tiers if len(q.get("members") or []) == len(cluster.nodes))
    figures.scenario = "node-loss"
    figures.notes.append(
        f"quorum queues with all {len(cluster.nodes)} members after the node came back: "
        f"{whole} of {len(tiers)}"
    )
    return figures


def _poison_bodies(count: int, rng: random.Random) -> list[bytes]:
    shapes: list[Callable[[int], bytes]] = [
        lambda n: b"{not json",
        lambda n: json.dumps({"event_type": "order.paid", "schema_version": 1}).encode(),
        lambda n: json.dumps({"event_id": "x", "data": {"id": "not a number"}}).encode(),
        lambda n: ("[" * 5_000 + "]" * 5_000).encode(),
        lambda n: json.dumps({"event_type": "order.paid", "schema_version": 99, "n": n}).encode(),
    ]
    return [rng.choice(shapes)(n) for n in range(count)]


async def poison(size: Size) -> Figures:
    """Poison messages published straight to woo.events among good orders: each poison message
    is dead-lettered at once, once per consumer it reaches, and the good orders all go through."""
    async with ChaosFleet() as fleet:
        connection = await aio_pika.connect_robust(fleet.amqp_url)
        reached = sum(
            1 for p in fleet.policies if any(b in ("order.paid", "order.#") for b in p.bindings)
        )

        async def chaos(done: asyncio.Event) -> None:
            async with connection:
                channel = await connection.channel()
                exchange = await channel.get_exchange(names.EVENTS_EXCHANGE)
                for n, body in enumerate(_poison_bodies(size.poison, random.Random(3))):
                    await exchange.publish(
                        aio_pika.Message(body, message_id=f"poison-{n}", type="order.paid"),
                        routing_key="order.paid",
                    )

        figures, _ = await _while_sending(fleet, size, chaos)
    figures.scenario = "poison"
    figures.notes.append(f"{size.poison} poison messages x {reached} consumers expected in DLQs")
    figures.dead_lettered -= size.poison * reached
    return figures


NESTED = "nested-placeholder"


def _fuzzed(rng: random.Random, n: int) -> Delivery:
    order = make_order(rng, 9_000_000 + n, datetime.now(UTC))
    mutations: list[Callable[[], None]] = [
        lambda: order.update(status=rng.choice(["shipped", "", "x" * 300, None, 7])),
        lambda: order.update(date_created_gmt=rng.choice(["1969-07-20T20:17:40", "garbage", None])),
        lambda: order.update(total=rng.choice(["abc", "-1", "1e400", None, []])),
        lambda: order.update(refunds=[{"id": 1, "total": rng.choice(["x", None, {}])}]),
        lambda: order.update(meta_data=[{"id": 1, "key": "k", "value": NESTED}]),
        lambda: order.update(line_items=rng.choice([None, "x", [{"quantity": "many"}]])),
        lambda: order.update(billing=rng.choice([None, [], {"email": "\x00" * 10}])),
        lambda: order.update(id=rng.choice([-1, 0, "abc", 2**70])),
        lambda: order.pop(rng.choice(list(order))),
    ]
    for _ in range(rng.randint(1, 3)):
        rng.choice(mutations)()
    topic = rng.choice(["order.created", "order.updated"])
    item = delivery(topic, order, SECRET.encode(), delivery_id=f"{n:032x}")
    if f'"{NESTED}"'.encode() not in item.body:
        return item
    # Too deep for any JSON encoder to write: splice the nesting into the text and sign again.
    depth = rng.randint(10, 990)
    body = item.body.replace(f'"{NESTED}"'.encode(), b'{"k":' * depth + b'"leaf"' + b"}" * depth)
    return Delivery(
        topic, body, item.headers | {"X-WC-Webhook-Signature": sign(body, SECRET.encode())}
    )


async def fuzz(size: Size) -> Figures:
    """Signed but mangled bodies through the webhook: none may get a 5xx."""
    async with ChaosFleet(consumers=()) as fleet:
        rng = random.Random(11)
        started = time.monotonic()
        sent = await fleet.post_all([_fuzzed(rng, n) for n in range(size.fuzz)], rate=200)
        figures = fleet.figures("fuzz", sent, time.monotonic() - started)
        # The criterion here is the answers: a mangled body may rightly be kept instead of
        # published, so an accepted order without events is not counted as lost.
        figures.lost = 0
    figures.notes.append(f"answers: {dict(sorted(sent.statuses.items()))}")
    return figures


SCENARIOS: dict[str, Callable[[Size], Coroutine[Any, Any, Figures]]] = {
    "consumer-kill": consumer_kill,
    "webhook-kill": webhook_kill,
    "broker-restart": broker_restart,
    "target-down": target_down,
    "state-down": state_down,
    "node-loss": node_loss,
    "poison": poison,
    "fuzz": fuzz,
}

#: What ``make test`` runs (small sizes); broker-restart stops the shared node, so it is opt-in.
FAST_SUBSET = ("consumer-kill", "webhook-kill", "target-down", "state-down", "poison", "fuzz")
