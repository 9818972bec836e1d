"""Invoice PDFs rendered and stored per second by one process, to files and to S3 (moto's
server on loopback), against rendering alone in the same run. Prints figures; not a test.

No broker: it drives the invoice handler directly with real-shaped Thai orders.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from benchmarks.common import Figure, free_port, main, parser_for
from consumers import invoice
from consumers.adapters.invoice_store import FileInvoiceStore, S3InvoiceStore
from consumers.invoice_pdf import Seller, render_invoice
from consumers.runtime.handler import Delivery
from contracts.envelope import event_id_for
from contracts.orders import OrderEvent, order_data_from_woo

SELLER = Seller(name="ร้านชา Tea Shop", address=("1 Sukhumvit Rd", "Bangkok"))


def order_event(n: int, lines: int) -> OrderEvent:
    line_items = [
        {
            "id": i,
            "name": f"ชาเขียว Matcha {i}",
            "product_id": i,
            "quantity": 2,
            "sku": f"SKU-{i}",
            "subtotal": "30.00",
            "total": "27.00",
            "total_tax": "2.16",
            "price": 13.5,
        }
        for i in range(1, lines + 1)
    ]
    order: dict[str, Any] = {
        "id": n,
        "number": str(n),
        "order_key": f"wc_order_{n}",
        "status": "processing",
        "currency": "THB",
        "date_created_gmt": "2026-11-28T04:43:00",
        "date_paid_gmt": "2026-11-28T04:44:00",
        "customer_id": 0,
        "billing": {
            "first_name": "สมชาย",
            "last_name": "ใจดี",
            "address_1": "99 ถนนสุขุมวิท",
            "city": "กรุงเทพมหานคร",
            "postcode": "10110",
            "country": "TH",
            "email": "somchai@example.com",
        },
        "shipping": {},
        "line_items": line_items,
        "coupon_lines": [{"code": "welcome", "discount": str(3 * lines), "discount_tax": "0"}],
        "shipping_lines": [
            {
                "id": 99,
                "method_id": "flat_rate",
                "method_title": "EMS",
                "total": "80.00",
                "total_tax": "0",
            }
        ],
        "discount_total": str(3 * lines),
        "shipping_total": "80.00",
        "total_tax": f"{2.16 * lines:.2f}",
        "total": f"{29.16 * lines + 80:.2f}",
        "payment_method_title": "Card",
    }
    data = order_data_from_woo(order)
    return OrderEvent(
        event_id=event_id_for("bench", n),
        event_type="order.paid",
        schema_version=1,
        occurred_at=data.date_created_gmt,
        source="https://shop.example/",
        data=data,
    )


def delivery(event: OrderEvent) -> Delivery:
    log = logging.LoggerAdapter(logging.getLogger("bench"), {})
    return Delivery("invoice", str(event.event_id), 1, 0, False, invoice.business_key(event), log)


async def handle_all(label: str, handler: invoice.Invoices, events: list[OrderEvent]) -> float:
    """Invoices per second through ``handler``; prints the latency spread."""
    warm_up = order_event(events[0].data.id - 1, len(events[0].data.line_items))
    await handler(warm_up, delivery(warm_up))  # fonts, the client's connection
    latencies = []
    start = time.perf_counter()
    for event in events:
        t0 = time.perf_counter()
        await handler(event, delivery(event))
        latencies.append(time.perf_counter() - t0)
    rate = len(events) / (time.perf_counter() - start)
    latencies.sort()
    p95 = latencies[max(0, int(len(latencies) * 0.95) - 1)]
    print(
        f"{label:<22} {rate:7.1f} invoices/s   median "
        f"{statistics.median(latencies) * 1000:6.1f} ms   p95 {p95 * 1000:6.1f} ms"
    )
    return rate


def batch(first: int, args: argparse.Namespace) -> list[OrderEvent]:
    return [order_event(first + i, args.lines) for i in range(args.orders)]


async def run(args: argparse.Namespace) -> list[Figure]:
    logging.disable(logging.INFO)
    sample = render_invoice(order_event(1, args.lines).data, SELLER)
    print(f"{args.orders} orders of {args.lines} lines each; one process; PDF {len(sample)} bytes")
    events = batch(10_000, args)
    start = time.perf_counter()
    for event in events:
        render_invoice(event.data, SELLER)
    render_rate = len(events) / (time.perf_counter() - start)
    print(f"{'render only':<22} {render_rate:7.1f} invoices/s")

    with tempfile.TemporaryDirectory() as tmp:
        handler = invoice.Invoices(FileInvoiceStore(Path(tmp)), SELLER)
        file_rate = await handle_all("render + file store", handler, batch(20_000, args))

    for name, value in (
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        os.environ.setdefault(name, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench-invoices")
        store = S3InvoiceStore("bench-invoices", "bench", endpoint_url=endpoint)
        handler = invoice.Invoices(store, SELLER)
        s3_rate = await handle_all("render + S3 (moto)", handler, batch(30_000, args))
    finally:
        server.stop()
    bench = f"invoice ({args.orders} orders x {args.lines} lines)"
    return [
        Figure(bench, "render + file store", file_rate, "invoices/s", "render only", render_rate),
        Figure(bench, "render + S3 (moto)", s3_rate, "invoices/s", "render only", render_rate),
    ]


def parser() -> argparse.ArgumentParser:
    result = parser_for(__doc__, "scripts/bench-invoice")
    result.add_argument("--orders", type=int, default=200, help="invoices per store (200)")
    result.add_argument("--lines", type=int, default=5, help="line items per order (5)")
    return result


def cli(argv: Sequence[str] | None = None) -> None:
    main(parser(), run, argv)


if __name__ == "__main__":
    cli()
