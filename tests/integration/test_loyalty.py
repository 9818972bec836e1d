"""Loyalty against a real loyalty HTTP API on loopback: awards, reversals, guests."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from consumers import loyalty
from consumers.adapters.http_target import HttpTargetClient
from contracts.orders import OrderEvent, Refund
from tests.builders import order_event
from tests.support.http_target_server import HttpTargetServer, delivery_for, with_data

pytestmark = pytest.mark.integration

COMPLETED_AT = "2026-11-28T05:00:00"


@pytest.fixture
async def handler(server: HttpTargetServer) -> AsyncIterator[loyalty.LoyaltyHandler]:
    handler = loyalty.LoyaltyHandler(HttpTargetClient("loyalty", server.url))
    yield handler
    await handler.aclose()


def completed(**changes: Any) -> OrderEvent:
    fields: dict[str, Any] = {
        "status": "completed",
        "customer_id": 26,
        "date_completed_gmt": COMPLETED_AT,
    }
    return order_event("order.completed", **{**fields, **changes})


async def test_a_completed_order_awards_one_point_per_whole_unit(
    server: HttpTargetServer, handler: loyalty.LoyaltyHandler
) -> None:
    event = completed()
    await handler(event, delivery_for("loyalty", event))
    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/members/26/transactions")
    assert request.idempotency_key == "woofleet:loyalty:order:11:award"
    assert request.json == {
        "type": "award",
        "points": 49,
        "order_id": 11,
        "order_number": "11",
        "amount": "49.98",
        "currency": "EUR",
        "refund_id": None,
    }


async def test_the_rate_is_configurable(server: HttpTargetServer) -> None:
    handler = loyalty.LoyaltyHandler(
        HttpTargetClient("loyalty", server.url), points_per_unit=Decimal("2.5")
    )
    event = completed()
    await handler(event, delivery_for("loyalty", event))
    await handler.aclose()
    assert server.requests[0].json["points"] == 124


async def test_a_refund_reverses_the_points_of_its_amount(
    server: HttpTargetServer, handler: loyalty.LoyaltyHandler
) -> None:
    refund = Refund(id=31, amount=Decimal("10.50"))
    event = with_data(
        order_event("order.refunded", customer_id=26, date_completed_gmt=COMPLETED_AT),
        refund=refund,
        refunds=(refund,),
    )
    await handler(event, delivery_for("loyalty", event))
    [request] = server.requests
    assert request.idempotency_key == "woofleet:loyalty:order:11:reverse:31"
    assert (request.json["type"], request.json["points"], request.json["refund_id"]) == (
        "reverse",
        -10,
        31,
    )


async def test_a_refund_of_an_order_that_never_completed_reverses_nothing(
    server: HttpTargetServer, handler: loyalty.LoyaltyHandler
) -> None:
    refund = Refund(id=31, amount=Decimal("10.50"))
    event = with_data(order_event("order.refunded", customer_id=26), refund=refund)
    await handler(event, delivery_for("loyalty", event))
    assert server.requests == []


async def test_guests_earn_nothing_and_it_says_so(
    server: HttpTargetServer, handler: loyalty.LoyaltyHandler, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    event = completed(customer_id=0)
    delivery = delivery_for("loyalty", event)
    await handler(event, delivery)
    assert server.requests == []
    assert "order 11 is a guest order; guests earn no points" in caplog.text
    # which tells the runtime its success says nothing about the loyalty API (the breaker)
    assert delivery.did_nothing
