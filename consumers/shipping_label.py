"""shipping-label: buy the parcel's label when an order is paid, void it when it is cancelled.

``order.paid``: the shipment (ship-from ``WOOFLEET_SHIPPING_FROM``, the order's shipping address,
the parcel ``WOOFLEET_SHIPPING_PARCEL``) is created at the carrier aggregator, the rate of
``WOOFLEET_SHIPPING_SERVICE_LEVEL`` bought (:mod:`consumers.adapters.carrier`), the label PDF
stored beside the invoices (``labels/<order>/<tracking>.pdf``, file or S3), and tracking written
back to WooCommerce: an item in ``_wc_shipment_tracking_items`` (the meta the Shipment Tracking
extension shows in the admin and the customer's emails), the hidden ``_woofleet_shipping_label``
(the transaction id, for voiding) and a customer note with the tracking link.

``order.cancelled``: the label named by ``_woofleet_shipping_label`` is voided and a private
note says so. An order without a shipping address (virtual goods) gets no label.

Business keys ``order:<id>:label`` and ``order:<id>:label-void``; every carrier request carries an
idempotency key derived from them, and every WooCommerce write checks its own marker, so a
retry at any point buys nothing twice and writes nothing twice. Failure classes: the carrier's
(and WooCommerce's) timeouts, 5xx and 429, a label still queued → transient; a refused address,
no rate at the configured service level, a label the carrier cannot void → permanent.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import Any, cast

from consumers.adapters.carrier import Carrier, Label, carrier_from_settings
from consumers.adapters.invoice_store import InvoiceStore, invoice_store_from_settings, key_part
from consumers.runtime.handler import AnyEnvelope, Delivery, Handler, HandlerSpec
from contracts.orders import Address, OrderData
from fleet.settings import Settings
from fleet.woo_writeback import WooWriteBack, writeback_from_settings

log = logging.getLogger("consumers.shipping_label")

TRACKING_META = "_wc_shipment_tracking_items"
LABEL_META = "_woofleet_shipping_label"
#: Statuses in which a paid order no longer ships.
UNSHIPPABLE = frozenset({"cancelled", "refunded", "failed", "trash"})


def business_key(event: AnyEnvelope) -> str:
    """One label per order, one void per order."""
    order_id = cast(OrderData, event.data).id
    return (
        f"order:{order_id}:label-void"
        if event.event_type == "order.cancelled"
        else (f"order:{order_id}:label")
    )


SPEC = HandlerSpec(business_key=business_key)


def address_to(order: OrderData) -> dict[str, str]:
    """The order's shipping address in the aggregator's fields (contact from billing)."""
    to: Address = order.shipping
    return {
        "name": f"{to.first_name} {to.last_name}".strip(),
        "company": to.company,
        "street1": to.address_1,
        "street2": to.address_2,
        "city": to.city,
        "state": to.state,
        "zip": to.postcode,
        "country": to.country,
        "phone": to.phone or order.billing.phone,
        "email": order.billing.email,
    }


def tracking_item(label: Label, shipped: datetime) -> dict[str, str]:
    """One entry of ``_wc_shipment_tracking_items`` as the Shipment Tracking extension stores it
    (a custom provider with its own link; ``date_shipped`` a Unix timestamp)."""
    return {
        "tracking_provider": "",
        "custom_tracking_provider": label.provider or "Carrier",
        "custom_tracking_link": label.tracking_url,
        "tracking_number": label.tracking_number,
        "date_shipped": str(int(shipped.timestamp())),
        "tracking_id": hashlib.md5(
            label.tracking_number.encode()
        ).hexdigest(),  # the id format the extension uses
    }


class ShippingLabelHandler:
    def __init__(
        self,
        carrier: Carrier,
        store: InvoiceStore,
        writeback: WooWriteBack,
        *,
        ship_from: dict[str, str],
        parcel: dict[str, str],
        service_level: str,
    ) -> None:
        self.carrier, self.store, self.writeback = carrier, store, writeback
        self.ship_from, self.parcel, self.service_level = ship_from, parcel, service_level

    async def __call__(self, event: AnyEnvelope, delivery: Delivery) -> None:
        order = cast(OrderData, event.data)
        if event.event_type == "order.cancelled":
            await self._void(order, delivery)
        else:
            await self._buy(order, delivery)

    async def _buy(self, order: OrderData, delivery: Delivery) -> None:
        if not (order.shipping.address_1 and order.shipping.country):
            delivery.nothing_to_do("order %s has no shipping address: no label", order.number)
            return
        # The order may have been cancelled since it was paid (its order.cancelled handled
        # while this waited or retried): a label bought now would never be voided.
        now = await self.writeback.order_status(order.id)
        if now in UNSHIPPABLE:
            delivery.nothing_to_do("order %s is %s now: no label", order.number, now)
            return
        shipment: dict[str, Any] = {
            "address_from": self.ship_from,
            "address_to": address_to(order),
            "parcels": [self.parcel],
            "metadata": f"order:{order.id}",
        }
        label = await self.carrier.buy_label(
            shipment, service_level=self.service_level, idempotency_key=delivery.idempotency_key
        )
        key = f"labels/{key_part(order.number)}/{key_part(label.tracking_number)}.pdf"
        if not await self.store.exists(key):
            where = await self.store.put(
                key, await self.carrier.label_pdf(label), "application/pdf"
            )
            delivery.log.info("order %s: label stored at %s", order.number, where)
        await self.writeback.set_meta(order.id, {LABEL_META: label.transaction_id})
        await self.writeback.add_to_list(
            order.id,
            TRACKING_META,
            tracking_item(label, datetime.now(UTC)),
            identity="tracking_number",
        )
        link = f": {label.tracking_url}" if label.tracking_url else ""
        await self.writeback.add_note(
            order.id,
            f"Your order has shipped with {label.provider or 'our carrier'}, tracking number "
            f"{label.tracking_number}{link}",
            marker=f"{delivery.idempotency_key}:shipped",
            customer=True,
        )
        delivery.log.info(
            "order %s: label bought (%s %s, tracking %s)",
            order.number,
            label.provider or "carrier",
            label.service_level,
            label.tracking_number,
        )

    async def _void(self, order: OrderData, delivery: Delivery) -> None:
        transaction = order.meta.get(LABEL_META, "")
        if not transaction:
            delivery.nothing_to_do("order %s was cancelled before a label was bought", order.number)
            return
        await self.carrier.void(transaction, idempotency_key=delivery.idempotency_key)
        await self.writeback.add_note(
            order.id,
            f"Shipping label {transaction} voided at the carrier (woofleet): the order was "
            "cancelled.",
            marker=f"{delivery.idempotency_key}:voided",
        )
        delivery.log.info("order %s: label %s voided", order.number, transaction)

    async def aclose(self) -> None:
        await self.carrier.aclose()
        await self.writeback.aclose()


def build(settings: Settings) -> Handler:
    return ShippingLabelHandler(
        carrier_from_settings(settings),
        invoice_store_from_settings(settings),
        writeback_from_settings(settings),
        ship_from=settings.shipping_from,
        parcel=settings.shipping_parcel,
        service_level=settings.shipping_service_level,
    )
