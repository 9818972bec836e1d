"""Invoice and credit-note PDFs with reportlab: pure, data in and bytes out.

The same order always renders to the same bytes (``invariant=1`` fixes the creation date and the
document id), so a redelivered message can never store a second, different invoice. Fonts ship in
``consumers/fonts`` (Noto Sans and Noto Sans Thai, OFL): text is split into runs per font, so
Thai names render next to Latin, Greek and Cyrillic ones with no system fonts installed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from decimal import Decimal
from functools import cache, partial
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from consumers.money import format_money
from consumers.places import country_name, state_name
from contracts.orders import Address, OrderData, Refund

FONTS = Path(__file__).resolve().parent / "fonts"
#: Fonts tried in order for each character; the first that has a glyph draws it.
_FACES = {
    False: (("WoofleetSans", "NotoSans-Regular.ttf"), ("WoofleetThai", "NotoSansThai-Regular.ttf")),
    True: (
        ("WoofleetSans-Bold", "NotoSans-Bold.ttf"),
        ("WoofleetThai-Bold", "NotoSansThai-Bold.ttf"),
    ),
}


@dataclass(frozen=True)
class Seller:
    """Who issues the invoice; see consumers/invoice.py for where it comes from."""

    name: str = "Shop"
    address: tuple[str, ...] = ()
    tax_id: str = ""
    email: str = ""
    invoice_prefix: str = "INV-"
    credit_note_prefix: str = "CN-"


def invoice_number(order: OrderData, seller: Seller) -> str:
    """Deterministic: WooCommerce order numbers are unique and never reused."""
    return f"{seller.invoice_prefix}{order.number}"


def credit_note_number(order: OrderData, refund: Refund, seller: Seller) -> str:
    return f"{seller.credit_note_prefix}{order.number}-{refund.id}"


#: Chinese, Japanese and Korean as the PDF standard's CID fonts, which viewers supply: a CJK
#: font worth embedding weighs 15 MB or more. Text stays searchable and copyable either way.
_CJK = (
    ("HYGothic-Medium", ((0x1100, 0x11FF), (0x3130, 0x318F), (0xAC00, 0xD7AF))),
    ("HeiseiKakuGo-W5", ((0x2E80, 0x9FFF), (0xF900, 0xFAFF), (0xFF00, 0xFFEF))),
)


@cache
def _fonts() -> dict[bool, tuple[tuple[str, frozenset[int]], ...]]:
    loaded: dict[bool, tuple[tuple[str, frozenset[int]], ...]] = {}
    for bold, faces in _FACES.items():
        entries = []
        for name, filename in faces:
            font = TTFont(name, str(FONTS / filename))
            pdfmetrics.registerFont(font)
            entries.append((name, frozenset(font.face.charToGlyph)))
        loaded[bold] = tuple(entries)
    for name, _ in _CJK:
        pdfmetrics.registerFont(UnicodeCIDFont(name))
    return loaded


def _face(char: str, faces: tuple[tuple[str, frozenset[int]], ...]) -> str:
    code = ord(char)
    for name, cmap in faces:
        if code in cmap:
            return name
    for name, ranges in _CJK:
        if any(low <= code <= high for low, high in ranges):
            return name
    return faces[0][0]


def markup(text: str, *, bold: bool = False) -> str:
    """Paragraph markup that draws each run of ``text`` in the first font that has its glyphs."""
    faces = _fonts()[bold]
    runs: list[tuple[str, str]] = []
    for char in text:
        # Combining marks and spaces stay with the run they belong to.
        name = _face(char, faces)
        if runs and (runs[-1][0] == name or char.isspace()):
            runs[-1] = (runs[-1][0], runs[-1][1] + char)
        else:
            runs.append((name, char))
    return "".join(f'<font name="{n}">{escape(t)}</font>' for n, t in runs)


#: ``shaping``: HarfBuzz (uharfbuzz) lays out each run, as complex scripts need: a Thai tone mark
#: above an upper vowel becomes the font's raised mark glyph instead of sitting on the vowel.
_BASE = ParagraphStyle("base", fontName="WoofleetSans", fontSize=9, leading=12, shaping=1)
_SMALL = ParagraphStyle("small", parent=_BASE, fontSize=8, leading=10, textColor=colors.grey)
_TITLE = ParagraphStyle("title", parent=_BASE, fontSize=18, leading=22)
_RIGHT = ParagraphStyle("right", parent=_BASE, alignment=2)


def _p(text: str, style: ParagraphStyle = _BASE, *, bold: bool = False) -> Paragraph:
    return Paragraph(markup(text, bold=bold), style)


def _lines(*texts: str, style: ParagraphStyle = _BASE) -> Paragraph:
    return Paragraph("<br/>".join(markup(t) for t in texts if t), style)


def _address(title: str, addr: Address) -> Paragraph:
    name = f"{addr.first_name} {addr.last_name}".strip()
    city = " ".join(p for p in (addr.postcode, addr.city) if p)
    state = state_name(addr.country, addr.state) if addr.state else ""
    country = country_name(addr.country) if addr.country else ""
    return Paragraph(
        "<br/>".join(
            [markup(title, bold=True)]
            + [markup(p) for p in (name, addr.company, addr.address_1, addr.address_2) if p]
            + [markup(p) for p in (city, state, country, addr.email, addr.phone) if p]
        ),
        _BASE,
    )


def _header(kind: str, seller: Seller, facts: list[tuple[str, str]]) -> list[Flowable]:
    seller_block = _lines(
        seller.name, *seller.address, seller.email, seller.tax_id and f"Tax ID {seller.tax_id}"
    )
    facts_table = Table(
        [[_p(k, _SMALL), _p(v, _RIGHT)] for k, v in facts], colWidths=[32 * mm, 48 * mm]
    )
    head = Table(
        [[_p(kind, _TITLE, bold=True), ""], [seller_block, facts_table]],
        colWidths=[95 * mm, 85 * mm],
    )
    head.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
    return [head, Spacer(1, 8 * mm)]


def _parties(order: OrderData) -> list[Flowable]:
    has_shipping = bool(order.shipping.address_1 or order.shipping.city)
    row = [
        _address("Bill to", order.billing),
        _address("Ship to", order.shipping) if has_shipping else "",
    ]
    table = Table([row], colWidths=[90 * mm, 90 * mm])
    table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
    return [table, Spacer(1, 8 * mm)]


def _table(rows: list[list[Flowable | str]], widths: list[float], *, header: bool) -> Table:
    table = Table(rows, colWidths=widths, repeatRows=1 if header else 0)
    style: list[tuple[Any, ...]] = [
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("ALIGN", (2, 0), (-1, -1), "RIGHT"),
    ]
    if header:
        style += [
            ("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.black),
            ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.lightgrey),
        ]
    table.setStyle(TableStyle(style))
    return table


def _items(order: OrderData) -> Table:
    money = partial(format_money, currency=order.currency)
    rows: list[list[Flowable | str]] = [
        [_p(h, _BASE, bold=True) for h in ("Item", "SKU")]
        + [_p(h, _RIGHT, bold=True) for h in ("Qty", "Unit price", "Total")]
    ]
    for line in order.line_items:
        # Before discounts: coupons appear once, below, so the columns add up.
        unit = line.subtotal / line.quantity if line.quantity else line.unit_price
        amounts = (str(line.quantity), money(unit), money(line.subtotal))
        rows.append([_p(line.name), _p(line.sku, _SMALL), *(_p(a, _RIGHT) for a in amounts)])
    return _table(rows, [78 * mm, 30 * mm, 14 * mm, 28 * mm, 30 * mm], header=True)


def _totals(order: OrderData) -> Table:
    money = partial(format_money, currency=order.currency)
    subtotal = sum((line.subtotal for line in order.line_items), Decimal(0))
    rows: list[tuple[str, Decimal]] = [("Subtotal", subtotal)]
    rows += [(f"Coupon {c.code}", -c.discount) for c in order.coupons]
    if order.discount_total and not order.coupons:
        rows.append(("Discount", -order.discount_total))
    rows += [(f.name or "Fee", f.total) for f in order.fees]
    rows += [(f"Shipping: {s.method_title}", s.total) for s in order.shipping_lines]
    if order.shipping_total and not order.shipping_lines:
        rows.append(("Shipping", order.shipping_total))
    rows.append(("Tax", order.total_tax))
    table_rows: list[list[Flowable | str]] = [["", _p(k), _p(money(v), _RIGHT)] for k, v in rows]
    table_rows.append(
        ["", _p(f"Total ({order.currency})", bold=True), _p(money(order.total), _RIGHT, bold=True)]
    )
    table = _table(table_rows, [90 * mm, 60 * mm, 30 * mm], header=False)
    table.setStyle(TableStyle([("LINEABOVE", (1, -1), (-1, -1), 0.8, colors.black)]))
    return table


def _build(title: str, seller: Seller, story: list[Flowable]) -> bytes:
    buffer = io.BytesIO()

    def footer(canvas: Canvas, doc: SimpleDocTemplate) -> None:
        canvas.setFont("WoofleetSans", 7)
        canvas.drawRightString(A4[0] - 15 * mm, 10 * mm, f"{title} · page {doc.page}")

    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=15 * mm,
        bottomMargin=18 * mm,
        title=title,
        author=seller.name,
        creator="woofleet",
        invariant=1,  # fixed creation date and document id: same order, same bytes
    )
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()


def _date(order: OrderData) -> str:
    return (order.date_paid_gmt or order.date_created_gmt).strftime("%Y-%m-%d")


def render_invoice(order: OrderData, seller: Seller) -> bytes:
    """The invoice of a paid order, as PDF bytes."""
    _fonts()
    number = invoice_number(order, seller)
    facts = [("Invoice", number), ("Date", _date(order)), ("Order", f"#{order.number}")]
    if order.payment_method_title:
        facts.append(("Payment", order.payment_method_title))
    story = _header("Invoice", seller, facts) + _parties(order)
    story += [_items(order), Spacer(1, 4 * mm), _totals(order)]
    if order.customer_note:
        story += [Spacer(1, 6 * mm), _p(f"Note: {order.customer_note}", _SMALL)]
    return _build(f"Invoice {number}", seller, story)


def render_credit_note(order: OrderData, refund: Refund, seller: Seller) -> bytes:
    """A credit note for one refund of an order, referring to the order's invoice."""
    _fonts()
    number = credit_note_number(order, refund, seller)
    reference = invoice_number(order, seller)
    facts = [("Credit note", number), ("Date", order.date_modified_gmt.strftime("%Y-%m-%d"))]
    facts += [("Invoice", reference), ("Order", f"#{order.number}")]
    amount = format_money(refund.amount, order.currency)
    reason = f"Refund: {refund.reason}" if refund.reason else "Refund"
    rows: list[list[Flowable | str]] = [
        [_p("Description", bold=True), _p("Amount", _RIGHT, bold=True)],
        [
            _p(f"{reason} (credit for invoice {reference}, order #{order.number})"),
            _p(f"-{amount}", _RIGHT),
        ],
        [_p(f"Total credited ({order.currency})", bold=True), _p(f"-{amount}", _RIGHT, bold=True)],
    ]
    table = _table(rows, [150 * mm, 30 * mm], header=True)
    table.setStyle(TableStyle([("ALIGN", (1, 0), (1, -1), "RIGHT")]))
    story = _header("Credit note", seller, facts) + _parties(order) + [table]
    return _build(f"Credit note {number}", seller, story)
