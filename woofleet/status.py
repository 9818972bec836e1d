"""``woofleet status [--json] [--watch [S]]``: the fleet at a glance, and what needs a person."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import TYPE_CHECKING

from fleet.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console

    from fleet.status import Finding, FleetStatus, StoreWebhooks

#: Where `woofleet run` serves the ingress and the consumers' metrics.
DEV_INGRESS = "http://127.0.0.1:8080"
DEV_METRICS = "http://127.0.0.1:9100/metrics"

DESCRIPTION = f"""\
Per consumer: ready and unacked messages, the oldest waiting event's age against its class's
delay target (high 30s, medium 5m, low 30m, bulk 1h), consumers, rates over the last minute,
retries, delayed and dead letters, and the circuit breaker (from the consumers' /metrics).
For the ingress (its /metrics): outbox depth, relay lag and kept deliveries. With
WOOFLEET_WOO_URL set, whether the store's webhooks are still active.

Exit code: 0 when nothing needs a person, 1 when something does (each finding is listed with
the command to look closer), 2 on a usage error. Depths and dead letters are exact (AMQP);
the rest comes from the management API (WOOFLEET_MANAGEMENT_URL).

By default it looks for the ingress at {DEV_INGRESS} and consumer metrics at {DEV_METRICS}
(where `woofleet run` serves them) and says "not checked" when nothing answers there; a URL
given with --ingress or --metrics that does not answer is a finding; "none" skips either.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "status",
        help="queues, delays against targets, rates, breakers, dead letters, ingress, webhooks",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="the stable JSON shape (schema 1)")
    parser.add_argument(
        "--watch",
        nargs="?",
        type=float,
        const=5.0,
        metavar="SECONDS",
        help="refresh every SECONDS (5) until Ctrl-C; with --json, one document per line",
    )
    parser.add_argument(
        "--metrics",
        action="append",
        metavar="URL",
        help="a consumer process's /metrics, for breaker states (repeatable)",
    )
    parser.add_argument("--ingress", metavar="URL", help="the webhook ingress's base URL")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    # Wide enough for the table when piped (rich assumes 80 columns off a terminal).
    console = Console(width=None if sys.stdout.isatty() else 140)
    if args.watch is None:
        return asyncio.run(_once(args, console))
    while True:
        started = time.monotonic()
        if not args.json:
            console.clear()
        asyncio.run(_once(args, console))
        time.sleep(max(args.watch - (time.monotonic() - started), 0.0))


async def _once(args: argparse.Namespace, console: Console) -> int:
    from fleet.status import as_json, evaluate
    from fleet.status_sources import ingress_status

    settings: Settings = args.settings
    ingress_url = None if args.ingress == "none" else args.ingress
    if args.ingress is None and ingress_status(DEV_INGRESS).reachable:
        ingress_url = DEV_INGRESS
    metrics = [url for url in args.metrics or [] if url != "none"]
    if args.metrics is None and _answers(DEV_METRICS):
        metrics = [DEV_METRICS]
    status = await gather(settings, metrics_urls=metrics, ingress_url=ingress_url)
    findings = evaluate(status)
    if args.json:
        print(json.dumps(as_json(status, findings), ensure_ascii=False), flush=True)
    else:
        _print(console, status, findings)
    return 1 if findings else 0


async def gather(
    settings: Settings, *, metrics_urls: list[str], ingress_url: str | None
) -> FleetStatus:
    """The fleet's state now (queues, breakers, ingress, the store's webhooks when configured):
    what ``status`` shows and what alerting evaluates with ``fleet.status.evaluate``."""
    from fleet.amqp import connect
    from fleet.status_sources import collect
    from topology.apply import vhost_of
    from topology.fleet import DEFAULT_FLEET
    from topology.management import Management

    webhooks = store_webhooks(settings)
    connection = await connect(settings, name="woofleet status")
    try:
        with Management(settings.management_url.get_secret_value()) as management:
            return await collect(
                connection,
                management,
                vhost_of(settings.amqp_url.get_secret_value()),
                DEFAULT_FLEET,
                metrics_urls=metrics_urls,
                ingress_url=ingress_url,
                webhooks=webhooks,
            )
    finally:
        await connection.close()


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def store_webhooks(settings: Settings) -> StoreWebhooks | None:
    """The store's webhooks, judged (None without WOOFLEET_WOO_URL)."""
    if not settings.woo_url:
        return None
    from fleet.status import StoreWebhookProblem, StoreWebhooks
    from publisher.webhook_health import check_webhooks

    report = check_webhooks(settings)
    return StoreWebhooks(
        store=report.store,
        checked=report.checked,
        problems=tuple(
            StoreWebhookProblem(p.webhook_id, p.name, p.topic, p.status, p.problem, p.fix)
            for p in report.problems
        ),
        missing_topics=tuple(report.missing_topics),
        error=report.error,
    )


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f}m" if seconds < 7200 else f"{seconds / 3600:.1f}h"


def _print(console: Console, status: FleetStatus, findings: list[Finding]) -> None:
    from rich.table import Table

    table = Table(title=f"woofleet queues (vhost {status.vhost}, {status.checked_at})")
    columns = ["consumer", "ready", "unacked", "oldest/target", "consumers", "breaker"]
    columns += ["in/s", "acked/s", "retrying", "delayed", "dead"]
    for column in columns:
        table.add_column(column, justify="left" if column == "consumer" else "right")
    for c in status.consumers:
        # Lazy classic queues (RabbitMQ 3.10/3.11) report no head timestamp: "?" then.
        age = "?" if c.oldest_age is None and c.ready else _age(c.oldest_age)
        oldest = f"{age}/{_age(c.delay_target)}"
        table.add_row(
            c.consumer,
            str(c.ready),
            str(c.unacked),
            f"[red]{oldest}[/red]" if c.late else oldest,
            str(c.consumers),
            {None: "?", "closed": "closed"}.get(c.breaker, f"[red]{c.breaker}[/red]"),
            f"{c.incoming_rate:.2f}",
            f"{c.ack_rate:.2f}",
            str(c.in_retry),
            str(c.delayed),
            f"[red]{c.dead}[/red]" if c.dead else "0",
        )
    console.print(table)
    console.print("rates: per second over the last minute; breaker ? = no consumer metrics read")
    ingress = status.ingress
    if ingress is None:
        console.print(f"ingress: not checked (nothing at {DEV_INGRESS}; pass --ingress URL)")
    elif ingress.reachable:
        console.print(
            f"ingress {ingress.url}: outbox {ingress.outbox_depth}, relay lag "
            f"{_age(ingress.relay_lag or 0.0)}, kept deliveries "
            f"{'?' if ingress.kept_deliveries is None else ingress.kept_deliveries}, "
            f"outbox rows set aside {ingress.set_aside_rows or 0}, broker "
            f"{'connected' if ingress.broker_connected else 'not connected'}"
        )
    if status.held_deliveries:
        console.print(
            f"[red]held on the broker: {status.held_deliveries} deliveries[/red] "
            "(the webhook's state store is away; they become events once it is back)"
        )
    if status.webhooks is None:
        console.print(
            "store webhooks: not checked (set WOOFLEET_WOO_URL, WOOFLEET_WOO_KEY, "
            "WOOFLEET_WOO_SECRET)"
        )
    elif not status.webhooks.error and not status.webhooks.problems:
        console.print(
            f"store webhooks: {status.webhooks.checked} on {status.webhooks.store}, all active"
        )
    if findings:
        console.print(f"[red]needs a person ({len(findings)})[/red]:")
        for finding in findings:
            console.print(f"  {finding.summary}\n    → {finding.command}", highlight=False)
    else:
        console.print("[green]nothing needs a person[/green]")
