"""A state store that stops answering pauses a consumer; it resumes by itself, losing nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aio_pika.abc import AbstractRobustConnection
from prometheus_client import REGISTRY

from consumers.runtime import Delivery, HandlerSpec, Supervisor
from consumers.runtime.handler import AnyEnvelope
from fleet.settings import Settings
from tests.builders import order_event
from tests.chaos.private_postgres import PrivatePostgres
from tests.support.amqp import apply, depth, fast_fleet, publish, wait_until
from topology import names

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONSUMER = "analytics"


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    with PrivatePostgres() as server:
        yield server


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name, {"consumer": CONSUMER}) or 0.0


async def test_the_state_store_down_pauses_the_consumer_and_it_resumes_by_itself(
    connection: AbstractRobustConnection,
    vhost: str,
    settings: Settings,
    postgres: PrivatePostgres,
) -> None:
    fleet = fast_fleet(CONSUMER)
    await apply(connection, fleet, vhost)
    done: list[str] = []

    async def handler(event: AnyEnvelope, delivery: Delivery) -> None:
        done.append(str(event.event_id))

    spec = HandlerSpec(business_key=lambda event: str(event.event_id))
    sup = Supervisor(
        [CONSUMER],
        settings.model_copy(update={"state_url": postgres.url}),
        fleet=fleet,
        middleware=[],
        handlers={CONSUMER: (spec, handler)},
    )
    await sup.start()
    worker = sup.workers[CONSUMER]
    pauses, requeues = (
        metric("woofleet_consumer_dependency_pauses_total"),
        metric("woofleet_consumer_requeues_total"),
    )
    try:
        await publish(connection, order_event("order.paid", unique=True))
        await wait_until(lambda: len(done) == 1)

        # When the state store goes away and deliveries keep coming
        postgres.stop()
        for _ in range(3):
            await publish(connection, order_event("order.paid", unique=True))

        # Then the consumer stops taking them, says why on /readyz, and keeps them queued
        await wait_until(lambda: worker.dependency.reason is not None)
        await wait_until(lambda: not worker.consuming)
        ready, detail = sup.ready()
        assert not ready
        paused = detail["paused"]
        assert isinstance(paused, dict) and "WOOFLEET_STATE_URL" in paused[CONSUMER]

        async def all_queued() -> bool:
            return await depth(connection, names.work_queue(CONSUMER)) == 3

        await wait_until(all_queued, timeout=10)

        # And once the store is back it resumes by itself and handles each of them once
        postgres.start()
        await wait_until(lambda: len(done) == 4, timeout=30)
        await wait_until(lambda: sup.ready()[0], timeout=10)
    finally:
        await sup.stop(5)
    assert len(set(done)) == 4
    assert metric("woofleet_consumer_dependency_pauses_total") - pauses == 1
    # A pause gives back what was in hand, not a requeue per retry of a hot loop
    assert (
        metric("woofleet_consumer_requeues_total") - requeues
        <= fleet.consumer(CONSUMER).effective_prefetch
    )
    assert await depth(connection, names.dead_letter_queue(CONSUMER)) == 0


async def test_an_effect_done_as_the_store_goes_away_is_recorded_once_it_is_back_not_repeated(
    connection: AbstractRobustConnection,
    vhost: str,
    settings: Settings,
    postgres: PrivatePostgres,
) -> None:
    fleet = fast_fleet(CONSUMER)
    await apply(connection, fleet, vhost)
    effects: list[str] = []

    async def handler(event: AnyEnvelope, delivery: Delivery) -> None:
        effects.append(str(event.event_id))
        # The state store goes away between the effect and its record in the ledger
        postgres.stop()

    spec = HandlerSpec(business_key=lambda event: str(event.event_id))
    sup = Supervisor(
        [CONSUMER],
        settings.model_copy(update={"state_url": postgres.url}),
        fleet=fleet,
        middleware=[],
        handlers={CONSUMER: (spec, handler)},
    )
    await sup.start()
    worker = sup.workers[CONSUMER]
    try:
        await publish(connection, order_event("order.paid", unique=True))
        # When the consumer notices and pauses, and the store comes back
        await wait_until(lambda: worker.dependency.reason is not None, timeout=10)
        postgres.start()
        # Then the effect is recorded and the delivery acked: it is not handled a second time
        await wait_until(lambda: worker.stats["handled"] == 1, timeout=30)
        await wait_until(lambda: sup.ready()[0], timeout=10)
    finally:
        await sup.stop(5)
    assert len(effects) == 1
    assert worker.stats["requeued"] == 0
