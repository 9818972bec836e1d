"""Replaying kept deliveries: a signed delivery woofleet could not turn into events, run again
through the same ingest once its cause is fixed (a newer woofleet, a repaired order).

A replay goes through the order's lifecycle state like any delivery, so it emits only the
steps not emitted yet: replaying twice, or replaying a delivery WooCommerce also sent again,
emits each step once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from fleet.errors import ContractError
from publisher.events import ORDER_TOPICS, PRODUCT_TOPICS, normalised_source
from publisher.ingest import Ingest
from publisher.store import KeptDelivery, PublisherStore


@dataclass(frozen=True)
class Replayed:
    """What replaying one kept delivery did: the events it queued, or why it is still kept."""

    kept_id: int
    events: tuple[str, ...] = ()
    error: str = ""


def source_of(kept: KeptDelivery, store_url: str | None) -> str:
    """The store the delivery came from, as the webhook names it (WOOFLEET_WOO_URL first)."""
    header = kept.headers.get("x-wc-webhook-source", "")
    return normalised_source(store_url or header or "unknown-store")


async def replay_one(ingest: Ingest, kept: KeptDelivery, store_url: str | None) -> Replayed:
    """Run one kept delivery through ``ingest``; nothing is marked here."""
    try:
        payload: Any = orjson.loads(kept.body)
    except orjson.JSONDecodeError:
        return Replayed(kept.id, error="the body is not JSON")
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), int):
        return Replayed(kept.id, error="the body is not an object with an id")
    source = source_of(kept, store_url)
    try:
        if kept.topic in ORDER_TOPICS and kept.topic != "order.deleted":
            result = await ingest.order(source, payload)
        elif kept.topic in PRODUCT_TOPICS:
            result = await ingest.product(source, payload)
        else:
            return Replayed(kept.id)  # a topic with no events (order.deleted): nothing to do
    except ContractError as exc:
        return Replayed(kept.id, error=str(exc))
    return Replayed(kept.id, events=result.events)


async def replay_kept(
    store: PublisherStore, ingest: Ingest, store_url: str | None, ids: Iterable[int]
) -> list[Replayed]:
    """Replay the kept deliveries ``ids`` in order; each that goes through is marked replayed
    (store failures propagate: nothing is marked that was not committed)."""
    done: list[Replayed] = []
    for kept_id in ids:
        kept = await store.kept_delivery(kept_id)
        if kept is None:
            done.append(Replayed(kept_id, error="no kept delivery with this id"))
            continue
        outcome = await replay_one(ingest, kept, store_url)
        if not outcome.error:
            await store.mark_replayed(kept_id)
        done.append(outcome)
    return done
