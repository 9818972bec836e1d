"""The confirmed publishers (aio-pika and pika) against the real broker."""

from __future__ import annotations

from datetime import UTC, datetime

import aio_pika
import pika
import pytest
from aio_pika.abc import AbstractRobustConnection

from contracts import ProductEvent, event_id_for
from contracts.catalog import ProductData
from fleet.errors import BrokerUnavailable, PublishError, TopologyError, UnroutableError
from publisher.blocking import BlockingPublisher
from publisher.confirmed import ConfirmedPublisher
from topology.names import EVENTS_EXCHANGE

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 28, 5, 0, tzinfo=UTC)


def event(n: int) -> ProductEvent:
    data = ProductData(id=n, name=f"Product {n}", stock_quantity=n, date_modified_gmt=NOW)
    return ProductEvent(
        event_id=event_id_for("https://shop.example", n, "product.updated", NOW.isoformat()),
        event_type="product.updated",
        schema_version=1,
        occurred_at=NOW,
        source="https://shop.example",
        data=data,
    )


async def events_queue(
    connection: AbstractRobustConnection, bind: bool = True
) -> aio_pika.abc.AbstractQueue:
    channel = await connection.channel()
    exchange = await channel.declare_exchange(
        EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue("events", durable=True, arguments={"x-max-priority": 5})
    if bind:
        await queue.bind(exchange, "product.#")
    return queue


async def test_publish_is_persistent_confirmed_with_contract_properties(
    connection: AbstractRobustConnection,
) -> None:
    queue = await events_queue(connection)
    async with ConfirmedPublisher(connection) as publisher:
        await publisher.publish(event(7), priority=4)
    message = await queue.get(timeout=5)
    assert message.message_id == str(event(7).event_id)  # deterministic: same fact, same id
    assert (message.type, message.correlation_id, message.priority) == ("product.updated", "7", 4)
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.content_type == "application/json"
    assert message.headers["woofleet-schema-version"] == 1
    assert message.timestamp == NOW  # occurred_at, to the second
    assert ProductEvent.model_validate_json(message.body) == event(7)
    await message.ack()


async def test_a_publish_on_a_channel_closed_under_it_is_a_publish_error(
    connection: AbstractRobustConnection,
) -> None:
    # Given an open publisher whose channel was closed since it was opened
    await events_queue(connection)
    publisher = await ConfirmedPublisher(connection).open()
    assert publisher._channel is not None
    await publisher._channel.close()
    # Then publishing raises the error callers handle, not the driver's own
    with pytest.raises(PublishError):
        await publisher.publish(event(1))


async def test_unroutable_publish_raises(connection: AbstractRobustConnection) -> None:
    await events_queue(connection, bind=False)
    async with ConfirmedPublisher(connection) as publisher:
        with pytest.raises(UnroutableError, match="topology apply"):
            await publisher.publish(event(1))
        # The channel stays usable after a returned message.
        assert [type(r) for r in await publisher.publish_many([event(2)])] == [UnroutableError]


async def test_missing_exchange_is_a_topology_error(connection: AbstractRobustConnection) -> None:
    with pytest.raises(TopologyError, match="topology apply"):
        await ConfirmedPublisher(connection, exchange="woo.nothing-here").open()


async def test_publish_many_pipelines_and_keeps_order(connection: AbstractRobustConnection) -> None:
    queue = await events_queue(connection)
    async with ConfirmedPublisher(connection, window=64) as publisher:
        results = await publisher.publish_many([event(n) for n in range(1, 1001)])
    assert results == [None] * 1000
    got = []
    for _ in range(1000):
        message = await queue.get(timeout=5)
        got.append(int(message.correlation_id or 0))
        await message.ack()
    assert got == list(range(1, 1001))


def test_blocking_publisher_confirms_and_translates_returns(amqp_url: str) -> None:
    with pika.BlockingConnection(pika.URLParameters(amqp_url)) as conn:
        channel = conn.channel()
        channel.exchange_declare(EVENTS_EXCHANGE, "topic", durable=True)
        channel.queue_declare("blocking", durable=True)
        channel.queue_bind("blocking", EVENTS_EXCHANGE, "product.updated")
    with BlockingPublisher(amqp_url) as publisher:
        publisher.publish(event(3), priority=2)
        with pytest.raises(UnroutableError):
            publisher.publish(event(4).model_copy(update={"event_type": "catalog.stock_sync"}))
    with pika.BlockingConnection(pika.URLParameters(amqp_url)) as conn:
        method, properties, body = conn.channel().basic_get("blocking", auto_ack=True)
    assert method is not None and properties.message_id == str(event(3).event_id)
    assert ProductEvent.model_validate_json(body) == event(3)
    assert properties.delivery_mode == 2 and properties.priority == 2


def test_blocking_publisher_names_an_absent_broker() -> None:
    with pytest.raises(BrokerUnavailable, match="not answering"):
        BlockingPublisher("amqp://guest:guest@127.0.0.1:9/")


async def test_publish_many_reports_per_message_failures_without_raising(
    connection: AbstractRobustConnection,
) -> None:
    await events_queue(connection)
    async with ConfirmedPublisher(connection) as publisher:
        mixed = [
            event(1),
            event(2).model_copy(update={"event_type": "catalog.price_update"}),
            event(3),
        ]
        results = await publisher.publish_many(mixed)
    assert results[0] is None and isinstance(results[1], UnroutableError) and results[2] is None
