"""The PostgreSQL publisher store's group commit, against the real server."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest

from publisher.outgoing import Outgoing
from publisher.store import ResourceKey
from publisher.store_postgres import PostgresStore

pytestmark = pytest.mark.integration


def key(n: int) -> ResourceKey:
    return ResourceKey("https://shop.example", "order", n)


def message(tag: str) -> Outgoing:
    return Outgoing("order.paid", f'{{"tag":"{tag}"}}'.encode(), {"message_id": tag})


def count_up(tag: str) -> Any:
    """A decision that increments the order's counter and queues one message."""

    def decide(raw: dict[str, Any] | None) -> tuple[dict[str, Any], list[Outgoing]]:
        return {"count": (raw or {}).get("count", 0) + 1}, [message(tag)]

    return decide


async def outbox_ids(store: PostgresStore) -> list[str]:
    return [row.message.message_id for row in await store.pending(10_000)]


async def test_a_group_commits_in_submission_order_and_a_failing_decision_fails_alone(
    postgres_url: str,
) -> None:
    store = await PostgresStore.open(postgres_url)

    def broken(raw: dict[str, Any] | None) -> tuple[None, list[Outgoing]]:
        raise ValueError("not an order")

    try:
        # Given five transitions submitted together: two of one order, one that fails
        results = await asyncio.gather(
            store.transition(key(1), count_up("a")),
            store.transition(key(2), count_up("b")),
            store.transition(key(3), broken),
            store.transition(key(1), count_up("c")),
            store.transition(key(2), count_up("d")),
            return_exceptions=True,
        )
        # Then only the failing one failed; the rest are in the outbox in submission order,
        # with seqs rising in that order
        assert isinstance(results[2], ValueError)
        seqs = [r for r in results if isinstance(r, list)]
        assert [s for group in seqs for s in group] == sorted(s for group in seqs for s in group)
        assert await outbox_ids(store) == ["a", "b", "c", "d"]
        # and the second delivery of an order in the group saw the first one's state
        seen: list[Any] = []

        def remember(raw: Any) -> tuple[None, list[Any]]:
            seen.append(raw)
            return None, []

        await store.transition(key(1), remember)
        assert seen == [{"count": 2}]
    finally:
        await store.close()


async def test_two_publishers_sharing_orders_neither_deadlock_nor_lose_a_step(
    postgres_url: str,
) -> None:
    # Given two publisher processes' stores on one database, each committing groups that touch
    # the same orders in opposite orders (a deadlock if rows were locked in arrival order)
    stores = [await PostgresStore.open(postgres_url) for _ in range(2)]
    orders = list(range(1, 11))
    rounds = 8
    try:

        async def publisher(store: PostgresStore, name: str, order_ids: list[int]) -> None:
            rng = random.Random(name)
            for r in range(rounds):
                await asyncio.gather(
                    *(store.transition(key(n), count_up(f"{name}-{r}-{n}")) for n in order_ids)
                )
                await asyncio.sleep(rng.random() / 100)

        # When both run at once
        await asyncio.wait_for(
            asyncio.gather(
                publisher(stores[0], "x", orders), publisher(stores[1], "y", orders[::-1])
            ),
            30,
        )
        # Then every step of every order counted once: no lost update, nothing double
        final: dict[int, Any] = {}

        def keep(n: int) -> Callable[[Any], tuple[None, list[Any]]]:
            def decide(raw: Any) -> tuple[None, list[Any]]:
                final[n] = raw
                return None, []

            return decide

        for n in orders:
            await stores[0].transition(key(n), keep(n))
        assert final == {n: {"count": 2 * rounds} for n in orders}
        assert len(await outbox_ids(stores[0])) == 2 * rounds * len(orders)
    finally:
        for store in stores:
            await store.close()


async def test_a_write_that_fails_fails_its_whole_group_and_the_store_goes_on(
    postgres_url: str,
) -> None:
    store = await PostgresStore.open(postgres_url)

    def unwritable(raw: dict[str, Any] | None) -> tuple[dict[str, Any], list[Outgoing]]:
        return {"at": object()}, []  # decided fine, but the state cannot be stored

    try:
        # Given a group in which one delivery's write fails
        results = await asyncio.gather(
            store.transition(key(1), count_up("a")),
            store.transition(key(2), unwritable),
            return_exceptions=True,
        )
        # Then the whole group failed and was rolled back: nothing half-written
        assert all(isinstance(r, TypeError) for r in results), results
        assert await outbox_ids(store) == []
        # and the next delivery commits as usual
        await store.transition(key(1), count_up("b"))
        assert await outbox_ids(store) == ["b"]
    finally:
        await store.close()
