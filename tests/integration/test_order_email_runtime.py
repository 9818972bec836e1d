"""order-email run by the consumer runtime on the real broker, sending to a real SMTP server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aio_pika.abc import AbstractRobustConnection
from pydantic import SecretStr

from consumers.runtime import Supervisor
from contracts.messages import ERROR_HEADER
from fleet.settings import Settings
from tests.integration.test_order_email import thai_yen_order
from tests.support.amqp import apply, drain, fast_fleet, publish, wait_until
from tests.support.smtp_server import SmtpServer, smtp_server
from topology import names

pytestmark = pytest.mark.integration


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def mail_settings(settings: Settings, smtp: SmtpServer) -> Settings:
    url = f"smtp+insecure://{smtp.host}:{smtp.port}"
    return settings.model_copy(update={"smtp_url": SecretStr(url), "mail_from": "shop@example.com"})


async def test_a_duplicate_and_a_republished_event_send_no_second_email(
    connection: AbstractRobustConnection, vhost: str, mail_settings: Settings, smtp: SmtpServer
) -> None:
    # Given the order-email consumer running on its module's own handler
    fleet = fast_fleet("order-email")
    await apply(connection, fleet, vhost)
    sup = Supervisor(["order-email"], mail_settings, fleet=fleet, middleware=[])
    await sup.start()
    try:
        # When order.paid is handled, then arrives again, and once more under a new event id
        event = thai_yen_order("order.paid")
        await publish(connection, event)
        await wait_until(lambda: sup.workers["order-email"].stats["handled"] == 1)
        await publish(connection, event)
        await publish(connection, thai_yen_order("order.paid", unique=True))
        await wait_until(lambda: sum(sup.workers["order-email"].stats.values()) == 3)
    finally:
        await sup.stop(5)
    # Then the shopper got one email
    assert [r.rcpt_tos for r in smtp.received] == [["somchai@example.com"]]
    assert sup.workers["order-email"].stats == {"handled": 1, "duplicate": 2}


async def test_a_refused_recipient_goes_to_the_dlq_with_the_server_answer(
    connection: AbstractRobustConnection, vhost: str, mail_settings: Settings, smtp: SmtpServer
) -> None:
    fleet = fast_fleet("order-email")
    await apply(connection, fleet, vhost)
    smtp.handler.refuse["somchai@example.com"] = (550, "5.1.1 <somchai@example.com> no mailbox")
    sup = Supervisor(["order-email"], mail_settings, fleet=fleet, middleware=[])
    await sup.start()
    try:
        await publish(connection, thai_yen_order("order.completed"))
        await wait_until(lambda: sup.workers["order-email"].stats["dead"] == 1)
    finally:
        await sup.stop(5)
    assert smtp.received == []
    [dead] = await drain(connection, names.dead_letter_queue("order-email"))
    error = str(dead.headers[ERROR_HEADER])
    assert "550 5.1.1" in error and "somchai@example.com" not in error
    assert "retried" not in sup.workers["order-email"].stats  # permanent: no retry


async def test_an_smtp_outage_is_retried_until_the_server_is_back(
    connection: AbstractRobustConnection, vhost: str, mail_settings: Settings, smtp: SmtpServer
) -> None:
    fleet = fast_fleet("order-email")
    await apply(connection, fleet, vhost)
    smtp.handler.refuse["somchai@example.com"] = (421, "4.3.2 service not available")
    sup = Supervisor(["order-email"], mail_settings, fleet=fleet, middleware=[])
    await sup.start()
    try:
        await publish(connection, thai_yen_order("order.paid"))
        await wait_until(lambda: sup.workers["order-email"].stats["retried"] >= 1)
        del smtp.handler.refuse["somchai@example.com"]
        await wait_until(lambda: sup.workers["order-email"].stats["handled"] == 1)
    finally:
        await sup.stop(5)
    assert len(smtp.received) == 1


async def test_back_to_back_duplicates_in_one_prefetch_window_send_one_email(
    connection: AbstractRobustConnection, vhost: str, mail_settings: Settings, smtp: SmtpServer
) -> None:
    fleet = fast_fleet("order-email")
    await apply(connection, fleet, vhost)
    # Given both copies queued before the consumer starts (one prefetch window holds both)
    event = thai_yen_order("order.paid")
    await publish(connection, event)
    await publish(connection, event)
    sup = Supervisor(["order-email"], mail_settings, fleet=fleet, middleware=[])
    await sup.start()
    try:
        await wait_until(lambda: sum(sup.workers["order-email"].stats.values()) == 2)
    finally:
        await sup.stop(5)
    assert len(smtp.received) == 1
