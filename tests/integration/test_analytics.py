"""Analytics consumer against a real HTTP collector on loopback: GA4 bodies, keys, no PII."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from consumers import analytics
from consumers.adapters.http_target import HttpTargetClient
from contracts.orders import Refund
from tests.builders import order_event
from tests.support.http_target_server import HttpTargetServer, delivery_for, with_data

pytestmark = pytest.mark.integration


@pytest.fixture
async def handler(server: HttpTargetServer) -> AsyncIterator[analytics.AnalyticsHandler]:
    handler = analytics.AnalyticsHandler(HttpTargetClient("analytics", server.url))
    yield handler
    await handler.aclose()


async def test_order_paid_becomes_a_ga4_purchase_without_pii(
    server: HttpTargetServer, handler: analytics.AnalyticsHandler
) -> None:
    # Given a paid order
    event = order_event("order.paid")
    # When the analytics consumer handles it
    await handler(event, delivery_for("analytics", event))
    # Then the collector got one GA4 purchase
    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/mp/collect")
    assert request.idempotency_key == f"woofleet:analytics:order:{event.data.id}:purchase"
    body = request.json
    assert set(body) == {"client_id", "timestamp_micros", "non_personalized_ads", "events"}
    [ga] = body["events"]
    assert ga["name"] == "purchase"
    assert ga["params"] == {
        "transaction_id": "11",
        "value": 49.98,
        "currency": "EUR",
        "tax": 0.0,
        "shipping": 10.0,
        "items": [
            {"item_id": "BENCH-TSHIRT", "item_name": "Bench T-Shirt", "price": 19.99, "quantity": 2}
        ],
    }
    raw = request.body.decode()
    assert "john.doe@example.com" not in raw and "Doe" not in raw and "969 Market" not in raw


async def test_the_client_id_is_stable_and_prefers_the_stored_ga_cookie(
    server: HttpTargetServer, handler: analytics.AnalyticsHandler
) -> None:
    paid = order_event("order.paid")
    completed = order_event("order.completed")
    cookie = with_data(paid, meta={"_ga_client_id": "1234.5678"})
    for event in (paid, completed, cookie):
        await handler(event, delivery_for("analytics", event))
    ids = [r.json["client_id"] for r in server.requests]
    assert ids[0] == ids[1] and ids[2] == "1234.5678"


async def test_a_refund_is_sent_with_its_own_amount_and_key(
    server: HttpTargetServer, handler: analytics.AnalyticsHandler
) -> None:
    event = with_data(
        order_event("order.refunded"),
        refund=Refund(id=31, amount=Decimal("5.00")),
        refunds=(Refund(id=31, amount=Decimal("5.00")),),
    )
    await handler(event, delivery_for("analytics", event))
    [request] = server.requests
    assert request.idempotency_key == f"woofleet:analytics:order:{event.data.id}:refund:31"
    assert request.json["events"] == [
        {"name": "refund", "params": {"transaction_id": "11", "value": 5.0, "currency": "EUR"}}
    ]


@pytest.mark.parametrize(
    ("event_type", "name"),
    [("order.created", "order_created"), ("order.cancelled", "order_cancelled")],
)
async def test_lifecycle_events_are_custom_events(
    server: HttpTargetServer, handler: analytics.AnalyticsHandler, event_type: str, name: str
) -> None:
    event = order_event(event_type)
    await handler(event, delivery_for("analytics", event))
    assert [r.json["events"][0]["name"] for r in server.requests] == [name]


async def test_order_updated_is_skipped(
    server: HttpTargetServer, handler: analytics.AnalyticsHandler
) -> None:
    event = order_event("order.updated")
    await handler(event, delivery_for("analytics", event))
    assert server.requests == []


async def test_a_duplicate_delivery_sends_the_same_idempotency_key(
    server: HttpTargetServer, handler: analytics.AnalyticsHandler
) -> None:
    event = order_event("order.paid")
    await handler(event, delivery_for("analytics", event))
    await handler(event, delivery_for("analytics", event, attempt=2))
    first, second = server.requests
    assert first.idempotency_key == second.idempotency_key
    assert json.loads(first.body)["events"] == json.loads(second.body)["events"]
