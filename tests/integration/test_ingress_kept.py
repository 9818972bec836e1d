"""Signed deliveries woofleet cannot turn into events are kept, never dropped or failed; an
outbox row that cannot be published is set aside and never blocks the rows behind it."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection

from fleet.settings import Settings
from publisher.outgoing import Outgoing
from publisher.signature import sign
from publisher.simulate.encoding import Delivery, delivery
from publisher.store import PublisherStore, ResourceKey
from tests.integration.test_webhook import SECRET, SOURCE, Harness, load, open_harness

pytestmark = pytest.mark.integration


async def depth_reaches_zero(store: PublisherStore, timeout: float = 5.0) -> None:
    """Confirmed rows are deleted in batches (at most DELETE_EVERY_SECONDS later)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await store.depth():
        assert loop.time() < deadline, f"outbox still holds {await store.depth()} rows"
        await asyncio.sleep(0.05)


#: Stands for a JSON value nested ~990 levels deep (too deep to build with the json module).
DEEP = "@deep@"


def signed(topic: str, body: dict[str, Any]) -> Delivery:
    """A delivery signed as WooCommerce signs it, with DEEP expanded in the raw bytes."""
    raw = delivery(topic, body, SECRET, source=SOURCE)
    deep = b"[" * 990 + b"]" * 990
    content = raw.body.replace(f'"{DEEP}"'.encode(), deep)
    headers = {**raw.headers, "X-WC-Webhook-Signature": sign(content, SECRET)}
    return Delivery(topic, content, headers)


def order(order_id: int, **changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(load("order-created.docs-create-paid-order-727.json"))
    body.update(id=order_id, number=str(order_id), **changes)
    return body


@pytest.fixture(params=["sqlite", "postgresql"])
async def harness(
    settings: Settings, connection: AbstractRobustConnection, request: pytest.FixtureRequest
) -> Any:
    if request.param == "postgresql":
        settings = settings.model_copy(
            update={"state_url": request.getfixturevalue("postgres_url")}
        )
    async with open_harness(settings, connection) as opened:
        yield opened


async def test_an_order_created_before_1970_is_published_and_blocks_nothing(
    harness: Harness,
) -> None:
    # Given an order imported from an old system, created in 1969
    old = order(9001, status="on-hold", date_created_gmt="1969-07-20T20:17:40", date_paid_gmt=None)
    old["date_modified_gmt"] = "2024-01-02T03:04:05"
    # When it and a normal order are delivered
    assert (await harness.send("order.created", old)).status_code == 200
    assert (await harness.send("order.created", order(9002, status="on-hold"))).status_code == 200
    # Then both are published, the old one with its real date in the body
    events = await harness.events(2)
    by_order = {e.body["data"]["id"]: e for e in events}
    assert set(by_order) == {9001, 9002}
    assert by_order[9001].body["occurred_at"].startswith("1969-07-20T20:17:40")


def row(message_id: str, **properties: Any) -> Outgoing:
    return Outgoing(
        "order.created",
        b"{}",
        {
            "message_id": message_id,
            "type": "order.created",
            "content_type": "application/json",
            "delivery_mode": 2,
            "priority": 0,
            "headers": {},
            **properties,
        },
    )


async def test_an_outbox_row_that_cannot_be_published_is_set_aside_and_the_rest_flow(
    harness: Harness,
) -> None:
    store = harness.app.store
    # Given rows queued by an older version: one whose priority no AMQP message can carry,
    # and one with a timestamp before 1970 (which the properties now leave out)
    poison = row("poison-1", priority=300)
    old = row("old-1969", timestamp="1969-07-20T20:17:40+00:00")
    await store.transition(ResourceKey(SOURCE, "order", 1), lambda _: (None, [poison, old]))
    # When a normal delivery follows them
    assert (await harness.send("order.created", order(9003, status="on-hold"))).status_code == 200
    # Then the 1969 row and the delivery's event are published, the poison row is set aside
    # with its reason and counted, and the outbox is empty
    events = await harness.events(2)
    assert events[0].message_id == "old-1969"
    assert events[1].body["data"]["id"] == 9003
    aside = await store.set_aside_rows(10)
    assert [r.message.message_id for r in aside] == ["poison-1"]
    assert "cannot be encoded" in aside[0].reason
    await depth_reaches_zero(store)
    metrics = (await harness.client.get("/metrics")).text
    assert "woofleet_outbox_set_aside_total 1.0" in metrics
    assert "woofleet_outbox_set_aside_rows 1.0" in metrics


async def test_a_status_a_plugin_registered_is_carried_and_drives_the_lifecycle(
    harness: Harness,
) -> None:
    # Given an order in the "shipped" status an order-status plugin added
    response = await harness.send("order.updated", order(9004, status="shipped"))
    # Then it is accepted and announced with its status as it is
    assert response.status_code == 200, response.text
    events = await harness.events(2)
    assert [e.routing_key for e in events] == ["order.created", "order.paid"]
    assert events[0].body["data"]["status"] == "shipped"


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda o: o.update(refunds=[{"id": 5, "total": "abc"}]), id="refund-total"),
        pytest.param(lambda o: o.update(currency=None), id="no-currency"),
        pytest.param(lambda o: o.update(id=2**64), id="id-past-64-bits"),
        pytest.param(lambda o: o.update(id=-3), id="negative-id"),
        pytest.param(lambda o: o.update(refunds=[{"id": 2**65, "total": "-1"}]), id="refund-id"),
        pytest.param(lambda o: o.update(line_items="nope"), id="line-items-not-a-list"),
    ],
)
async def test_a_signed_delivery_woofleet_cannot_use_is_kept_and_answered_2xx(
    harness: Harness, change: Any
) -> None:
    body = order(9005)
    change(body)
    item = signed("order.updated", body)
    response = await harness.post(item)
    assert 200 <= response.status_code < 300, response.text
    store = harness.app.store
    assert response.status_code == 202
    [one] = await store.kept_deliveries(10)
    assert one.id == response.json()["kept"]
    assert one.topic == "order.updated"
    assert one.body == item.body
    assert one.headers["x-wc-webhook-topic"] == "order.updated"
    assert one.reason == response.json()["reason"]
    metrics = (await harness.client.get("/metrics")).text
    assert "woofleet_webhook_kept_total 1.0" in metrics
    assert 'woofleet_webhook_deliveries_total{outcome="kept"} 1.0' in metrics
    await harness.nothing_more()


async def test_a_meta_value_nested_990_deep_is_carried(harness: Harness) -> None:
    body = order(9007, meta_data=[{"id": 1, "key": "deep", "value": DEEP}])
    response = await harness.post(signed("order.created", body))
    assert response.status_code == 200, response.text
    assert [e.routing_key for e in await harness.events(2)] == ["order.created", "order.paid"]


async def test_a_body_that_is_not_an_object_is_kept(harness: Harness) -> None:
    not_an_object: Any = [1, 2, 3]  # what WooCommerce never sends, on purpose
    item = delivery("order.created", not_an_object, SECRET, source=SOURCE)
    response = await harness.post(item)
    assert response.status_code == 202, response.text
    store = harness.app.store
    [kept] = await store.kept_deliveries(10)
    assert kept.body == item.body


async def test_a_kept_delivery_replays_once_its_cause_is_gone(harness: Harness) -> None:
    store = harness.app.store
    # Given a delivery kept by an older version that could not read it
    item = delivery("order.created", order(9006), SECRET, source=SOURCE)
    kept_id = await store.keep(
        {k.lower(): v for k, v in item.headers.items()}, item.body, "order.created", "old reason"
    )
    from publisher.replay import replay_kept

    # When it is replayed twice
    first = await replay_kept(store, harness.app.ingest, SOURCE, [kept_id])
    second = await replay_kept(store, harness.app.ingest, SOURCE, [kept_id])
    harness.app.relay.wake()  # type: ignore[union-attr]
    # Then each lifecycle step is emitted once, and the row is marked replayed
    assert [r.events for r in first] == [("order.created", "order.paid")]
    assert [r.events for r in second] == [()]
    events = await harness.events(2)
    assert [e.routing_key for e in events] == ["order.created", "order.paid"]
    await harness.nothing_more()
    [row] = await store.kept_deliveries(10, include_replayed=True)
    assert row.replayed_at
