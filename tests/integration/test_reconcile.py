"""The reconciler against a loopback WooCommerce (both auth modes) and the real broker."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aio_pika.abc import AbstractRobustConnection

from fleet.settings import Settings
from fleet.woo_rest import WooRest
from publisher.confirming_channel import open_confirming_channel
from publisher.events import normalised_source
from publisher.ingest import Ingest
from publisher.outbox import OutboxRelay
from publisher.reconcile import Reconciler, cursor_name
from publisher.store import PublisherStore
from publisher.stores import open_store
from tests.integration.test_webhook import Captured, capture_events, load, sentinel_order
from tests.support.woo_server import WooServer, WooStore

pytestmark = pytest.mark.integration

CURSOR = "2026-11-28T05:00:00"


def order(order_id: int, status: str, modified: str, **changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(load("order-created.docs-create-paid-order-727.json"))
    body.update(
        id=order_id, number=str(order_id), status=status, date_modified_gmt=modified, **changes
    )
    return body


@pytest.fixture(params=["https-basic", "http-oauth1"])
def woo(request: pytest.FixtureRequest) -> Iterator[WooServer]:
    with WooServer(WooStore(), https=request.param.startswith("https")) as server:
        yield server


@pytest.fixture
async def world(
    woo: WooServer, settings: Settings, connection: AbstractRobustConnection
) -> AsyncIterator[tuple[Reconciler, PublisherStore, OutboxRelay, asyncio.Queue[Captured]]]:
    inbox: asyncio.Queue[Captured] = asyncio.Queue()
    channel = await capture_events(connection, inbox)
    store = await open_store(settings.state_url)
    client = WooRest(woo.url, woo.store.key, woo.store.secret, verify=woo.ca_file or True)
    relay = OutboxRelay(store, lambda: open_confirming_channel(settings, name="test reconcile"))
    source = normalised_source(woo.url)
    reconciler = Reconciler(client, Ingest(store), store, source=source, overlap_seconds=120)
    yield reconciler, store, relay, inbox
    await relay.close()
    await client.aclose()
    await store.close()
    await channel.close()


async def test_reconcile_emits_only_what_webhooks_missed(
    woo: WooServer,
    world: tuple[Reconciler, PublisherStore, OutboxRelay, asyncio.Queue[Captured]],
) -> None:
    reconciler, store, relay, inbox = world
    source = normalised_source(woo.url)
    seen = order(1, "processing", "2026-11-28T04:59:00")
    missed = order(2, "completed", "2026-11-28T04:59:30")
    same_second = order(3, "processing", CURSOR)  # modified in the cursor's own second
    old = order(4, "completed", "2026-11-28T04:00:00")  # before the overlap window
    for body in (seen, missed, same_second, old):
        woo.store.put_order(body)
    # Given the webhook already handled order 1, and the cursor sits at 05:00:00
    await Ingest(store).order(source, seen)
    await store.set_cursor(cursor_name(source), CURSOR)
    await relay.flush(5)
    assert [(await inbox.get()).routing_key for _ in range(2)] == ["order.created", "order.paid"]

    # When the reconciler runs
    report = await reconciler.run_once()
    assert await relay.flush(5) == 0

    # Then only the missed orders' events come out, the same-second one included
    got = [await asyncio.wait_for(inbox.get(), 5) for _ in range(5)]
    assert [(e.body["data"]["id"], e.routing_key) for e in got] == [
        (2, "order.created"),
        (2, "order.paid"),
        (2, "order.completed"),
        (3, "order.created"),
        (3, "order.paid"),
    ]
    assert report.orders == 3 and report.cursor_after == CURSOR
    query = woo.store.requests[-1]["query"]
    assert query["modified_after"] == "2026-11-28T04:58:00"
    assert (query["dates_are_gmt"], query["orderby"], query["order"], query["per_page"]) == (
        "true",
        "modified",
        "asc",
        "100",
    )

    # And a second run (the same orders, plus one change) emits only the change
    woo.store.put_order(order(3, "completed", "2026-11-28T05:00:07"))
    again = await reconciler.run_once()
    await relay.flush(5)
    assert (await asyncio.wait_for(inbox.get(), 5)).routing_key == "order.completed"
    # and nothing after it: a sentinel order through the same outbox arrives next
    sentinel = sentinel_order()
    await Ingest(store).order(source, sentinel)
    await relay.flush(5)
    assert (await asyncio.wait_for(inbox.get(), 5)).body["data"]["id"] == sentinel["id"]
    assert again.cursor_after == "2026-11-28T05:00:07"
    assert await store.get_cursor(cursor_name(source)) == "2026-11-28T05:00:07"


async def test_reconcile_announces_an_order_in_a_status_a_plugin_registered(
    woo: WooServer,
    world: tuple[Reconciler, PublisherStore, OutboxRelay, asyncio.Queue[Captured]],
) -> None:
    reconciler, _, relay, inbox = world
    woo.store.put_order(order(5, "shipped", "2026-11-28T05:00:01"))
    report = await reconciler.run_once(since="2026-11-28T05:00:00")
    assert await relay.flush(5) == 0
    got = [await asyncio.wait_for(inbox.get(), 5) for _ in range(2)]
    assert [e.routing_key for e in got] == ["order.created", "order.paid"]
    assert got[0].body["data"]["status"] == "shipped"
    assert report.refused == 0


async def test_an_order_the_contract_refuses_is_kept_for_a_replay_not_skipped(
    woo: WooServer,
    world: tuple[Reconciler, PublisherStore, OutboxRelay, asyncio.Queue[Captured]],
) -> None:
    reconciler, store, relay, inbox = world
    broken = order(6, "processing", "2026-11-28T05:00:01", currency="not a currency")
    woo.store.put_order(broken)
    woo.store.put_order(order(7, "processing", "2026-11-28T05:00:02"))

    report = await reconciler.run_once(since="2026-11-28T05:00:00")

    # The cursor moves past it, so the order is kept whole where `woofleet ingress` finds it
    assert report.refused == 1 and report.kept == 1
    assert report.cursor_after == "2026-11-28T05:00:02"
    [kept] = await store.kept_deliveries(10)
    assert kept.topic == "order.updated" and "currency" in kept.reason
    assert orjson.loads(kept.body)["id"] == 6
    assert kept.headers["x-woofleet-origin"] == "reconcile"
    # and the next order still flows
    await relay.flush(5)
    got = [await asyncio.wait_for(inbox.get(), 5) for _ in range(2)]
    assert [e.body["data"]["id"] for e in got] == [7, 7]


async def test_reconcile_follows_every_page(
    woo: WooServer,
    world: tuple[Reconciler, PublisherStore, OutboxRelay, asyncio.Queue[Captured]],
) -> None:
    reconciler, _, relay, _ = world
    for i in range(230):
        woo.store.put_order(
            order(
                100 + i, "pending", f"2026-11-28T05:{i // 60:02d}:{i % 60:02d}", date_paid_gmt=None
            )
        )
    report = await reconciler.run_once(since="2026-11-28T05:00:00")
    assert (report.pages, report.orders, report.events["order.created"]) == (3, 230, 230)
    assert report.cursor_after == "2026-11-28T05:03:49"
    assert await relay.flush(10) == 0


def test_reconcile_command_once_publishes_what_was_missed(
    amqp_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pika

    from topology.names import EVENTS_EXCHANGE
    from woofleet.main import main

    with pika.BlockingConnection(pika.URLParameters(amqp_url)) as conn:
        channel = conn.channel()
        channel.exchange_declare(EVENTS_EXCHANGE, "topic", durable=True)
        channel.queue_declare("all-events", durable=True)
        channel.queue_bind("all-events", EVENTS_EXCHANGE, "#")
    with WooServer(WooStore(), https=False) as woo:
        woo.store.put_order(order(7, "completed", "2026-11-28T05:00:03"))
        for name, value in {
            "WOOFLEET_AMQP_URL": amqp_url,
            "WOOFLEET_STATE_URL": f"sqlite:///{tmp_path}/state.db",
            "WOOFLEET_WOO_URL": woo.url,
            "WOOFLEET_WOO_KEY": woo.store.key,
            "WOOFLEET_WOO_SECRET": woo.store.secret,
        }.items():
            monkeypatch.setenv(name, value)
        assert main(["reconcile", "--once", "--since", "2026-11-28T05:00:00"]) == 0
        # A second run finds the same order and emits nothing more.
        assert main(["reconcile", "--once"]) == 0
    with pika.BlockingConnection(pika.URLParameters(amqp_url)) as conn:
        channel = conn.channel()
        got = []
        while (message := channel.basic_get("all-events", auto_ack=True))[0] is not None:
            got.append(message[1].type)
    assert got == ["order.created", "order.paid", "order.completed"]
