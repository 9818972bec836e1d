"""CRM against a real HTTP API on loopback: contact upsert, order record, no email in URLs."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator

import pytest

from consumers import crm
from consumers.adapters.http_target import HttpTargetClient
from tests.builders import order_event
from tests.support.http_target_server import HttpTargetServer, delivery_for

pytestmark = pytest.mark.integration

EMAIL_HASH = hashlib.sha256(b"john.doe@example.com").hexdigest()


@pytest.fixture
async def handler(server: HttpTargetServer) -> AsyncIterator[crm.CrmHandler]:
    handler = crm.CrmHandler(HttpTargetClient("crm", server.url))
    yield handler
    await handler.aclose()


async def test_a_guest_order_upserts_a_contact_keyed_by_email_hash_and_records_the_order(
    server: HttpTargetServer, handler: crm.CrmHandler, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    event = order_event("order.paid")
    delivery = delivery_for("crm", event)
    await handler(event, delivery)
    upsert, record = server.requests
    assert (upsert.method, upsert.path) == ("PUT", f"/contacts/email-{EMAIL_HASH}")
    assert upsert.idempotency_key == f"{delivery.idempotency_key}:contact"
    assert upsert.json == {
        "email": "john.doe@example.com",
        "first_name": "John",
        "last_name": "Doe",
        "company": "",
        "phone": "(555) 555-5555",
        "country": "US",
        "city": "San Francisco",
        "woocommerce_customer_id": None,
    }
    assert (record.method, record.path) == ("POST", f"/contacts/email-{EMAIL_HASH}/orders")
    assert record.idempotency_key == f"{delivery.idempotency_key}:order"
    assert record.json["event"] == "order.paid"
    assert (record.json["number"], record.json["total"], record.json["currency"]) == (
        "11",
        "49.98",
        "EUR",
    )
    assert "john.doe@example.com" not in caplog.text


async def test_a_registered_customer_is_keyed_by_customer_id(
    server: HttpTargetServer, handler: crm.CrmHandler
) -> None:
    event = order_event("order.completed", customer_id=26)
    await handler(event, delivery_for("crm", event))
    assert server.paths() == ["PUT /contacts/customer-26", "POST /contacts/customer-26/orders"]
    assert server.requests[0].json["woocommerce_customer_id"] == 26


async def test_a_guest_without_an_email_is_skipped(
    server: HttpTargetServer, handler: crm.CrmHandler
) -> None:
    raw_billing = {"first_name": "A", "last_name": "B", "email": ""}
    event = order_event("order.created", billing=raw_billing)
    await handler(event, delivery_for("crm", event))
    assert server.requests == []


async def test_every_event_of_an_order_gets_its_own_key(
    server: HttpTargetServer, handler: crm.CrmHandler
) -> None:
    for event_type in ("order.created", "order.paid", "order.updated"):
        event = order_event(event_type)
        await handler(event, delivery_for("crm", event))
    keys = {r.idempotency_key for r in server.requests}
    assert len(keys) == 6
