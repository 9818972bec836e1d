"""Build real-shaped events for tests from the WooCommerce payload samples."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts.envelope import event_id_for
from contracts.orders import OrderEvent, order_data_from_woo

DATA = Path(__file__).resolve().parent / "data" / "woocommerce"
STORE = "https://shop.example/"


def woo_order(name: str = "real-delivery-order-created.json", **changes: Any) -> dict[str, Any]:
    """A WooCommerce REST v3 order object from the samples, with top-level fields changed."""
    raw = json.loads((DATA / name).read_text())
    order: dict[str, Any] = raw.get("body_json", raw)
    order.update(changes)
    return order


def order_event(
    event_type: str = "order.paid", *, unique: bool = False, **changes: Any
) -> OrderEvent:
    """An OrderEvent v1; ``unique`` gives it a fresh event id (a different business fact)."""
    order = woo_order(**changes)
    data = order_data_from_woo(order)
    event_id = (
        uuid.uuid4()
        if unique
        else event_id_for(STORE, data.id, event_type, data.date_modified_gmt.isoformat())
    )
    return OrderEvent(
        event_id=event_id,
        event_type=event_type,
        schema_version=1,
        occurred_at=datetime.now(UTC),
        source=STORE,
        data=data,
    )
