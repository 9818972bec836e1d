"""WooCommerce resources → woofleet envelopes, with deterministic event ids (pure)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from contracts import OrderEvent, ProductEvent, event_id_for, latest_version
from contracts.catalog import ProductData
from contracts.orders import OrderData
from publisher.lifecycle import Plan, PlannedEvent
from publisher.outgoing import Outgoing

#: The WooCommerce webhook topics woofleet handles (``order.deleted`` yields no event).
ORDER_TOPICS = frozenset({"order.created", "order.updated", "order.deleted", "order.restored"})
PRODUCT_TOPICS = frozenset({"product.created", "product.updated"})


#: Fields only one resource's REST body has (WooCommerce signs the body, not the topic header).
_ORDER_FIELDS = frozenset({"order_key", "line_items", "billing", "payment_method"})
_PRODUCT_FIELDS = frozenset({"sku", "slug", "permalink", "regular_price", "stock_status"})


def resource_of_topic(topic: str) -> str:
    """``order`` for ``order.updated``, ``product`` for ``product.created``."""
    return topic.partition(".")[0]


def resource_of(payload: dict[str, Any]) -> str | None:
    """``order`` or ``product`` when the body's fields say so; None when they cannot tell (an
    ``order.deleted`` body is just an id)."""
    order = not _ORDER_FIELDS.isdisjoint(payload)
    product = not _PRODUCT_FIELDS.isdisjoint(payload)
    if order == product:
        return None
    return "order" if order else "product"


def normalised_source(source: str) -> str:
    """``https://shop.example/`` (X-WC-Webhook-Source) and the REST base URL name one store."""
    return source.strip().rstrip("/")


def order_event_id(
    source: str, order_id: int, event: PlannedEvent, modified: str, print_: str
) -> uuid.UUID:
    """Same business fact, same id: (store, order, event type, ``date_modified_gmt`` | refund id).

    ``order.updated`` also takes the relevant-fields fingerprint: ``date_modified`` has 1 s
    resolution, and two different updates in one second are two facts.
    """
    if event.refund_id is not None:
        return event_id_for(source, order_id, event.event_type, event.refund_id)
    if event.event_type == "order.updated":
        return event_id_for(source, order_id, event.event_type, modified, print_[:16])
    return event_id_for(source, order_id, event.event_type, modified)


def _occurred_at(data: OrderData, event: PlannedEvent) -> datetime:
    if event.event_type == "order.created":
        return data.date_created_gmt
    if event.event_type == "order.paid" and data.date_paid_gmt is not None:
        return data.date_paid_gmt
    if event.event_type == "order.completed" and data.date_completed_gmt is not None:
        return data.date_completed_gmt
    return data.date_modified_gmt


def order_event(
    source: str, data: OrderData, event: PlannedEvent, modified: str, print_: str
) -> OrderEvent:
    """The envelope of one planned event; ``data`` is the order as this delivery shows it."""
    if event.refund_id is not None:
        refund = next((r for r in data.refunds if r.id == event.refund_id), None)
        data = data.model_copy(update={"refund": refund})
    # Every part is validated already (data) or built here with its own type, so the envelope
    # is not validated again (the webhook builds one per event; a test checks they are equal).
    return OrderEvent.model_construct(
        event_id=order_event_id(source, data.id, event, modified, print_),
        event_type=event.event_type,
        schema_version=latest_version(event.event_type),
        occurred_at=_occurred_at(data, event),
        source=source,
        data=data,
    )


def order_messages(source: str, data: OrderData, plan: Plan, priority: int) -> list[Outgoing]:
    """The messages of a plan's events, with the order serialised once for all of them."""
    data_json = data.model_dump_json().encode() if plan.events else b""
    return [
        Outgoing.from_envelope(
            order_event(source, data, event, plan.modified, plan.fingerprint),
            priority=priority,
            # A refund event's data carries its refund, so it is serialised on its own.
            data_json=data_json if event.refund_id is None else None,
        )
        for event in plan.events
    ]


def product_event(source: str, data: ProductData, modified: str) -> ProductEvent:
    """WooCommerce's product.created and product.updated both become ``product.updated``."""
    return ProductEvent(
        event_id=event_id_for(source, data.id, "product.updated", modified),
        event_type="product.updated",
        schema_version=latest_version("product.updated"),
        occurred_at=data.date_modified_gmt,
        source=source,
        data=data,
    )


def product_fingerprint_view(product: dict[str, Any]) -> dict[str, Any]:
    fields = ("name", "type", "status", "sku", "price", "regular_price", "sale_price")
    view = {f: product.get(f) for f in fields}
    view["stock"] = (product.get("manage_stock"), product.get("stock_quantity"))
    view["stock_status"] = product.get("stock_status")
    return view
