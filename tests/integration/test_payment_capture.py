"""Payment capture against a real HTTP gateway on loopback, in the shape of Stripe's capture."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from consumers import payment_capture
from consumers.adapters.http_target import HttpTargetClient
from contracts.orders import OrderEvent, Refund
from fleet.errors import PermanentError
from tests.builders import order_event
from tests.support.http_target_server import HttpTargetServer, delivery_for, with_data

pytestmark = pytest.mark.integration


@pytest.fixture
async def handler(server: HttpTargetServer) -> AsyncIterator[payment_capture.PaymentCaptureHandler]:
    handler = payment_capture.PaymentCaptureHandler(
        HttpTargetClient("payment_capture", server.url), capture_methods={"stripe_manual"}
    )
    yield handler
    await handler.aclose()


def paid(meta: dict[str, str] | None = None, **changes: Any) -> OrderEvent:
    meta_data = [{"id": i, "key": k, "value": v} for i, (k, v) in enumerate((meta or {}).items())]
    return order_event(
        "order.paid", meta_data=meta_data, **{"transaction_id": "pi_3Nabc", **changes}
    )


async def test_an_authorise_only_order_is_captured_once_with_its_key(
    server: HttpTargetServer, handler: payment_capture.PaymentCaptureHandler
) -> None:
    # Given an order paid by an authorisation that was not captured at checkout
    event = paid({"_authorized_only": "yes"})
    # When the consumer handles order.paid
    await handler(event, delivery_for("payment-capture", event))
    # Then the gateway got one Stripe-shaped capture of the order total in cents
    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/v1/payment_intents/pi_3Nabc/capture")
    assert request.form == {"amount_to_capture": "4998", "metadata[woocommerce_order]": "11"}
    assert request.idempotency_key == "woofleet:payment-capture:order:11:capture"


@pytest.mark.parametrize(
    ("meta", "changes"),
    [
        ({"_payment_capture": "yes"}, {}),
        ({"_stripe_charge_captured": "no"}, {}),
        ({"_intention_status": "requires_capture"}, {}),
        ({}, {"payment_method": "stripe_manual"}),
    ],
)
async def test_every_documented_marker_means_authorise_only(
    server: HttpTargetServer,
    handler: payment_capture.PaymentCaptureHandler,
    meta: dict[str, str],
    changes: dict[str, str],
) -> None:
    event = paid(meta, **changes)
    await handler(event, delivery_for("payment-capture", event))
    assert server.paths() == ["POST /v1/payment_intents/pi_3Nabc/capture"]


async def test_an_order_charged_at_checkout_is_skipped_with_a_log_line(
    server: HttpTargetServer,
    handler: payment_capture.PaymentCaptureHandler,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    event = paid({"_stripe_charge_captured": "yes"})
    await handler(event, delivery_for("payment-capture", event))
    assert server.requests == []
    assert "order 11 was charged at checkout (bacs); nothing to capture" in caplog.text


async def test_an_authorise_only_order_without_a_transaction_id_is_permanent(
    server: HttpTargetServer, handler: payment_capture.PaymentCaptureHandler
) -> None:
    event = paid({"_authorized_only": "yes"}, transaction_id="")
    with pytest.raises(PermanentError, match="no transaction id"):
        await handler(event, delivery_for("payment-capture", event))
    assert server.requests == []


async def test_a_refund_before_capture_lowers_the_amount(
    server: HttpTargetServer, handler: payment_capture.PaymentCaptureHandler
) -> None:
    event = with_data(
        paid({"_authorized_only": "yes"}), refunds=(Refund(id=3, amount=Decimal("10.00")),)
    )
    await handler(event, delivery_for("payment-capture", event))
    assert server.requests[0].form["amount_to_capture"] == "3998"


async def test_a_transaction_id_is_escaped_in_the_path(
    server: HttpTargetServer, handler: payment_capture.PaymentCaptureHandler
) -> None:
    event = paid({"_authorized_only": "yes"}, transaction_id="pi/../x")
    await handler(event, delivery_for("payment-capture", event))
    assert server.requests[0].raw_path == "/v1/payment_intents/pi%2F..%2Fx/capture"


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [("29.35", "USD", 2935), ("1500", "JPY", 1500), ("1.234", "KWD", 1234), ("0.005", "EUR", 1)],
)
def test_minor_units_follow_the_currency(amount: str, currency: str, minor: int) -> None:
    assert payment_capture.minor_units(Decimal(amount), currency) == minor


async def test_an_intent_captured_before_counts_as_done(
    server: HttpTargetServer,
    handler: payment_capture.PaymentCaptureHandler,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given Stripe's answer for an intent that was captured in its dashboard already
    caplog.set_level(logging.INFO)
    server.answer(
        400,
        {
            "error": {
                "code": "payment_intent_unexpected_state",
                "message": "This PaymentIntent could not be captured because it has a status "
                "of succeeded.",
                "payment_intent": {"id": "pi_3Nabc", "status": "succeeded"},
            }
        },
    )
    event = paid({"_authorized_only": "yes"})
    # When the consumer captures it, Then that is success
    await handler(event, delivery_for("payment-capture", event))
    assert "order 11 was already captured; nothing to do" in caplog.text


async def test_other_refusals_are_permanent_with_the_gateways_code_and_message_only(
    server: HttpTargetServer, handler: payment_capture.PaymentCaptureHandler
) -> None:
    server.answer(
        400,
        {
            "error": {
                "code": "payment_intent_unexpected_state",
                "message": "It has a status of canceled.",
                "payment_intent": {"status": "canceled", "receipt_email": "shopper@example.com"},
            }
        },
    )
    event = paid({"_authorized_only": "yes"})
    with pytest.raises(PermanentError) as caught:
        await handler(event, delivery_for("payment-capture", event))
    message = str(caught.value)
    assert "400 payment_intent_unexpected_state: It has a status of canceled." in message
    assert "shopper@example.com" not in message
