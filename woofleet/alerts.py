"""``woofleet alerts [--once | --every S]``: tell a person when the fleet needs one."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fleet.alert_rules import STORE, Finding
from fleet.errors import WoofleetError
from fleet.settings import Settings

if TYPE_CHECKING:
    from fleet.alert_state import AlertState, Change
    from fleet.alerts import FleetAlerts, WebhookCheck

log = logging.getLogger("woofleet.alerts")

DEFAULT_EVERY = 60.0
#: The health/metrics port of ``--every`` (consumers use 9100, the webhook 8080).
DEFAULT_PORT = 9102


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from topology.monitoring import delay_targets

    parser = subparsers.add_parser(
        "alerts",
        help="evaluate the fleet's health and notify Slack when something needs a person",
        description="Reads the RabbitMQ management API (dead letters above "
        "WOOFLEET_ALERT_DLQ_THRESHOLD, default 10 per consumer; the oldest waiting message "
        f"against its class's delay target: {delay_targets()}), the "
        "/metrics endpoints in WOOFLEET_METRICS_URLS (a breaker open for "
        "WOOFLEET_ALERT_BREAKER_OPEN_SECONDS, signed deliveries kept unprocessed, an outbox not "
        "draining) and, with WOOFLEET_WOO_URL, the store's webhooks. Sends one message when an "
        "alert fires and one when it resolves to the Slack incoming webhook "
        "WOOFLEET_SLACK_WEBHOOK_URL and/or the JSON webhook WOOFLEET_ALERT_WEBHOOK_URL. "
        "--once (for cron) keeps what it announced in WOOFLEET_ALERT_STATE_FILE "
        "(default <var_dir>/alerts.json); --every keeps it in memory and serves /healthz, "
        "/readyz and /metrics. Exits 1 when a message could not be delivered.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="evaluate once and exit (for cron)")
    mode.add_argument(
        "--every",
        type=float,
        metavar="S",
        help=f"evaluate every S seconds until SIGTERM (default {DEFAULT_EVERY:.0f})",
    )
    parser.add_argument(
        "--print",
        dest="print_only",
        action="store_true",
        help="print the Slack message (JSON) instead of sending it",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="health/metrics address (127.0.0.1; 0.0.0.0 in a container, as the manifests pass)",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"health/metrics port ({DEFAULT_PORT})"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import httpx

    from fleet.alert_state import AlertState
    from fleet.alerts import FleetAlerts
    from fleet.notify import JsonWebhookNotifier, Notifier, SlackNotifier
    from topology.apply import vhost_of
    from topology.fleet import DEFAULT_FLEET

    settings: Settings = args.settings
    client = httpx.Client(timeout=10.0)
    notifiers: list[Notifier] = []
    if args.print_only:
        notifiers.append(PrintNotifier())
    else:
        if settings.slack_webhook_url is not None:
            notifiers.append(SlackNotifier(settings.slack_webhook_url.get_secret_value(), client))
        if settings.alert_webhook_url is not None:
            url = settings.alert_webhook_url.get_secret_value()
            notifiers.append(JsonWebhookNotifier(url, client))
    if not notifiers:
        print(
            "woofleet alerts: nowhere to send alerts: set WOOFLEET_SLACK_WEBHOOK_URL (a Slack "
            "incoming webhook) and/or WOOFLEET_ALERT_WEBHOOK_URL, or use --print",
            file=sys.stderr,
        )
        return 2
    alerts = FleetAlerts(
        settings,
        DEFAULT_FLEET,
        vhost_of(settings.amqp_url.get_secret_value()),
        notifiers,
        webhook_check=store_webhook_check(settings) if settings.woo_url else None,
    )
    with client:
        if args.every is None and args.once:
            path = settings.alert_state_file or settings.var_dir / "alerts.json"
            return _once(alerts, path, settings.alert_resolve_seconds)
        return asyncio.run(
            _every(alerts, AlertState(resolve_after=settings.alert_resolve_seconds), args)
        )


def _once(alerts: FleetAlerts, path: Path, resolve_after: float) -> int:
    from fleet.alert_state import AlertState

    state = AlertState.load(path, resolve_after=resolve_after)
    evaluation = alerts.evaluate(state)
    state.save(path)
    _report(evaluation.changes, evaluation.errors)
    return 1 if evaluation.errors else 0


async def _every(alerts: FleetAlerts, state: AlertState, args: argparse.Namespace) -> int:
    from prometheus_client import REGISTRY
    from starlette.applications import Starlette

    from fleet.alerts import AlertsCollector
    from fleet.health import health_routes, serve_in_background

    every = args.every or DEFAULT_EVERY
    REGISTRY.register(AlertsCollector(alerts, state))

    def ready() -> tuple[bool, dict[str, object]]:
        latest = alerts.latest
        # Ready once it evaluates on time; a stuck evaluation shows as not ready.
        on_time = latest is not None and alerts.clock() - latest.at < 3 * every + 30
        return on_time, {"firing": len(state.firing())}

    server, task = await serve_in_background(
        Starlette(routes=health_routes(ready)), args.host, args.port
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        while not stop.is_set():
            try:
                evaluation = await asyncio.to_thread(alerts.evaluate, state)
            except Exception:
                # A bug must not end the only thing watching the fleet; /readyz turns not
                # ready if evaluations keep failing.
                log.exception("evaluation failed; trying again in %g s", every)
            else:
                for change in evaluation.changes:
                    log.warning("%s: %s", change.kind, change.finding.title)
                for error in evaluation.errors:
                    log.error("%s", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
    finally:
        server.should_exit = True
        await task
    return 0


def _report(changes: Sequence[Change], errors: list[str]) -> None:
    """--once: what was announced on stdout, what failed on stderr (cron mails both)."""
    for change in changes:
        print(f"{change.kind}: {change.finding.title}", flush=True)
    for error in errors:
        print(f"woofleet alerts: {error}", file=sys.stderr, flush=True)


class PrintNotifier:
    """``--print``: the Slack message on standard output, for a look before wiring Slack."""

    name = "stdout"

    def send(self, changes: Sequence[Change], context: str) -> None:
        import json

        from fleet.notify import slack_message

        print(json.dumps(slack_message(changes, context), indent=2), flush=True)


def store_webhook_check(settings: Settings) -> WebhookCheck:
    """The store's webhooks as findings: disabled, paused, misdirected, topics missing."""

    def check() -> list[Finding]:
        from publisher.webhook_health import check_webhooks

        report = check_webhooks(settings)
        if report.error:
            raise WoofleetError(report.error)
        findings = [
            Finding(
                key=f"webhook:{p.webhook_id}",
                title=f"store webhook {p.webhook_id} {p.name!r} ({p.topic}) {p.problem}",
                detail=f"fix: {p.fix}",
                command="woofleet status",
                source=STORE,
            )
            for p in report.problems
        ]
        if report.missing_topics:
            findings.append(
                Finding(
                    key="webhook:topics",
                    title="no active store webhook to woofleet for "
                    + ", ".join(report.missing_topics),
                    detail="events of these topics reach nobody; create one webhook per topic",
                    command="woofleet status",
                    source=STORE,
                )
            )
        return findings

    return check
