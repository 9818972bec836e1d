"""Memory of consumer processes: resident set size (RSS, from /proc) of real `woofleet consume`
processes under load. Prints figures; not a test.

Targets on loopback as in benchmarks/fleet.py (HTTP sink, aiosmtpd, invoices to files, ledger in
SQLite), events published to woo.events of a throw-away vhost:

* one process consuming one type (--consumer, default analytics): RSS once ready, after half
  of --deliveries (default 10,000) and after all of them (target <= 80 MB); the growth over
  the second half is the steady-run figure (a shortened run of a few thousand deliveries, not
  ten minutes at 50 orders/s);
* one process consuming every type: RSS once ready and after --orders orders (default 300) of
  the lifecycle (created, paid, completed) have been settled by every consumer (target <= 150
  MB).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import time
from collections.abc import Sequence

import httpx
from aiosmtpd.controller import Controller

from benchmarks.common import (
    Figure,
    free_port,
    main,
    parser_for,
    proc_rss_mb,
    throwaway_vhost,
    vhost_of,
)
from benchmarks.fleet import (
    SINK,
    CountingSmtp,
    consumer_env,
    due_per_order,
    orders,
    publish,
    settled,
    spawn,
    wait_ready,
)
from fleet.amqp import connect
from fleet.settings import Settings
from topology import names
from topology.apply import apply_fleet
from topology.fleet import DEFAULT_FLEET
from topology.management import Management


async def settle(
    client: httpx.AsyncClient,
    port: int,
    due: int,
    deadline: float,
    process: subprocess.Popen[bytes],
) -> None:
    """Wait until the process on ``port`` has settled ``due`` deliveries in all."""
    while True:
        done = settled((await client.get(f"http://127.0.0.1:{port}/metrics")).text)
        if done >= due:
            return
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"settled {done} of {due} deliveries in time")
        await asyncio.sleep(0.2)


async def one_process(
    settings: Settings,
    consumers: list[str],
    env: dict[str, str],
    batches: list[int],
    deadline: float,
    first_id: int,
) -> list[float]:
    """RSS (MB) of one `woofleet consume` process once ready and after each batch of orders."""
    port = free_port()
    process = spawn(
        ["-m", "woofleet", "consume", *consumers, "--host", "127.0.0.1", "--port", str(port)], env
    )
    per_order = sum(n for c, n in due_per_order().items() if c in consumers)
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            await wait_ready(client, {"+".join(consumers): port}, 60)
            rss = [proc_rss_mb(process.pid)]
            due = 0
            for count in batches:
                await publish(settings, orders(count, first_id))
                first_id += count
                due += count * per_order
                await settle(client, port, due, deadline, process)
                rss.append(proc_rss_mb(process.pid))
            return rss
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


async def run(args: argparse.Namespace) -> list[Figure]:
    deadline = time.monotonic() + args.max_seconds
    per_order = due_per_order()[args.consumer]
    orders_needed = -(-args.deliveries // per_order)
    half = orders_needed // 2
    everyone = [c.name for c in DEFAULT_FLEET.consumers]
    smtp_port, sink_port = free_port(), free_port()
    controller = Controller(CountingSmtp(), hostname="127.0.0.1", port=smtp_port)
    controller.start()
    sink = spawn(["-m", SINK, str(sink_port)])
    try:
        with throwaway_vhost("bench-memory") as settings:
            connection = await connect(settings, name="bench-memory")
            with Management(settings.management_url.get_secret_value()) as management:
                await apply_fleet(
                    connection, DEFAULT_FLEET, vhost=vhost_of(settings), management=management
                )
            await connection.close()
            with tempfile.TemporaryDirectory(prefix="woofleet-bench-memory-") as work:
                env = consumer_env(settings, work, smtp_port, sink_port)
                single = await one_process(
                    settings,
                    [args.consumer],
                    env,
                    [half, orders_needed - half],
                    deadline,
                    1,
                )
                print(
                    f"one process ({args.consumer}): RSS {single[0]:.1f} MB ready, "
                    f"{single[1]:.1f} MB after {half * per_order:,} deliveries, "
                    f"{single[2]:.1f} MB after {orders_needed * per_order:,}",
                    flush=True,
                )
            with tempfile.TemporaryDirectory(prefix="woofleet-bench-memory-") as work:
                env = consumer_env(settings, work, smtp_port, sink_port)
                # Fresh queues for the all-in-one process: what the single one left is purged.
                connection = await connect(settings, name="bench-memory")
                async with connection.channel() as channel:
                    for name in everyone:
                        queue = await channel.declare_queue(names.work_queue(name), passive=True)
                        await queue.purge()
                await connection.close()
                every = await one_process(
                    settings, everyone, env, [args.orders], deadline, 1_000_000
                )
                print(
                    f"one process ({len(everyone)} types): RSS {every[0]:.1f} MB ready, "
                    f"{every[1]:.1f} MB after {args.orders} orders",
                    flush=True,
                )
    finally:
        sink.terminate()
        sink.wait(10)
        controller.stop()
    bench = f"memory (RSS; {orders_needed * per_order:,} / {args.orders} orders)"
    return [
        Figure(
            bench,
            f"1 type ({args.consumer}) after {orders_needed * per_order:,} deliveries",
            single[2],
            "MB",
            "same process, ready",
            single[0],
            higher_is_better=False,
            target_value=80,
        ),
        Figure(
            bench,
            f"1 type, growth over last {(orders_needed - half) * per_order:,} deliveries",
            single[2] - single[1],
            "MB",
            "RSS at half-way",
            single[1],
            higher_is_better=False,
        ),
        Figure(
            bench,
            f"all {len(everyone)} types in 1 process, after {args.orders} orders",
            every[1],
            "MB",
            "same process, ready",
            every[0],
            higher_is_better=False,
            target_value=150,
        ),
    ]


def parser() -> argparse.ArgumentParser:
    result = parser_for(__doc__, "scripts/bench-memory")
    result.add_argument("--consumer", default="analytics", help="the single type (analytics)")
    result.add_argument("--deliveries", type=int, default=10_000, help="for the single type")
    result.add_argument("--orders", type=int, default=300, help="for the all-types process")
    result.add_argument("--max-seconds", type=float, default=240, help="give up after (240)")
    return result


def cli(argv: Sequence[str] | None = None) -> None:
    main(parser(), run, argv)


if __name__ == "__main__":
    cli()
