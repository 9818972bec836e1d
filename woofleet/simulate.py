"""``woofleet simulate``: signed, realistic webhook deliveries for demos and load."""

from __future__ import annotations

import argparse
import asyncio
import time

from fleet.settings import Settings

DEFAULT_URL = "http://127.0.0.1:8080/webhooks/woocommerce"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="send signed, realistic WooCommerce webhook deliveries to the ingress",
        description="Generates orders (several line items, variations, currencies, coupons, "
        "express and standard shipping, VIP customers, non-ASCII names and addresses, refunds, "
        "cancellations, coalesced status jumps), encodes them as WooCommerce does and signs "
        "them with the first WOOFLEET_WEBHOOK_SECRET. Loopback addresses only unless "
        "--allow-remote.",
    )
    parser.add_argument("--orders", type=int, default=100, help="orders to simulate (default 100)")
    parser.add_argument(
        "--rate", type=float, default=50.0, help="deliveries per second (default 50)"
    )
    parser.add_argument("--url", default=DEFAULT_URL, help=f"webhook URL (default {DEFAULT_URL})")
    parser.add_argument("--seed", type=int, default=1, help="random seed for the order contents")
    parser.add_argument(
        "--first-order-id",
        type=int,
        default=None,
        help="id of the first order (default: derived from the clock, so runs do not collide)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=64, help="requests in flight at most (default 64)"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=300.0,
        help="stop sending after this long (default 300)",
    )
    parser.add_argument(
        "--allow-remote", action="store_true", help="allow a URL that is not on this machine"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from publisher.simulate.console import print_summary, run_with_progress
    from publisher.simulate.runner import MAX_ORDERS, SimulationPlan, require_loopback

    settings: Settings = args.settings
    if not 0 < args.orders <= MAX_ORDERS or args.rate <= 0 or args.concurrency <= 0:
        print(f"woofleet simulate: --orders must be 1-{MAX_ORDERS}; --rate and --concurrency > 0")
        return 2
    if not args.allow_remote:
        require_loopback(args.url)
    secrets = settings.webhook_secrets()
    plan = SimulationPlan(
        orders=args.orders,
        rate=args.rate,
        url=args.url,
        secret=secrets[0] if secrets else b"",
        source=(settings.woo_url or "https://shop.example") + "/",
        seed=args.seed,
        first_order_id=args.first_order_id or int(time.time()) % 1_000_000 * 100,
        concurrency=args.concurrency,
        max_seconds=args.max_seconds,
    )
    result = asyncio.run(run_with_progress(plan))
    print_summary(plan, result)
    return 0 if result.sent and not (result.rejected or result.failed) else 1
