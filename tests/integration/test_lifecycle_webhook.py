"""Lifecycle from state through the real endpoint, store and broker (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection

from fleet.settings import Settings
from publisher.ingest import Ingest
from publisher.store_sqlite import SqliteStore
from publisher.webhook import WebhookApp
from tests.integration.test_webhook import (
    Captured,
    Harness,
    capture_events,
    load,
    webhook_settings,
)

pytestmark = pytest.mark.integration


def order(status: str, modified: str, **changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(load("order-created.docs-create-paid-order-727.json"))
    body.update(status=status, date_modified_gmt=modified, **changes)
    if status in ("pending", "cancelled", "failed"):
        body.update(date_paid=None, date_paid_gmt=None)
    return body


async def test_coalesced_completed_yields_created_paid_completed_once(harness: Harness) -> None:
    done = order("completed", "2017-03-22T20:00:00")
    for topic in ("order.created", "order.updated", "order.updated"):
        assert (await harness.send(topic, done)).status_code == 200
    events = await harness.events(3)
    assert [e.routing_key for e in events] == ["order.created", "order.paid", "order.completed"]
    assert len({e.message_id for e in events}) == 3
    await harness.nothing_more()


async def test_partial_then_full_refund_two_refunded_events(harness: Harness) -> None:
    refund_1 = {"id": 801, "reason": "broken", "total": "-10.00"}
    refund_2 = {"id": 802, "reason": "", "total": "-19.35"}
    sequence = [
        order("completed", "2017-03-22T20:00:00"),
        order("completed", "2017-03-23T10:00:00", refunds=[refund_1]),
        order("refunded", "2017-03-24T10:00:00", refunds=[refund_2, refund_1]),
    ]
    for body in sequence:
        assert (await harness.send("order.updated", body)).status_code == 200
    events = await harness.events(5)
    refunds = [e for e in events if e.routing_key == "order.refunded"]
    assert [r.body["data"]["refund"]["id"] for r in refunds] == [801, 802]
    assert [r.body["data"]["refund"]["amount"] for r in refunds] == ["10.00", "19.35"]
    # Replaying the same sequence emits nothing new.
    for body in sequence:
        assert (await harness.send("order.updated", body)).status_code == 200
    await harness.nothing_more()


async def test_echo_of_own_meta_write_and_modified_only_emit_nothing(harness: Harness) -> None:
    paid = order("processing", "2017-03-22T19:28:08")
    echo = order("processing", "2017-03-22T19:29:00")
    echo["meta_data"] = [*echo["meta_data"], {"id": 9, "key": "_erp_sync_id", "value": "E-1"}]
    moved = order("processing", "2017-03-22T19:30:00", customer_note="call first")
    moved["meta_data"] = echo["meta_data"]
    for body in (paid, echo, moved):
        assert (await harness.send("order.updated", body)).status_code == 200
    events = await harness.events(3)
    assert [e.routing_key for e in events] == ["order.created", "order.paid", "order.updated"]
    assert events[2].body["data"]["customer_note"] == "call first"
    await harness.nothing_more()


async def test_concurrent_identical_deliveries_emit_once(harness: Harness) -> None:
    done = order("completed", "2017-03-22T20:00:00")
    responses = await asyncio.gather(*(harness.send("order.updated", done) for _ in range(25)))
    assert {r.status_code for r in responses} == {200}
    assert len(await harness.events(3)) == 3
    await harness.nothing_more()


def test_sqlite_transitions_from_many_threads_serialise_per_order(tmp_path: Path) -> None:
    # Separate connections (as separate processes would have) racing on one order.
    url = f"sqlite:///{tmp_path}/race.db"
    SqliteStore.open(url)
    done = order("completed", "2017-03-22T20:00:00")
    queued: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        store = SqliteStore.open(url)
        result = asyncio.run(Ingest(store).order("https://shop.example", done))
        with lock:
            queued.extend(result.seqs)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(queued) == 3


# -- PostgreSQL: several publisher processes on one state store --------------------------------


@pytest.fixture
async def two_publishers(
    settings: Settings, connection: AbstractRobustConnection, postgres_url: str
) -> AsyncIterator[tuple[list[httpx.AsyncClient], asyncio.Queue[Captured]]]:
    inbox: asyncio.Queue[Captured] = asyncio.Queue()
    channel = await capture_events(connection, inbox)
    apps = [WebhookApp(webhook_settings(settings, state_url=postgres_url)) for _ in range(2)]
    for app in apps:
        await app.start()
    clients = [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=a.asgi), base_url="http://t")
        for a in apps
    ]
    yield clients, inbox
    for client in clients:
        await client.aclose()
    for app in apps:
        await app.stop()
    await channel.close()


async def test_postgres_two_publishers_concurrent_deliveries_emit_once(
    two_publishers: tuple[list[httpx.AsyncClient], asyncio.Queue[Captured]],
) -> None:
    clients, inbox = two_publishers
    first, second = (Harness(None, c, inbox) for c in clients)  # type: ignore[arg-type]
    done = order("completed", "2017-03-22T20:00:00")
    refunded = order(
        "completed", "2017-03-23T00:00:00", refunds=[{"id": 5, "reason": "", "total": "-1.00"}]
    )
    sends = [
        h.send("order.updated", b)
        for b in (done, refunded)
        for h in (first, second)
        for _ in range(6)
    ]
    responses = await asyncio.gather(*sends)
    assert {r.status_code for r in responses} == {200}
    events = await first.events(4, timeout=10)
    assert [e.routing_key for e in events] == [
        "order.created",
        "order.paid",
        "order.completed",
        "order.refunded",
    ]
    await first.nothing_more()
