"""order-email end to end against a real SMTP server on loopback (handler called directly)."""

from __future__ import annotations

import email.policy
import logging
from email import message_from_bytes
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from consumers import order_email
from consumers.adapters.mail import SmtpMailer
from consumers.runtime.handler import AnyEnvelope, Delivery
from consumers.templates import order_context, render_email
from contracts.orders import OrderEvent
from fleet.settings import Settings
from tests.builders import order_event
from tests.support.smtp_server import SmtpServer, smtp_server

pytestmark = pytest.mark.integration

THAI_BILLING = {
    "first_name": "สมชาย",
    "last_name": "ใจดี",
    "company": "",
    "address_1": "99 ถนนสุขุมวิท",
    "address_2": "",
    "city": "กรุงเทพมหานคร",
    "state": "",
    "postcode": "10110",
    "country": "TH",
    "email": "somchai@example.com",
    "phone": "",
}


def thai_yen_order(event_type: str, **changes: Any) -> OrderEvent:
    """A JPY order by a Thai shopper: non-ASCII everywhere and a zero-decimal currency."""
    line = {
        "id": 1,
        "name": "ชาเขียว Matcha 抹茶",
        "product_id": 10,
        "variation_id": 0,
        "quantity": 3,
        "subtotal": "4500",
        "total": "4000",
        "total_tax": "0",
        "sku": "MATCHA-1",
        "price": 1500,
        "meta_data": [],
    }
    fields: dict[str, Any] = {
        "currency": "JPY",
        "billing": THAI_BILLING,
        "shipping": {k: v for k, v in THAI_BILLING.items() if k != "email"},
        "line_items": [line],
        "coupon_lines": [{"id": 3, "code": "welcome", "discount": "500", "discount_tax": "0"}],
        "shipping_lines": [
            {"id": 2, "method_id": "flat_rate", "method_title": "ส่งด่วน", "total": "800"}
        ],
        "shipping_total": "800",
        "total": "4800",
        **changes,
    }
    return order_event(event_type, **fields)


def delivery_for(event: AnyEnvelope) -> Delivery:
    key = order_email.SPEC.business_key(event) if order_email.SPEC.business_key else ""
    return Delivery(
        consumer="order-email",
        message_id=str(event.event_id),
        attempt=1,
        priority=0,
        redelivered=False,
        business_key=key,
        log=logging.LoggerAdapter(logging.getLogger("consumers.order_email"), {}),
    )


def handler_for(server: SmtpServer, admin_email: str = "") -> order_email.OrderEmail:
    mailer = SmtpMailer.from_url(f"smtp+insecure://{server.host}:{server.port}")
    return order_email.OrderEmail(mailer, sender="Shop <shop@example.com>", admin_email=admin_email)


def parts(message: EmailMessage) -> tuple[str, str]:
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


async def test_order_created_sends_admin_then_customer_email_with_lines_totals_and_addresses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    event = thai_yen_order("order.created")
    with smtp_server() as server:
        await handler_for(server, admin_email="owner@example.com")(event, delivery_for(event))

    admin, customer = server.received
    assert admin.rcpt_tos == ["owner@example.com"]
    assert customer.rcpt_tos == ["somchai@example.com"]
    message = customer.message
    assert message["Subject"] == "Your shop.example order #11 has been received"
    assert message["To"].addresses[0].display_name == "สมชาย ใจดี"
    text, html = parts(message)
    for body in (text, html):
        assert "สวัสดี" not in body  # the templates are English; the names are the shopper's
        assert "สมชาย" in body and "ถนนสุขุมวิท" in body
        assert "ชาเขียว Matcha 抹茶" in body and "MATCHA-1" in body
        assert "¥4,800" in body and "-¥500" in body and "¥800" in body
    assert admin.message["Subject"] == "[shop.example] New order #11 (¥4,800)"
    # Logs a person can read, without the shopper's name or address.
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("consumers"))
    assert "sent order_received email for order 11" in ours
    assert "somchai" not in ours and "สมชาย" not in ours


@pytest.mark.parametrize(
    ("event_type", "subject"),
    [
        ("order.paid", "Payment received for your shop.example order #11"),
        ("order.completed", "Your shop.example order #11 is complete"),
    ],
)
async def test_each_lifecycle_step_sends_its_customer_email(event_type: str, subject: str) -> None:
    event = thai_yen_order(event_type)
    with smtp_server() as server:
        await handler_for(server, admin_email="owner@example.com")(event, delivery_for(event))

    [only] = server.received  # the admin hears of new orders only
    assert only.message["Subject"] == subject


async def test_order_refunded_names_the_refund_amount() -> None:
    refunds = [{"id": 31, "reason": "damaged", "total": "-1200"}]
    event = thai_yen_order("order.refunded", refunds=refunds)
    data = event.data.model_copy(update={"refund": event.data.refunds[0]})
    event = event.model_copy(update={"data": data})
    with smtp_server() as server:
        await handler_for(server)(event, delivery_for(event))

    [got] = server.received
    assert got.message["Subject"] == "Refund of ¥1,200 for your shop.example order #11"
    text, _ = parts(got.message)
    assert "damaged" in text and "Refunded: -¥1,200" in text


async def test_refused_admin_address_does_not_cost_the_customer_their_email(
    caplog: pytest.LogCaptureFixture,
) -> None:
    event = thai_yen_order("order.created")
    with smtp_server() as server:
        server.handler.refuse["owner@example.com"] = (550, "5.1.1 no such user")
        await handler_for(server, admin_email="owner@example.com")(event, delivery_for(event))

    [got] = server.received
    assert got.rcpt_tos == ["somchai@example.com"]
    assert "admin new-order email for order 11 refused" in caplog.text


async def test_order_without_email_address_sends_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    event = thai_yen_order("order.paid", billing={**THAI_BILLING, "email": ""})
    with smtp_server() as server:
        await handler_for(server)(event, delivery_for(event))
    assert server.received == []
    assert "order 11 has no customer email address" in caplog.text


def test_business_key_separates_event_types_and_refunds() -> None:
    paid, completed = thai_yen_order("order.paid"), thai_yen_order("order.completed")
    assert order_email.business_key(paid) == "order.paid:11:@https://shop.example/"
    assert order_email.business_key(paid) != order_email.business_key(completed)


async def test_build_without_smtp_writes_eml_files_to_the_dev_sink(tmp_path: Path) -> None:
    handler = order_email.build(Settings(var_dir=tmp_path, mail_from="shop@example.com"))
    event = thai_yen_order("order.paid")
    await handler(event, delivery_for(event))

    [path] = (tmp_path / "mail").glob("*.eml")
    parsed = message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed["To"].addresses[0].display_name == "สมชาย ใจดี"
    assert parsed["Message-ID"].endswith("@example.com>")


def test_html_part_escapes_what_the_shopper_typed() -> None:
    event = thai_yen_order(
        "order.created", billing={**THAI_BILLING, "first_name": "<script>x</script>"}
    )
    rendered = render_email("admin_new_order", **order_context(event.data, event.source))
    assert "<script>" not in rendered.html and "&lt;script&gt;x&lt;/script&gt;" in rendered.html
    assert "<script>x</script>" in rendered.text  # plain text is not HTML
