"""Stock: keep an external inventory system of record in step with the shop's orders.

``POST /inventory/movements`` with one line per order line (SKU, product and variation id,
signed quantity) and an ``Idempotency-Key``:

* ``order.paid`` → a ``sale`` (negative quantities).
* ``order.cancelled`` → a ``restock`` of every line — only if the order had been paid: an
  unpaid order was never decremented.
* ``order.refunded`` → a ``restock`` of every line when the refund makes the order fully
  refunded. A partial refund restocks nothing: refunds carry money, not lines, and a partial
  refund is as often a goodwill discount as a return. Several partial refunds that add up to the
  total restock everything once the last one arrives.

An order is restocked at most once: cancellation and full refund share the business key
``order:<id>:restock`` (so the same ledger entry and idempotency key), and a refund after a
cancellation is a duplicate. WooCommerce's own stock is never touched: it has already changed
it itself (see ARCHITECTURE.md).
"""

from __future__ import annotations

import logging
from typing import Any, cast

from consumers.adapters.http_target import HttpTarget, target_from_settings
from consumers.runtime.handler import AnyEnvelope, Delivery, Handler, HandlerSpec, versions
from contracts.orders import OrderData
from fleet.settings import Settings

log = logging.getLogger("consumers.stock")


def fully_refunded(order: OrderData) -> bool:
    return order.status == "refunded" or (order.total > 0 and order.refunded_total >= order.total)


def business_key(event: AnyEnvelope) -> str:
    """``sale`` or ``restock`` for a movement; anything that moves nothing keys only itself, so
    a partial refund cannot use up the key of the full refund that follows it."""
    order = cast(OrderData, event.data)
    if event.event_type == "order.paid":
        return f"order:{order.id}:sale"
    if event.event_type == "order.cancelled" and order.date_paid_gmt is not None:
        return f"order:{order.id}:restock"
    if event.event_type == "order.refunded" and fully_refunded(order):
        return f"order:{order.id}:restock"
    return f"order:{order.id}:{event.event_type}:{event.event_id}"


SPEC = HandlerSpec(
    consumer="stock",
    accepts=versions(["order.paid", "order.cancelled", "order.refunded"], 1),
    business_key=business_key,
)


def movement(order: OrderData, kind: str, reason: str) -> dict[str, Any]:
    sign = -1 if kind == "sale" else 1
    return {
        "reference": f"woocommerce-order-{order.id}",
        "order_number": order.number,
        "type": kind,
        "reason": reason,
        "lines": [
            {
                "sku": line.sku,
                "product_id": line.product_id,
                "variation_id": line.variation_id,
                "quantity": sign * line.quantity,
            }
            for line in order.line_items
            if line.quantity
        ],
    }


class StockHandler:
    def __init__(self, target: HttpTarget) -> None:
        self.target = target

    async def __call__(self, event: AnyEnvelope, delivery: Delivery) -> None:
        order = cast(OrderData, event.data)
        if event.event_type == "order.paid":
            kind, reason = "sale", "order paid"
        elif event.event_type == "order.cancelled":
            if order.date_paid_gmt is None:
                delivery.log.info("order %s cancelled unpaid; stock never left", order.number)
                return
            kind, reason = "restock", "order cancelled"
        elif fully_refunded(order):
            kind, reason = "restock", "order refunded in full"
        else:
            delivery.log.info("order %s: partial refund carries no lines; no restock", order.number)
            return
        body = movement(order, kind, reason)
        if not body["lines"]:
            delivery.log.info(
                "order %s has no lines with a quantity; nothing to move", order.number
            )
            return
        await self.target.send(
            "POST", "/inventory/movements", idempotency_key=delivery.idempotency_key, json=body
        )
        units = sum(abs(line["quantity"]) for line in body["lines"])
        delivery.log.info("order %s: %s of %d units recorded", order.number, kind, units)

    async def aclose(self) -> None:
        await self.target.aclose()


def build(settings: Settings) -> Handler:
    return StockHandler(target_from_settings(settings, "stock"))
