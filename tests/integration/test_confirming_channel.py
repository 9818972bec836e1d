"""The one publishing client, the relay's confirming channel (pika on the asyncio loop), against
the real broker."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection

from contracts import ProductEvent, event_id_for
from contracts.catalog import ProductData
from contracts.messages import MAX_PRIORITY
from fleet.errors import BrokerUnavailable, PublishError, TopologyError, UnroutableError
from fleet.settings import Settings
from publisher.confirming_channel import open_confirming_channel
from publisher.outgoing import Outgoing
from tests.support.net import free_port
from topology.names import EVENTS_EXCHANGE

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 28, 5, 0, tzinfo=UTC)


def product_event(n: int) -> ProductEvent:
    data = ProductData(id=n, name=f"Product {n}", stock_quantity=n, date_modified_gmt=NOW)
    return ProductEvent(
        event_id=event_id_for("https://shop.example", n, "product.updated", NOW.isoformat()),
        event_type="product.updated",
        schema_version=1,
        occurred_at=NOW,
        source="https://shop.example",
        data=data,
    )


def event(n: int, event_type: str = "product.updated") -> Outgoing:
    item = Outgoing.from_envelope(product_event(n), priority=4)
    return Outgoing(event_type, item.body, item.properties)


async def events_queue(
    connection: AbstractRobustConnection, **arguments: object
) -> aio_pika.abc.AbstractQueue:
    channel = await connection.channel()
    exchange = await channel.declare_exchange(
        EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(
        "events", durable=True, arguments={"x-max-priority": MAX_PRIORITY, **arguments}
    )
    await queue.bind(exchange, "product.#")
    return queue


async def test_publish_is_confirmed_persistent_with_the_stored_properties(
    settings: Settings, connection: AbstractRobustConnection
) -> None:
    queue = await events_queue(connection)
    channel = await open_confirming_channel(settings, name="test")
    try:
        await asyncio.wait_for(channel.publish(event(7)), 5)
    finally:
        await channel.close()
    message = await queue.get(timeout=5)
    assert message.message_id == event(7).message_id
    assert (message.type, message.correlation_id, message.priority) == ("product.updated", "7", 4)
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.content_type == "application/json"
    assert message.headers["woofleet-schema-version"] == 1
    assert message.timestamp == NOW
    assert message.body == event(7).body
    await message.ack()


async def test_many_in_flight_are_confirmed_in_order(
    settings: Settings, connection: AbstractRobustConnection
) -> None:
    queue = await events_queue(connection)
    channel = await open_confirming_channel(settings, name="test")
    try:
        futures = [channel.publish(event(n)) for n in range(300)]
        await asyncio.wait_for(asyncio.gather(*futures), 10)
    finally:
        await channel.close()
    got = [(await queue.get(timeout=5, no_ack=True)).correlation_id for _ in range(300)]
    assert got == [str(n) for n in range(300)]


async def test_publishes_queued_in_one_loop_pass_go_out_in_one_write(
    settings: Settings, connection: AbstractRobustConnection
) -> None:
    # pika's transport sends each buffered chunk with a system call of its own; the relay's
    # connection hands it one chunk per loop pass. Spy on the real transport (it still writes).
    await events_queue(connection)
    channel = await open_confirming_channel(settings, name="test")
    transport = channel._connection._transport  # type: ignore[union-attr]
    writes: list[int] = []
    real_write = transport.write

    def counting_write(data: bytes) -> None:
        writes.append(len(data))
        real_write(data)

    transport.write = counting_write
    try:
        # When 50 events are published without yielding in between
        futures = [channel.publish(event(n)) for n in range(50)]
        await asyncio.wait_for(asyncio.gather(*futures), 10)
        # Then their 150 frames left in one write, and all were confirmed
        assert len(writes) == 1, writes
        assert writes[0] > 50 * len(event(0).body)
    finally:
        await channel.close()


async def test_an_unroutable_event_fails_alone(
    settings: Settings, connection: AbstractRobustConnection
) -> None:
    await events_queue(connection)
    channel = await open_confirming_channel(settings, name="test")
    try:
        results = await asyncio.gather(
            channel.publish(event(1)),
            channel.publish(event(2, "catalog.price_update")),
            channel.publish(event(3)),
            return_exceptions=True,
        )
    finally:
        await channel.close()
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], UnroutableError)
    assert "catalog.price_update" in str(results[1])


async def test_the_channel_stays_usable_after_a_returned_event(
    settings: Settings, connection: AbstractRobustConnection
) -> None:
    queue = await events_queue(connection)
    channel = await open_confirming_channel(settings, name="test")
    try:
        with pytest.raises(UnroutableError, match="topology apply"):
            await asyncio.wait_for(channel.publish(event(1, "catalog.price_update")), 5)
        await asyncio.wait_for(channel.publish(event(2)), 5)
    finally:
        await channel.close()
    message = await queue.get(timeout=5, no_ack=True)
    assert message.message_id == event(2).message_id


async def test_a_nack_is_a_publish_error(
    settings: Settings, connection: AbstractRobustConnection
) -> None:
    # A full queue that rejects new messages makes the broker nack them.
    await events_queue(connection, **{"x-max-length": 0, "x-overflow": "reject-publish"})
    channel = await open_confirming_channel(settings, name="test")
    try:
        with pytest.raises(PublishError, match="refused"):
            await asyncio.wait_for(channel.publish(event(1)), 5)
    finally:
        await channel.close()


async def test_a_missing_exchange_is_a_topology_error(settings: Settings) -> None:
    with pytest.raises(TopologyError, match="topology apply"):
        await open_confirming_channel(settings, name="test", exchange="no.such.exchange")


async def test_an_absent_broker_is_one_clear_error(settings: Settings) -> None:
    url = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    with pytest.raises(BrokerUnavailable, match="WOOFLEET_AMQP_URL"):
        await open_confirming_channel(settings, name="test", url=url)


async def test_publishes_in_flight_fail_when_the_channel_goes(
    settings: Settings, connection: AbstractRobustConnection
) -> None:
    await events_queue(connection)
    channel = await open_confirming_channel(settings, name="test")
    pending = [channel.publish(event(n)) for n in range(50)]
    await channel.close()
    results = await asyncio.gather(*pending, return_exceptions=True)
    assert all(r is None or isinstance(r, PublishError) for r in results)
    with pytest.raises(PublishError, match="closed"):
        await channel.publish(event(99))
