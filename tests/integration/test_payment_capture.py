"""Payment capture against a real HTTP gateway on loopback, in the shape of Stripe's capture."""

from __future__ import annotations

import copy
import logging
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from consumers import payment_capture
from consumers.adapters.http_target import HttpTargetClient
from contracts.orders import OrderEvent, Refund
from fleet.errors import PermanentError, TransientError
from fleet.woo_rest import WooRest
from fleet.woo_writeback import RestWriteBack
from publisher.lifecycle import plan_order
from tests.builders import order_event, woo_order
from tests.support.http_target_server import HttpTargetServer, delivery_for, with_data
from tests.support.woo_server import WooServer, WooStore

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


# -- the outcome written back to WooCommerce (loopback store) -------------------------------


@pytest.fixture
async def woo() -> AsyncIterator[tuple[WooStore, RestWriteBack]]:
    with WooServer(WooStore()) as woo_server:
        rest = WooRest(woo_server.url, woo_server.store.key, woo_server.store.secret, backoff=0.01)
        writeback = RestWriteBack(rest)
        try:
            yield woo_server.store, writeback
        finally:
            await writeback.aclose()


def authorised(status: str, event_type: str = "order.created") -> tuple[dict[str, Any], OrderEvent]:
    """An authorised, uncaptured order in WooCommerce and the event the ingress made of it."""
    order = woo_order(
        status=status,
        transaction_id="pi_3Nabc",
        meta_data=[{"id": 1, "key": "_stripe_charge_captured", "value": "no"}],
    )
    if status == "on-hold":
        order.update(date_paid=None, date_paid_gmt=None)
    event = order_event(
        event_type, **{k: order[k] for k in ("status", "transaction_id", "meta_data")}
    )
    return order, event


async def test_a_capture_moves_an_on_hold_order_to_processing_with_a_note(
    server: HttpTargetServer, woo: tuple[WooStore, RestWriteBack]
) -> None:
    store, writeback = woo
    order, event = authorised("on-hold")
    store.put_order(order)
    server.answer(200, {"id": "pi_3Nabc", "object": "payment_intent", "latest_charge": "ch_9Z"})
    handler = payment_capture.PaymentCaptureHandler(
        HttpTargetClient("payment_capture", server.url), writeback=writeback
    )
    before = copy.deepcopy(store.orders[order["id"]])
    await handler(event, delivery_for("payment-capture", event))
    # A retry (the ack was lost) writes nothing twice.
    server.answer(200, {"id": "pi_3Nabc", "latest_charge": "ch_9Z"})
    await handler(event, delivery_for("payment-capture", event, attempt=2))
    after = store.orders[order["id"]]
    assert after["status"] == "processing" and after["date_paid_gmt"]
    mine = [n for n in store.notes[order["id"]] if "woofleet" in n["note"]]
    assert len(mine) == 1 and "capture ch_9Z, authorisation pi_3Nabc" in mine[0]["note"]
    assert mine[0]["customer_note"] is False
    # The delivery this causes is the order's first order.paid, and nothing else.
    plan = plan_order(after, plan_order(before, None).state)
    assert [e.event_type for e in plan.events] == ["order.paid"]
    # That order.paid comes back to payment-capture under the ledger key it just used.
    paid_again = order_event("order.paid", status="processing", transaction_id="pi_3Nabc")
    assert payment_capture.business_key(paid_again) == payment_capture.business_key(event)


async def test_a_refused_capture_puts_the_order_on_hold_with_the_reason(
    server: HttpTargetServer, woo: tuple[WooStore, RestWriteBack]
) -> None:
    store, writeback = woo
    order, event = authorised("processing", "order.paid")
    store.put_order(order)
    before = copy.deepcopy(order)
    server.answer(400, {"error": {"code": "charge_expired_for_capture", "message": "Expired."}})
    handler = payment_capture.PaymentCaptureHandler(
        HttpTargetClient("payment_capture", server.url), writeback=writeback
    )
    with pytest.raises(PermanentError, match="charge_expired_for_capture"):
        await handler(event, delivery_for("payment-capture", event))
    after = store.orders[order["id"]]
    assert after["status"] == "on-hold"
    [note] = [n for n in store.notes[order["id"]] if "woofleet" in n["note"]]
    assert (
        "Payment capture refused" in note["note"] and "charge_expired_for_capture" in note["note"]
    )
    # The ingress recognises the change as woofleet's own: no order.updated.
    assert plan_order(after, plan_order(before, None).state).events == ()


async def test_the_last_failed_attempt_puts_the_order_on_hold(
    server: HttpTargetServer, woo: tuple[WooStore, RestWriteBack]
) -> None:
    store, writeback = woo
    order, event = authorised("processing", "order.paid")
    store.put_order(order)
    handler = payment_capture.PaymentCaptureHandler(
        HttpTargetClient("payment_capture", server.url), writeback=writeback, max_attempts=5
    )
    server.answer(503, {"error": {"message": "down"}})
    with pytest.raises(TransientError):
        await handler(event, delivery_for("payment-capture", event, attempt=4))
    assert store.orders[order["id"]]["status"] == "processing"  # retries remain
    server.answer(503, {"error": {"message": "down"}})
    with pytest.raises(TransientError):
        await handler(event, delivery_for("payment-capture", event, attempt=5))
    assert store.orders[order["id"]]["status"] == "on-hold"


async def test_an_order_created_with_nothing_to_capture_does_not_take_the_capture_key(
    server: HttpTargetServer,
) -> None:
    created = order_event("order.created", status="processing")
    paid_event = order_event("order.paid", status="processing")
    assert payment_capture.business_key(created) != payment_capture.business_key(paid_event)
    handler = payment_capture.PaymentCaptureHandler(HttpTargetClient("payment_capture", server.url))
    await handler(created, delivery_for("payment-capture", created))
    assert server.requests == []


async def test_a_write_back_refused_after_a_capture_is_no_capture_refusal(
    server: HttpTargetServer,
    woo: tuple[WooStore, RestWriteBack],
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, writeback = woo
    order, event = authorised("on-hold")
    store.put_order(order)
    store.permission = "read"  # a key without write permission
    handler = payment_capture.PaymentCaptureHandler(
        HttpTargetClient("payment_capture", server.url), writeback=writeback
    )
    with pytest.raises(PermanentError, match="refused POST orders/11/notes with 401"):
        await handler(event, delivery_for("payment-capture", event))
    # The capture went through; nothing claims it was refused
    assert "capture refused" not in caplog.text
    assert server.paths() == ["POST /v1/payment_intents/pi_3Nabc/capture"]
    assert store.orders[order["id"]]["status"] == "on-hold"
    assert 11 not in store.notes
