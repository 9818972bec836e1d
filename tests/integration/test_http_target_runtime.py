"""The HTTP-target consumers run by the real runtime on the real broker, against a real target.

One order's whole life, delivered twice: every consumer makes each effect exactly once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection

from consumers.runtime import Supervisor
from contracts.orders import OrderEvent, Refund
from fleet.settings import Settings, target_key
from tests.builders import order_event
from tests.support.amqp import apply, fast_fleet, publish, wait_until
from tests.support.http_target_server import HttpTargetServer, with_data

pytestmark = pytest.mark.integration

CONSUMERS = ("payment-capture", "stock", "erp-sync", "warehouse", "analytics", "crm", "loyalty")
COMPLETED_AT = "2026-11-28T05:00:00"


@pytest.fixture
def server() -> Iterator[HttpTargetServer]:
    with HttpTargetServer() as running:
        yield running


def lifecycle() -> list[OrderEvent]:
    """paid → completed → refunded in full → cancelled, for a registered customer."""
    common: dict[str, Any] = {
        "customer_id": 26,
        "transaction_id": "pi_3Nabc",
        "meta_data": [{"id": 1, "key": "_authorized_only", "value": "yes"}],
    }
    refund = Refund(id=40, amount=Decimal("49.98"))
    return [
        order_event("order.paid", **common),
        order_event(
            "order.completed", status="completed", date_completed_gmt=COMPLETED_AT, **common
        ),
        with_data(
            order_event(
                "order.refunded", status="refunded", date_completed_gmt=COMPLETED_AT, **common
            ),
            refund=refund,
            refunds=(refund,),
        ),
        order_event("order.cancelled", status="cancelled", **common),
    ]


def bound(consumer: str, events: list[OrderEvent]) -> int:
    policy = fast_fleet(consumer).consumer(consumer)
    return sum(1 for e in events if e.event_type in policy.bindings or "order.#" in policy.bindings)


def all_settled(supervisor: Supervisor, events: list[OrderEvent], rounds: int) -> bool:
    """Has every consumer settled ``rounds`` deliveries of each event bound to it?"""
    return all(
        sum(supervisor.workers[c].stats.values()) == rounds * bound(c, events) for c in CONSUMERS
    )


async def test_each_consumer_makes_each_effect_once_even_when_everything_is_delivered_twice(
    connection: AbstractRobustConnection, vhost: str, settings: Settings, server: HttpTargetServer
) -> None:
    # Given the seven HTTP-target consumers, built from their modules, all pointing at one server
    fleet = fast_fleet(*CONSUMERS)
    await apply(connection, fleet, vhost)
    targets = {target_key(c): f"{server.url}/{target_key(c)}" for c in CONSUMERS}
    supervisor = Supervisor(
        CONSUMERS, settings.model_copy(update={"targets": targets}), fleet=fleet
    )
    await supervisor.start()
    events = lifecycle()
    try:
        # When an order's life is published, and then all of it again
        for round_ in (1, 2):
            for event in events:
                await publish(connection, event)
            await wait_until(
                lambda n=round_: all_settled(supervisor, events, n),
                timeout=20,
            )
    finally:
        await supervisor.stop(5)

    # Then each target saw each effect once, and every idempotency key once
    per_target = Counter(r.path.split("/")[1] for r in server.requests)
    assert per_target == {
        "payment_capture": 1,  # one capture
        "stock": 2,  # the sale, then one restock (the cancellation after the refund is a dup)
        "erp_sync": 4,
        "warehouse": 2,  # fulfil, cancel
        "analytics": 4,  # purchase, order_completed, refund, order_cancelled
        "crm": 8,  # contact + order record for each of four events
        "loyalty": 2,  # award, reverse
    }
    keys = [r.idempotency_key for r in server.requests]
    assert len(keys) == len(set(keys))
    assert all(not w.stats["dead"] and not w.stats["retried"] for w in supervisor.workers.values())
    assert supervisor.workers["stock"].stats["duplicate"] == 4


async def test_a_failing_target_is_retried_by_the_runtime_with_the_same_key(
    connection: AbstractRobustConnection, vhost: str, settings: Settings, server: HttpTargetServer
) -> None:
    # Given the ERP answers 503 twice before accepting
    fleet = fast_fleet("erp-sync")
    await apply(connection, fleet, vhost)
    server.answer(503, {"error": "maintenance"}, times=2)
    targets = {"erp_sync": server.url}
    supervisor = Supervisor(
        ["erp-sync"], settings.model_copy(update={"targets": targets}), fleet=fleet
    )
    await supervisor.start()
    try:
        # When one order.paid arrives
        await publish(connection, order_event("order.paid"))
        await wait_until(lambda: supervisor.workers["erp-sync"].stats["handled"] == 1, timeout=10)
    finally:
        await supervisor.stop(5)
    # Then the ERP saw three tries of the same request under one idempotency key
    assert server.paths() == ["PUT /orders/11"] * 3
    assert len({r.idempotency_key for r in server.requests}) == 1
    assert supervisor.workers["erp-sync"].stats["retried"] == 2


async def test_a_partial_refund_does_not_use_up_the_restock_of_the_full_refund_after_it(
    connection: AbstractRobustConnection, vhost: str, settings: Settings, server: HttpTargetServer
) -> None:
    # Given the stock consumer, and an order refunded in two parts
    fleet = fast_fleet("stock")
    await apply(connection, fleet, vhost)
    supervisor = Supervisor(
        ["stock"], settings.model_copy(update={"targets": {"stock": server.url}}), fleet=fleet
    )
    first, second = Refund(id=41, amount=Decimal("40.00")), Refund(id=42, amount=Decimal("9.98"))
    partial = with_data(order_event("order.refunded"), refund=first, refunds=(first,))
    full = with_data(
        order_event("order.refunded", status="refunded", unique=True),
        refund=second,
        refunds=(first, second),
    )
    await supervisor.start()
    worker = supervisor.workers["stock"]
    try:
        # When the partial refund is handled, then the one that completes the refund
        await publish(connection, partial)
        await wait_until(lambda: worker.stats["handled"] == 1)
        await publish(connection, full)
        await wait_until(lambda: worker.stats["handled"] == 2)
    finally:
        await supervisor.stop(5)
    # Then the second one restocked every line, once
    assert [r.json["type"] for r in server.requests] == ["restock"]
    assert server.requests[0].json["lines"][0]["quantity"] == 2


@pytest.mark.parametrize(
    ("status", "headers"),
    [(401, {}), (403, {}), (503, {}), (429, {"Retry-After": "1"})],
    ids=["401", "403", "503", "429"],
)
async def test_a_target_down_past_the_ladder_ends_with_the_effect_once_and_no_dead_letter(
    connection: AbstractRobustConnection,
    vhost: str,
    settings: Settings,
    server: HttpTargetServer,
    status: int,
    headers: dict[str, str],
) -> None:
    # Given the CRM (two attempts) failing one way for longer than its ladder
    fleet = fast_fleet("crm", outage_tiers=(0.5, 1.0))
    await apply(connection, fleet, vhost)
    server.answer(status, {"error": "no"}, headers=headers, times=5)
    supervisor = Supervisor(
        ["crm"], settings.model_copy(update={"targets": {"crm": server.url}}), fleet=fleet
    )
    await supervisor.start()
    worker = supervisor.workers["crm"]
    try:
        # When one order arrives, and the CRM answers again after five refusals
        await publish(connection, order_event("order.created"))
        await wait_until(lambda: worker.stats["handled"] + worker.stats["dead"] > 0, timeout=15)
    finally:
        await supervisor.stop(5)
    # Then it was handled once, with one idempotency key, and nothing waits for a person
    assert worker.stats["dead"] == 0 and worker.stats["handled"] == 1
    first = server.requests[0]
    tries = [r for r in server.requests if (r.method, r.path) == (first.method, first.path)]
    assert len(tries) == 6 and len({r.idempotency_key for r in tries}) == 1
