"""Warehouse: ask the 3PL to ship a paid order, and call the shipment off when it is cancelled.

* ``order.paid`` → ``POST /fulfilments`` with the items (SKU, name, quantity), the shipping
  address and method, and a priority taken from the delivery (0-5, as the publisher set it for
  VIP and express orders). Orders without shipping lines are virtual: nothing to ship, skipped.
* ``order.cancelled`` → ``POST /fulfilments/{reference}/cancel``, only for orders that were
  paid (no fulfilment exists otherwise). A 404 means the warehouse never had it: done. Any
  other refusal (e.g. 409, already shipped) dead-letters with the warehouse's answer, because a
  person has to act.

The fulfilment reference is ``woocommerce-<order id>``; each request carries an
``Idempotency-Key`` (``order:<id>:fulfil`` / ``order:<id>:cancel``).
"""

from __future__ import annotations

from typing import Any, cast

from consumers.adapters.http_target import HttpTarget, target_from_settings
from consumers.runtime.handler import AnyEnvelope, Delivery, Handler, HandlerSpec
from contracts.orders import OrderData
from fleet.settings import Settings


def business_key(event: AnyEnvelope) -> str:
    action = "fulfil" if event.event_type == "order.paid" else "cancel"
    return f"order:{cast(OrderData, event.data).id}:{action}"


SPEC = HandlerSpec(business_key=business_key)


def reference(order: OrderData) -> str:
    return f"woocommerce-{order.id}"


def fulfilment_request(order: OrderData, priority: int) -> dict[str, Any]:
    ship_to = order.shipping
    method = order.shipping_lines[0]
    return {
        "reference": reference(order),
        "order_number": order.number,
        "priority": priority,
        "shipping_method": {"id": method.method_id, "title": method.method_title},
        "ship_to": {
            "name": f"{ship_to.first_name} {ship_to.last_name}".strip(),
            "company": ship_to.company,
            "address_1": ship_to.address_1,
            "address_2": ship_to.address_2,
            "city": ship_to.city,
            "state": ship_to.state,
            "postcode": ship_to.postcode,
            "country": ship_to.country,
            "phone": ship_to.phone or order.billing.phone,
        },
        "items": [
            {"sku": line.sku, "name": line.name, "quantity": line.quantity}
            for line in order.line_items
            if line.quantity > 0
        ],
        "note": order.customer_note,
    }


class WarehouseHandler:
    def __init__(self, target: HttpTarget) -> None:
        self.target = target

    async def __call__(self, event: AnyEnvelope, delivery: Delivery) -> None:
        order = cast(OrderData, event.data)
        key = delivery.idempotency_key
        if event.event_type == "order.paid":
            if not order.shipping_lines:
                delivery.nothing_to_do(
                    "order %s has no shipping lines; nothing to ship", order.number
                )
                return
            body = fulfilment_request(order, delivery.priority)
            await self.target.send("POST", "/fulfilments", idempotency_key=key, json=body)
            delivery.log.info(
                "order %s: fulfilment requested (priority %d)", order.number, delivery.priority
            )
            return
        if order.date_paid_gmt is None or not order.shipping_lines:
            delivery.nothing_to_do(
                "order %s was never sent to the warehouse; nothing to cancel", order.number
            )
            return
        answer = await self.target.send(
            "POST",
            f"/fulfilments/{reference(order)}/cancel",
            idempotency_key=key,
            json={"reason": "order cancelled"},
            accept=(404,),
        )
        if answer.status == 404:
            delivery.log.info("order %s: the warehouse has no fulfilment; done", order.number)
        else:
            delivery.log.info("order %s: fulfilment cancelled", order.number)

    async def aclose(self) -> None:
        await self.target.aclose()


def build(settings: Settings) -> Handler:
    return WarehouseHandler(target_from_settings(settings, "warehouse", timeout=60))
