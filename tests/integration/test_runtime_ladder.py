"""The delivery ladder on the real broker: success, retry tiers, dead letters, duplicates."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from urllib.parse import quote

import pytest
from aio_pika.abc import AbstractRobustConnection
from prometheus_client import REGISTRY

from consumers.runtime import Delivery, Handler, HandlerSpec, Middleware, Outcome, Supervisor
from consumers.runtime.drain import until_drained
from consumers.runtime.handler import AnyEnvelope
from consumers.runtime.observe import MetricsMiddleware
from contracts.messages import (
    ATTEMPT_HEADER,
    CONSUMER_HEADER,
    ERROR_HEADER,
    FIRST_FAILED_HEADER,
    LAST_FAILED_HEADER,
)
from fleet.errors import PermanentError, TransientError
from fleet.settings import Settings
from tests.builders import order_event
from tests.support.amqp import apply, depth, drain, fast_fleet, publish, wait_until
from topology import names
from topology.management import Management
from topology.routing import topic_matches

pytestmark = pytest.mark.integration

SPEC = HandlerSpec()


class Recorder:
    """A handler that fails ``failures`` times, then succeeds; records every call."""

    def __init__(self, failures: int = 0, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or TransientError("target answered 503")
        self.calls: list[tuple[float, Delivery]] = []
        self.done: list[str] = []

    async def __call__(self, event: AnyEnvelope, delivery: Delivery) -> None:
        self.calls.append((time.monotonic(), delivery))
        if len(self.calls) <= self.failures:
            raise self.error
        self.done.append(str(event.event_id))


async def test_order_paid_reaches_exactly_the_queues_bound_to_it(
    connection: AbstractRobustConnection, vhost: str
) -> None:
    # Given the whole default topology
    fleet = fast_fleet()
    await apply(connection, fleet, vhost)
    # When one order.paid is published
    await publish(connection, order_event("order.paid"))
    # Then exactly the consumers bound to order.paid have it, and no others
    expected = {
        c.name for c in fleet.consumers if any(topic_matches(k, "order.paid") for k in c.bindings)
    }
    assert {"stock", "analytics"} <= expected and not {"loyalty", "catalog"} & expected
    for consumer in fleet.consumers:
        count = await depth(connection, names.work_queue(consumer.name))
        assert count == (1 if consumer.name in expected else 0), consumer.name
    assert await depth(connection, names.delay_queue("review-request")) == 0


async def test_transient_failures_go_through_the_tiers_and_back_to_the_same_consumer_only(
    connection: AbstractRobustConnection, vhost: str, settings: Settings
) -> None:
    # Given two consumers bound to order.paid, one of which fails twice
    fleet = fast_fleet("analytics", "crm", max_attempts=3)
    await apply(connection, fleet, vhost)
    flaky, steady = Recorder(failures=2), Recorder()
    sup = Supervisor(
        ["analytics", "crm"],
        settings,
        fleet=fleet,
        middleware=[],
        handlers={"analytics": (SPEC, flaky), "crm": (SPEC, steady)},
    )
    await sup.start()
    try:
        # When an order.paid arrives
        await publish(connection, order_event("order.paid"))
        await wait_until(lambda: len(flaky.done) == 1, timeout=10)
    finally:
        await sup.stop(5)
    # Then the flaky consumer tried three times, waiting about each tier's TTL in between
    (t1, d1), (t2, d2), (t3, d3) = flaky.calls
    assert [d1.attempt, d2.attempt, d3.attempt] == [1, 2, 3]
    assert 0.3 <= t2 - t1 < 0.3 + 1.0
    assert 0.6 <= t3 - t2 < 0.6 + 1.0
    assert d3.headers[ERROR_HEADER] == "TransientError: target answered 503"
    # and the retries never reached the other consumer
    assert len(steady.calls) == 1
    assert sup.workers["analytics"].stats == {"retried": 2, "handled": 1}


async def test_a_handler_that_always_fails_lands_in_its_dlq_with_failure_headers(
    connection: AbstractRobustConnection, vhost: str, settings: Settings
) -> None:
    fleet = fast_fleet("analytics")  # max attempts 2
    await apply(connection, fleet, vhost)
    broken = Recorder(failures=99, error=RuntimeError("boom"))
    sup = Supervisor(
        ["analytics"], settings, fleet=fleet, middleware=[], handlers={"analytics": (SPEC, broken)}
    )
    await sup.start()
    try:
        event = order_event("order.paid")
        await publish(connection, event, priority=3)
        await wait_until(lambda: sup.workers["analytics"].stats["dead"] == 1)
    finally:
        await sup.stop(5)
    assert len(broken.calls) == 2
    [dead] = await drain(connection, names.dead_letter_queue("analytics"))
    assert dead.message_id == str(event.event_id)
    assert dead.priority == 3 and dead.type == "order.paid"
    assert dead.correlation_id == str(event.data.id)
    headers = dead.headers or {}
    assert headers[ATTEMPT_HEADER] == 2
    assert headers[CONSUMER_HEADER] == "analytics"
    assert "attempts exhausted (2/2)" in str(headers[ERROR_HEADER])
    assert "RuntimeError: boom" in str(headers[ERROR_HEADER])
    assert str(headers[FIRST_FAILED_HEADER]) <= str(headers[LAST_FAILED_HEADER])
    assert not any(str(k).startswith("x-death") for k in headers)
    assert await depth(connection, names.work_queue("analytics")) == 0


async def test_permanent_error_goes_to_dlq_without_retry(
    connection: AbstractRobustConnection, vhost: str, settings: Settings
) -> None:
    fleet = fast_fleet("analytics")
    await apply(connection, fleet, vhost)
    refused = Recorder(failures=99, error=PermanentError("collector answered 422: bad currency"))
    sup = Supervisor(
        ["analytics"], settings, fleet=fleet, middleware=[], handlers={"analytics": (SPEC, refused)}
    )
    await sup.start()
    try:
        await publish(connection, order_event("order.paid"))
        await wait_until(lambda: sup.workers["analytics"].stats["dead"] == 1)
    finally:
        await sup.stop(5)
    assert len(refused.calls) == 1
    [dead] = await drain(connection, names.dead_letter_queue("analytics"))
    assert (dead.headers or {})[ERROR_HEADER] == (
        "PermanentError: collector answered 422: bad currency"
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "body is not JSON"),
        (b'{"event_type": "order.paid", "schema_version": 1, "data": {}}', "fails its contract"),
        (b'{"event_type": "order.paid", "schema_version": 9}', "not a contract this consumer"),
    ],
)
async def test_invalid_contract_goes_to_dlq_at_once_and_never_reaches_the_handler(
    connection: AbstractRobustConnection, vhost: str, settings: Settings, body: bytes, reason: str
) -> None:
    fleet = fast_fleet("analytics")
    await apply(connection, fleet, vhost)
    handler = Recorder()
    sup = Supervisor(
        ["analytics"], settings, fleet=fleet, middleware=[], handlers={"analytics": (SPEC, handler)}
    )
    await sup.start()
    try:
        await publish(connection, order_event("order.paid"), body=body)
        await wait_until(lambda: sup.workers["analytics"].stats["dead"] == 1)
    finally:
        await sup.stop(5)
    assert handler.calls == []
    [dead] = await drain(connection, names.dead_letter_queue("analytics"))
    assert dead.body == body  # the original bytes, for a person to inspect and replay
    assert reason in str((dead.headers or {})[ERROR_HEADER])
    assert (dead.headers or {})[ATTEMPT_HEADER] == 1


async def test_what_a_consumer_accepts_follows_its_topology_row_alone(
    connection: AbstractRobustConnection, vhost: str, settings: Settings
) -> None:
    # Given analytics' row narrowed to order.paid (the module itself declares no event types)
    fleet = fast_fleet("analytics", bindings=("order.paid",))
    await apply(connection, fleet, vhost)
    handler = Recorder()
    sup = Supervisor(
        ["analytics"], settings, fleet=fleet, middleware=[], handlers={"analytics": (SPEC, handler)}
    )
    await sup.start()
    paid, created = order_event("order.paid"), order_event("order.created")
    try:
        # When an order.paid arrives, and an order.created slips into its queue
        await publish(connection, paid)
        await publish(connection, created, routing_key="order.paid")
        await wait_until(lambda: dict(sup.workers["analytics"].stats) == {"handled": 1, "dead": 1})
    finally:
        await sup.stop(5)
    # Then the bound type is handled, and the other is a contract this consumer does not accept
    assert handler.done == [str(paid.event_id)]
    [dead] = await drain(connection, names.dead_letter_queue("analytics"))
    assert dead.message_id == str(created.event_id)
    assert "order.created v1 is not a contract this consumer accepts" in str(
        (dead.headers or {})[ERROR_HEADER]
    )


async def test_handler_timeout_sends_message_to_next_retry_tier(
    connection: AbstractRobustConnection, vhost: str, settings: Settings
) -> None:
    import asyncio

    fleet = fast_fleet("analytics", timeout=0.2, max_attempts=3)
    await apply(connection, fleet, vhost)
    calls: list[int] = []

    async def slow_then_fast(event: AnyEnvelope, delivery: Delivery) -> None:
        calls.append(delivery.attempt)
        if delivery.attempt == 1:
            await asyncio.sleep(5)

    sup = Supervisor(
        ["analytics"],
        settings,
        fleet=fleet,
        middleware=[],
        handlers={"analytics": (SPEC, slow_then_fast)},
    )
    await sup.start()
    try:
        await publish(connection, order_event("order.paid"))
        await wait_until(lambda: sup.workers["analytics"].stats["handled"] == 1)
    finally:
        await sup.stop(5)
    assert calls == [1, 2]
    assert sup.workers["analytics"].stats["retried"] == 1


async def test_the_same_message_delivered_twice_has_its_effect_once(
    connection: AbstractRobustConnection, vhost: str, settings: Settings
) -> None:
    fleet = fast_fleet("analytics")
    await apply(connection, fleet, vhost)
    handler = Recorder()
    sup = Supervisor(
        ["analytics"], settings, fleet=fleet, middleware=[], handlers={"analytics": (SPEC, handler)}
    )
    await sup.start()
    try:
        event = order_event("order.paid")
        await publish(connection, event)
        await publish(connection, event)  # e.g. order.created and order.updated, same body
        await wait_until(lambda: sum(sup.workers["analytics"].stats.values()) == 2)
    finally:
        await sup.stop(5)
    assert handler.done == [str(event.event_id)]
    assert sup.workers["analytics"].stats == {"handled": 1, "duplicate": 1}


async def test_no_ack_is_held_back_once_the_worker_is_idle(
    connection: AbstractRobustConnection, vhost: str, settings: Settings
) -> None:
    import asyncio
    import random

    # Given a batching consumer whose handlers finish out of order
    fleet = fast_fleet("analytics", prefetch=10)
    await apply(connection, fleet, vhost)

    async def jittery(event: AnyEnvelope, delivery: Delivery) -> None:
        await asyncio.sleep(random.random() / 50)

    sup = Supervisor(
        ["analytics"], settings, fleet=fleet, middleware=[], handlers={"analytics": (SPEC, jittery)}
    )
    await sup.start()
    worker = sup.workers["analytics"]
    try:
        for _ in range(25):
            await publish(connection, order_event("order.paid", unique=True))
        await wait_until(lambda: worker.stats["handled"] == 25)
        await until_drained(sup)
    except BaseException:
        await sup.stop(5)
        raise
    # Then every ack went out: closing the connection now, without the graceful stop that sends
    # what is owed, puts nothing back (the broker requeues what is unacked)
    assert sup.connection is not None and sup.ledger is not None
    await sup.connection.close()
    await sup.ledger.close()
    assert await depth(connection, names.work_queue("analytics")) == 0


async def test_acks_behind_a_slow_delivery_never_close_the_channel(
    connection: AbstractRobustConnection, vhost: str, settings: Settings
) -> None:
    import asyncio

    # Given a batching consumer (prefetch 10: batches of 5) whose first delivery is slow
    fleet = fast_fleet("analytics", prefetch=10)
    await apply(connection, fleet, vhost)
    slow = order_event("order.paid", unique=True)
    calls: list[Delivery] = []

    async def handler(event: AnyEnvelope, delivery: Delivery) -> None:
        calls.append(delivery)
        if event.event_id == slow.event_id:
            await asyncio.sleep(0.5)

    sup = Supervisor(
        ["analytics"], settings, fleet=fleet, middleware=[], handlers={"analytics": (SPEC, handler)}
    )
    await sup.start()
    worker = sup.workers["analytics"]
    try:
        # When five quick ones finish behind it (a batch: acked singly, the last tag among
        # them), then it does
        await publish(connection, slow)
        for _ in range(5):
            await publish(connection, order_event("order.paid", unique=True))
        await wait_until(lambda: worker.stats["handled"] == 6)
        # Drained: a channel error would have put the unacked deliveries back in the queue
        await until_drained(sup)
    finally:
        await sup.stop(5)
    # Then every delivery was handled once, none came round again, and none is left unacked
    # (a closed channel sent the slow one round again: the ledger acked it as a duplicate)
    assert len(calls) == 6 and not any(d.redelivered for d in calls)
    assert worker.stats["duplicate"] == 0 and worker.stats["handled"] == 6
    assert await depth(connection, names.work_queue("analytics")) == 0
    assert await depth(connection, names.dead_letter_queue("analytics")) == 0


@contextlib.asynccontextmanager
async def patient_analytics(
    connection: AbstractRobustConnection, vhost: str, settings: Settings, handler: Handler
) -> AsyncIterator[Supervisor]:
    """analytics running ``handler`` with a timeout no slow management API outlasts."""
    fleet = fast_fleet("analytics", timeout=120)
    await apply(connection, fleet, vhost)
    sup = Supervisor(
        ["analytics"], settings, fleet=fleet, middleware=[], handlers={"analytics": (SPEC, handler)}
    )
    await sup.start()
    try:
        yield sup
    finally:
        await sup.stop(5)


async def close_consumer_connection(sup: Supervisor, management: Management, vhost: str) -> None:
    """The broker closes the supervisor's connection (and so its channels) under it; returns
    once the supervisor has seen it go (it reconnects by itself afterwards)."""
    assert sup.connection is not None
    lost = asyncio.Event()
    sup.connection.close_callbacks.add(lambda *_: lost.set())

    def consumer_connections() -> list[str]:
        listed = management.get(f"/vhosts/{quote(vhost, safe='')}/connections")
        return [c["name"] for c in listed if "analytics" in str(c.get("client_properties"))]

    # The management API lists a connection only after its first statistics (seconds).
    await wait_until(lambda: bool(consumer_connections()), timeout=30, interval=0.5)
    for name in consumer_connections():
        management.request("DELETE", f"/connections/{quote(name, safe='')}")
    await asyncio.wait_for(lost.wait(), 10)


async def test_a_channel_closed_mid_handler_never_leaves_an_effect_without_its_record(
    connection: AbstractRobustConnection, vhost: str, settings: Settings, management: Management
) -> None:
    # Given a handler that has done its effect and has not returned yet (with time to spare:
    # its timeout must not end it first while the management API is slow to list connections)
    effects: list[str] = []
    effect_done, release = asyncio.Event(), asyncio.Event()

    async def handler(event: AnyEnvelope, delivery: Delivery) -> None:
        effects.append(str(event.event_id))
        effect_done.set()
        await release.wait()

    async with patient_analytics(connection, vhost, settings, handler) as sup:
        worker = sup.workers["analytics"]
        event = order_event("order.paid", unique=True)
        await publish(connection, event)
        await asyncio.wait_for(effect_done.wait(), 10)
        # When the broker closes the consumer's connection (and so its channel) under it
        await close_consumer_connection(sup, management, vhost)
        release.set()

        # Then the handling finished and recorded its effect: the redelivery is a duplicate
        await wait_until(lambda: worker.stats["duplicate"] == 1, timeout=30)
        await until_drained(sup)
    assert effects == [str(event.event_id)]
    assert await depth(connection, names.dead_letter_queue("analytics")) == 0


async def test_a_delivery_whose_channel_was_replaced_settles_without_a_runtime_failure(
    connection: AbstractRobustConnection,
    vhost: str,
    settings: Settings,
    management: Management,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a handler that fails once it is released, then succeeds
    started, release = asyncio.Event(), asyncio.Event()
    done: list[str] = []

    async def handler(event: AnyEnvelope, delivery: Delivery) -> None:
        if not started.is_set():
            started.set()
            await release.wait()
            raise TransientError("target answered 503")
        done.append(str(event.event_id))

    async with patient_analytics(connection, vhost, settings, handler) as sup:
        worker = sup.workers["analytics"]
        event = order_event("order.paid", unique=True)
        await publish(connection, event)
        await asyncio.wait_for(started.wait(), 10)
        # When its connection is closed and the worker has reconnected (a new channel) before
        # the handler fails: its retry goes out, its ack has no channel left to go on
        await close_consumer_connection(sup, management, vhost)
        await wait_until(lambda: worker.consuming and sup.broker_away is None, timeout=30)
        release.set()

        # Then that is one warning, not a runtime failure, and the event is handled once
        await wait_until(lambda: bool(done), timeout=30)
        await until_drained(sup)
    assert done == [str(event.event_id)]
    assert "could not settle a delivery" in caplog.text
    assert "runtime failure" not in caplog.text
    assert await depth(connection, names.dead_letter_queue("analytics")) == 0


class Settled(Middleware):
    """Records every outcome a delivery settles with, as middleware sees it."""

    def __init__(self) -> None:
        self.outcomes: list[tuple[str, str]] = []

    async def before_ack(self, delivery: Delivery, outcome: Outcome) -> None:
        assert isinstance(outcome, Outcome)
        self.outcomes.append((delivery.message_id, outcome))


async def test_every_outcome_passes_the_hooks_and_the_outcome_metric_once(
    connection: AbstractRobustConnection, vhost: str, settings: Settings
) -> None:
    fleet = fast_fleet("analytics")  # max attempts 2
    await apply(connection, fleet, vhost)
    fails_once, refused, handled, bad = (order_event("order.paid", unique=True) for _ in range(4))

    async def handler(event: AnyEnvelope, delivery: Delivery) -> None:
        if event.event_id == refused.event_id:
            raise PermanentError("collector answered 422: bad currency")
        if event.event_id == fails_once.event_id and delivery.attempt == 1:
            raise TransientError("collector answered 503")

    settled = Settled()
    sup = Supervisor(
        ["analytics"],
        settings,
        fleet=fleet,
        middleware=[settled, MetricsMiddleware()],
        handlers={"analytics": (SPEC, handler)},
    )

    def counted(outcome: Outcome) -> float:
        labels = {"consumer": "analytics", "outcome": outcome}
        return REGISTRY.get_sample_value("woofleet_consumer_messages_total", labels) or 0.0

    before = {outcome: counted(outcome) for outcome in Outcome}
    await sup.start()
    try:
        for event in (fails_once, refused, handled, handled):
            await publish(connection, event)
        await publish(connection, bad, body=b"{not json")
        await wait_until(lambda: sum(sup.workers["analytics"].stats.values()) == 6)
    finally:
        await sup.stop(5)
    # A contract failure (no event, no handler) is an outcome like the others
    assert sorted(settled.outcomes) == sorted(
        [
            (str(fails_once.event_id), Outcome.RETRIED),
            (str(fails_once.event_id), Outcome.HANDLED),
            (str(refused.event_id), Outcome.DEAD),
            (str(handled.event_id), Outcome.HANDLED),
            (str(handled.event_id), Outcome.DUPLICATE),
            (str(bad.event_id), Outcome.DEAD),
        ]
    )
    assert sup.workers["analytics"].stats == Counter(outcome for _, outcome in settled.outcomes)
    after = {outcome: counted(outcome) - before[outcome] for outcome in Outcome}
    assert after == {
        Outcome.HANDLED: 2,
        Outcome.DUPLICATE: 1,
        Outcome.RETRIED: 1,
        Outcome.DEAD: 2,
        Outcome.REQUEUED: 0,
    }


class BrokenHook(Middleware):
    async def before_ack(self, delivery: Delivery, outcome: Outcome) -> None:
        raise RuntimeError("metrics backend down")


async def test_a_failing_before_ack_hook_changes_no_outcome(
    connection: AbstractRobustConnection, vhost: str, settings: Settings
) -> None:
    fleet = fast_fleet("analytics")
    await apply(connection, fleet, vhost)
    handler = Recorder()
    settled = Settled()
    sup = Supervisor(
        ["analytics"],
        settings,
        fleet=fleet,
        middleware=[BrokenHook(), settled],
        handlers={"analytics": (SPEC, handler)},
    )
    failures = REGISTRY.get_sample_value(
        "woofleet_consumer_runtime_failures_total", {"consumer": "analytics"}
    )
    await sup.start()
    try:
        event = order_event("order.paid", unique=True)
        await publish(connection, event)
        await wait_until(lambda: sup.workers["analytics"].stats["handled"] == 1)
        await until_drained(sup, timeout=5)
    finally:
        await sup.stop(5)
    # Handled and acked once: the hook's failure is counted, not turned into a requeue
    assert len(handler.calls) == 1
    assert settled.outcomes == [(str(event.event_id), Outcome.HANDLED)]
    assert sup.workers["analytics"].stats == {"handled": 1}
    after = REGISTRY.get_sample_value(
        "woofleet_consumer_runtime_failures_total", {"consumer": "analytics"}
    )
    assert (after or 0) - (failures or 0) == 1
    assert await depth(connection, names.work_queue("analytics")) == 0
