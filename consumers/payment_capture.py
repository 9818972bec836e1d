"""Payment capture: capture an authorised payment once the order is paid, Stripe-style.

``POST /v1/payment_intents/{transaction_id}/capture`` with the form field
``amount_to_capture`` (minor units) and an ``Idempotency-Key``, so a repeated capture is
answered from the gateway's memory instead of charging twice.

Which orders: only those authorised but not captured at checkout. An order is such an order
when its meta says so — ``_authorized_only`` or ``_payment_capture`` is ``yes``/``true``/``1``,
``_stripe_charge_captured`` is ``no`` (WooCommerce Stripe Gateway) or ``_intention_status``
is ``requires_capture`` (WooPayments) — or when its payment method is in ``capture_methods``.
Every other order was charged at checkout and is skipped with a log line. An authorise-only
order without a transaction id cannot be captured: PermanentError.

Which events: ``order.paid`` (the order entered processing: capture what was authorised) and
``order.created`` of an order still on-hold or pending, which is how WooCommerce's gateways
leave an authorised, uncaptured order ("process order to take payment").

The outcome is written back to WooCommerce (:mod:`fleet.woo_writeback`): a capture moves an
on-hold or pending order to ``processing`` (the seed's step; WooCommerce stamps the payment
date, so the ingress emits the order's first ``order.paid``, which reaches this consumer again
under the same business key and is skipped by the ledger) and adds a private note naming the
capture. A refused capture — the gateway's 400, or the last attempt failing — puts a processing
or pending order ``on-hold`` with a private note saying why, then dead-letters the message
(``woo.payment-capture.dlq``: the alert). The ingress recognises both status changes as
woofleet's own and announces no ``order.updated`` for them.

``WOOFLEET_PAYMENT_CAPTURE_URL=https://sk_live_…:@api.stripe.com`` (Stripe takes the secret key
as the Basic-auth user name).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, cast
from urllib.parse import quote

from consumers.adapters.http_target import HttpTarget, target_from_settings
from consumers.runtime.handler import AnyEnvelope, Delivery, Handler, HandlerSpec
from contracts.orders import OrderData
from fleet.errors import HandlerError, PermanentError, TransientError
from fleet.settings import Settings
from fleet.woo_writeback import WooWriteBack, writeback_from_settings
from topology.fleet import DEFAULT_FLEET

_YES = {"yes", "true", "1"}
# Stripe's lists of currencies without minor units and with three decimals.
ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA"}
    | {"PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)
THREE_DECIMAL = frozenset(("BHD", "JOD", "KWD", "OMR", "TND"))
#: Statuses of an order whose payment is authorised but not taken yet.
AWAITING_CAPTURE = frozenset({"on-hold", "pending"})
#: Statuses a refused capture moves to on-hold (a person's cancelled or completed stays).
REFUSABLE = frozenset({"processing", "pending"})


def awaits_capture(event: AnyEnvelope) -> bool:
    """``order.paid``, or ``order.created`` of an order its gateway authorised and left
    on-hold/pending. A pending order with no transaction id has not been paid at all yet."""
    order = cast(OrderData, event.data)
    return event.event_type == "order.paid" or (
        event.event_type == "order.created"
        and order.status in AWAITING_CAPTURE
        and bool(order.transaction_id)
    )


def business_key(event: AnyEnvelope) -> str:
    """One capture per order, whatever event or replay asks for it; an ``order.created`` with
    nothing to capture gets its own key, so it never stands in for the later ``order.paid``."""
    order_id = cast(OrderData, event.data).id
    if awaits_capture(event):
        return f"order:{order_id}:capture"
    return f"order:{order_id}:capture:{event.event_type}"


SPEC = HandlerSpec(business_key=business_key)


def minor_units(amount: Decimal, currency: str) -> int:
    """``Decimal("29.35"), "USD"`` → 2935; JPY has no minor unit, KWD has three decimals."""
    code = currency.upper()
    digits = 0 if code in ZERO_DECIMAL else 3 if code in THREE_DECIMAL else 2
    return int((amount * (10**digits)).quantize(Decimal(1), ROUND_HALF_UP))


def is_authorise_only(order: OrderData, capture_methods: Iterable[str] = ()) -> bool:
    meta = {k: v.strip().lower() for k, v in order.meta.items()}
    return (
        meta.get("_authorized_only") in _YES
        or meta.get("_payment_capture") in _YES
        or meta.get("_stripe_charge_captured") == "no"
        or meta.get("_intention_status") == "requires_capture"
        or order.payment_method in set(capture_methods)
    )


def _error(body: Any) -> dict[str, Any]:
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def already_captured(body: Any) -> bool:
    """Stripe's answer when the intent was captured before (in its dashboard, or by a capture
    whose idempotency key has expired after 24 h): a success for us."""
    error = _error(body)
    if error.get("code") != "payment_intent_unexpected_state":
        return False
    intent = error.get("payment_intent")
    return isinstance(intent, dict) and intent.get("status") == "succeeded"


@dataclass(frozen=True)
class Captured:
    """A capture made (or found made before): what the note says."""

    amount: Decimal
    id: str
    before: bool = False


def capture_id(body: Any) -> str:
    """The capture's id in Stripe's answer: the charge it created, else the intent's id."""
    if not isinstance(body, dict):
        return ""
    return str(body.get("latest_charge") or body.get("id") or "")


class PaymentCaptureHandler:
    def __init__(
        self,
        target: HttpTarget,
        capture_methods: Iterable[str] = (),
        *,
        writeback: WooWriteBack | None = None,
        max_attempts: int = 0,
    ) -> None:
        self.target = target
        self.capture_methods = frozenset(capture_methods)
        #: Where the outcome goes in WooCommerce; None writes nothing back (the capture alone).
        self.writeback = writeback
        #: The attempt after which the runtime dead-letters a transient failure (0: unknown).
        self.max_attempts = max_attempts

    async def __call__(self, event: AnyEnvelope, delivery: Delivery) -> None:
        order = cast(OrderData, event.data)
        if not awaits_capture(event):
            delivery.nothing_to_do(
                "order %s is %s: not waiting for a capture", order.number, order.status
            )
            return
        # Only the capture's own failures are a refusal; the write-back's are its own (a
        # retry captures again under the same idempotency key, or finds it captured).
        try:
            captured = await self._capture(order, delivery)
        except PermanentError as exc:
            await self._refused(order, delivery, str(exc))
            raise
        except TransientError as exc:
            if self.max_attempts and delivery.attempt >= self.max_attempts:
                await self._refused(
                    order, delivery, f"no answer after {delivery.attempt} attempts: {exc}"
                )
            raise
        if captured is not None:
            await self._captured(order, delivery, captured)

    async def _capture(self, order: OrderData, delivery: Delivery) -> Captured | None:
        """Capture what is due; None when there is nothing to capture."""
        if not is_authorise_only(order, self.capture_methods):
            delivery.nothing_to_do(
                "order %s was charged at checkout (%s); nothing to capture",
                order.number,
                order.payment_method or "no payment method",
            )
            return None
        if not order.transaction_id:
            raise PermanentError(
                f"order {order.number} is authorise-only but has no transaction id, so there is "
                "nothing to capture; capture it in the gateway's dashboard and drop this message"
            )
        due = order.total - order.refunded_total
        if due <= 0:
            delivery.nothing_to_do(
                "order %s was refunded in full before capture; release the authorisation "
                "in the gateway instead",
                order.number,
                level=logging.WARNING,
            )
            return None
        answer = await self.target.send(
            "POST",
            f"/v1/payment_intents/{quote(order.transaction_id, safe='')}/capture",
            idempotency_key=delivery.idempotency_key,
            form={
                "amount_to_capture": str(minor_units(due, order.currency)),
                "metadata[woocommerce_order]": order.number,
            },
            accept=(400,),
        )
        if answer.status == 400:
            if not already_captured(answer.body):
                # Code and message only: the intent object in the answer holds shopper data.
                error = _error(answer.body)
                raise PermanentError(
                    f"{self.target.name} refused to capture order {order.number}: 400 "
                    f"{error.get('code', 'no error code')}: {error.get('message', '')} — "
                    "check the payment in the gateway's dashboard"
                )
            delivery.log.info("order %s was already captured; nothing to do", order.number)
            return Captured(due, "", before=True)
        delivery.log.info("order %s: captured %s %s", order.number, due, order.currency)
        return Captured(due, capture_id(answer.body))

    async def _captured(self, order: OrderData, delivery: Delivery, captured: Captured) -> None:
        if self.writeback is None:
            return
        what = f"{captured.amount} {order.currency}"
        text = (
            f"Payment of {what} was already captured in {self.target.name} (woofleet)."
            if captured.before
            else f"Payment of {what} captured by woofleet: "
            f"{f'capture {captured.id}' if captured.id else 'the gateway gave no capture id'}, "
            f"authorisation {order.transaction_id}."
        )
        marker = f"{delivery.idempotency_key}:captured"
        await self.writeback.add_note(order.id, text, marker=marker)
        change = await self.writeback.set_status(
            order.id, "processing", by="payment-capture", only_from=AWAITING_CAPTURE
        )
        if change.changed:
            delivery.log.info("order %s: %s -> processing", order.number, change.previous)

    async def _refused(self, order: OrderData, delivery: Delivery, why: str) -> None:
        """Put the order on-hold with a note saying why; the dead letter raises the alert."""
        if self.writeback is None:
            return
        try:
            await self.writeback.add_note(
                order.id,
                f"Payment capture refused (woofleet): {why}. The order is on hold until the "
                "payment is settled in the gateway.",
                marker=f"{delivery.idempotency_key}:refused",
            )
            await self.writeback.set_status(
                order.id, "on-hold", by="payment-capture", only_from=REFUSABLE
            )
        except HandlerError as exc:
            # The dead letter still carries the refusal; the note is the lesser loss.
            delivery.log.error(
                "order %s: capture refused but could not be written back: %s", order.number, exc
            )

    async def aclose(self) -> None:
        await self.target.aclose()
        if self.writeback is not None:
            await self.writeback.aclose()


def build(settings: Settings) -> Handler:
    methods = settings.payment_capture_methods
    return PaymentCaptureHandler(
        target_from_settings(settings, "payment_capture", timeout=20),
        methods,
        writeback=writeback_from_settings(settings),
        max_attempts=DEFAULT_FLEET.consumer("payment-capture").max_attempts,
    )
