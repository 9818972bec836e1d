"""The circuit breaker in the worker: a target that is down does not drain the queue."""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection

from consumers.runtime import Delivery, HandlerSpec, Supervisor
from consumers.runtime.breaker import BreakerState
from consumers.runtime.handler import AnyEnvelope, Handler
from contracts.messages import OUTAGE_RETRIES_HEADER, PROBE_FROM_HEADER
from fleet.errors import PermanentError, TransientError
from fleet.settings import Settings
from tests.builders import order_event
from tests.support.amqp import apply, depth, fast_fleet, publish, wait_until
from topology import names
from topology.fleet import BreakerPolicy

pytestmark = pytest.mark.integration

SPEC = HandlerSpec()


@contextlib.asynccontextmanager
async def running(
    connection: AbstractRobustConnection,
    vhost: str,
    settings: Settings,
    target: Handler,
    **fleet_changes: Any,
) -> AsyncIterator[Supervisor]:
    """The analytics consumer alone, ``target`` its handler, on a fast fleet with
    ``fleet_changes``; stopped when the block ends."""
    fleet = fast_fleet("analytics", **fleet_changes)
    await apply(connection, fleet, vhost)
    sup = Supervisor(
        ["analytics"], settings, fleet=fleet, middleware=[], handlers={"analytics": (SPEC, target)}
    )
    await sup.start()
    try:
        yield sup
    finally:
        await sup.stop(5)


class Target:
    def __init__(self) -> None:
        self.up = False
        self.calls = 0
        self.done: set[str] = set()

    async def __call__(self, event: AnyEnvelope, delivery: Delivery) -> None:
        self.calls += 1
        if not self.up:
            raise TransientError("collector unreachable: connection refused")
        self.done.add(str(event.event_id))


async def test_open_breaker_stops_consuming_then_a_probe_closes_it(
    connection: AbstractRobustConnection, vhost: str, settings: Settings
) -> None:
    # Given a consumer whose target is down, with a breaker that opens after 3 failures
    breaker = BreakerPolicy(window=30, failure_ratio=0.5, min_calls=3, cool_down=1.0)
    target = Target()
    async with running(
        connection, vhost, settings, target, prefetch=1, max_attempts=5, breaker=breaker
    ) as sup:
        worker = sup.workers["analytics"]
        # When ten orders arrive
        for _ in range(10):
            await publish(connection, order_event("order.paid", unique=True))
        # Then the breaker opens after three failures and the rest stays in the queue
        await wait_until(lambda: worker.breaker.state is not BreakerState.CLOSED)
        assert not worker.consuming
        calls_when_open = target.calls

        async def held_back() -> bool:
            return await depth(connection, names.work_queue("analytics")) > 0

        await wait_until(held_back, timeout=5)
        assert calls_when_open <= 4
        assert worker.stats["dead"] == 0
        # and once the cool-down has passed a single probe fails, keeping it open
        await wait_until(lambda: target.calls == calls_when_open + 1, timeout=5)
        assert worker.stats["dead"] == 0
        # When the target comes back, the next probe closes the breaker and all ten are done
        target.up = True
        await wait_until(lambda: len(target.done) == 10, timeout=20)
    assert worker.breaker.state is BreakerState.CLOSED
    assert worker.stats["dead"] == 0
    assert worker.stats["handled"] == 10


class Refusing:
    """A target answering with ``error`` while ``refusing`` holds; ``refuse_only`` narrows it to
    one order (a 4xx for that order among successes)."""

    def __init__(self, error: Exception, refuse_only: str | None = None) -> None:
        self.error = error
        self.refuse_only = refuse_only
        self.refusing = True
        self.done: list[str] = []
        self.calls: Counter[str] = Counter()

    async def __call__(self, event: AnyEnvelope, delivery: Delivery) -> None:
        self.calls[str(event.event_id)] += 1
        mine = self.refuse_only is None or str(event.event_id) == self.refuse_only
        if self.refusing and mine:
            raise self.error
        self.done.append(str(event.event_id))


OUTAGE_TIERS = (0.5, 1.0)
QUICK_BREAKER = BreakerPolicy(window=30, failure_ratio=0.5, min_calls=3, cool_down=0.5)


@pytest.mark.parametrize(
    ("error", "dead", "before"),
    [
        (TransientError("collector answered 503"), 0, 0),
        (TransientError("collector refused woofleet's credentials (401)"), 0, 0),
        # A first 4xx is the order's own (nothing tells it from a bad order); from the second
        # refusal of another order on, the target refuses everything and they wait it out.
        (PermanentError("collector answered 400: unknown field"), 1, 0),
        # A busy consumer: its window is full of successes when the target starts refusing.
        (PermanentError("collector answered 400: unknown field"), 1, 50),
    ],
    ids=["5xx", "401", "4xx-everything", "busy-4xx-everything"],
)
async def test_an_outage_ends_with_every_effect_once_and_an_empty_dlq(
    connection: AbstractRobustConnection,
    vhost: str,
    settings: Settings,
    error: Exception,
    dead: int,
    before: int,
) -> None:
    # Given a two-attempt consumer (which had handled `before` orders)
    target = Refusing(error)
    target.refusing = False
    async with running(
        connection,
        vhost,
        settings,
        target,
        max_attempts=2,
        outage_tiers=OUTAGE_TIERS,
        breaker=QUICK_BREAKER,
    ) as sup:
        worker = sup.workers["analytics"]
        for _ in range(before):
            await publish(connection, order_event("order.paid", unique=True))
        await wait_until(lambda: len(target.done) == before)
        # whose target then fails everything for longer than its ladder
        target.refusing = True
        for _ in range(20):
            await publish(connection, order_event("order.paid", unique=True))
        await wait_until(lambda: worker.stats["retried"] >= 20 - dead, timeout=15)
        # When it comes back
        target.refusing = False
        await wait_until(lambda: len(target.done) == before + 20 - dead, timeout=30)
    # Then every effect is done once and nothing else waits for a person
    assert sorted(set(target.done)) == sorted(target.done)
    assert worker.stats["dead"] == dead
    assert await depth(connection, names.dead_letter_queue("analytics")) == dead


@pytest.mark.parametrize("one_order", [False, True], ids=["refuses-everything", "one-bad-order"])
async def test_a_4xx_is_the_orders_own_only_while_the_target_answers_other_orders(
    connection: AbstractRobustConnection, vhost: str, settings: Settings, one_order: bool
) -> None:
    # Given a busy consumer whose breaker never opens (so only the ladder decides)
    never = BreakerPolicy(window=30, failure_ratio=0.5, min_calls=10_000, cool_down=0.5)
    events = [order_event("order.paid", unique=True) for _ in range(20)]
    target = Refusing(
        PermanentError("collector answered 400: unknown field"),
        refuse_only=str(events[5].event_id) if one_order else None,
    )
    target.refusing = False
    async with running(
        connection,
        vhost,
        settings,
        target,
        max_attempts=2,
        outage_tiers=OUTAGE_TIERS,
        breaker=never,
    ) as sup:
        worker = sup.workers["analytics"]
        for _ in range(50):
            await publish(connection, order_event("order.paid", unique=True))
        await wait_until(lambda: len(target.done) == 50)
        # When it refuses (every order, or one while it takes the others)
        target.refusing = True
        for event in events:
            await publish(connection, event)
        await wait_until(
            lambda: all(target.calls[str(e.event_id)] for e in events) and worker.stats["dead"] > 0,
            timeout=15,
        )
        target.refusing = False
        await wait_until(lambda: len(target.done) == 50 + 19, timeout=15)
    # Then only one order reaches the DLQ: the first refused (nothing told it from a bad order
    # yet), or the one bad order
    assert worker.stats["dead"] == 1
    assert await depth(connection, names.dead_letter_queue("analytics")) == 1
    assert len(set(target.done)) == len(target.done)


async def test_while_the_breaker_stays_open_deliveries_wait_in_queues_not_in_memory(
    connection: AbstractRobustConnection, vhost: str, settings: Settings
) -> None:
    # Given a consumer taking four at a time whose target is down past several probes
    target = Target()
    async with running(
        connection,
        vhost,
        settings,
        target,
        prefetch=4,
        max_attempts=2,
        outage_tiers=OUTAGE_TIERS,
        breaker=QUICK_BREAKER,
    ) as sup:
        worker = sup.workers["analytics"]
        for _ in range(10):
            await publish(connection, order_event("order.paid", unique=True))
        # When probes keep failing (three failures open it, each probe is one more call),
        # nothing waits unacked in the worker between them: the broker closes a channel whose
        # delivery stays unacked past its consumer_timeout (30 min by default)
        await wait_until(
            lambda: (
                target.calls >= QUICK_BREAKER.min_calls + 2
                and worker.breaker.state is BreakerState.OPEN
                and worker.in_flight == 0
            ),
            timeout=10,
        )
        # And once the target is back every order is handled once, none dead-lettered
        target.up = True
        await wait_until(lambda: len(target.done) == 10, timeout=20)
    assert worker.stats["dead"] == 0
    assert await depth(connection, names.dead_letter_queue("analytics")) == 0


async def test_an_open_breaker_says_why_on_readyz_and_logs_once_per_outage(
    connection: AbstractRobustConnection,
    vhost: str,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = Target()
    async with running(
        connection,
        vhost,
        settings,
        target,
        prefetch=1,
        max_attempts=2,
        outage_tiers=OUTAGE_TIERS,
        breaker=QUICK_BREAKER,
    ) as sup:
        caplog.set_level(logging.INFO, logger="consumers.runtime")
        for _ in range(5):
            await publish(connection, order_event("order.paid", unique=True))
        # When the target stays down through several probes
        await wait_until(lambda: target.calls >= QUICK_BREAKER.min_calls + 3, timeout=10)
        # Then /readyz says the consumer is not taking work, and why
        ready, detail = sup.ready()
        assert not ready
        paused = detail["paused"]
        assert isinstance(paused, dict)
        assert "circuit open" in paused["analytics"]
        assert "connection refused" in paused["analytics"]
        # And once it is back, ready again
        target.up = True
        await wait_until(lambda: len(target.done) == 5, timeout=20)
        await wait_until(lambda: sup.ready()[0], timeout=5)
    # One line when it opened and one when it closed, not one per failed probe
    lines = [r.getMessage() for r in caplog.records if r.name == "consumers.runtime"]
    assert len([m for m in lines if m.startswith("circuit open")]) == 1, lines
    assert len([m for m in lines if m.startswith("circuit closed")]) == 1, lines
    opened = next(i for i, m in enumerate(lines) if m.startswith("circuit open"))
    closed = next(i for i, m in enumerate(lines) if m.startswith("circuit closed"))
    assert not [m for m in lines[opened:closed] if m.startswith("target failing")], lines


class Recording(Target):
    """A target that also keeps the headers of every call."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[dict[str, object]] = []

    async def __call__(self, event: AnyEnvelope, delivery: Delivery) -> None:
        self.headers.append(dict(delivery.headers))
        await super().__call__(event, delivery)


#: A two-attempt consumer with a quick breaker, a short outage tier and a ten-minute one (what
#: a test must not wait out).
LONG_OUTAGE: dict[str, Any] = {
    "max_attempts": 2,
    "outage_tiers": (0.5, 600.0),
    "breaker": QUICK_BREAKER,
}
LONG_TIER = names.retry_queue("analytics", 600.0)


def long_tier_holds(
    connection: AbstractRobustConnection, at_least: int
) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await depth(connection, LONG_TIER) >= at_least

    return check


async def test_messages_in_a_long_outage_tier_come_back_as_soon_as_the_target_does(
    connection: AbstractRobustConnection, vhost: str, settings: Settings
) -> None:
    # Given a consumer whose target stayed down until what it held waits in a 10-minute tier
    target = Target()
    async with running(connection, vhost, settings, target, prefetch=4, **LONG_OUTAGE) as sup:
        worker = sup.workers["analytics"]
        for _ in range(10):
            await publish(connection, order_event("order.paid", unique=True))
        # (one may be out probing the target)
        await wait_until(long_tier_holds(connection, 9), timeout=20)
        # When the target comes back, they are all done within seconds, not ten minutes
        target.up = True
        await wait_until(lambda: len(target.done) == 10, timeout=20)
        assert await depth(connection, LONG_TIER) == 0
    assert worker.stats["dead"] == 0
    assert await depth(connection, names.dead_letter_queue("analytics")) == 0


async def test_a_message_taken_early_to_probe_goes_back_to_its_tier_counting_nothing(
    connection: AbstractRobustConnection, vhost: str, settings: Settings
) -> None:
    # Given one order waiting in the 10-minute tier, the work queue empty, the target down
    target = Recording()
    async with running(connection, vhost, settings, target, prefetch=1, **LONG_OUTAGE) as sup:
        worker = sup.workers["analytics"]
        await publish(connection, order_event("order.paid", unique=True))
        await wait_until(long_tier_holds(connection, 1), timeout=20)
        # When the half-open breaker takes it early as its probe, again and again
        calls = target.calls
        await wait_until(lambda: target.calls >= calls + 3, timeout=20)
        # Then it goes back to the same tier each time, its outage retries what they were
        assert [h.get(OUTAGE_RETRIES_HEADER) for h in target.headers[calls:]][:3] == [2, 2, 2]
        assert all(h.get(PROBE_FROM_HEADER) == 600.0 for h in target.headers[calls:])
        # And the first probe after the target is back closes the breaker and does it
        target.up = True
        await wait_until(lambda: len(target.done) == 1, timeout=20)
    assert worker.stats["dead"] == 0
    assert await depth(connection, LONG_TIER) == 0


async def test_without_the_way_back_messages_wait_out_their_tier_and_the_log_says_why(
    connection: AbstractRobustConnection,
    vhost: str,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a topology from before the way back (no binding from the retry exchange to the
    # work queue) and orders waiting in the 10-minute tier
    target = Target()
    async with running(connection, vhost, settings, target, prefetch=4, **LONG_OUTAGE) as sup:
        worker = sup.workers["analytics"]
        async with connection.channel() as channel:
            work = await channel.declare_queue(names.work_queue("analytics"), passive=True)
            await work.unbind(names.retry_exchange("analytics"), names.work_queue("analytics"))
        caplog.set_level(logging.INFO, logger="consumers.runtime")
        for _ in range(5):
            await publish(connection, order_event("order.paid", unique=True))
        await wait_until(long_tier_holds(connection, 5), timeout=20)
        # When the target is back (a probe still comes: a new order)
        target.up = True
        await publish(connection, order_event("order.paid", unique=True))
        await wait_until(lambda: len(target.done) == 1, timeout=20)
        await wait_until(
            lambda: any("could not take messages back" in r.getMessage() for r in caplog.records),
            timeout=10,
        )
    # Then the others still wait in their tier, none lost, none dead-lettered
    assert await depth(connection, LONG_TIER) == 5
    assert worker.stats["dead"] == 0
    assert await depth(connection, names.dead_letter_queue("analytics")) == 0
    # and one line says why, once for the whole outage (every probe taken early meets it too)
    lines = [r.getMessage() for r in caplog.records if "could not take" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "they return when their wait ends" in lines[0] and "\n" not in lines[0]


class Choosy(Recording):
    """Down like :class:`Target`, but an order whose event id is in ``noops`` needs no effect:
    its handling reaches no target."""

    def __init__(self) -> None:
        super().__init__()
        self.noops: set[str] = set()
        self.skipped = 0

    async def __call__(self, event: AnyEnvelope, delivery: Delivery) -> None:
        if str(event.event_id) in self.noops:
            self.skipped += 1
            delivery.nothing_to_do("order %s needs nothing from the collector", event.event_id)
            return
        await super().__call__(event, delivery)


async def test_a_probe_with_nothing_to_do_leaves_the_breaker_open_and_the_tiers_alone(
    connection: AbstractRobustConnection,
    vhost: str,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given orders waiting in the 10-minute tier while the target is down
    target = Choosy()
    caplog.set_level(logging.INFO, logger="consumers.runtime")
    async with running(connection, vhost, settings, target, prefetch=1, **LONG_OUTAGE) as sup:
        worker = sup.workers["analytics"]
        for _ in range(5):
            await publish(connection, order_event("order.paid", unique=True))
        await wait_until(long_tier_holds(connection, 4), timeout=20)
        # When an order that needs no effect (a guest earning no points) is let through as the
        # probe, and succeeds without reaching the target
        noop = order_event("order.paid", unique=True)
        target.noops.add(str(noop.event_id))
        await publish(connection, noop)
        await wait_until(lambda: target.skipped == 1, timeout=10)
        await wait_until(long_tier_holds(connection, 4), timeout=5)
        # Then nothing says the target is back: the breaker does not close, and what waits in
        # the tiers stays there (it would only fail again, one outage retry more each)
        assert not [r for r in caplog.records if r.getMessage().startswith("circuit closed")]
        assert worker.breaker.state is not BreakerState.CLOSED
        # And once the target is back, the next real probe closes it and all five are done
        target.up = True
        await wait_until(lambda: len(target.done) == 5, timeout=20)
    assert worker.stats["dead"] == 0
    # and no order spent an outage retry on the false recovery
    assert max(int(str(h.get(OUTAGE_RETRIES_HEADER, 0))) for h in target.headers) <= 2
