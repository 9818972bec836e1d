"""Loyalty: award points when an order completes, take them back when it is refunded.

Points are ``floor(amount × points_per_unit)``: by default one point per whole unit of the
order's total. Refunds reverse ``floor(refund amount × points_per_unit)``, and only for orders
that had completed (points are awarded on completion, so a refund before it has nothing to
reverse). Guests (customer id 0) earn nothing: skipped with a log line.

``POST /members/{customer id}/transactions`` with ``type`` ``award`` or ``reverse`` and an
``Idempotency-Key`` (``order:<id>:award``, ``order:<id>:reverse:<refund id>``).
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal
from typing import cast

from consumers.adapters.http_target import HttpTarget, target_from_settings
from consumers.runtime.handler import AnyEnvelope, Delivery, Handler, HandlerSpec
from contracts.orders import OrderData
from fleet.settings import Settings

DEFAULT_POINTS_PER_UNIT = Decimal(1)


def business_key(event: AnyEnvelope) -> str:
    order = cast(OrderData, event.data)
    if event.event_type == "order.completed":
        return f"order:{order.id}:award"
    refund = order.refund.id if order.refund else event.event_id
    return f"order:{order.id}:reverse:{refund}"


SPEC = HandlerSpec(business_key=business_key)


def points(amount: Decimal, per_unit: Decimal) -> int:
    return int((amount * per_unit).to_integral_value(ROUND_FLOOR))


class LoyaltyHandler:
    def __init__(
        self, target: HttpTarget, points_per_unit: Decimal = DEFAULT_POINTS_PER_UNIT
    ) -> None:
        self.target = target
        self.points_per_unit = points_per_unit

    async def __call__(self, event: AnyEnvelope, delivery: Delivery) -> None:
        order = cast(OrderData, event.data)
        if not order.customer.id:
            delivery.nothing_to_do("order %s is a guest order; guests earn no points", order.number)
            return
        if event.event_type == "order.completed":
            kind, amount = "award", order.total
        elif order.date_completed_gmt is None:
            delivery.nothing_to_do("order %s never completed; no points to reverse", order.number)
            return
        else:
            kind = "reverse"
            amount = order.refund.amount if order.refund else order.refunded_total
        earned = points(amount, self.points_per_unit)
        if earned <= 0:
            delivery.nothing_to_do("order %s: %s of 0 points; nothing to send", order.number, kind)
            return
        body = {
            "type": kind,
            "points": earned if kind == "award" else -earned,
            "order_id": order.id,
            "order_number": order.number,
            "amount": str(amount),
            "currency": order.currency,
            "refund_id": order.refund.id if kind == "reverse" and order.refund else None,
        }
        await self.target.send(
            "POST",
            f"/members/{order.customer.id}/transactions",
            idempotency_key=delivery.idempotency_key,
            json=body,
        )
        delivery.log.info("order %s: %s %d points", order.number, kind, earned)

    async def aclose(self) -> None:
        await self.target.aclose()


def build(settings: Settings) -> Handler:
    return LoyaltyHandler(
        target_from_settings(settings, "loyalty"), settings.loyalty_points_per_unit
    )
