"""``woofleet consume CONSUMER... [--port P]``: run consumer types until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio

from topology.fleet import CONSUMER_NAMES, DEFAULT_FLEET


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "consume",
        help="run one or more consumer types (one per process in production)",
        description="Consume each named type's work queue woo.<consumer> until SIGTERM, then stop "
        "taking deliveries, finish what is in flight within the grace period and exit. "
        f"Consumers: {', '.join(CONSUMER_NAMES)}.",
    )
    parser.add_argument("consumers", nargs="+", metavar="CONSUMER", help="consumer type(s)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="health/metrics address (127.0.0.1; 0.0.0.0 in a container, as the manifests pass)",
    )
    parser.add_argument("--port", type=int, default=9100, help="health/metrics port (9100)")
    parser.add_argument(
        "--grace",
        type=float,
        help="seconds to finish in-flight work on SIGTERM (default: longest handler timeout)",
    )
    parser.set_defaults(func=run, shared_state=True)


def run(args: argparse.Namespace) -> int:
    from consumers.runtime.supervisor import serve_consumers

    DEFAULT_FLEET.check(args.consumers)
    return asyncio.run(
        serve_consumers(
            args.consumers,
            args.settings,
            host=args.host,
            port=args.port,
            fleet=DEFAULT_FLEET,
            grace=args.grace,
        )
    )
