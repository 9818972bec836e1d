"""The consumer runtime's drain with its idempotency ledger on PostgreSQL (what production runs),
against a plain aio-pika consumer on the same queue, in the same run. Prints figures; not a test.

Same queue and messages as benchmarks/runtime.py (woo.analytics, classic, x-max-priority 5,
real-shaped OrderEvents, manual acks, prefetch 100 for both), in a throw-away vhost; the ledger's
tables live in a throw-away schema of the local PostgreSQL (WOOFLEET_BENCH_POSTGRES_URL, default
postgresql://postgres@127.0.0.1:5432/test), dropped afterwards. The runtime's handler does nothing
but the ledger is on: every message is looked up (is_done) and recorded (mark_done) under its own
business key, as for a consumer with HandlerSpec(business_key=...). Variants, each drained once
per round after a warm-up:

* ledger batched — PostgresLedger as shipped: calls arriving within a few milliseconds of each
  other go to the database as one statement;
* ledger per call — PostgresLedger(batch=False): one statement per call (the former ledger);
* plain — aio-pika: consume, ack, count (the baseline; target runtime/plain >= 0.5).

Printed: msg/s (wall clock) and CPU time per message of this process and of the PostgreSQL
backends serving it (read from /proc), the best round of each. After each runtime drain every
key must be in the ledger exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import psycopg

from benchmarks.common import Figure, main, parser_for, proc_cpu, with_vhost
from benchmarks.runtime import (
    CONSUMER,
    Drain,
    drain_with_aio_pika,
    events,
    fill,
    ready_count,
    settle_garbage,
    wire,
)
from consumers.runtime import Delivery, HandlerSpec, Supervisor
from consumers.runtime.handler import AnyEnvelope
from consumers.runtime.ledger import PostgresLedger
from fleet.amqp import connect
from fleet.settings import Settings
from topology.apply import apply_fleet
from topology.fleet import DEFAULT_FLEET, FleetSpec
from topology.management import Management

POSTGRES = os.environ.get(
    "WOOFLEET_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
WARM_UP = 2000
#: The application name the ledger's connections carry, to find their backends' CPU.
APP = "woofleet-bench-ledger"


@contextmanager
def throwaway_schema() -> Iterator[tuple[str, psycopg.Connection]]:
    """A PostgreSQL URL whose search_path is a new schema (dropped afterwards), and an admin
    connection to the same database."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=3)
    admin.execute(f"CREATE SCHEMA {schema}")
    options = quote(f"-csearch_path={schema}")
    sep = "&" if "?" in POSTGRES else "?"
    try:
        yield f"{POSTGRES}{sep}options={options}&application_name={APP}", admin
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


def backend_cpu(admin: psycopg.Connection) -> float:
    """CPU seconds (user + system) of the PostgreSQL backends serving the ledger."""
    rows = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (APP,)
    ).fetchall()
    return sum(proc_cpu(pid) for (pid,) in rows)


async def drain_with_ledger(
    settings: Settings,
    fleet: FleetSpec,
    count: int,
    ledger: PostgresLedger | None,
    admin: psycopg.Connection,
) -> tuple[Drain, float]:
    """Drain ``count`` messages through the runtime with ``ledger``; the drain and the
    database backends' CPU per message (us)."""
    done = asyncio.Event()
    handled = 0

    async def noop(event: AnyEnvelope, delivery: Delivery) -> None:
        nonlocal handled
        handled += 1
        if handled == count:
            done.set()

    spec = HandlerSpec(
        business_key=None if ledger is None else lambda e: f"{e.event_type}:{e.event_id}"
    )
    supervisor = Supervisor(
        [CONSUMER], settings, fleet=fleet, handlers={CONSUMER: (spec, noop)}, ledger=ledger
    )
    started, cpu = time.perf_counter(), time.process_time()
    await supervisor.start()
    db_cpu = backend_cpu(admin)
    await done.wait()
    await supervisor.workers[CONSUMER].wait_idle()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    db_cpu = backend_cpu(admin) - db_cpu
    stats = dict(supervisor.workers[CONSUMER].stats)
    await supervisor.stop(5)
    if ledger is not None:
        print(f"  {ledger.calls / max(1, ledger.statements):.1f} ledger calls per statement")
    if stats != {"handled": count}:
        raise SystemExit(f"runtime did not just handle every message: {stats}")
    return Drain(count / elapsed, cpu / count * 1e6), db_cpu / count * 1e6


def ledger_for(url: str, batch: bool | None) -> PostgresLedger | None:
    return None if batch is None else PostgresLedger(url, batch=batch)


def recorded(admin: psycopg.Connection, schema_url: str) -> tuple[int, int]:
    """Rows in the ledger, and distinct keys among them."""
    with psycopg.connect(schema_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT business_key) FROM consumer_ledger"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def run(args: argparse.Namespace) -> list[Figure]:
    vhost = f"bench-ledger-{uuid.uuid4().hex[:8]}"
    only = DEFAULT_FLEET.only(CONSUMER)
    fleet = replace(
        only, consumers=tuple(replace(c, prefetch=args.prefetch) for c in only.consumers)
    )
    variants: dict[str, bool | None] = {
        "ledger batched": True,
        "ledger per call": False,
        "no ledger": None,
    }
    variants = {k: v for k, v in variants.items() if k != "ledger per call" or args.before}
    print(f"preparing {args.messages:,} OrderEvent messages ...", flush=True)
    results: dict[str, list[tuple[Drain, float]]] = {name: [] for name in variants}
    plain: list[Drain] = []
    expected = 0
    with Management(args.management_url) as management, throwaway_schema() as (url, admin):
        try:
            management.create_vhost(vhost)  # inside: a create that times out may still land
            settings = Settings(
                amqp_url=with_vhost(args.amqp_url, vhost),
                management_url=args.management_url,
                state_url=url,
                var_dir=Path("/nonexistent"),
                targets={},
            )
            connection = await connect(settings, name="bench-ledger")
            await apply_fleet(connection, fleet, vhost=vhost, management=management)
            for batch in variants.values():  # warm-up, not counted
                warm = wire(events(WARM_UP))
                await fill(connection, warm)
                await drain_with_ledger(settings, fleet, WARM_UP, ledger_for(url, batch), admin)
                expected += WARM_UP if batch is not None else 0
            warm = wire(events(WARM_UP))
            await fill(connection, warm)
            await drain_with_aio_pika(settings, args.prefetch, WARM_UP)
            for round_no in range(1, args.rounds + 1):
                for label in [*variants, "plain"]:
                    await fill(connection, wire(events(args.messages)))
                    settle_garbage()
                    db_us = 0.0
                    if label == "plain":
                        drain = await drain_with_aio_pika(settings, args.prefetch, args.messages)
                        plain.append(drain)
                    else:
                        batch = variants[label]
                        drain, db_us = await drain_with_ledger(
                            settings, fleet, args.messages, ledger_for(url, batch), admin
                        )
                        results[label].append((drain, db_us))
                        expected += args.messages if batch is not None else 0
                    left = await ready_count(connection)
                    print(
                        f"round {round_no}: {label:<16} {drain.rate:>8,.0f} msg/s, "
                        f"{drain.cpu_us:>5.0f} us CPU/msg here, {db_us:>4.0f} us in PostgreSQL "
                        f"({left} left after)",
                        flush=True,
                    )
            await connection.close()
            rows, keys = recorded(admin, url)
            if rows != expected or keys != expected:
                raise SystemExit(f"ledger holds {rows} rows, {keys} keys; expected {expected}")
            print(f"ledger: {rows:,} keys, each recorded exactly once")
        finally:
            management.delete_vhost(vhost)
    best_plain = max(plain, key=lambda d: d.rate)
    cpu_plain = min(d.cpu_us for d in plain)
    bench = f"ledger ({args.messages:,} msgs, PostgreSQL)"
    figures: list[Figure] = []
    for label, drains in results.items():
        best = max(drains, key=lambda d: d[0].rate)[0]
        cpu = min(d[0].cpu_us for d in drains)
        db = min(d[1] for d in drains)
        print(f"{label}: {db:.0f} us of PostgreSQL backend CPU per message")
        figures += [
            Figure(
                bench,
                f"runtime drain, {label}",
                best.rate,
                "msg/s",
                "plain aio-pika",
                best_plain.rate,
                0.5,
            ),
            Figure(
                bench,
                f"CPU/msg, {label}",
                cpu,
                "us",
                "plain aio-pika",
                cpu_plain,
                None,
                higher_is_better=False,
            ),
        ]
    # The ledger's own share: the same runtime with it against without it.
    if "no ledger" in results:
        without = max(d[0].rate for d in results["no ledger"])
        with_ledger = max(d[0].rate for d in results["ledger batched"])
        figures.append(
            Figure(
                bench, "drain, ledger batched", with_ledger, "msg/s", "runtime, no ledger", without
            )
        )
    return figures


def parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__, "scripts/bench-ledger")
    parser.add_argument("--messages", type=int, default=10_000, help="messages per drain")
    parser.add_argument("--prefetch", type=int, default=100, help="prefetch of both consumers")
    parser.add_argument("--rounds", type=int, default=1, help="drains per variant; best counts")
    parser.add_argument(
        "--no-before",
        dest="before",
        action="store_false",
        help="skip the per-call ledger (the former one)",
    )
    parser.add_argument(
        "--amqp-url",
        default=os.environ.get("WOOFLEET_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        help="the broker (default: WOOFLEET_AMQP_URL or the local one); its vhost is replaced",
    )
    parser.add_argument(
        "--management-url",
        default=os.environ.get("WOOFLEET_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672"),
        help="management API of the same broker (default: WOOFLEET_MANAGEMENT_URL or local)",
    )
    return parser


def cli(argv: Sequence[str] | None = None) -> None:
    main(parser(), run, argv)


if __name__ == "__main__":
    cli()
