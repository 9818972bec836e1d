"""Invoice and credit-note PDFs: what a person reads in them, and byte-identical re-rendering."""

from __future__ import annotations

import io
from typing import Any

from pypdf import PdfReader

from consumers.invoice_pdf import (
    Seller,
    credit_note_number,
    invoice_number,
    markup,
    render_credit_note,
    render_invoice,
)
from contracts.orders import OrderData, Refund, order_data_from_woo
from tests.builders import woo_order

SELLER = Seller(name="ร้านชา Tea Shop", address=("1 Sukhumvit Rd", "Bangkok"), tax_id="TH-0105")


def thai_order(**changes: Any) -> OrderData:
    billing = {"first_name": "สมชาย", "last_name": "ใจดี", "address_1": "99 ถนนสุขุมวิท"}
    billing |= {"city": "กรุงเทพมหานคร", "postcode": "10110", "country": "TH"}
    fields: dict[str, Any] = {
        "currency": "JPY",
        "billing": billing | {"email": "somchai@example.com"},
        "shipping": billing,
        "line_items": [
            {
                "id": 1,
                "name": "ชาเขียว Matcha",
                "product_id": 10,
                "quantity": 3,
                "subtotal": "4500",
                "total": "4000",
                "total_tax": "320",
                "sku": "MATCHA-1",
                "price": 1333.33,
            },
            {
                "id": 2,
                "name": "Чайник (teapot)",
                "product_id": 11,
                "quantity": 1,
                "subtotal": "2000",
                "total": "2000",
                "total_tax": "160",
                "sku": "POT-2",
                "price": 2000,
            },
        ],
        "coupon_lines": [{"id": 3, "code": "welcome", "discount": "500", "discount_tax": "40"}],
        "fee_lines": [{"id": 4, "name": "Gift wrap", "total": "300", "total_tax": "24"}],
        "shipping_lines": [
            {"id": 5, "method_id": "flat_rate", "method_title": "EMS", "total": "800"}
        ],
        "discount_total": "500",
        "shipping_total": "800",
        "total_tax": "504",
        "total": "7604",
        **changes,
    }
    return order_data_from_woo(woo_order(**fields))


def text_of(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() for page in reader.pages)


def test_invoice_shows_seller_buyer_lines_adjustments_and_totals_in_the_order_currency() -> None:
    order = thai_order()
    pdf = render_invoice(order, SELLER)

    assert pdf.startswith(b"%PDF-")
    text = text_of(pdf)
    for expected in (
        "ร้านชา Tea Shop",
        "TH-0105",  # seller
        "สมชาย ใจดี",
        "ถนนสุขุมวิท",  # buyer, in Thai
        "ชาเขียว Matcha",
        "MATCHA-1",
        "¥1,500",
        "¥4,500",  # line: name, SKU, unit, total
        "Чайник (teapot)",
        "¥2,000",
        "Coupon welcome",
        "-¥500",
        "Gift wrap",
        "¥300",
        "Shipping: EMS",
        "¥800",
        "Tax",
        "¥504",
        "Total (JPY)",
        "¥7,604",
        "INV-11",
        "#11",
        "2026-11-28",
    ):
        assert expected in text, expected


def test_the_same_order_renders_to_the_same_bytes() -> None:
    assert render_invoice(thai_order(), SELLER) == render_invoice(thai_order(), SELLER)


def test_invoice_and_credit_note_numbers_are_deterministic() -> None:
    order = thai_order(number="2026-0042")
    assert invoice_number(order, SELLER) == "INV-2026-0042"
    refund = Refund(id=77, amount="1200")
    assert credit_note_number(order, refund, SELLER) == "CN-2026-0042-77"


def test_credit_note_states_the_refund_and_refers_to_the_invoice() -> None:
    order = thai_order()
    refund = Refund(id=31, reason="damaged in transit", amount="1200")
    pdf = render_credit_note(order, refund, SELLER)

    assert pdf == render_credit_note(order, refund, SELLER)
    text = text_of(pdf)
    for expected in ("Credit note", "CN-11-31", "INV-11", "damaged in transit", "-¥1,200"):
        assert expected in text, expected
    assert "สมชาย ใจดี" in text


def test_a_long_order_flows_onto_more_pages() -> None:
    line = {
        "id": 1,
        "name": "Sticker",
        "product_id": 10,
        "quantity": 1,
        "subtotal": "1.00",
        "total": "1.00",
        "total_tax": "0",
        "sku": "S",
        "price": 1,
    }
    order = thai_order(currency="EUR", line_items=[{**line, "id": i} for i in range(1, 121)])
    reader = PdfReader(io.BytesIO(render_invoice(order, SELLER)))
    assert len(reader.pages) >= 3
    assert "€1.00" in reader.pages[-1].extract_text()


def test_markup_switches_fonts_per_script_and_escapes() -> None:
    assert markup("A&B") == '<font name="WoofleetSans">A&amp;B</font>'
    thai = markup("Tea ชา")
    assert 'name="WoofleetSans">Tea </font>' in thai and 'name="WoofleetThai">ชา</font>' in thai
    assert "HeiseiKakuGo-W5" in markup("抹茶")
