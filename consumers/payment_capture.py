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

``WOOFLEET_PAYMENT_CAPTURE_URL=https://sk_live_…:@api.stripe.com`` (Stripe takes the secret key
as the Basic-auth user name).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, cast
from urllib.parse import quote

from consumers.adapters.http_target import HttpTarget, target_from_settings
from consumers.runtime.handler import AnyEnvelope, Delivery, Handler, HandlerSpec
from contracts.orders import OrderData
from fleet.errors import PermanentError
from fleet.settings import Settings

_YES = {"yes", "true", "1"}
# Stripe's lists of currencies without minor units and with three decimals.
ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA"}
    | {"PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)
THREE_DECIMAL = frozenset(("BHD", "JOD", "KWD", "OMR", "TND"))


def business_key(event: AnyEnvelope) -> str:
    """One capture per order, whatever event or replay asks for it."""
    return f"order:{cast(OrderData, event.data).id}:capture"


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


class PaymentCaptureHandler:
    def __init__(self, target: HttpTarget, capture_methods: Iterable[str] = ()) -> None:
        self.target = target
        self.capture_methods = frozenset(capture_methods)

    async def __call__(self, event: AnyEnvelope, delivery: Delivery) -> None:
        order = cast(OrderData, event.data)
        if not is_authorise_only(order, self.capture_methods):
            delivery.log.info(
                "order %s was charged at checkout (%s); nothing to capture",
                order.number,
                order.payment_method or "no payment method",
            )
            return
        if not order.transaction_id:
            raise PermanentError(
                f"order {order.number} is authorise-only but has no transaction id, so there is "
                "nothing to capture; capture it in the gateway's dashboard and drop this message"
            )
        due = order.total - order.refunded_total
        if due <= 0:
            delivery.log.warning(
                "order %s was refunded in full before capture; release the authorisation "
                "in the gateway instead",
                order.number,
            )
            return
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
            return
        delivery.log.info("order %s: captured %s %s", order.number, due, order.currency)

    async def aclose(self) -> None:
        await self.target.aclose()


def build(settings: Settings) -> Handler:
    methods = (m.strip() for m in settings.payment_capture_methods.split(",") if m.strip())
    return PaymentCaptureHandler(
        target_from_settings(settings, "payment_capture", timeout=20), methods
    )
