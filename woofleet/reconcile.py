"""``woofleet reconcile``: poll WooCommerce REST for orders whose webhooks were missed."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from fleet.settings import Settings

log = logging.getLogger(__name__)

#: How long ``--once`` waits for the broker to confirm what it queued before leaving it in
#: the outbox for the webhook's relay.
DRAIN_SECONDS = 30.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "reconcile",
        help="poll WooCommerce for orders whose webhook deliveries were missed",
        description="Lists orders modified since the stored cursor (minus "
        "WOOFLEET_RECONCILE_OVERLAP_SECONDS, default 120) through the REST API "
        "(WOOFLEET_WOO_URL, WOOFLEET_WOO_KEY, WOOFLEET_WOO_SECRET) and emits only the lifecycle "
        "events the webhook did not. Set WOOFLEET_WOO_URL for the webhook too, so both name "
        "the store the same way.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="one pass, then exit (the default)")
    mode.add_argument(
        "--every", type=float, metavar="SECONDS", help="poll every SECONDS until stopped"
    )
    parser.add_argument(
        "--since",
        metavar="UTC_TIME",
        help="start from this UTC time (e.g. 2026-11-28T00:00:00) instead of the stored cursor; "
        "the first run otherwise starts from now",
    )
    parser.set_defaults(func=run, shared_state=True)


def run(args: argparse.Namespace) -> int:

    settings: Settings = args.settings
    if args.every is not None and args.every <= 0:
        print("woofleet reconcile: --every needs a positive number of seconds")
        return 2
    return asyncio.run(_reconcile(settings, args.every, args.since))


async def _reconcile(settings: Settings, every: float | None, since: str | None) -> int:
    from fleet.woo_rest import WooRest
    from publisher.confirming_channel import open_confirming_channel
    from publisher.events import normalised_source
    from publisher.ingest import Ingest
    from publisher.outbox import OutboxRelay
    from publisher.priority import PriorityRules
    from publisher.reconcile import Reconciler
    from publisher.stores import open_store

    client = WooRest.from_settings(settings)
    store = await open_store(settings.state_url)
    relay = OutboxRelay(store, lambda: open_confirming_channel(settings, name="woofleet reconcile"))
    reconciler = Reconciler(
        client,
        Ingest(store, PriorityRules.from_settings(settings)),
        store,
        source=normalised_source(settings.woo_url),
        overlap_seconds=settings.reconcile_overlap_seconds,
    )
    stop = asyncio.Event()
    if every is not None:
        # A polling run finishes its current pass, then stops cleanly.
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    relay_task = asyncio.create_task(relay.run()) if every is not None else None
    try:
        while True:
            report = await reconciler.run_once(since)
            since = None
            log.info("%s", report.summary())
            if every is None:
                left = await relay.flush(DRAIN_SECONDS)
                if left and not relay.is_leader:
                    log.info(
                        "reconcile: %d events queued; the webhook's relay publishes them", left
                    )
                elif left:
                    log.warning(
                        "reconcile: %d events wait in the outbox (broker: %s); "
                        "`woofleet webhook` or the next run relays them",
                        left,
                        relay.last_error or "not confirmed yet",
                    )
                return 0
            relay.wake()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            if stop.is_set():
                return 0
    finally:
        if relay_task is not None:
            await relay.stop()
            await relay_task
        else:
            await relay.close()
        await client.aclose()
        await store.close()
