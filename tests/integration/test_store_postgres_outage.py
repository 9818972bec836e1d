"""The webhook's PostgreSQL store outlives a restart of its server (what the state-down chaos
run does): while the server is away a transition fails at once with a one-line reason, and once
it is back the store connects again by itself, with no webhook restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection
from pydantic import SecretStr

from fleet.errors import DependencyUnavailable
from fleet.settings import Settings
from fleet.status import evaluate
from fleet.status_sources import collect
from publisher.outgoing import Outgoing
from publisher.store import ResourceKey
from publisher.store_postgres import PostgresStore
from tests.chaos.private_postgres import PrivatePostgres
from tests.integration.test_webhook import Captured, open_harness, sentinel_order
from tests.support.net import free_port
from topology.fleet import DEFAULT_FLEET
from topology.management import Management
from topology.names import HELD_QUEUE

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    with PrivatePostgres() as server:
        yield server


def paid(tag: str) -> Any:
    def decide(raw: dict[str, Any] | None) -> tuple[dict[str, Any], list[Outgoing]]:
        message = Outgoing("order.paid", f'{{"tag":"{tag}"}}'.encode(), {"message_id": tag})
        return {"last": tag}, [message]

    return decide


async def test_the_store_connects_again_once_its_server_is_back(postgres: PrivatePostgres) -> None:
    store = await PostgresStore.open(postgres.url)
    order = ResourceKey("https://shop.example", "order", 1)
    try:
        await store.transition(order, paid("before"))

        # When the server stops, a delivery fails with the reason in one line
        postgres.stop()
        with pytest.raises(DependencyUnavailable, match="WOOFLEET_STATE_URL"):
            await store.transition(order, paid("during"))
        assert not await store.writable()
        # and each later one fails at once, not after a connection timeout
        started = time.monotonic()
        with pytest.raises(DependencyUnavailable):
            await store.transition(order, paid("still during"))
        assert time.monotonic() - started < 1

        # Then once it is back, readiness and deliveries recover by themselves
        postgres.start()
        deadline = time.monotonic() + 10
        while not await store.writable():
            assert time.monotonic() < deadline, "the store never connected again"
            await asyncio.sleep(0.2)
        await store.transition(order, paid("after"))
        assert [r.message.message_id for r in await store.pending(10)] == ["before", "after"]
    finally:
        await store.close()


async def held_count(connection: AbstractRobustConnection) -> int:
    channel = await connection.channel()
    try:
        queue = await channel.declare_queue(HELD_QUEUE, passive=True)
        return queue.declaration_result.message_count or 0
    finally:
        await channel.close()


async def test_the_webhook_holds_deliveries_on_the_broker_while_its_store_is_away(
    settings: Settings,
    connection: AbstractRobustConnection,
    management: Management,
    vhost: str,
    postgres: PrivatePostgres,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with open_harness(settings, connection, state_url=postgres.url) as harness:
        known = sentinel_order()
        assert (await harness.send("order.created", known)).status_code == 200
        (first,) = await harness.events(1)

        # When the store goes away, deliveries are answered 202 and held on the broker
        # (one line says so, not one each), the webhook still ready to take them
        postgres.stop()
        new = [sentinel_order(), sentinel_order()]
        answers = [await harness.send("order.created", order) for order in new]
        answers.append(await harness.send("order.created", known))  # WooCommerce resending
        assert [(a.status_code, a.json()) for a in answers] == [(202, {"held": True})] * 3
        ready = await harness.client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["held_on_broker"] is True, ready.text
        assert await held_count(connection) == 3
        # and `woofleet status` says they wait, and why
        status = await collect(connection, management, vhost, DEFAULT_FLEET.only("stock"))
        assert status.held_deliveries == 3
        assert "held_deliveries" in [f.key for f in evaluate(status)]
        with pytest.raises(TimeoutError):
            await harness.events(1, timeout=1)

        # Then once it is back, the held deliveries become their events, each once, with no
        # webhook restart and nothing resent by WooCommerce
        postgres.start()
        arrived: list[Captured] = []
        while len({e.body["data"]["id"] for e in arrived} - {known["id"]}) < 2:
            arrived += await harness.events(1, timeout=15)
        await harness.nothing_more()
        assert await held_count(connection) == 0

    # The outbox is at-least-once: a row published as the store went away (its delete lost
    # with the connection) goes out again under its own message id, which consumers recognise.
    created = [
        (e.routing_key, e.body["data"]["id"]) for e in arrived if e.message_id != first.message_id
    ]
    assert sorted(created) == sorted(("order.created", o["id"]) for o in new)
    said = [r.getMessage() for r in caplog.records if r.name == "publisher.webhook"]
    away = [m for m in said if "holding deliveries on the broker" in m]
    back = [m for m in said if "the state store is back after" in m]
    assert len(away) == 1 and len(back) == 1, said
    assert "3 deliveries were held on the broker" in back[0] and "0 answered 503" in back[0]
    assert not [r for r in caplog.records if r.exc_info and r.name == "publisher.webhook"]


async def test_the_webhook_answers_503_when_neither_store_nor_broker_can_take_a_delivery(
    settings: Settings,
    connection: AbstractRobustConnection,
    postgres: PrivatePostgres,
    caplog: pytest.LogCaptureFixture,
) -> None:
    nowhere = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    async with open_harness(
        settings, connection, state_url=postgres.url, amqp_url=SecretStr(nowhere)
    ) as harness:
        postgres.stop()
        answers = [(await harness.send("order.created", sentinel_order())) for _ in range(3)]
        assert [a.status_code for a in answers] == [503] * 3
        ready = await harness.client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["held_on_broker"] is False

    said = [r.getMessage() for r in caplog.records if r.name == "publisher.webhook"]
    assert len([m for m in said if "the broker cannot hold deliveries either" in m]) == 1, said
    assert not [r for r in caplog.records if r.exc_info and r.name == "publisher.webhook"]
