"""The generated least-privilege permissions, enforced by the real broker: each role's user,
given exactly the regexes in k8s/topology/permissions.yaml, can do its job and nothing else."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator

import aio_pika
import aiormq.exceptions
import pytest
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractRobustConnection

from fleet.amqp import connect
from fleet.settings import Settings
from tests.conftest import AMQP_HOST, AMQP_PORT, MANAGEMENT_URL
from topology import names
from topology.apply import apply_fleet
from topology.fleet import DEFAULT_FLEET, build_topology
from topology.k8s import KEDA_ROLE, PUBLISHER_ROLE, role_permissions
from topology.management import Management, q

pytestmark = pytest.mark.integration

FLEET = DEFAULT_FLEET.only("stock", "crm")
Operation = Callable[[AbstractChannel], Awaitable[object]]


def publish(exchange: str, routing_key: str) -> Operation:
    async def run(channel: AbstractChannel) -> object:
        target = await channel.get_exchange(exchange, ensure=False)
        return await target.publish(aio_pika.Message(b"{}"), routing_key=routing_key)

    return run


def get(queue: str) -> Operation:
    async def run(channel: AbstractChannel) -> object:
        return await (await channel.get_queue(queue, ensure=False)).get(fail=False)

    return run


def look_up(exchange: str | None = None, queue: str | None = None) -> Operation:
    """A passive declare, as the publisher and the consumer runtime do at start."""

    async def run(channel: AbstractChannel) -> object:
        if exchange is not None:
            return await channel.get_exchange(exchange, ensure=True)
        return await channel.declare_queue(queue, passive=True)

    return run


def declare(queue: str) -> Operation:
    async def run(channel: AbstractChannel) -> object:
        return await channel.declare_queue(queue, auto_delete=True)

    return run


async def allowed(connection: AbstractConnection, operation: Operation) -> bool:
    """Whether the broker lets ``operation`` through; with a mandatory publish, also whether it
    landed in a queue (an unroutable one is returned: no)."""
    # A refused operation closes its channel: one channel per attempt.
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    try:
        await operation(channel)
        return True
    except (aiormq.exceptions.ChannelAccessRefused, aio_pika.exceptions.DeliveryError):
        return False
    finally:
        if not channel.is_closed:
            await channel.close()


@pytest.fixture
def role_users(management: Management, vhost: str) -> Iterator[dict[str, str]]:
    """One broker user per role with the generated permissions; role → AMQP URL."""
    permissions = role_permissions(FLEET, build_topology(FLEET))
    urls: dict[str, str] = {}
    suffix = uuid.uuid4().hex[:8]
    try:
        for role, grant in permissions.items():
            user, password = f"test-{role}-{suffix}", uuid.uuid4().hex
            tags = "monitoring" if role == KEDA_ROLE else ""  # as in k8s/topology/users.yaml
            management.request(
                "PUT", f"/users/{q(user)}", json={"password": password, "tags": tags}
            ).raise_for_status()
            management.request(
                "PUT", f"/permissions/{q(vhost)}/{q(user)}", json=grant
            ).raise_for_status()
            urls[role] = f"amqp://{user}:{password}@{AMQP_HOST}:{AMQP_PORT}/{q(vhost)}"
        yield urls
    finally:
        for url in urls.values():
            user = url.split("//", 1)[1].split(":", 1)[0]
            management.request("DELETE", f"/users/{q(user)}")


async def test_each_role_may_do_its_job_and_nothing_else(
    connection: AbstractRobustConnection,
    settings: Settings,
    management: Management,
    vhost: str,
    role_users: dict[str, str],
) -> None:
    # Given the topology declared by an administrator
    await apply_fleet(connection, FLEET, vhost=vhost, management=management)
    retry_tier = names.retry_queue("stock", FLEET.consumer("stock").used_tiers[0])
    outage_tier = names.retry_queue("stock", FLEET.consumer("stock").outage_tiers[-1])

    # When each role tries what it needs and what it must not do
    publisher = await connect(settings, name="test-publisher", url=role_users[PUBLISHER_ROLE])
    stock = await connect(settings, name="test-stock", url=role_users["stock"])
    try:
        publisher_can = {
            "look up events": await allowed(publisher, look_up(exchange=names.EVENTS_EXCHANGE)),
            "publish events": await allowed(
                publisher, publish(names.EVENTS_EXCHANGE, "order.paid")
            ),
            "publish retry": await allowed(
                publisher, publish(names.retry_exchange("stock"), retry_tier)
            ),
            "publish work": await allowed(publisher, publish(names.WORK_EXCHANGE, "woo.stock")),
            "hold a delivery": await allowed(
                publisher, publish(names.INGRESS_EXCHANGE, names.HELD_QUEUE)
            ),
            "read held deliveries": await allowed(publisher, get(names.HELD_QUEUE)),
            "read a queue": await allowed(publisher, get("woo.stock")),
            "declare": await allowed(publisher, declare("sneaky")),
        }
        stock_can = {
            "look up own work queue": await allowed(stock, look_up(queue="woo.stock")),
            "read own work queue": await allowed(stock, get("woo.stock")),
            "read own dlq": await allowed(stock, get("woo.stock.dlq")),
            "read crm's queue": await allowed(stock, get("woo.crm")),
            "publish retry": await allowed(
                stock, publish(names.retry_exchange("stock"), retry_tier)
            ),
            "publish dead letter": await allowed(
                stock, publish(names.dead_letter_exchange("stock"), "woo.stock.dlq")
            ),
            # What a closing breaker does with its outage tiers (consumers/runtime/recall.py).
            "read own outage tier": await allowed(stock, get(outage_tier)),
            "bring back to own work queue": await allowed(
                stock, publish(names.retry_exchange("stock"), "woo.stock")
            ),
            "bring back to crm's work queue": await allowed(
                stock, publish(names.retry_exchange("stock"), "woo.crm")
            ),
            "publish crm's retry": await allowed(
                stock, publish(names.retry_exchange("crm"), "woo.crm.retry.1s")
            ),
            "publish events": await allowed(stock, publish(names.EVENTS_EXCHANGE, "order.paid")),
            "read held deliveries": await allowed(stock, get(names.HELD_QUEUE)),
            "publish work": await allowed(stock, publish(names.WORK_EXCHANGE, "woo.crm")),
            "declare": await allowed(stock, declare("sneaky")),
        }
    finally:
        await publisher.close()
        await stock.close()

    # Then the broker allows exactly the job
    assert publisher_can == {
        "look up events": True,
        "publish events": True,
        "publish retry": False,
        "publish work": False,
        "hold a delivery": True,
        "read held deliveries": True,
        "read a queue": False,
        "declare": False,
    }
    assert stock_can == {
        "look up own work queue": True,
        "read own work queue": True,
        "read own dlq": True,
        "read crm's queue": False,
        "publish retry": True,
        "publish dead letter": True,
        "read own outage tier": True,
        "bring back to own work queue": True,
        "bring back to crm's work queue": False,
        "publish crm's retry": False,
        "publish events": False,
        "read held deliveries": False,
        "publish work": False,
        "declare": False,
    }


async def test_keda_reads_work_queue_depth_including_unacked_but_nothing_else(
    connection: AbstractRobustConnection,
    management: Management,
    vhost: str,
    role_users: dict[str, str],
) -> None:
    # Given two messages in woo.stock, one of them delivered and not yet acknowledged
    await apply_fleet(connection, FLEET, vhost=vhost, management=management)
    channel = await connection.channel()
    for _ in range(2):
        await channel.default_exchange.publish(aio_pika.Message(b"{}"), routing_key="woo.stock")
    in_flight = await (await channel.get_queue("woo.stock")).get()
    keda_user = role_users[KEDA_ROLE].split("//", 1)[1].split("@", 1)[0]
    keda_url = MANAGEMENT_URL.replace("guest:guest", keda_user)

    # When KEDA's user asks the management API for the depth, as the http trigger does
    with Management(keda_url) as keda:
        for _ in range(50):  # the management API's statistics lag by a few seconds at most
            depth = keda.queue(vhost, "woo.stock") or {}
            if (depth.get("messages"), depth.get("messages_unacknowledged")) == (2, 1):
                break
            await asyncio.sleep(0.2)
    keda_amqp = await aio_pika.connect(role_users[KEDA_ROLE], timeout=5)
    try:
        amqp_read = await allowed(keda_amqp, get("woo.stock"))
        amqp_write = await allowed(keda_amqp, publish(names.EVENTS_EXCHANGE, "order.paid"))
    finally:
        await keda_amqp.close()
    await in_flight.ack()

    # Then it sees ready + unacknowledged messages, and can do nothing over AMQP
    assert (depth["messages"], depth["messages_unacknowledged"]) == (2, 1)
    assert (amqp_read, amqp_write) == (False, False)


def publish_mandatory(exchange: str, routing_key: str) -> Operation:
    """A publish the broker must route somewhere: unroutable raises (returned to us)."""

    async def run(channel: AbstractChannel) -> object:
        target = await channel.get_exchange(exchange, ensure=False)
        return await target.publish(
            aio_pika.Message(b"{}"), routing_key=routing_key, mandatory=True
        )

    return run


async def test_no_consumer_can_put_a_message_in_another_consumers_queues(
    connection: AbstractRobustConnection,
    settings: Settings,
    management: Management,
    vhost: str,
    role_users: dict[str, str],
) -> None:
    # Given the topology, and the stock consumer's own credentials
    await apply_fleet(connection, FLEET, vhost=vhost, management=management)
    crm = FLEET.consumer("crm")
    crm_queues = [q.name for q in build_topology(FLEET).queues if q.consumer == "crm"]
    stock_policy = FLEET.consumer("stock")
    own_tier = names.retry_queue("stock", stock_policy.used_tiers[0])
    exchanges = [
        names.retry_exchange("stock"),
        names.dead_letter_exchange("stock"),
        names.retry_exchange("crm"),
        names.dead_letter_exchange("crm"),
        names.WORK_EXCHANGE,
        names.EVENTS_EXCHANGE,
        "",  # the default exchange: any queue by its name
    ]
    stock = await connect(settings, name="test-stock", url=role_users["stock"])
    try:
        # When it tries every exchange with every one of crm's queues as the key
        into_crm = {
            (exchange or "(default)", queue): await allowed(
                stock, publish_mandatory(exchange, queue)
            )
            for exchange in exchanges
            for queue in crm_queues
        }
        # (and its own retry and dead letter, which it needs)
        own = [
            await allowed(stock, publish_mandatory(names.retry_exchange("stock"), own_tier)),
            await allowed(
                stock,
                publish_mandatory(
                    names.dead_letter_exchange("stock"), names.dead_letter_queue("stock")
                ),
            ),
        ]
    finally:
        await stock.close()

    # Then nothing reaches crm's work, retry or dead-letter queues; its own still work
    assert crm.work_queue in crm_queues and crm.dead_letter_queue in crm_queues
    assert [k for k, landed in into_crm.items() if landed] == []
    assert own == [True, True]
