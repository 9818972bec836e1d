"""Held deliveries taken back off the broker: each becomes its events once, whatever crashed in
between, and one that can no longer be verified is kept, never lost (publisher.held)."""

from __future__ import annotations

from collections import Counter

import pytest

from publisher.simulate.encoding import delivery
from tests.integration.test_webhook import SECRET, SOURCE, Harness, sentinel_order

pytestmark = pytest.mark.integration


async def hold(harness: Harness, order: dict[str, object], secret: bytes = SECRET) -> None:
    """Hold a delivery of ``order`` as the webhook does while its store is away."""
    item = delivery("order.created", order, secret, source=SOURCE)
    headers = {name.lower(): value for name, value in item.headers.items()}
    await harness.app.held.hold(headers, item.body)


async def test_held_deliveries_become_their_events_once_even_when_held_twice(
    harness: Harness,
) -> None:
    # Given an order held twice (WooCommerce resent it while the store was away)
    order = sentinel_order()
    await hold(harness, order)
    await hold(harness, order)

    # When the webhook takes them back
    outcomes = await harness.app.drain_held()

    # Then both went through, and the order's lifecycle emitted its step once
    assert outcomes == Counter(accepted=2)
    (created,) = await harness.events(1)
    assert (created.routing_key, created.body["data"]["id"]) == ("order.created", order["id"])
    await harness.nothing_more()
    assert await harness.app.drain_held() == Counter()


async def test_a_delivery_taken_back_and_not_acknowledged_is_taken_again_without_a_second_event(
    harness: Harness,
) -> None:
    # Given a held delivery processed by a webhook that died before acknowledging it
    order = sentinel_order()
    await hold(harness, order)
    taken = await harness.app.held.take()
    assert taken is not None
    assert await harness.app._process_held(taken) == "accepted"
    await harness.app.held.close()  # its channel gone: the broker gives the message back
    (created,) = await harness.events(1)

    # When it is taken back again
    outcomes = await harness.app.drain_held()

    # Then it is processed again and acknowledged, and nothing is emitted twice
    assert outcomes == Counter(accepted=1)
    assert created.body["data"]["id"] == order["id"]
    await harness.nothing_more()


async def test_a_held_delivery_whose_secret_was_rotated_away_is_kept_not_dropped(
    harness: Harness,
) -> None:
    # Given a delivery held under a secret the webhook no longer has
    await hold(harness, sentinel_order(), secret=b"the-old-secret")

    # When it is taken back
    outcomes = await harness.app.drain_held()

    # Then it is kept whole for a person, with the reason, and nothing is emitted
    assert outcomes == Counter(kept=1)
    [kept] = await harness.app.store.kept_deliveries(10)
    assert "signature matches no secret" in kept.reason
    assert kept.topic == "order.created"
    await harness.nothing_more()
