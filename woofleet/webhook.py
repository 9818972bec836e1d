"""``woofleet webhook``: serve the WooCommerce ingress (POST /webhooks/woocommerce)."""

from __future__ import annotations

import argparse
import asyncio
import errno
import socket

from fleet.errors import ConfigError
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
    parser.add_argument(
        "--metrics-port",
        type=int,
        help="serve /metrics (and /healthz, /readyz) on this port instead of beside the public "
        "webhook (the manifests do: the public port then answers /metrics with 404)",
    )
    parser.set_defaults(func=run, shared_state=True)


def run(args: argparse.Namespace) -> int:
    from publisher.webhook import serve

    settings: Settings = args.settings
    preflight(settings, args.host, args.port)
    if args.metrics_port is not None:
        check_port(args.host, args.metrics_port)
    serve(settings, args.host, args.port, args.metrics_port)
    return 0


def preflight(settings: Settings, host: str, port: int) -> None:
    """Refuse, in one line each, what would start a webhook that cannot work: no secret in
    production, a port already taken, a state store that cannot be opened."""
    if not settings.webhook_secrets() and settings.environment == "production":
        raise ConfigError(
            "WOOFLEET_WEBHOOK_SECRET is not set: every delivery would be refused with 401. "
            "Set it to the secret of the WooCommerce webhook (WooCommerce > Settings > "
            "Advanced > Webhooks)."
        )
    check_port(host, port)
    asyncio.run(check_store(settings))


def check_port(host: str, port: int) -> None:
    """Bind and release ``host:port`` the way uvicorn will, to refuse a taken port in one line."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            why = "is already in use: stop what listens there, or pass another --port"
        else:
            why = f"cannot be listened on ({exc.strerror}): check --host and --port"
        raise ConfigError(f"{host}:{port} {why}") from None


async def check_store(settings: Settings) -> None:
    """Open and close the state store (ConfigError or DependencyUnavailable, in one line)."""
    from publisher.stores import open_store

    store = await open_store(settings.state_url)
    await store.close()
