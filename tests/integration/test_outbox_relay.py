"""Broker away: the webhook keeps answering 2xx from the outbox; when it is back, every event
arrives exactly once, in order."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection
from pydantic import SecretStr

from fleet.settings import Settings
from publisher.confirming_channel import open_confirming_channel
from publisher.lifecycle import OrderState, plan_order
from publisher.outbox import MAX_DEFER_SECONDS, SEND_CHUNK, OutboxRelay
from publisher.outgoing import Outgoing
from publisher.simulate.encoding import delivery
from publisher.simulate.orders import Step, story
from publisher.store import ResourceKey
from publisher.store_sqlite import SqliteStore
from publisher.webhook import WebhookApp
from tests.conftest import AMQP_HOST, AMQP_PORT
from tests.integration.test_webhook import (
    SECRET,
    Captured,
    Harness,
    capture_events,
    sentinel_order,
    webhook_settings,
)
from tests.support.net import free_port

pytestmark = pytest.mark.integration


class TcpForwarder:
    """A plain TCP forwarder on loopback to the real broker, to make it 'come back'."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in self._tasks:
            task.cancel()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(AMQP_HOST, AMQP_PORT)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        for coro in (pipe(reader, upstream_writer), pipe(upstream_reader, writer)):
            task = asyncio.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


@pytest.fixture
async def away_broker(
    settings: Settings, connection: AbstractRobustConnection, vhost: str
) -> AsyncIterator[tuple[Harness, TcpForwarder]]:
    inbox: asyncio.Queue[Captured] = asyncio.Queue()
    channel = await capture_events(connection, inbox)
    forwarder = TcpForwarder(free_port())
    from topology.management import q

    closed_port_url = f"amqp://guest:guest@127.0.0.1:{forwarder.port}/{q(vhost)}"
    app = WebhookApp(
        webhook_settings(
            settings, amqp_url=SecretStr(closed_port_url), outbox_retry_max_seconds=0.5
        ),
    )
    await app.start()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app.asgi), base_url="http://t"
    ) as client:
        yield Harness(app, client, inbox), forwarder
    await app.stop()
    await forwarder.stop()
    await channel.close()


async def test_broker_away_then_back_every_event_once_in_order(
    away_broker: tuple[Harness, TcpForwarder],
) -> None:
    harness, forwarder = away_broker
    rng = random.Random(7)
    start = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
    steps = [s for order_id in range(500, 530) for s in story(rng, order_id, start)]
    # Expected events per order, from the pure planner.
    expected: dict[int, list[str]] = defaultdict(list)
    states: dict[int, OrderState | None] = defaultdict(lambda: None)
    for step in steps:
        plan = plan_order(step.order, states[step.order["id"]])
        states[step.order["id"]] = plan.state or states[step.order["id"]]
        expected[step.order["id"]] += [e.event_type for e in plan.events]
    total = sum(len(v) for v in expected.values())

    # Given the broker is unreachable (nothing listens on the port), deliveries still get 2xx
    for step in steps:
        response = await harness.post(delivery(step.topic, step.order, SECRET))
        assert response.status_code == 200, response.text
    ready = (await harness.client.get("/readyz")).json()
    assert ready == {"broker": False, "outbox_writable": True}
    # and all of them wait in the outbox: none was published (published rows leave it)
    metrics = (await harness.client.get("/metrics")).text
    assert f"woofleet_outbox_depth {float(total)}" in metrics
    [lag] = [line for line in metrics.splitlines() if line.startswith("woofleet_outbox_oldest")]
    assert float(lag.split()[1]) > 0, "the relay's lag shows while the broker is away"

    # When the broker comes back, the relay drains the outbox: each event once, in order
    await forwarder.start()
    events = await harness.events(total, timeout=15)
    await harness.nothing_more()
    assert len({e.message_id for e in events}) == total
    got: dict[int, list[str]] = defaultdict(list)
    for event in events:
        got[event.body["data"]["id"]].append(event.routing_key)
    assert got == expected
    assert (await harness.client.get("/readyz")).json()["broker"] is True


async def test_broker_lost_while_running_then_back_nothing_lost_nothing_doubled(
    away_broker: tuple[Harness, TcpForwarder],
) -> None:
    harness, forwarder = away_broker
    rng = random.Random(11)
    start = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    before = [s for order_id in range(600, 605) for s in story(rng, order_id, start)]
    after = [s for order_id in range(700, 705) for s in story(rng, order_id, start)]
    await forwarder.start()
    for step in before:
        assert (await harness.post(delivery(step.topic, step.order, SECRET))).status_code == 200
    first = await harness.events(_count(before), timeout=15)
    # The connection drops under the publisher
    await forwarder.stop()
    forwarder = TcpForwarder(forwarder.port)
    for step in after:
        assert (await harness.post(delivery(step.topic, step.order, SECRET))).status_code == 200
    await forwarder.start()
    second = await harness.events(_count(after), timeout=20)
    await harness.nothing_more()
    ids = [e.message_id for e in first + second]
    assert len(ids) == len(set(ids))
    await forwarder.stop()


def _count(steps: list[Step]) -> int:
    states: dict[int, OrderState | None] = defaultdict(lambda: None)
    total = 0
    for step in steps:
        plan = plan_order(step.order, states[step.order["id"]])
        states[step.order["id"]] = plan.state or states[step.order["id"]]
        total += len(plan.events)
    return total


async def test_two_relays_on_one_outbox_publish_each_event_once(
    settings: Settings, connection: AbstractRobustConnection
) -> None:
    from publisher.ingest import Ingest
    from publisher.outbox import OutboxRelay
    from publisher.store_sqlite import SqliteStore

    inbox: asyncio.Queue[Captured] = asyncio.Queue()
    channel = await capture_events(connection, inbox)
    stores = [SqliteStore.open(settings.state_url) for _ in range(2)]
    relays = [
        OutboxRelay(s, lambda: open_confirming_channel(settings, name="relay")) for s in stores
    ]
    rng = random.Random(3)
    start = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    steps = [s for order_id in range(800, 840) for s in story(rng, order_id, start)]
    for step in steps:
        await Ingest(stores[0]).order("https://shop.example", step.order)
    total = await stores[0].depth()
    await asyncio.gather(*(r.flush(10) for r in relays))
    assert sum(r.is_leader for r in relays) == 1
    events = [await asyncio.wait_for(inbox.get(), 10) for _ in range(total)]
    assert len({e.message_id for e in events}) == total
    # Nothing more: a sentinel order through both relays again arrives next, after anything a
    # second relay would have published of the same rows
    sentinel = sentinel_order()
    await Ingest(stores[0]).order("https://shop.example", sentinel)
    await asyncio.gather(*(r.flush(10) for r in relays))
    following = await asyncio.wait_for(inbox.get(), 10)
    assert following.body["data"]["id"] == sentinel["id"], following.routing_key
    for relay in relays:
        await relay.close()
    for store in stores:
        await store.close()
    await channel.close()


async def test_the_relay_gives_way_to_deliveries_in_hand_but_never_stops(
    settings: Settings, connection: AbstractRobustConnection, tmp_path: Path
) -> None:
    # Given 40 queued events and a webhook that never stops having a delivery in hand
    inbox: asyncio.Queue[Captured] = asyncio.Queue()
    channel = await capture_events(connection, inbox)
    store = SqliteStore.open(f"sqlite:///{tmp_path}/state.db")
    for n in range(40):
        outgoing = Outgoing("order.paid", b'{"data":{"id":%d}}' % n, {"message_id": f"m-{n}"})

        def decide(raw: Any, outgoing: Outgoing = outgoing) -> tuple[None, list[Outgoing]]:
            return None, [outgoing]

        await store.transition(ResourceKey("https://shop.example", "order", n), decide)
    idle = asyncio.Event()  # never set: always busy
    relay = OutboxRelay(
        store, lambda: open_confirming_channel(settings, name="relay test"), idle=idle
    )
    try:
        # When it drains
        started = asyncio.get_running_loop().time()
        await relay.drain()
        held_back = asyncio.get_running_loop().time() - started
        await relay.flush(10)
        # Then every event went out, in order, a chunk per MAX_DEFER_SECONDS at the slowest
        got = [(await asyncio.wait_for(inbox.get(), 5)).message_id for _ in range(40)]
        assert got == [f"m-{n}" for n in range(40)]
        chunks = -(-40 // SEND_CHUNK)
        assert held_back >= chunks * MAX_DEFER_SECONDS * 0.9
        # And once the webhook is idle, nothing is held back
        idle.set()
        started = asyncio.get_running_loop().time()
        await relay.drain()
        assert asyncio.get_running_loop().time() - started < MAX_DEFER_SECONDS
    finally:
        await relay.close()
        await store.close()
        await channel.close()


async def test_deliveries_while_the_broker_is_away_do_not_hammer_it_with_connects(
    settings: Settings, tmp_path: Path
) -> None:
    # Given a relay whose broker is unreachable (nothing listens on the port)
    attempts = 0
    url = f"amqp://guest:guest@127.0.0.1:{free_port()}/"

    async def connect() -> Any:
        nonlocal attempts
        attempts += 1
        return await open_confirming_channel(settings, name="relay test", url=url)

    store = SqliteStore.open(f"sqlite:///{tmp_path}/state.db")
    relay = OutboxRelay(store, connect, max_backoff=0.5)
    running = asyncio.create_task(relay.run())
    try:
        # When deliveries wake it 300 times a second for 1.6 s
        loop = asyncio.get_running_loop()
        until = loop.time() + 1.6
        while loop.time() < until:
            relay.wake()
            await asyncio.sleep(1 / 300)
    finally:
        await relay.stop()
        await asyncio.wait_for(running, 10)
        await store.close()
    # Then it tried at once and then once per backoff period, not once per delivery
    assert 2 <= attempts <= 5, attempts
