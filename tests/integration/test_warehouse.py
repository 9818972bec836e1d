"""Warehouse against a real 3PL HTTP API on loopback: fulfilment requests and cancellations."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from consumers import warehouse
from consumers.adapters.http_target import HttpTargetClient
from fleet.errors import PermanentError
from tests.builders import order_event
from tests.support.http_target_server import HttpTargetServer, delivery_for, with_data

pytestmark = pytest.mark.integration


@pytest.fixture
async def handler(server: HttpTargetServer) -> AsyncIterator[warehouse.WarehouseHandler]:
    handler = warehouse.WarehouseHandler(HttpTargetClient("warehouse", server.url))
    yield handler
    await handler.aclose()


async def test_a_paid_order_is_sent_for_fulfilment_with_the_delivery_priority(
    server: HttpTargetServer, handler: warehouse.WarehouseHandler
) -> None:
    event = order_event("order.paid")
    await handler(event, delivery_for("warehouse", event, priority=4))
    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/fulfilments")
    assert request.idempotency_key == "woofleet:warehouse:order:11:fulfil"
    assert request.json == {
        "reference": "woocommerce-11",
        "order_number": "11",
        "priority": 4,
        "shipping_method": {"id": "flat_rate", "title": "Flat Rate"},
        "ship_to": {
            "name": "John Doe",
            "company": "",
            "address_1": "969 Market",
            "address_2": "",
            "city": "San Francisco",
            "state": "CA",
            "postcode": "94103",
            "country": "US",
            "phone": "(555) 555-5555",
        },
        "items": [{"sku": "BENCH-TSHIRT", "name": "Bench T-Shirt", "quantity": 2}],
        "note": "",
    }


async def test_an_order_without_shipping_is_not_sent(
    server: HttpTargetServer, handler: warehouse.WarehouseHandler
) -> None:
    event = with_data(order_event("order.paid"), shipping_lines=())
    await handler(event, delivery_for("warehouse", event))
    assert server.requests == []


async def test_a_cancelled_paid_order_cancels_its_fulfilment(
    server: HttpTargetServer, handler: warehouse.WarehouseHandler
) -> None:
    event = order_event("order.cancelled", status="cancelled")
    await handler(event, delivery_for("warehouse", event))
    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/fulfilments/woocommerce-11/cancel")
    assert request.idempotency_key == "woofleet:warehouse:order:11:cancel"


async def test_cancelling_what_the_warehouse_never_had_is_done(
    server: HttpTargetServer, handler: warehouse.WarehouseHandler
) -> None:
    server.answer(404, {"error": "unknown reference"})
    event = order_event("order.cancelled", status="cancelled")
    await handler(event, delivery_for("warehouse", event))
    assert len(server.requests) == 1


async def test_cancelling_a_shipped_order_dead_letters_with_the_answer(
    server: HttpTargetServer, handler: warehouse.WarehouseHandler
) -> None:
    server.answer(409, {"error": "already shipped"})
    event = order_event("order.cancelled", status="cancelled")
    with pytest.raises(PermanentError, match=r"409.*already shipped"):
        await handler(event, delivery_for("warehouse", event))


async def test_an_unpaid_cancelled_order_sends_nothing(
    server: HttpTargetServer, handler: warehouse.WarehouseHandler
) -> None:
    event = order_event("order.cancelled", status="cancelled", date_paid_gmt=None)
    await handler(event, delivery_for("warehouse", event))
    assert server.requests == []
