"""ERP sync against a real ERP HTTP API on loopback: the order document, cancellations, refunds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from consumers import erp_sync
from consumers.adapters.http_target import HttpTargetClient
from contracts.orders import Refund
from tests.builders import order_event
from tests.support.http_target_server import HttpTargetServer, delivery_for, with_data

pytestmark = pytest.mark.integration


@pytest.fixture
async def handler(server: HttpTargetServer) -> AsyncIterator[erp_sync.ErpSyncHandler]:
    handler = erp_sync.ErpSyncHandler(HttpTargetClient("erp_sync", server.url))
    yield handler
    await handler.aclose()


async def test_a_paid_order_is_put_as_a_whole_document(
    server: HttpTargetServer, handler: erp_sync.ErpSyncHandler
) -> None:
    event = order_event("order.paid")
    await handler(event, delivery_for("erp-sync", event))
    [request] = server.requests
    assert (request.method, request.path) == ("PUT", "/orders/11")
    assert request.idempotency_key == "woofleet:erp-sync:order:11:paid"
    doc = request.json
    assert (doc["external_id"], doc["number"], doc["status"], doc["currency"]) == (
        11,
        "11",
        "processing",
        "EUR",
    )
    assert doc["totals"] == {
        "total": "49.98",
        "tax": "0.00",
        "shipping": "10.00",
        "discount": "0.00",
        "refunded": "0",
    }
    assert doc["lines"] == [
        {
            "sku": "BENCH-TSHIRT",
            "name": "Bench T-Shirt",
            "product_id": 10,
            "variation_id": 0,
            "quantity": 2,
            "unit_price": "19.99",
            "subtotal": "39.98",
            "total": "39.98",
            "tax": "0.00",
        }
    ]
    assert doc["customer"] == {
        "id": 0,
        "email": "john.doe@example.com",
        "first_name": "John",
        "last_name": "Doe",
    }
    assert doc["billing"]["address_1"] == doc["shipping"]["address_1"] == "969 Market"
    assert doc["shipping_lines"] == [
        {"method": "flat_rate", "title": "Flat Rate", "total": "10.00"}
    ]
    assert doc["dates"]["paid"].startswith("2026-11-28T04:43:00")


async def test_completion_is_another_put_with_its_own_key(
    server: HttpTargetServer, handler: erp_sync.ErpSyncHandler
) -> None:
    event = order_event("order.completed", status="completed")
    await handler(event, delivery_for("erp-sync", event))
    [request] = server.requests
    assert (request.method, request.path, request.json["status"]) == (
        "PUT",
        "/orders/11",
        "completed",
    )
    assert request.idempotency_key == "woofleet:erp-sync:order:11:completed"


async def test_a_cancellation_is_posted(
    server: HttpTargetServer, handler: erp_sync.ErpSyncHandler
) -> None:
    event = order_event("order.cancelled", status="cancelled")
    await handler(event, delivery_for("erp-sync", event))
    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/orders/11/cancellation")
    assert request.json["number"] == "11"
    assert request.idempotency_key == "woofleet:erp-sync:order:11:cancelled"


async def test_each_refund_is_posted_once_under_its_refund_id(
    server: HttpTargetServer, handler: erp_sync.ErpSyncHandler
) -> None:
    first, second = Refund(id=30, amount=Decimal("4.00")), Refund(id=31, amount=Decimal("5.00"))
    base = order_event("order.refunded")
    for refund, refunds in ((first, (first,)), (second, (first, second))):
        event = with_data(base, refund=refund, refunds=refunds)
        await handler(event, delivery_for("erp-sync", event))
    assert server.paths() == ["POST /orders/11/refunds"] * 2
    assert [r.idempotency_key for r in server.requests] == [
        "woofleet:erp-sync:order:11:refund:30",
        "woofleet:erp-sync:order:11:refund:31",
    ]
    assert server.requests[1].json == {
        "number": "11",
        "refund_id": 31,
        "amount": "5.00",
        "currency": "EUR",
        "reason": "",
        "refunded_total": "9.00",
        "fully_refunded": False,
    }
