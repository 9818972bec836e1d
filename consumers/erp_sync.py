"""ERP sync: the order, its completion, cancellation and refunds, posted to the ERP.

* ``order.paid``, ``order.completed`` → ``PUT /orders/{id}``: the whole order document
  (number, status, totals, lines with SKU, quantity and totals, customer, addresses). A PUT of
  the full document is an upsert: the ERP keeps the newest by ``date_modified_gmt``.
* ``order.cancelled`` → ``POST /orders/{id}/cancellation``.
* ``order.refunded`` → ``POST /orders/{id}/refunds`` with the refund's id, amount and reason.

Every request carries an ``Idempotency-Key`` derived from the business fact
(``order:<id>:<event>``, ``order:<id>:refund:<refund id>``).
"""

from __future__ import annotations

from typing import Any, cast

from consumers.adapters.http_target import HttpTarget, target_from_settings
from consumers.runtime.handler import AnyEnvelope, Delivery, Handler, HandlerSpec
from contracts.orders import Address, OrderData
from fleet.settings import Settings


def business_key(event: AnyEnvelope) -> str:
    order = cast(OrderData, event.data)
    if event.event_type == "order.refunded":
        refund = order.refund.id if order.refund else event.event_id
        return f"order:{order.id}:refund:{refund}"
    return f"order:{order.id}:{event.event_type.removeprefix('order.')}"


SPEC = HandlerSpec(business_key=business_key)


def _address(address: Address) -> dict[str, str]:
    return address.model_dump(mode="json")


def order_document(order: OrderData) -> dict[str, Any]:
    """The order as the ERP gets it: money as decimal strings, dates in UTC ISO 8601."""
    data = order.model_dump(mode="json")
    return {
        "external_id": order.id,
        "number": order.number,
        "status": order.status,
        "currency": order.currency,
        "prices_include_tax": order.prices_include_tax,
        "totals": {
            "total": data["total"],
            "tax": data["total_tax"],
            "shipping": data["shipping_total"],
            "discount": data["discount_total"],
            "refunded": str(order.refunded_total),
        },
        "lines": [
            {
                "sku": line["sku"],
                "name": line["name"],
                "product_id": line["product_id"],
                "variation_id": line["variation_id"],
                "quantity": line["quantity"],
                "unit_price": line["unit_price"],
                "subtotal": line["subtotal"],
                "total": line["total"],
                "tax": line["total_tax"],
            }
            for line in data["line_items"]
        ],
        "shipping_lines": [
            {"method": s["method_id"], "title": s["method_title"], "total": s["total"]}
            for s in data["shipping_lines"]
        ],
        "coupons": [c["code"] for c in data["coupons"]],
        "customer": data["customer"],
        "billing": _address(order.billing),
        "shipping": _address(order.shipping),
        "payment": {"method": order.payment_method, "transaction_id": order.transaction_id},
        "dates": {
            "created": data["date_created_gmt"],
            "paid": data["date_paid_gmt"],
            "completed": data["date_completed_gmt"],
            "modified": data["date_modified_gmt"],
        },
    }


class ErpSyncHandler:
    def __init__(self, target: HttpTarget) -> None:
        self.target = target

    async def __call__(self, event: AnyEnvelope, delivery: Delivery) -> None:
        order = cast(OrderData, event.data)
        key = delivery.idempotency_key
        body: dict[str, Any]
        if event.event_type in ("order.paid", "order.completed"):
            await self.target.send(
                "PUT", f"/orders/{order.id}", idempotency_key=key, json=order_document(order)
            )
        elif event.event_type == "order.cancelled":
            body = {"number": order.number, "cancelled_at": event.occurred_at.isoformat()}
            await self.target.send(
                "POST", f"/orders/{order.id}/cancellation", idempotency_key=key, json=body
            )
        else:
            refund = order.refund
            body = {
                "number": order.number,
                "refund_id": refund.id if refund else None,
                "amount": str(refund.amount if refund else order.refunded_total),
                "currency": order.currency,
                "reason": refund.reason if refund else "",
                "refunded_total": str(order.refunded_total),
                "fully_refunded": order.status == "refunded",
            }
            await self.target.send(
                "POST", f"/orders/{order.id}/refunds", idempotency_key=key, json=body
            )
        delivery.log.info("order %s: %s synced to the ERP", order.number, event.event_type)

    async def aclose(self) -> None:
        await self.target.aclose()


def build(settings: Settings) -> Handler:
    return ErpSyncHandler(target_from_settings(settings, "erp_sync", timeout=30))
