"""review-request: one email with a review link per product, once per order."""

from __future__ import annotations

import pytest
from aio_pika.abc import AbstractRobustConnection
from pydantic import SecretStr

from consumers import review_request
from consumers.runtime import Supervisor
from fleet.settings import Settings
from tests.integration.test_order_email import thai_yen_order
from tests.support.amqp import apply, fast_fleet, publish, wait_until
from tests.support.smtp_server import smtp_server

pytestmark = pytest.mark.integration

VARIATION = {
    "id": 9,
    "name": "ชาเขียว Matcha - 100g",
    "product_id": 10,
    "variation_id": 12,
    "quantity": 1,
    "subtotal": "100",
    "total": "100",
    "total_tax": "0",
    "sku": "MATCHA-100",
    "price": 100,
}
TEAPOT = {**VARIATION, "id": 8, "name": "Teapot", "product_id": 20, "variation_id": 0}


async def test_completed_order_gets_one_review_request_with_a_link_per_product(
    connection: AbstractRobustConnection, vhost: str, settings: Settings
) -> None:
    # The 7-day delay queue is topology's business; here the consumer gets the event at once.
    fleet = fast_fleet("review-request", delay=None)
    await apply(connection, fleet, vhost)
    event = thai_yen_order("order.completed", line_items=[VARIATION, TEAPOT])
    with smtp_server() as smtp:
        url = SecretStr(f"smtp+insecure://{smtp.host}:{smtp.port}")
        sup = Supervisor(
            ["review-request"],
            settings.model_copy(update={"smtp_url": url}),
            fleet=fleet,
            middleware=[],
        )
        await sup.start()
        try:
            await publish(connection, event)
            await wait_until(lambda: sup.workers["review-request"].stats["handled"] == 1)
            await publish(connection, event)
            await wait_until(lambda: sum(sup.workers["review-request"].stats.values()) == 2)
        finally:
            await sup.stop(5)

    [got] = smtp.received
    assert got.rcpt_tos == ["somchai@example.com"]
    message = got.message
    assert message["Subject"] == "How do you like your order from shop.example?"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    link = "https://shop.example/?post_type=product&p=10#reviews"
    assert link in text.get_content() and "p=20#reviews" in text.get_content()
    assert link.replace("&", "&amp;") in html.get_content()
    assert "ชาเขียว Matcha - 100g" in html.get_content()


def test_review_request_is_keyed_per_order() -> None:
    event = thai_yen_order("order.completed")
    assert review_request.business_key(event) == "review-request:11@https://shop.example/"
