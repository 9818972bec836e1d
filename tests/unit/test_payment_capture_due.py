"""When payment-capture has something to capture: the decision is pure, so it is tested alone."""

from __future__ import annotations

from consumers.payment_capture import awaits_capture, business_key
from tests.builders import order_event


def test_a_pending_order_without_an_authorisation_is_not_awaiting_capture() -> None:
    # Given an order created pending with no transaction id (the shopper has not paid yet)
    event = order_event("order.created", status="pending", transaction_id="")
    # Then there is nothing to capture yet, and its key cannot stand in for the later capture
    assert not awaits_capture(event)
    assert business_key(event).endswith(":capture:order.created")


def test_an_authorised_on_hold_order_is_awaiting_capture() -> None:
    event = order_event("order.created", status="on-hold", transaction_id="pi_123")
    assert awaits_capture(event)
    assert business_key(event).endswith(":capture")


def test_a_paid_order_always_asks_for_a_capture() -> None:
    assert awaits_capture(order_event("order.paid", status="processing", transaction_id=""))
