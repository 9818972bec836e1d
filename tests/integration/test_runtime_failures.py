"""How the runtime and the topology behave when things are not as they should be: a backlog that
a priority message must jump, unroutable events, conflicting or missing topology, a full
dead-letter queue, and a consumer name nobody knows."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection

import consumers.runtime.worker
from consumers import registry
from consumers.runtime import Delivery, HandlerSpec, Supervisor
from consumers.runtime.handler import AnyEnvelope
from contracts.messages import ERROR_HEADER
from fleet.errors import PermanentError, TopologyError, UnknownConsumer, UnroutableError
from fleet.settings import Settings
from tests.builders import order_event
from tests.support.amqp import apply, depth, drain, fast_fleet, publish, wait_until
from topology import names
from topology.fleet import CONSUMER_NAMES, DEFAULT_FLEET
from topology.management import Management

pytestmark = pytest.mark.integration

SPEC = HandlerSpec()


async def test_a_priority_message_published_last_is_handled_before_the_backlog(
    connection: AbstractRobustConnection, vhost: str, settings: Settings
) -> None:
    # Given a backlog of ordinary orders waiting in a work queue, consumed one at a time
    fleet = fast_fleet("analytics", prefetch=1)
    await apply(connection, fleet, vhost)
    backlog = [order_event("order.paid", unique=True) for _ in range(30)]
    for event in backlog:
        await publish(connection, event, priority=0)
    # and an express order published after all of them
    express = order_event("order.paid", unique=True)
    await publish(connection, express, priority=5)
    seen: list[str] = []

    async def record(event: AnyEnvelope, delivery: Delivery) -> None:
        seen.append(str(event.event_id))

    # When a consumer starts on that queue
    sup = Supervisor(
        ["analytics"], settings, fleet=fleet, middleware=[], handlers={"analytics": (SPEC, record)}
    )
    await sup.start()
    try:
        await wait_until(lambda: len(seen) == len(backlog) + 1)
    finally:
        await sup.stop(5)
    # Then the express order is handled ahead of (nearly) the whole backlog
    assert seen.index(str(express.event_id)) <= 1, seen.index(str(express.event_id))
    assert sorted(seen) == sorted(str(e.event_id) for e in [*backlog, express])


async def test_publishing_an_event_nothing_is_bound_to_raises_unroutable_error(
    connection: AbstractRobustConnection, vhost: str
) -> None:
    # Given a topology in which only order.# is bound
    await apply(connection, fast_fleet("analytics"), vhost)
    # When an event is published with a routing key nothing is bound to
    with pytest.raises(UnroutableError) as caught:
        await publish(connection, order_event("order.paid"), routing_key="inventory.recount")
    # Then the publisher hears about it, with the key and what to do
    message = str(caught.value)
    assert "woo.events" in message and "inventory.recount" in message
    assert "woofleet topology apply" in message


async def test_applying_the_topology_a_second_time_creates_nothing(
    connection: AbstractRobustConnection, vhost: str
) -> None:
    fleet = fast_fleet()
    # Given a topology applied once
    first = await apply(connection, fleet, vhost)
    assert first.created
    # When it is applied again
    second = await apply(connection, fleet, vhost)
    # Then nothing is created and everything is reported unchanged
    assert second.created == []
    assert sorted(second.unchanged) == sorted(first.created)
    assert second.bindings == first.bindings
    assert second.policies == first.policies


async def test_a_conflicting_queue_fails_apply_with_the_difference_and_the_fix(
    connection: AbstractRobustConnection, vhost: str
) -> None:
    # Given woo.analytics declared by someone else, without x-max-priority
    async with connection.channel() as channel:
        await channel.declare_queue(names.work_queue("analytics"), durable=True)
    # When the topology is applied
    with pytest.raises(TopologyError) as caught:
        await apply(connection, fast_fleet("analytics"), vhost)
    # Then the error names the queue, the difference and the fix, in one readable message
    message = str(caught.value)
    assert "queue woo.analytics exists with different arguments" in message
    assert "x-max-priority" in message
    assert f"rabbitmqctl delete_queue woo.analytics -p {vhost}" in message
    assert "woofleet topology apply" in message
    assert "Traceback" not in message
    assert caught.value.__suppress_context__, "the driver's exception should not be chained"


async def test_starting_a_consumer_without_its_work_queue_says_to_apply_the_topology(
    vhost: str, settings: Settings
) -> None:
    # Given a broker on which the topology was never applied
    async def never_called(event: AnyEnvelope, delivery: Delivery) -> None:
        raise AssertionError("no message can arrive")

    sup = Supervisor(
        ["analytics"],
        settings,
        fleet=fast_fleet("analytics"),
        middleware=[],
        handlers={"analytics": (SPEC, never_called)},
    )
    # When the consumer starts
    try:
        with pytest.raises(TopologyError) as caught:
            await sup.start()
    finally:
        await sup.stop(1)
    # Then it refuses with the queue's name and the command that creates it
    assert "queue woo.analytics does not exist" in str(caught.value)
    assert "woofleet topology apply" in str(caught.value)


@pytest.mark.slow  # the management API shows a new policy only at its next stats update
@pytest.mark.parametrize(
    ("quorum", "room"),
    [
        # DLQs are classic queues whatever the tiers (so browsing them changes nothing): they
        # stop at the limit either way.
        pytest.param(True, 1, id="quorum-tiers"),
        pytest.param(False, 1, id="classic-tiers"),
    ],
)
async def test_a_dead_letter_the_full_dlq_refuses_stays_in_the_work_queue(
    connection: AbstractRobustConnection,
    vhost: str,
    settings: Settings,
    management: Management,
    monkeypatch: pytest.MonkeyPatch,
    quorum: bool,
    room: int,
) -> None:
    # Given a DLQ limited (by policy) to one message, and a runtime that retries refused
    # moves quickly
    monkeypatch.setattr(consumers.runtime.worker, "REFUSED_BACKOFF", 0.1)
    fleet = replace(fast_fleet("analytics", dlq_max_length=1), quorum_tiers=quorum)
    await apply(connection, fleet, vhost)
    dlq = names.dead_letter_queue("analytics")

    def dlq_policy() -> dict[str, Any]:
        info = management.queue(vhost, dlq) or {}
        definition: dict[str, Any] = info.get("effective_policy_definition") or {}
        return definition

    await wait_until(lambda: dlq_policy().get("max-length") == 1, timeout=10, interval=0.2)
    assert dlq_policy().get("overflow") == "reject-publish"
    poisoned: list[str] = []

    async def poison(event: AnyEnvelope, delivery: Delivery) -> None:
        poisoned.append(str(event.event_id))
        raise PermanentError("collector answered 422: bad currency")

    def consumer() -> Supervisor:
        return Supervisor(
            ["analytics"],
            settings,
            fleet=fleet,
            middleware=[],
            handlers={"analytics": (SPEC, poison)},
        )

    sup = consumer()
    await sup.start()
    stats = sup.workers["analytics"].stats
    refused = order_event("order.paid", unique=True)
    max_attempts = fleet.consumer("analytics").max_attempts
    try:
        # When poison messages arrive one after the other until the DLQ is full
        for n in range(1, room + 1):
            await publish(connection, order_event("order.paid", unique=True))
            await wait_until(lambda n=n: stats["dead"] == n)
        # and one more comes, which the DLQ refuses again and again
        await publish(connection, refused)
        await wait_until(lambda: stats["requeued"] > max_attempts)
    finally:
        await sup.stop(5)
    # Then the DLQ holds what it had room for, and the refused one is still in its work queue;
    # each time it came back it went through the handler again (a requeue is not a crash)
    assert stats["dead"] == room
    # (the stop may land while one more pass is in the handler, before its requeue is counted)
    assert poisoned.count(str(refused.event_id)) - stats["requeued"] in (0, 1)
    assert await depth(connection, dlq) == room
    assert await depth(connection, names.work_queue("analytics")) == 1
    # and once there is room in the DLQ, it lands there with its own reason
    await drain(connection, dlq)
    sup = consumer()
    await sup.start()
    try:
        await wait_until(lambda: sup.workers["analytics"].stats["dead"] == 1)
    finally:
        await sup.stop(5)
    [dead] = await drain(connection, dlq)
    assert dead.message_id == str(refused.event_id)
    assert (dead.headers or {})[ERROR_HEADER] == (
        "PermanentError: collector answered 422: bad currency"
    )
    assert await depth(connection, names.work_queue("analytics")) == 0


def test_an_unknown_consumer_name_is_refused_with_the_list_of_valid_ones() -> None:
    # Given a typo in a consumer name
    # When a Supervisor, the registry or the consumer table is asked for it
    with pytest.raises(UnknownConsumer) as by_supervisor:
        Supervisor(["analytic"], Settings())
    with pytest.raises(UnknownConsumer) as by_registry:
        registry.load("analytic")
    with pytest.raises(UnknownConsumer) as by_table:
        DEFAULT_FLEET.consumer("analytic")
    # Then all three give the one message: the wrong name, then every valid one
    messages = {str(e.value) for e in (by_supervisor, by_registry, by_table)}
    assert messages == {
        f"unknown consumer 'analytic'; valid consumers: {', '.join(CONSUMER_NAMES)}"
    }
