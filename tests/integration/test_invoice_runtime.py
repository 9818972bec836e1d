"""The invoice consumer run by the consumer runtime on the real broker, storing to files."""

from __future__ import annotations

from pathlib import Path

import pytest
from aio_pika.abc import AbstractRobustConnection

from consumers.runtime import Supervisor
from fleet.settings import Settings
from tests.integration.test_invoice_store import pdf_text, pdfs_under, refunded
from tests.integration.test_order_email import thai_yen_order
from tests.support.amqp import apply, fast_fleet, publish, wait_until

pytestmark = pytest.mark.integration


async def test_paid_and_refunded_store_one_invoice_and_one_credit_note_despite_duplicates(
    connection: AbstractRobustConnection, vhost: str, settings: Settings
) -> None:
    fleet = fast_fleet("invoice")
    await apply(connection, fleet, vhost)
    sup = Supervisor(["invoice"], settings, fleet=fleet, middleware=[])
    await sup.start()
    try:
        # Each event is handled, then delivered again (e.g. republished after a lost ack)
        stats = sup.workers["invoice"].stats
        paid, refund = thai_yen_order("order.paid"), refunded()
        await publish(connection, paid)
        await wait_until(lambda: stats["handled"] == 1)
        await publish(connection, paid)
        await publish(connection, refund)
        await wait_until(lambda: stats["handled"] == 2)
        await publish(connection, refund)
        await wait_until(lambda: sum(sup.workers["invoice"].stats.values()) == 4)
    finally:
        await sup.stop(5)

    assert sup.workers["invoice"].stats == {"handled": 2, "duplicate": 2}
    root = Path(settings.invoice_store.removeprefix("file://"))
    invoice, credit_note = (
        (root / "invoices/11/INV-11.pdf"),
        (root / "credit-notes/11/CN-11-31.pdf"),
    )
    assert pdfs_under(root) == sorted([invoice, credit_note])
    assert "¥4,800" in pdf_text(invoice.read_bytes())
    assert "-¥1,200" in pdf_text(credit_note.read_bytes())


async def test_back_to_back_copies_in_one_prefetch_window_store_one_invoice(
    connection: AbstractRobustConnection, vhost: str, settings: Settings
) -> None:
    fleet = fast_fleet("invoice")
    await apply(connection, fleet, vhost)
    paid = thai_yen_order("order.paid")
    await publish(connection, paid)
    await publish(connection, paid)
    sup = Supervisor(["invoice"], settings, fleet=fleet, middleware=[])
    await sup.start()
    try:
        await wait_until(lambda: sum(sup.workers["invoice"].stats.values()) == 2)
    finally:
        await sup.stop(5)
    assert sup.workers["invoice"].stats == {"handled": 1, "duplicate": 1}
    root = Path(settings.invoice_store.removeprefix("file://"))
    assert pdfs_under(root) == [root / "invoices/11/INV-11.pdf"]
