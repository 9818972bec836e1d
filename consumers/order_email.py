"""order-email: the customer's email for each lifecycle step, and the admin's new-order email.

One email per (event type, order, refund): the business key says so, and the runtime's ledger
keeps a redelivered message from sending it twice.
"""

from __future__ import annotations

from typing import Any

from consumers.adapters.mail import Mailer, mailer_from_settings
from consumers.runtime.handler import AnyEnvelope, Delivery, Handler, HandlerSpec
from consumers.templates import address, compose, order_context, render_email
from contracts.orders import OrderData
from fleet.errors import PermanentError
from fleet.settings import Settings

#: Event type → the customer email it sends.
CUSTOMER_EMAILS = {
    "order.created": "order_received",
    "order.paid": "payment_confirmed",
    "order.completed": "order_completed",
    "order.refunded": "order_refunded",
}


def business_key(event: AnyEnvelope) -> str:
    """``order.refunded:727:731@https://shop.example/``: one email per fact and refund."""
    data: OrderData = event.data
    refund = data.refund.id if data.refund else ""
    return f"{event.event_type}:{data.id}:{refund}@{event.source}"


SPEC = HandlerSpec(business_key=business_key)


class OrderEmail:
    def __init__(self, mailer: Mailer, *, sender: str, admin_email: str = "") -> None:
        self.mailer, self.sender, self.admin_email = mailer, sender, admin_email

    async def __call__(self, event: AnyEnvelope, delivery: Delivery) -> None:
        order: OrderData = event.data
        context: dict[str, Any] = order_context(order, event.source)
        if event.event_type == "order.refunded":
            if order.refund is None:
                raise PermanentError("order.refunded names no refund: the publisher must set it")
            context["refund"] = order.refund
        # The admin first: should the customer's send fail and be retried, the duplicate lands
        # in the shop's inbox, never the shopper's.
        admin = event.event_type == "order.created" and bool(self.admin_email)
        if admin:
            await self._send_admin(context, delivery)
        email = order.customer.email or order.billing.email
        if not email:
            why = "order %s has no customer email address; nothing to send"
            if admin:  # the mail server was reached for the admin's copy
                delivery.log.info(why, order.id)
            else:
                delivery.nothing_to_do(why, order.id)
            return
        name = f"{order.billing.first_name} {order.billing.last_name}"
        kind = CUSTOMER_EMAILS[event.event_type]
        message = compose(
            render_email(kind, **context),
            sender=self.sender,
            to=[address(name, email)],
            key=delivery.business_key,
        )
        await self.mailer.send(message)
        delivery.log.info("sent %s email for order %s", kind, order.id)

    async def _send_admin(self, context: dict[str, Any], delivery: Delivery) -> None:
        order: OrderData = context["order"]
        message = compose(
            render_email("admin_new_order", **context),
            sender=self.sender,
            to=[address("", self.admin_email)],
            key=f"admin:{delivery.business_key}",
        )
        try:
            await self.mailer.send(message)
        except PermanentError as exc:
            # A broken admin address must not cost the shopper their confirmation.
            delivery.log.error("admin new-order email for order %s refused: %s", order.id, exc)
        else:
            delivery.log.info("sent admin_new_order email for order %s", order.id)

    async def aclose(self) -> None:
        await self.mailer.aclose()


def build(settings: Settings) -> Handler:
    return OrderEmail(
        mailer_from_settings(settings), sender=settings.mail_from, admin_email=settings.admin_email
    )
