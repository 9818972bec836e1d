"""``woofleet ingress list|show|replay``: signed deliveries kept because woofleet could not turn
them into events, and outbox rows set aside because their message can never be published."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from fleet.settings import Settings
from publisher.store import PublisherStore

#: How long `replay` waits for the broker to confirm what it queued.
DRAIN_SECONDS = 30.0

DESCRIPTION = """\
A delivery whose signature verifies but which woofleet cannot turn into events (not JSON, not
an order it can read) is answered 202 and kept whole, headers and raw body, in the state store
(WOOFLEET_STATE_URL). Once the cause is fixed (a newer woofleet, a repaired order), `replay`
runs it through the ingest again: each lifecycle step is still emitted once.

`list` also shows outbox rows set aside: events whose message no broker can carry (they never
block the rows behind them).
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "ingress",
        help="list, show or replay signed deliveries kept because they could not be used",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = parser.add_subparsers(title="verbs", metavar="VERB", required=True)
    listing = verbs.add_parser(
        "list", help="one line per kept delivery and per set-aside outbox row"
    )
    listing.add_argument("--limit", type=int, default=100, help="at most this many of each (100)")
    listing.add_argument("--all", action="store_true", help="include deliveries already replayed")
    show = verbs.add_parser("show", help="headers and raw body of kept deliveries")
    show.add_argument("ids", metavar="ID", type=int, nargs="+", help="kept delivery ids")
    replay = verbs.add_parser(
        "replay",
        help="run kept deliveries through the ingest again and publish what they imply",
    )
    replay.add_argument("ids", metavar="ID", type=int, nargs="*", help="kept delivery ids")
    replay.add_argument("--all", action="store_true", help="every kept delivery not replayed yet")
    for sub, verb in ((listing, "list"), (show, "show"), (replay, "replay")):
        sub.set_defaults(func=run, verb=verb, shared_state=verb == "replay")


def run(args: argparse.Namespace) -> int:
    if args.verb == "replay" and not args.ids and not args.all:
        print("woofleet ingress replay: name kept delivery ids, or pass --all", file=sys.stderr)
        return 2
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from publisher.stores import open_store

    settings: Settings = args.settings
    store = await open_store(settings.state_url)
    try:
        if args.verb == "list":
            return await _list(store, args.limit, args.all)
        if args.verb == "show":
            return await _show(store, args.ids)
        return await _replay(settings, store, args.ids, args.all)
    finally:
        await store.close()


def _resource_id(body: bytes) -> str:
    try:
        payload: Any = json.loads(body)
    except ValueError:
        return "?"
    return str(payload.get("id", "?")) if isinstance(payload, dict) else "?"


async def _list(store: PublisherStore, limit: int, everything: bool) -> int:
    kept = await store.kept_deliveries(limit, include_replayed=everything)
    if not kept:
        print("kept deliveries: none")
    for k in kept:
        state = f"replayed {k.replayed_at}" if k.replayed_at else "kept"
        print(
            f"#{k.id:<6} {k.received_at}  {k.topic:<16} id={_resource_id(k.body):<8} "
            f"{state}  {k.reason[:120]}"
        )
    aside = await store.set_aside_rows(limit)
    if aside:
        print(f"outbox rows set aside ({await store.set_aside_count()}):")
    for row in aside:
        print(
            f"seq={row.seq:<8} {row.set_aside_at}  {row.message.routing_key:<16} "
            f"message_id={row.message.message_id}  {row.reason[:120]}"
        )
    return 0


async def _show(store: PublisherStore, ids: list[int]) -> int:
    missing = 0
    for kept_id in ids:
        kept = await store.kept_delivery(kept_id)
        if kept is None:
            print(f"woofleet ingress show: no kept delivery #{kept_id}", file=sys.stderr)
            missing += 1
            continue
        print(f"# kept delivery #{kept.id}, received {kept.received_at}, topic {kept.topic}")
        print(f"# reason: {kept.reason}")
        if kept.replayed_at:
            print(f"# replayed: {kept.replayed_at}")
        for name, value in sorted(kept.headers.items()):
            print(f"{name}: {value}")
        print()
        print(kept.body.decode("utf-8", errors="replace"))
    return 1 if missing else 0


async def _replay(
    settings: Settings, store: PublisherStore, ids: list[int], everything: bool
) -> int:
    from publisher.confirming_channel import open_confirming_channel
    from publisher.ingest import Ingest
    from publisher.outbox import OutboxRelay
    from publisher.priority import PriorityRules
    from publisher.replay import replay_kept

    if everything:
        ids = [k.id for k in await store.kept_deliveries(1_000_000)]
    ingest = Ingest(store, PriorityRules.from_settings(settings))
    outcomes = await replay_kept(store, ingest, settings.woo_url or None, ids)
    failed = 0
    for outcome in outcomes:
        if outcome.error:
            failed += 1
            print(f"#{outcome.kept_id}: still kept: {outcome.error}")
        else:
            print(f"#{outcome.kept_id}: replayed: {' '.join(outcome.events) or 'nothing new'}")
    if any(o.events for o in outcomes):
        relay = OutboxRelay(
            store, lambda: open_confirming_channel(settings, name="woofleet ingress replay")
        )
        try:
            left = await relay.flush(DRAIN_SECONDS)
        finally:
            await relay.close()
        if left:
            print(
                f"{left} events wait in the outbox (broker: "
                f"{relay.last_error or 'another relay publishes them'}); "
                "`woofleet webhook` relays them"
            )
    return 1 if failed else 0
