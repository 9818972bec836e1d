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

from fleet.errors import DependencyUnavailable
from fleet.settings import Settings
from publisher.outgoing import Outgoing
from publisher.store import ResourceKey
from publisher.store_postgres import PostgresStore
from tests.chaos.private_postgres import PrivatePostgres
from tests.integration.test_webhook import open_harness, sentinel_order

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


async def test_the_webhook_answers_503_while_its_store_is_away_and_2xx_once_it_is_back(
    settings: Settings,
    connection: AbstractRobustConnection,
    postgres: PrivatePostgres,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with open_harness(settings, connection, state_url=postgres.url) as harness:
        assert (await harness.send("order.created", sentinel_order())).status_code == 200
        (first,) = await harness.events(1)

        # When the store goes away, deliveries get 503, and one line says so (not one each)
        postgres.stop()
        answers = [(await harness.send("order.created", sentinel_order())).status_code]
        answers += [(await harness.send("order.created", sentinel_order())).status_code]
        assert answers == [503, 503]
        assert (await harness.client.get("/readyz")).status_code == 503

        # Then once it is back, the webhook takes deliveries again without a restart
        postgres.start()
        deadline = time.monotonic() + 10
        while (await harness.client.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline, "the webhook never became ready again"
            await asyncio.sleep(0.2)
        again = sentinel_order()
        assert (await harness.send("order.created", again)).status_code == 200
        arrived = await harness.events(1)
        # The outbox is at-least-once: a row published as the store went away (its delete
        # lost with the connection) goes out again, under its own message id, which the
        # consumers' ledgers recognise.
        while arrived[-1].body["data"]["id"] != again["id"]:
            assert arrived[-1].message_id == first.message_id
            arrived += await harness.events(1)

    said = [r.getMessage() for r in caplog.records if r.name == "publisher.webhook"]
    away = [m for m in said if "until the state store is back" in m]
    back = [m for m in said if "the state store is back after" in m]
    assert len(away) == 1 and len(back) == 1, said
    assert "2 deliveries were answered 503" in back[0]
    assert not [r for r in caplog.records if r.exc_info and r.name == "publisher.webhook"]
