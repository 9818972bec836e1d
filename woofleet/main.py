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

from pydantic import BaseModel, ValidationError

from fleet.errors import BrokerUnavailable, ConfigError, DependencyUnavailable, WoofleetError

#: Verb modules of this package; each has ``register(subparsers)`` setting ``func`` on its parser.
VERBS: tuple[str, ...] = (
    "topology",
    "consume",
    "run",
    "status",
    "alerts",
    "dlq",
    "webhook",
    "reconcile",
    "simulate",
    "catalog",
    "ingress",
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
    subparsers = parser.add_subparsers(
        title="commands", metavar="COMMAND", required=True, dest="command"
    )
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


#: Exit codes: a setting (or argument) that cannot work, and a dependency that does not answer.
EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3


def settings_problem(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """A settings validation error as one line naming each variable (values only for
    enumerated settings: others may hold credentials)."""
    from fleet.settings import Settings

    fields = (model or Settings).model_fields
    parts = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        info = fields.get(field)
        alias = info.validation_alias if info is not None else None
        name = alias if isinstance(alias, str) else f"WOOFLEET_{field.upper()}"
        shown = f" (got {error['input']!r})" if error["type"] == "literal_error" else ""
        message = error["msg"].replace("Input should be", "must be")
        parts.append(f"{name} {message}{shown}")
    return "; ".join(parts)


def explain(exc: BaseException) -> tuple[int, str] | None:
    """One line and an exit code for an error from a dependency or a setting that escaped the
    verb's own handling; None for anything else (a bug keeps its traceback)."""
    import errno

    import httpx

    if isinstance(exc, (BrokerUnavailable, DependencyUnavailable)):
        return EXIT_UNAVAILABLE, str(exc)
    if isinstance(exc, ConfigError):
        return EXIT_CONFIG, str(exc)
    if isinstance(exc, httpx.HTTPStatusError):
        status, url = exc.response.status_code, exc.request.url
        where = f"the RabbitMQ management API ({url.scheme}://{url.host}:{url.port})"
        if status in (401, 403):
            return EXIT_CONFIG, (
                f"{where} refused the credentials ({status}); check the user and password in "
                "WOOFLEET_MANAGEMENT_URL (the user needs the management or monitoring tag)"
            )
        if status == 404:
            return EXIT_CONFIG, (
                f"{where} knows no virtual host {url.path.rsplit('/', 1)[-1]!r} "
                "(named by WOOFLEET_AMQP_URL); create it (`rabbitmqctl add_vhost NAME` and "
                "`rabbitmqctl set_permissions -p NAME USER '.*' '.*' '.*'`) or fix the URL"
            )
    if isinstance(exc, httpx.TransportError):
        return EXIT_UNAVAILABLE, (
            f"the RabbitMQ management API is not answering ({type(exc).__name__}: {exc}); "
            "start it (rabbitmq-plugins enable rabbitmq_management) or fix "
            "WOOFLEET_MANAGEMENT_URL"
        )
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return EXIT_CONFIG, (
            f"the address is already in use ({exc.strerror}); stop what listens there, "
            "or pass another --port"
        )
    return None


def main(argv: Sequence[str] | None = None) -> int:
    from fleet.logging import remember_secret_values, setup_logging
    from fleet.sentry import init_sentry
    from fleet.settings import Settings

    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"woofleet: invalid configuration: {settings_problem(exc)}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging("DEBUG" if args.verbose else settings.log_level, settings.log_format)
    remember_secret_values(settings.secret_values())
    # Every command reports to Sentry when SENTRY_DSN is set, scrubbed the same way.
    init_sentry(settings, component=str(getattr(args, "command", None) or "woofleet"))
    try:
        args.settings = settings
        if getattr(args, "shared_state", False):
            settings.check_shared_state()
        code: int = args.func(args)
    except ConfigError as exc:
        # A wrong setting or argument (an unknown consumer, say): exit 2, as for bad usage.
        print(f"woofleet: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (BrokerUnavailable, DependencyUnavailable) as exc:
        # A dependency that does not answer: exit 3 (a supervisor may retry later).
        print(f"woofleet: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
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
    except Exception as exc:
        explained = explain(exc)
        if explained is None:
            raise
        logging.getLogger("woofleet").debug("failed", exc_info=True)
        print(f"woofleet: {explained[1]}", file=sys.stderr)
        return explained[0]
    return code


if __name__ == "__main__":
    sys.exit(main())
