"""Stock against a real inventory HTTP API on loopback: sale, restock, partial refunds."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import pytest

from consumers import stock
from consumers.adapters.http_target import HttpTargetClient
from consumers.runtime.handler import AnyEnvelope
from contracts.orders import Refund
from tests.builders import order_event
from tests.support.http_target_server import HttpTargetServer, delivery_for, with_data

pytestmark = pytest.mark.integration

LINES = [{"sku": "BENCH-TSHIRT", "product_id": 10, "variation_id": 0}]


@pytest.fixture
async def handler(server: HttpTargetServer) -> AsyncIterator[stock.StockHandler]:
    handler = stock.StockHandler(HttpTargetClient("stock", server.url))
    yield handler
    await handler.aclose()


async def test_a_paid_order_is_a_sale_of_every_line(
    server: HttpTargetServer, handler: stock.StockHandler
) -> None:
    event = order_event("order.paid")
    await handler(event, delivery_for("stock", event))
    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/inventory/movements")
    assert request.idempotency_key == "woofleet:stock:order:11:sale"
    assert request.json == {
        "reference": "woocommerce-order-11",
        "order_number": "11",
        "type": "sale",
        "reason": "order paid",
        "lines": [{**LINES[0], "quantity": -2}],
    }


async def test_a_cancelled_paid_order_is_restocked(
    server: HttpTargetServer, handler: stock.StockHandler
) -> None:
    event = order_event("order.cancelled", status="cancelled")
    await handler(event, delivery_for("stock", event))
    [request] = server.requests
    assert request.idempotency_key == "woofleet:stock:order:11:restock"
    assert request.json["type"] == "restock"
    assert request.json["lines"] == [{**LINES[0], "quantity": 2}]


async def test_a_cancelled_unpaid_order_moves_nothing(
    server: HttpTargetServer, handler: stock.StockHandler, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    event = order_event("order.cancelled", status="cancelled", date_paid_gmt=None)
    await handler(event, delivery_for("stock", event))
    assert server.requests == []
    assert "cancelled unpaid" in caplog.text


async def test_a_full_refund_restocks_everything_under_the_same_key_as_a_cancellation(
    server: HttpTargetServer, handler: stock.StockHandler
) -> None:
    refund = Refund(id=40, amount=Decimal("49.98"))
    event = with_data(
        order_event("order.refunded", status="refunded"), refund=refund, refunds=(refund,)
    )
    cancelled = order_event("order.cancelled", status="cancelled")
    assert stock.SPEC.business_key and stock.SPEC.business_key(event) == stock.SPEC.business_key(
        cancelled
    )
    await handler(event, delivery_for("stock", event))
    [request] = server.requests
    assert request.idempotency_key == "woofleet:stock:order:11:restock"
    assert request.json["lines"] == [{**LINES[0], "quantity": 2}]


async def test_a_partial_refund_restocks_nothing(
    server: HttpTargetServer, handler: stock.StockHandler, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    refund = Refund(id=41, amount=Decimal("5.00"))
    event = with_data(order_event("order.refunded"), refund=refund, refunds=(refund,))
    await handler(event, delivery_for("stock", event))
    assert server.requests == []
    assert "partial refund carries no lines; no restock" in caplog.text


async def test_partial_refunds_adding_up_to_the_total_restock_on_the_last(
    server: HttpTargetServer, handler: stock.StockHandler
) -> None:
    refunds = (Refund(id=41, amount=Decimal("40.00")), Refund(id=42, amount=Decimal("9.98")))
    event = with_data(order_event("order.refunded"), refund=refunds[1], refunds=refunds)
    await handler(event, delivery_for("stock", event))
    assert [r.json["type"] for r in server.requests] == ["restock"]


@pytest.mark.parametrize(
    ("name", "event"),
    [
        ("paid", lambda: order_event("order.paid")),
        ("cancelled paid", lambda: order_event("order.cancelled", status="cancelled")),
        (
            "cancelled unpaid",
            lambda: order_event("order.cancelled", status="cancelled", date_paid_gmt=None),
        ),
        (
            "full refund",
            lambda: with_data(
                order_event("order.refunded", status="refunded"),
                refund=Refund(id=40, amount=Decimal("49.98")),
                refunds=(Refund(id=40, amount=Decimal("49.98")),),
            ),
        ),
        (
            "partial refund",
            lambda: with_data(
                order_event("order.refunded"),
                refund=Refund(id=41, amount=Decimal("5.00")),
                refunds=(Refund(id=41, amount=Decimal("5.00")),),
            ),
        ),
    ],
)
async def test_the_business_key_names_the_movement_the_handler_sends(
    server: HttpTargetServer,
    handler: stock.StockHandler,
    name: str,
    event: Callable[[], AnyEnvelope],
) -> None:
    # Given any event stock receives, when the handler handles it
    order = event()
    await handler(order, delivery_for("stock", order))
    # Then the key's movement is the movement sent: a sale or restock key sends that movement,
    # any other key sends nothing (one decision, read by both)
    key = stock.business_key(order)
    sent = [r.json["type"] for r in server.requests]
    kind = key.split(":")[2]
    assert sent == ([kind] if kind in ("sale", "restock") else []), name
    assert stock.decide(order).kind == (sent[0] if sent else None)
