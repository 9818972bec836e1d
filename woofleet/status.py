"""``woofleet status``: queue depths, rates, consumers, DLQ counts, and the store's webhooks."""

from __future__ import annotations

import argparse
import sys

from fleet.settings import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "status",
        help="queue depths, rates, consumers, dead letters, and webhook health",
        description="Reads the RabbitMQ management API (WOOFLEET_MANAGEMENT_URL) and, when "
        "WOOFLEET_WOO_URL is set, the store's webhooks. Exits 1 when something needs a person: "
        "dead letters, missing queues, or an inactive webhook. (A queue without consumers is "
        "normal where KEDA scales a low-priority consumer to zero.)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from fleet.status import fleet_status, missing_queues
    from topology.apply import vhost_of
    from topology.fleet import DEFAULT_FLEET
    from topology.management import Management

    settings: Settings = args.settings
    # Wide enough for the table when piped (rich assumes 80 columns off a terminal).
    console = Console(width=None if sys.stdout.isatty() else 110)
    vhost = vhost_of(settings.amqp_url.get_secret_value())
    with Management(settings.management_url.get_secret_value()) as management:
        rows = fleet_status(management, vhost, DEFAULT_FLEET)
        missing = missing_queues(management, vhost, DEFAULT_FLEET)
    table = Table(title=f"woofleet queues (vhost {vhost})")
    for column in (
        "consumer",
        "ready",
        "unacked",
        "consumers",
        "in/s",
        "acked/s",
        "retrying",
        "delayed",
        "dead",
    ):
        table.add_column(column, justify="left" if column == "consumer" else "right")
    for row in rows:
        table.add_row(
            row.consumer,
            str(row.ready),
            str(row.unacked),
            str(row.consumers) if row.consumers else "[red]0[/red]",
            f"{row.incoming_rate:.1f}",
            f"{row.ack_rate:.1f}",
            str(row.in_retry),
            str(row.delayed),
            f"[red]{row.dead}[/red]" if row.dead else "0",
        )
    console.print(table)
    problems = 0
    if missing:
        problems += 1
        console.print(
            f"[red]missing queues[/red]: {', '.join(missing)} — run `woofleet topology apply`"
        )
    dead = [r for r in rows if r.dead]
    if dead:
        problems += 1
        console.print(
            "dead letters waiting: "
            + ", ".join(f"{r.consumer} ({r.dead})" for r in dead)
            + " — see `woofleet dlq list CONSUMER`"
        )
    problems += _webhooks(settings, console)
    return 1 if problems else 0


def _webhooks(settings: Settings, console: object) -> int:
    if not settings.woo_url:
        print("webhooks: not checked (set WOOFLEET_WOO_URL, WOOFLEET_WOO_KEY, WOOFLEET_WOO_SECRET)")
        return 0
    from publisher.webhook_health import check_webhooks, format_report

    report = check_webhooks(settings)
    print(format_report(report))
    return 0 if report.ok else 1
