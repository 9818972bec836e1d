"""``woofleet run``: the whole fleet in one process for development, on the embedded defaults."""

from __future__ import annotations

import argparse
import asyncio

from topology.fleet import CONSUMER_NAMES

DEV_SECRET = "woofleet-dev-secret"
#: What the demo signs its carrier tracking updates with when no secret is set.
DEV_CARRIER_SECRET = "woofleet-dev-carrier-secret"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        help="the whole fleet in one process: topology, webhook ingress and every consumer",
        description="Apply the topology, serve the webhook (POST /webhooks/woocommerce) and run "
        f"all {len(CONSUMER_NAMES)} consumers in this process, with state in ./var (SQLite, "
        "invoice files, dev mail, push and HTTP target sinks). With --demo, send signed demo "
        "orders through the webhook, print what every consumer did, and exit.",
    )
    parser.add_argument("--demo", action="store_true", help="process demo orders, then exit")
    parser.add_argument("--orders", type=int, default=6, help="demo: simulated orders (6)")
    parser.add_argument(
        "--keep-running", action="store_true", help="demo: stay up after the demo orders"
    )
    parser.add_argument("--host", default="127.0.0.1", help="webhook address (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="webhook port (8080)")
    parser.add_argument(
        "--health-port", type=int, default=9100, help="consumers' health/metrics port (9100)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from woofleet.devfleet import DevFleet

    settings = args.settings
    if not settings.webhook_secrets():
        # A fixed, named development secret: `woofleet simulate` signs with the same default.
        settings = settings.model_copy(update={"webhook_secret": _secret(DEV_SECRET)})
        print(f"WOOFLEET_WEBHOOK_SECRET is not set: using the development secret {DEV_SECRET!r}")
    if not settings.carrier_webhook_secret.get_secret_value():
        settings = settings.model_copy(
            update={"carrier_webhook_secret": _secret(DEV_CARRIER_SECRET)}
        )
    dev = DevFleet(settings, host=args.host, port=args.port, health_port=args.health_port)
    return asyncio.run(
        dev.main(
            demo_orders=args.orders if args.demo else None,
            keep_running=args.keep_running or not args.demo,
        )
    )


def _secret(value: str) -> object:
    from pydantic import SecretStr

    return SecretStr(value)
