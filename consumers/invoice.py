"""invoice: the invoice PDF of a paid order and a credit note for each refund, stored once.

Keys are deterministic (``invoices/<order number>/INV-<number>.pdf``,
``credit-notes/<order number>/CN-<number>-<refund id>.pdf``) and documents are write-once: a
redelivery, or a later event about the same order, finds the document and leaves it alone.

The seller block comes from ``WOOFLEET_SELLER_FILE`` (default ``<var_dir>/seller.toml``) when it
exists (keys ``name``, ``address``
as a list of lines, ``tax_id``, ``email``, ``invoice_prefix``, ``credit_note_prefix``); otherwise
the shop's host name and ``WOOFLEET_MAIL_FROM`` stand in.
"""

from __future__ import annotations

import asyncio
import logging
import tomllib
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

from consumers.adapters.invoice_store import InvoiceStore, invoice_store_from_settings, key_part
from consumers.invoice_pdf import (
    Seller,
    credit_note_number,
    invoice_number,
    render_credit_note,
    render_invoice,
)
from consumers.runtime.handler import AnyEnvelope, Delivery, Handler, HandlerSpec
from contracts.orders import OrderData
from fleet.errors import ConfigError, PermanentError
from fleet.settings import Settings

log = logging.getLogger(__name__)


def business_key(event: AnyEnvelope) -> str:
    """One invoice per order and one credit note per refund, whichever event carried them."""
    data: OrderData = event.data
    if event.event_type == "order.refunded":
        refund = data.refund.id if data.refund else ""
        return f"credit-note:{data.id}:{refund}@{event.source}"
    return f"invoice:{data.id}@{event.source}"


SPEC = HandlerSpec(business_key=business_key)


def load_seller(path: Path, mail_from: str) -> Seller:
    """The seller from a small TOML file, or defaults when there is none."""
    if not path.is_file():
        return Seller(name="", email=mail_from)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        data["address"] = tuple(data.get("address", ()))
        return Seller(**{"email": mail_from, **data})
    except (tomllib.TOMLDecodeError, TypeError) as exc:
        raise ConfigError(f"{path} is not a valid seller file: {exc}") from exc


class Invoices:
    def __init__(self, store: InvoiceStore, seller: Seller) -> None:
        self.store, self.seller = store, seller
        # reportlab keeps per-document font state; one render at a time keeps it simple and safe.
        self._render_lock = asyncio.Lock()

    async def __call__(self, event: AnyEnvelope, delivery: Delivery) -> None:
        order: OrderData = event.data
        seller = self.seller
        if not seller.name:
            seller = replace(seller, name=urlsplit(event.source).hostname or event.source)
        folder = key_part(order.number)
        render: Callable[[], bytes]
        if event.event_type == "order.refunded":
            if order.refund is None:
                raise PermanentError("order.refunded names no refund: the publisher must set it")
            number = credit_note_number(order, order.refund, seller)
            key = f"credit-notes/{folder}/{key_part(number)}.pdf"
            render = partial(render_credit_note, order, order.refund, seller)
        else:
            number = invoice_number(order, seller)
            key = f"invoices/{folder}/{key_part(number)}.pdf"
            render = partial(render_invoice, order, seller)
        if await self.store.exists(key):
            delivery.log.info("%s for order %s is already stored; left as it is", number, order.id)
            return
        async with self._render_lock:
            pdf = await asyncio.to_thread(render)
        location = await self.store.put(key, pdf, "application/pdf")
        delivery.log.info("stored %s for order %s at %s", number, order.id, location)


def build(settings: Settings) -> Handler:
    seller = load_seller(
        settings.seller_file or settings.var_dir / "seller.toml", settings.mail_from
    )
    log.info("invoice seller: %s", seller.name or "the shop's host name (no seller.toml)")
    return Invoices(invoice_store_from_settings(settings), seller)
