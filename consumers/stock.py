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
it itself (see docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

from consumers.adapters.http_target import HttpTarget, target_from_settings
from consumers.runtime.handler import AnyEnvelope, Delivery, Handler, HandlerSpec
from contracts.orders import OrderData
from fleet.settings import Settings


def fully_refunded(order: OrderData) -> bool:
    return order.status == "refunded" or (order.total > 0 and order.refunded_total >= order.total)


@dataclass(frozen=True)
class Decision:
    """What an event means for the inventory: a movement of ``kind``, or none (kind None)."""

    kind: Literal["sale", "restock"] | None
    #: The movement's ``reason``, or why nothing moves (for the log).
    reason: str


def decide(event: AnyEnvelope) -> Decision:
    """The one place that says whether an event is a sale, a restock or nothing (pure)."""
    order = cast(OrderData, event.data)
    if event.event_type == "order.paid":
        return Decision("sale", "order paid")
    if event.event_type == "order.cancelled":
        if order.date_paid_gmt is None:
            return Decision(None, "cancelled unpaid; stock never left")
        return Decision("restock", "order cancelled")
    if event.event_type == "order.refunded":
        if fully_refunded(order):
            return Decision("restock", "order refunded in full")
        return Decision(None, "partial refund carries no lines; no restock")
    return Decision(None, f"{event.event_type} moves no stock")


def business_key(event: AnyEnvelope) -> str:
    """``sale`` or ``restock`` for a movement; anything that moves nothing keys only itself, so
    a partial refund cannot use up the key of the full refund that follows it."""
    order = cast(OrderData, event.data)
    kind = decide(event).kind
    if kind is not None:
        return f"order:{order.id}:{kind}"
    return f"order:{order.id}:{event.event_type}:{event.event_id}"


SPEC = HandlerSpec(business_key=business_key)


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
        decision = decide(event)
        if decision.kind is None:
            delivery.nothing_to_do("order %s: %s", order.number, decision.reason)
            return
        kind = decision.kind
        body = movement(order, kind, decision.reason)
        if not body["lines"]:
            delivery.nothing_to_do(
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
