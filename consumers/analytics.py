"""Analytics: orders as GA4 Measurement Protocol events (``POST /mp/collect``).

* ``order.paid`` → ``purchase`` with the order's value, tax, shipping, coupon and items.
* ``order.refunded`` → ``refund`` of the announced refund's amount; ``items`` are left out, as
  GA4 asks for when the refund is not itemised (our refund events carry no lines).
* ``order.created``, ``order.completed``, ``order.cancelled``, ``order.failed`` → custom events
  ``order_created`` … with transaction id, value and currency, for funnels.
* ``order.updated`` is skipped: it is noise to analytics.

No PII leaves: no email, name or address; ``client_id`` is the order meta ``_ga_client_id``
when a tracking plugin stored it, else a one-way hash of store and customer (or order key).
Set ``WOOFLEET_ANALYTICS_URL`` to e.g.
``https://www.google-analytics.com?measurement_id=G-XXXX&api_secret=…``.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, cast

from consumers.adapters.http_target import HttpTarget, target_from_settings
from consumers.runtime.handler import AnyEnvelope, Delivery, Handler, HandlerSpec
from contracts.orders import OrderData
from fleet.settings import Settings

CUSTOM_EVENTS = ("order.created", "order.completed", "order.cancelled", "order.failed")


def business_key(event: AnyEnvelope) -> str:
    """One purchase per order, one refund per refund id, one custom event per event id."""
    order = cast(OrderData, event.data)
    if event.event_type == "order.paid":
        return f"order:{order.id}:purchase"
    if event.event_type == "order.refunded" and order.refund is not None:
        return f"order:{order.id}:refund:{order.refund.id}"
    return f"order:{order.id}:{event.event_type}:{event.event_id}"


SPEC = HandlerSpec(business_key=business_key)


def client_id(event: AnyEnvelope, order: OrderData) -> str:
    if order.meta.get("_ga_client_id"):
        return order.meta["_ga_client_id"]
    who = f"customer:{order.customer.id}" if order.customer.id else f"order:{order.order_key}"
    digest = hashlib.sha256(f"{event.source}|{who}".encode()).hexdigest()
    # GA4 client ids look like "<random>.<timestamp>"; two hash-derived numbers keep that shape.
    return f"{int(digest[:8], 16)}.{int(digest[8:16], 16)}"


def purchase_params(order: OrderData) -> dict[str, Any]:
    params: dict[str, Any] = {
        "transaction_id": order.number,
        "value": float(order.total),
        "currency": order.currency,
        "tax": float(order.total_tax),
        "shipping": float(order.shipping_total),
        "items": [
            {
                "item_id": line.sku or str(line.variation_id or line.product_id),
                "item_name": line.name,
                "price": float(line.unit_price),
                "quantity": line.quantity,
            }
            for line in order.line_items
        ],
    }
    if order.coupons:
        params["coupon"] = ",".join(c.code for c in order.coupons)
    return params


def ga4_event(event: AnyEnvelope, order: OrderData) -> dict[str, Any] | None:
    """The GA4 event for an order event, or None when analytics has no use for it."""
    if event.event_type == "order.paid":
        return {"name": "purchase", "params": purchase_params(order)}
    if event.event_type == "order.refunded":
        amount = order.refund.amount if order.refund else order.refunded_total
        params = {"transaction_id": order.number, "value": float(amount)}
        return {"name": "refund", "params": {**params, "currency": order.currency}}
    if event.event_type in CUSTOM_EVENTS:
        name = event.event_type.replace(".", "_")
        params = {"transaction_id": order.number, "value": float(order.total)}
        return {"name": name, "params": {**params, "currency": order.currency}}
    return None


class AnalyticsHandler:
    def __init__(self, target: HttpTarget) -> None:
        self.target = target

    async def __call__(self, event: AnyEnvelope, delivery: Delivery) -> None:
        order = cast(OrderData, event.data)
        ga_event = ga4_event(event, order)
        if ga_event is None:
            delivery.nothing_to_do(
                "%s is not an analytics event; skipped", event.event_type, level=logging.DEBUG
            )
            return
        body = {
            "client_id": client_id(event, order),
            "timestamp_micros": int(event.occurred_at.timestamp() * 1_000_000),
            "non_personalized_ads": True,
            "events": [ga_event],
        }
        await self.target.send(
            "POST", "/mp/collect", idempotency_key=delivery.idempotency_key, json=body
        )
        delivery.log.info("order %s: sent %s to analytics", order.number, ga_event["name"])

    async def aclose(self) -> None:
        await self.target.aclose()


def build(settings: Settings) -> Handler:
    return AnalyticsHandler(target_from_settings(settings, "analytics"))
