"""``woofleet webhook``: serve the WooCommerce ingress (POST /webhooks/woocommerce)."""

from __future__ import annotations

import argparse

from fleet.settings import Settings

DEFAULT_HOST = "127.0.0.1"
#: One of the ports WooCommerce delivers to without extra configuration (80, 443, 8080).
DEFAULT_PORT = 8080


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "webhook",
        help="serve the WooCommerce webhook ingress",
        description="Verifies each delivery's HMAC signature (WOOFLEET_WEBHOOK_SECRET, several "
        "comma-separated while rotating), commits the order's missing lifecycle events to the "
        "outbox in the state store (WOOFLEET_STATE_URL) and publishes them, confirmed, to "
        "woo.events. While RabbitMQ is away it keeps answering 200 and relays the outbox "
        "when the broker is back. Also serves POST /webhooks/carrier (the carrier's tracking "
        "updates, signed with WOOFLEET_CARRIER_WEBHOOK_SECRET: transit and delivery noted on the "
        "order, delivered orders completed), /healthz, /readyz and /metrics.",
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to listen on (default {DEFAULT_PORT}; WooCommerce delivers only to "
        "80, 443 and 8080 unless the store allows more)",
    )
    parser.set_defaults(func=run, shared_state=True)


def run(args: argparse.Namespace) -> int:
    from publisher.config import IngressSettings
    from publisher.webhook import serve

    settings: Settings = args.settings
    try:
        ingress = IngressSettings()
    except ValueError as exc:
        print(f"woofleet webhook: invalid configuration: {exc}")
        return 2
    serve(settings, args.host, args.port, ingress)
    return 0
