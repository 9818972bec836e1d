"""CRM: keep the customer's contact up to date and record each order event on it.

For every ``order.*`` event:

1. ``PUT /contacts/{contact}`` — upsert the contact (email, names, company, phone, country,
   city, WooCommerce customer id). ``{contact}`` is ``customer-<id>`` for registered customers
   and ``email-<sha256 of the lower-cased email>`` for guests, so no address appears in a URL.
2. ``POST /contacts/{contact}/orders`` — the order event (type, number, status, total,
   currency, when), with an ``Idempotency-Key`` per event.

A guest order without an email has no contact to attach to: skipped with a log line.
"""

from __future__ import annotations

import hashlib
from typing import Any, cast

from consumers.adapters.http_target import HttpTarget, target_from_settings
from consumers.runtime.handler import AnyEnvelope, Delivery, Handler, HandlerSpec
from contracts.orders import OrderData
from fleet.settings import Settings

#: Business key: the event id, deterministic per business fact (the default); every event is
#: worth recording once.
SPEC = HandlerSpec()


def contact_id(order: OrderData) -> str | None:
    if order.customer.id:
        return f"customer-{order.customer.id}"
    email = order.customer.email.strip().lower()
    if not email:
        return None
    return "email-" + hashlib.sha256(email.encode()).hexdigest()


def contact(order: OrderData) -> dict[str, Any]:
    billing = order.billing
    return {
        "email": order.customer.email,
        "first_name": order.customer.first_name,
        "last_name": order.customer.last_name,
        "company": billing.company,
        "phone": billing.phone,
        "country": billing.country,
        "city": billing.city,
        "woocommerce_customer_id": order.customer.id or None,
    }


class CrmHandler:
    def __init__(self, target: HttpTarget) -> None:
        self.target = target

    async def __call__(self, event: AnyEnvelope, delivery: Delivery) -> None:
        order = cast(OrderData, event.data)
        contact_ref = contact_id(order)
        if contact_ref is None:
            delivery.nothing_to_do("order %s: guest without an email; no contact", order.number)
            return
        key = delivery.idempotency_key
        await self.target.send(
            "PUT",
            f"/contacts/{contact_ref}",
            idempotency_key=f"{key}:contact",
            json=contact(order),
        )
        record = {
            "event_id": str(event.event_id),
            "event": event.event_type,
            "order_id": order.id,
            "number": order.number,
            "status": order.status,
            "total": str(order.total),
            "refunded_total": str(order.refunded_total),
            "currency": order.currency,
            "occurred_at": event.occurred_at.isoformat(),
            "date_modified_gmt": order.date_modified_gmt.isoformat(),
        }
        await self.target.send(
            "POST", f"/contacts/{contact_ref}/orders", idempotency_key=f"{key}:order", json=record
        )
        delivery.log.info("order %s: %s recorded in the CRM", order.number, event.event_type)

    async def aclose(self) -> None:
        await self.target.aclose()


def build(settings: Settings) -> Handler:
    return CrmHandler(target_from_settings(settings, "crm"))
