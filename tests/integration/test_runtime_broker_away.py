"""The broker unreachable under a running consumer: not ready, one line, back by itself."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aio_pika.abc import AbstractRobustConnection
from prometheus_client import REGISTRY
from pydantic import SecretStr

from consumers.runtime import Delivery, HandlerSpec, Supervisor
from consumers.runtime.handler import AnyEnvelope
from fleet.settings import Settings
from tests.builders import order_event
from tests.conftest import AMQP_PORT
from tests.support.amqp import apply, fast_fleet, publish, wait_until
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

CONSUMER = "analytics"


def text(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # aio_pika logs some objects whose repr raises
        return str(record.msg)


def pauses() -> float:
    labels = {"consumer": CONSUMER}
    return REGISTRY.get_sample_value("woofleet_consumer_dependency_pauses_total", labels) or 0.0


async def test_the_broker_away_is_a_pause_with_one_line_and_it_resumes_by_itself(
    connection: AbstractRobustConnection,
    vhost: str,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fleet = fast_fleet(CONSUMER)
    await apply(connection, fleet, vhost)
    # Given a consumer that reaches the broker through a link the test can cut
    proxy = TcpProxy("127.0.0.1", AMQP_PORT)
    port = await proxy.start()
    url = settings.amqp_url.get_secret_value().replace(f":{AMQP_PORT}/", f":{port}/", 1)
    done: list[str] = []

    async def handler(event: AnyEnvelope, delivery: Delivery) -> None:
        done.append(str(event.event_id))

    sup = Supervisor(
        [CONSUMER],
        # Reconnect attempts every 0.2 s, so a few of them pass quickly
        settings.model_copy(update={"amqp_url": SecretStr(f"{url}?reconnect_interval=0.2")}),
        fleet=fleet,
        middleware=[],
        handlers={CONSUMER: (HandlerSpec(), handler)},
    )
    await sup.start()
    before = pauses()
    caplog.set_level(logging.INFO)
    try:
        await publish(connection, order_event("order.paid", unique=True))
        await wait_until(lambda: len(done) == 1)
        # When the broker becomes unreachable and the consumer has tried again a few times
        await proxy.cut()
        await wait_until(lambda: proxy.refused >= 3, timeout=10)
        # Then it is not ready, and says why
        ready, detail = sup.ready()
        assert not ready
        paused = detail["paused"]
        assert isinstance(paused, dict) and "broker" in paused[CONSUMER]
        assert detail["connected"] is False
        # And once the broker answers again it resumes by itself
        await publish(connection, order_event("order.paid", unique=True))
        proxy.restore()
        await wait_until(lambda: len(done) == 2, timeout=15)
        await wait_until(lambda: sup.ready()[0], timeout=5)
    finally:
        await sup.stop(5)
        await proxy.close()
    assert pauses() - before == 1
    # One line when it went and one when it came back, not one per attempt
    noted = [
        text(r)
        for r in caplog.records
        if r.levelno >= logging.INFO and r.name.startswith(("consumers", "aio_pika", "aiormq"))
    ]
    assert len([m for m in noted if "broker" in m and "not answering" in m]) == 1, noted
    assert len([m for m in noted if "broker answers again" in m]) == 1, noted
    assert not [m for m in noted if "Reconnecting" in m or "Connection attempt" in m], noted


async def test_stopping_while_the_broker_is_away_does_not_wait_for_it(
    connection: AbstractRobustConnection, vhost: str, settings: Settings
) -> None:
    fleet = fast_fleet(CONSUMER)
    await apply(connection, fleet, vhost)
    proxy = TcpProxy("127.0.0.1", AMQP_PORT)
    port = await proxy.start()
    url = settings.amqp_url.get_secret_value().replace(f":{AMQP_PORT}/", f":{port}/", 1)

    async def handler(event: AnyEnvelope, delivery: Delivery) -> None:
        pass

    sup = Supervisor(
        [CONSUMER],
        settings.model_copy(update={"amqp_url": SecretStr(f"{url}?reconnect_interval=0.2")}),
        fleet=fleet,
        middleware=[],
        handlers={CONSUMER: (HandlerSpec(), handler)},
    )
    await sup.start()
    try:
        # Given a consumer whose broker went away
        await proxy.cut()
        await wait_until(lambda: proxy.refused >= 2, timeout=10)
        # When it is told to stop (SIGTERM), it stops within its grace: every call on a
        # channel would wait for the broker to come back, and the broker requeues by itself
        assert await asyncio.wait_for(sup.stop(2), timeout=10) is True
    finally:
        await proxy.close()
