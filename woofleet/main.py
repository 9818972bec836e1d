"""The ``woofleet`` command: one module per verb group in this package, wired here.

A verb module has ``register(subparsers)``, which adds its parser and sets ``func`` to a function
``(args) -> int`` (the exit code). ``main`` reads the settings once and hands them down as
``args.settings``. This package is the only place that composes publisher/ and consumers/.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from fleet.errors import ConfigError, WoofleetError

#: Verb modules of this package; each has ``register(subparsers)`` setting ``func`` on its parser.
VERBS: tuple[str, ...] = (
    "topology",
    "consume",
    "run",
    "status",
    "dlq",
    "webhook",
    "reconcile",
    "simulate",
    "catalog",
)

DESCRIPTION = """\
woofleet runs a WooCommerce store's order processing in the background on RabbitMQ.

WooCommerce sends one signed webhook per order change; woofleet acknowledges it in
milliseconds, publishes the order's lifecycle events to the exchange woo.events, and a fleet
of consumers (email, stock, payment capture, ERP, invoices, ...) does the work, each on its
own queue, with delayed retries and dead-letter queues.

Configuration comes from WOOFLEET_* environment variables (see README.md).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="woofleet",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log at DEBUG (default: WOOFLEET_LOG_LEVEL)",
    )
    parser.add_argument("--version", action="version", version=f"woofleet {_version()}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for verb in VERBS:
        module = importlib.import_module(f"woofleet.{verb}")
        module.register(subparsers)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("woofleet")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    from fleet.logging import setup_logging
    from fleet.settings import Settings

    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValueError as exc:
        print(f"woofleet: invalid configuration: {exc}", file=sys.stderr)
        return 2
    setup_logging("DEBUG" if args.verbose else settings.log_level, settings.log_format)
    try:
        args.settings = settings
        if getattr(args, "shared_state", False):
            settings.check_shared_state()
        code: int = args.func(args)
    except ConfigError as exc:
        # A wrong setting or argument (an unknown consumer, say): exit 2, as for bad usage.
        print(f"woofleet: {exc}", file=sys.stderr)
        return 2
    except WoofleetError as exc:
        # Expected failures get one line that says what to do, not a traceback.
        logging.getLogger("woofleet").debug("failed", exc_info=True)
        print(f"woofleet: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into `head` and the like: not an error worth a traceback.
        sys.stderr.close()
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
