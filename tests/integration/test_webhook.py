"""The webhook endpoint against a real broker: what it accepts, what it refuses, what it emits."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from pydantic import SecretStr

from fleet.settings import Settings
from publisher.simulate.encoding import Delivery, delivery, ping, wp_json_encode
from publisher.webhook import WEBHOOK_PATH, WebhookApp
from topology.apply import apply_topology
from topology.fleet import build_topology
from topology.model import Topology
from topology.names import EVENTS_EXCHANGE, HELD_QUEUE, INGRESS_EXCHANGE

pytestmark = pytest.mark.integration

PAYLOADS = Path(__file__).resolve().parents[1] / "data" / "woocommerce"
SECRET = b"bench-secret"
SOURCE = "https://shop.example/"


def load(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((PAYLOADS / name).read_text())
    return result


_sentinel_ids = itertools.count(990_000_001)


def sentinel_order() -> dict[str, Any]:
    """A new pending order (a new id each time): one delivery of it emits only order.created."""
    order = dict(load("real-delivery-order-created.json")["body_json"])
    number = next(_sentinel_ids)
    order.update(id=number, number=str(number), status="pending", date_paid=None)
    order.update(date_paid_gmt=None, date_completed=None, date_completed_gmt=None, refunds=[])
    return order


@dataclass
class Captured:
    routing_key: str
    message_id: str
    priority: int
    body: dict[str, Any]


@dataclass
class Harness:
    """A started WebhookApp, an HTTP client on it, and every message on woo.events."""

    app: WebhookApp
    client: httpx.AsyncClient
    inbox: asyncio.Queue[Captured] = field(default_factory=asyncio.Queue)

    async def post(self, item: Delivery, **extra_headers: str) -> httpx.Response:
        headers = {**item.headers, **extra_headers}
        return await self.client.post(WEBHOOK_PATH, content=item.body, headers=headers)

    async def send(
        self, topic: str, order: dict[str, Any], secret: bytes = SECRET
    ) -> httpx.Response:
        return await self.post(delivery(topic, order, secret, source=SOURCE))

    async def events(self, count: int, timeout: float = 5.0) -> list[Captured]:
        return [await asyncio.wait_for(self.inbox.get(), timeout) for _ in range(count)]

    async def nothing_more(self, timeout: float = 10.0) -> None:
        """Assert that nothing more was emitted: a sentinel order goes through the same webhook
        and outbox (published oldest first, on one channel), so everything emitted before it
        arrives before its ``order.created``, which must be the next message."""
        sentinel = sentinel_order()
        response = await self.send("order.created", sentinel)
        assert response.status_code == 200, response.text
        (arrived,) = await self.events(1, timeout)
        assert (arrived.routing_key, arrived.body["data"]["id"]) == (
            "order.created",
            sentinel["id"],
        ), f"{arrived.routing_key} of order {arrived.body['data']['id']} came before the sentinel"


async def capture_events(
    connection: AbstractRobustConnection, inbox: asyncio.Queue[Captured]
) -> aio_pika.abc.AbstractChannel:
    """Declare woo.events and the held deliveries' exchange and queue (as topology apply
    would) and a queue that sees every event."""
    await apply_topology(connection, held_topology())
    channel = await connection.channel()
    exchange = await channel.declare_exchange(
        EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue("", exclusive=True)
    await queue.bind(exchange, "#")

    async def on_message(message: AbstractIncomingMessage) -> None:
        async with message.process():
            await inbox.put(
                Captured(
                    message.routing_key or "",
                    message.message_id or "",
                    message.priority or 0,
                    json.loads(message.body),
                )
            )

    await queue.consume(on_message)
    return channel


def webhook_settings(settings: Settings, **overrides: Any) -> Settings:
    return settings.model_copy(update={"webhook_secret": SecretStr(SECRET.decode()), **overrides})


def held_topology() -> Topology:
    """The part of the topology that holds deliveries while the state store is away."""
    full = build_topology()
    return Topology(
        tuple(e for e in full.exchanges if e.name == INGRESS_EXCHANGE),
        (full.queue(HELD_QUEUE),),
        tuple(b for b in full.bindings if b.exchange == INGRESS_EXCHANGE),
    )


@contextlib.asynccontextmanager
async def open_harness(
    settings: Settings, connection: AbstractRobustConnection, **overrides: Any
) -> AsyncIterator[Harness]:
    """A started WebhookApp with a client on it and a capture of woo.events."""
    inbox: asyncio.Queue[Captured] = asyncio.Queue()
    channel = await capture_events(connection, inbox)
    app = WebhookApp(webhook_settings(settings, **overrides))
    await app.start()
    transport = httpx.ASGITransport(app=app.asgi)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://webhook.test") as client:
            yield Harness(app, client, inbox)
    finally:
        await app.stop()
        await channel.close()


# -- what WooCommerce really sends ----------------------------------------------------------


async def test_real_delivery_verifies_and_emits_created_then_paid(harness: Harness) -> None:
    # Given the exact bytes WooCommerce 11.0.1 sent, signed with "bench-secret"
    real = load("real-delivery-order-created.json")
    headers = {
        k: v
        for k, v in real["headers"].items()
        if k.lower() not in ("host", "content-length", "connection")
    }
    # When it is delivered unchanged
    response = await harness.client.post(
        WEBHOOK_PATH, content=real["body"].encode(), headers=headers
    )
    # Then it is accepted and the paid order yields order.created then order.paid
    assert response.status_code == 200, response.text
    events = await harness.events(2)
    assert [e.routing_key for e in events] == ["order.created", "order.paid"]
    assert events[0].body["source"] == "http://127.0.0.1:8088"
    assert events[0].body["data"]["currency"] == "EUR"


async def test_byte_identical_created_and_updated_pair_emits_once(harness: Harness) -> None:
    real = load("real-delivery-order-created.json")
    headers = {
        k: v
        for k, v in real["headers"].items()
        if k.lower() not in ("host", "content-length", "connection")
    }
    body = real["body"].encode()
    first = await harness.client.post(WEBHOOK_PATH, content=body, headers=headers)
    second = await harness.client.post(
        WEBHOOK_PATH, content=body, headers={**headers, "X-WC-Webhook-Topic": "order.updated"}
    )
    assert (first.status_code, second.status_code) == (200, 200)
    assert len(await harness.events(2)) == 2
    await harness.nothing_more()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("order-created.docs-create-paid-order-727.json", ["order.created", "order.paid"]),
        (
            "order-updated.docs-update-order-727-completed.json",
            ["order.created", "order.paid", "order.completed"],
        ),
        # Completed without a date_paid (the docs' list example): no order.paid; two refunds.
        (
            "order-updated.docs-list-order-723-completed-customer.json",
            ["order.created", "order.completed", "order.refunded", "order.refunded"],
        ),
    ],
)
async def test_every_documented_payload_converts(
    harness: Harness, name: str, expected: list[str]
) -> None:
    order = load(name)
    response = await harness.send("order.updated", order)
    assert response.status_code == 200, response.text
    events = await harness.events(len(expected))
    assert [e.routing_key for e in events] == expected
    assert all(e.body["data"]["id"] == order["id"] for e in events)
    await harness.nothing_more()


async def test_other_methods_on_the_webhook_path_get_405_and_the_rest_404(
    harness: Harness,
) -> None:
    response = await harness.client.get(WEBHOOK_PATH)
    assert (response.status_code, response.headers["allow"]) == (405, "POST")
    assert (await harness.client.post("/webhooks/other", content=b"{}")).status_code == 404
    assert (await harness.client.get("/healthz")).json() == {"status": "ok"}
    await harness.nothing_more()


async def test_ping_gets_200_and_publishes_nothing(harness: Harness) -> None:
    real = load("real-delivery-ping.json")
    response = await harness.client.post(
        WEBHOOK_PATH,
        content=real["body"].encode(),
        headers={"Content-Type": real["headers"]["Content-Type"]},
    )
    assert response.status_code == 200
    assert (await harness.post(ping(7))).status_code == 200
    await harness.nothing_more()


# -- refusals: none publishes, none is a 5xx --------------------------------------------------


async def test_missing_signature_is_401(harness: Harness) -> None:
    item = delivery("order.created", load("order-created.docs-create-paid-order-727.json"), SECRET)
    headers = {k: v for k, v in item.headers.items() if k != "X-WC-Webhook-Signature"}
    response = await harness.client.post(WEBHOOK_PATH, content=item.body, headers=headers)
    assert response.status_code == 401
    await harness.nothing_more()


async def test_wrong_secret_is_401(harness: Harness) -> None:
    response = await harness.send(
        "order.created", load("order-created.docs-create-paid-order-727.json"), b"not-the-secret"
    )
    assert response.status_code == 401
    await harness.nothing_more()


async def test_body_changed_after_signing_is_401(harness: Harness) -> None:
    item = delivery("order.created", load("order-created.docs-create-paid-order-727.json"), SECRET)
    tampered = item.body.replace(b'"total":"29.35"', b'"total":"0.01"')
    assert tampered != item.body
    response = await harness.client.post(WEBHOOK_PATH, content=tampered, headers=item.headers)
    assert response.status_code == 401
    await harness.nothing_more()


async def test_signed_malformed_json_is_kept_with_202(harness: Harness) -> None:
    from publisher.signature import sign

    body = b'{"id": 727, "status": '
    headers = {
        "X-WC-Webhook-Topic": "order.updated",
        "X-WC-Webhook-Signature": sign(body, SECRET),
        "Content-Type": "application/json",
    }
    response = await harness.client.post(WEBHOOK_PATH, content=body, headers=headers)
    # Signed, so WooCommerce sent it: kept whole for a replay, never refused (a refusal
    # loses it and counts toward WooCommerce disabling the webhook).
    assert response.status_code == 202
    [kept] = await harness.app.store.kept_deliveries(10)
    assert kept.body == body
    await harness.nothing_more()


async def test_signed_json_that_is_no_order_is_kept_with_202(harness: Harness) -> None:
    response = await harness.send("order.updated", {"id": 5, "status": "processing"})
    assert response.status_code == 202
    assert "currency" in response.json()["reason"]
    await harness.nothing_more()


async def test_body_over_the_limit_is_413_by_content_length(harness: Harness) -> None:
    big = b"x" * (1024 * 1024 + 1)
    response = await harness.client.post(
        WEBHOOK_PATH, content=big, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    await harness.nothing_more()


async def test_body_over_the_limit_is_413_while_streaming(harness: Harness) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"y" * 65536  # 2.5 MiB, no Content-Length: chunked

    response = await harness.client.post(
        WEBHOOK_PATH, content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    await harness.nothing_more()


async def test_unhandled_topic_is_2xx_and_publishes_nothing(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="publisher.webhook")
    response = await harness.send("coupon.updated", {"id": 3, "code": "summer10"})
    assert response.status_code == 200
    assert "coupon.updated" in caplog.text and "not one woofleet handles" in caplog.text
    await harness.nothing_more()


async def test_order_deleted_is_2xx_and_publishes_nothing(harness: Harness) -> None:
    response = await harness.send("order.deleted", {"id": 727})
    assert response.status_code == 200
    await harness.nothing_more()


async def test_product_created_and_updated_become_one_product_updated(harness: Harness) -> None:
    product = {
        "id": 93,
        "name": "Woo Single #1",
        "sku": "WOO-1",
        "price": "3.00",
        "regular_price": "3.00",
        "manage_stock": True,
        "stock_quantity": 12,
        "date_created_gmt": "2026-11-28T04:00:00",
        "date_modified_gmt": "2026-11-28T04:00:00",
    }
    assert (await harness.send("product.created", product)).status_code == 200
    assert (await harness.send("product.updated", product)).status_code == 200
    [event] = await harness.events(1)
    assert event.routing_key == "product.updated" and event.body["data"]["stock_quantity"] == 12
    await harness.nothing_more()


@pytest.mark.parametrize("topic", ["product.updated", "product.created"])
async def test_an_order_body_under_a_product_topic_is_400_and_publishes_nothing(
    harness: Harness, topic: str
) -> None:
    # WooCommerce signs the body only: a captured order resent under another topic
    order = dict(load("real-delivery-order-created.json")["body_json"])
    response = await harness.send(topic, order)
    assert response.status_code == 400
    assert response.json()["error"] == f"an order body under topic {topic}"
    assert await harness.app.store.kept_deliveries(10) == []
    await harness.nothing_more()


async def test_a_product_body_under_an_order_topic_is_400(harness: Harness) -> None:
    product = {"id": 93, "name": "Woo Single #1", "sku": "WOO-1", "slug": "woo-single-1"}
    response = await harness.send("order.updated", product)
    assert response.status_code == 400
    assert response.json()["error"] == "a product body under topic order.updated"
    await harness.nothing_more()


async def test_several_secrets_are_accepted_while_rotating(
    settings: Settings, connection: AbstractRobustConnection
) -> None:
    inbox: asyncio.Queue[Captured] = asyncio.Queue()
    channel = await capture_events(connection, inbox)
    app = WebhookApp(
        webhook_settings(settings, webhook_secret=SecretStr("new-secret, old&amp;secret"))
    )
    await app.start()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app.asgi), base_url="http://t"
        ) as client:
            h = Harness(app, client, inbox)
            order = load("order-created.docs-create-paid-order-727.json")
            assert (await h.send("order.created", order, b"new-secret")).status_code == 200
            # WooCommerce signs with the HTML-entity-decoded secret: old&secret
            item = delivery(
                "order.updated", {**order, "customer_note": "ring twice"}, b"old&secret"
            )
            assert (await h.post(item)).status_code == 200
            assert (await h.send("order.updated", order, b"other")).status_code == 401
    finally:
        await app.stop()
        await channel.close()


async def test_priority_follows_the_rules(harness: Harness) -> None:
    order = load("order-created.docs-create-paid-order-727.json")
    express = {
        **order,
        "id": 9001,
        "shipping_lines": [{**order["shipping_lines"][0], "method_title": "Express Delivery"}],
    }
    vip = {**order, "id": 9002, "meta_data": [{"id": 1, "key": "_vip_customer", "value": "yes"}]}
    big = {**order, "id": 9003, "total": "1200.00"}
    for item in (order, express, vip, big):
        assert (await harness.send("order.created", item)).status_code == 200
    events = await harness.events(8)
    by_order = {e.body["data"]["id"]: e.priority for e in events}
    assert by_order == {727: 0, 9001: 4, 9002: 5, 9003: 3}


async def test_health_readiness_and_metrics(harness: Harness) -> None:
    assert (await harness.client.get("/healthz")).status_code == 200
    ready = await harness.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["outbox_writable"] is True
    await harness.send("order.created", load("order-created.docs-create-paid-order-727.json"))
    await harness.events(2)
    metrics = (await harness.client.get("/metrics")).text
    assert 'woofleet_webhook_deliveries_total{outcome="accepted"} 1.0' in metrics
    # Confirmed rows leave the outbox in batches, within a second or so.
    for _ in range(30):
        if "woofleet_outbox_depth 0.0" in metrics:
            break
        await asyncio.sleep(0.1)
        metrics = (await harness.client.get("/metrics")).text
    assert "woofleet_outbox_depth 0.0" in metrics


def test_simulated_encoding_matches_woocommerce_bytes() -> None:
    real = load("real-delivery-order-created.json")
    assert wp_json_encode(real["body_json"]) == real["body"].encode()
