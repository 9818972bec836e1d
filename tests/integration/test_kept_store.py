"""Kept deliveries and set-aside outbox rows in both state store backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from publisher.outgoing import Outgoing
from publisher.store import PublisherStore, ResourceKey
from publisher.stores import open_store

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[PublisherStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/state.db"
    else:
        url = request.getfixturevalue("postgres_url")
    opened = await open_store(url)
    try:
        yield opened
    finally:
        await opened.close()


def message(message_id: str) -> Outgoing:
    return Outgoing("order.created", b"{}", {"message_id": message_id, "headers": {}})


async def test_a_kept_delivery_is_kept_whole_until_replayed(store: PublisherStore) -> None:
    headers = {"x-wc-webhook-topic": "order.updated", "x-wc-webhook-signature": "c2ln"}
    body = b'{"id": 7, "total": "\xff not utf-8'
    kept_id = await store.keep(headers, body, "order.updated", "the body is not JSON")
    [kept] = await store.kept_deliveries(10)
    assert (kept.id, kept.topic, kept.headers, kept.body) == (
        kept_id,
        "order.updated",
        headers,
        body,
    )
    assert kept.reason == "the body is not JSON" and kept.received_at and not kept.replayed_at
    assert await store.kept_count() == 1
    await store.mark_replayed(kept_id)
    assert await store.kept_deliveries(10) == []
    assert await store.kept_count() == 0
    [replayed] = await store.kept_deliveries(10, include_replayed=True)
    assert replayed.replayed_at
    assert await store.kept_delivery(kept_id + 100) is None


async def test_a_row_set_aside_leaves_the_outbox_with_its_reason(store: PublisherStore) -> None:
    seqs = await store.transition(
        ResourceKey("s", "order", 1), lambda _: (None, [message("a"), message("b")])
    )
    await store.set_aside(seqs[0], "cannot be encoded")
    assert [r.message.message_id for r in await store.pending(10)] == ["b"]
    [aside] = await store.set_aside_rows(10)
    assert (aside.seq, aside.message.message_id, aside.reason) == (
        seqs[0],
        "a",
        "cannot be encoded",
    )
    assert aside.set_aside_at
    assert (await store.depth(), await store.set_aside_count()) == (1, 1)
