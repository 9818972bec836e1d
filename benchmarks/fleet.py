"""The whole fleet's order throughput: orders/s through every consumer type, one process each,
against the broker alone moving the same events in the same run.

Every target is a real server on loopback: one HTTP sink (answers 200 to every request) for the
HTTP targets, an SMTP server (aiosmtpd) for mail, and a file invoice store. Orders are published
as their lifecycle events (order.created, order.paid, order.completed) straight to woo.events
through the outbox relay's confirming channel; the clock stops when every consumer has settled
every delivery it was due (counted from each process's /metrics). review-request only receives
its events seven days later (delay queue) and catalog receives no order events, so they run but
have nothing to do here.

Baseline: the same number of orders published the same way and drained from every work queue by
plain aio-pika consumers in this process that only ack: what the broker's fan-out costs without
any consumer work. Bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import httpx
from aio_pika.abc import AbstractIncomingMessage
from aiosmtpd.controller import Controller

from benchmarks.common import (
    Figure,
    free_port,
    main,
    parser_for,
    pids_named,
    proc_cpu,
    throwaway_vhost,
    vhost_of,
)
from contracts.envelope import event_id_for
from contracts.orders import OrderEvent, order_data_from_woo
from fleet.amqp import connect
from fleet.settings import Settings
from publisher.confirming_channel import open_confirming_channel
from publisher.outgoing import Outgoing
from topology import names
from topology.apply import apply_fleet
from topology.fleet import CONSUMERS, DEFAULT_FLEET
from topology.management import Management
from topology.routing import topic_matches

SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "woocommerce"
EVENTS = ("order.created", "order.paid", "order.completed")
HTTP_TARGETS = ("payment_capture", "stock", "erp_sync", "warehouse", "analytics", "crm", "loyalty")
SINK = "benchmarks.sink"


class CountingSmtp:
    """An SMTP handler that accepts and counts every message."""

    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.received += 1
        return "250 OK"


def orders(count: int, first_id: int) -> list[OrderEvent]:
    raw = json.loads((SAMPLE / "real-delivery-order-created.json").read_text())["body_json"]
    now = datetime.now(UTC)
    events = []
    for n in range(count):
        order = {
            **raw,
            "id": first_id + n,
            "number": str(first_id + n),
            "payment_method": "stripe",
            "transaction_id": f"pi_{first_id + n}",
            "customer_id": 7,
            "status": "completed",
        }
        data = order_data_from_woo(order)
        events += [
            OrderEvent(
                event_id=event_id_for("bench", data.id, event_type),
                event_type=event_type,
                schema_version=1,
                occurred_at=now,
                source="https://shop.example/",
                data=data,
            )
            for event_type in EVENTS
        ]
    return events


def due_per_order() -> dict[str, int]:
    """Deliveries each consumer settles per order (delayed ones excluded)."""
    return {
        c.name: sum(any(topic_matches(b, e) for b in c.bindings) for e in EVENTS)
        for c in CONSUMERS
        if c.delay is None
    }


def settled(metrics_text: str) -> int:
    total = 0
    for line in metrics_text.splitlines():
        if line.startswith("woofleet_consumer_messages_total{"):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


async def publish(settings: Settings, events: list[OrderEvent]) -> None:
    channel = await open_confirming_channel(settings, name="bench-fleet")
    try:
        await asyncio.gather(*(channel.publish(Outgoing.from_envelope(e)) for e in events))
    finally:
        await channel.close()


async def broker_alone(settings: Settings, count: int, first_id: int) -> float:
    """Orders/s with every work queue drained by ack-only aio-pika consumers (the baseline)."""
    due = sum(due_per_order().values()) * count
    done = asyncio.Event()
    acked = 0

    async def on_message(message: AbstractIncomingMessage) -> None:
        nonlocal acked
        await message.ack()
        acked += 1
        if acked >= due:
            done.set()

    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=100)
        for consumer in due_per_order():
            queue = await channel.declare_queue(names.work_queue(consumer), passive=True)
            await queue.consume(on_message)
        events = orders(count, first_id)
        started = time.perf_counter()
        await publish(settings, events)
        await done.wait()
        return count / (time.perf_counter() - started)
    finally:
        await connection.close()


def consumer_env(settings: Settings, work: str, smtp_port: int, sink_port: int) -> dict[str, str]:
    env = {
        **os.environ,
        "WOOFLEET_AMQP_URL": settings.amqp_url.get_secret_value(),
        "WOOFLEET_MANAGEMENT_URL": settings.management_url.get_secret_value(),
        "WOOFLEET_STATE_URL": f"sqlite:///{work}/state.db",
        "WOOFLEET_VAR_DIR": f"{work}/var",
        "WOOFLEET_INVOICE_STORE": f"file://{work}/invoices",
        "WOOFLEET_SMTP_URL": f"smtp+insecure://127.0.0.1:{smtp_port}",
        "WOOFLEET_PAYMENT_CAPTURE_METHODS": "stripe",
        "WOOFLEET_LOG_LEVEL": "WARNING",
    }
    env.update({f"WOOFLEET_{t.upper()}_URL": f"http://127.0.0.1:{sink_port}" for t in HTTP_TARGETS})
    return env


def spawn(arguments: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """This interpreter with ``arguments`` (started at once; the caller waits for readiness)."""
    return subprocess.Popen([sys.executable, *arguments], env=env)


async def wait_ready(client: httpx.AsyncClient, ports: dict[str, int], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    for name, port in ports.items():
        while True:
            try:
                if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"consumer {name} did not become ready within {seconds:g}s")
            await asyncio.sleep(0.1)


async def through_fleet(
    settings: Settings, args: argparse.Namespace, processes: list[subprocess.Popen[bytes]]
) -> tuple[float, int]:
    """Orders/s through every consumer process, and the emails the SMTP server received."""
    work = tempfile.TemporaryDirectory(prefix="woofleet-bench-fleet-")
    sink_port, smtp_port = free_port(), free_port()
    smtp = CountingSmtp()
    controller = Controller(smtp, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    try:
        processes.append(spawn(["-m", SINK, str(sink_port)]))
        env = consumer_env(settings, work.name, smtp_port, sink_port)
        ports = {c.name: free_port() for c in DEFAULT_FLEET.consumers}
        pids: dict[str, int] = {}
        for name, port in ports.items():
            command = ["-m", "woofleet", "consume", name, "--host", "127.0.0.1", "--port"]
            processes.append(spawn([*command, str(port)], env))
            pids[name] = processes[-1].pid
        async with httpx.AsyncClient(timeout=5) as client:
            await wait_ready(client, ports, 60)
            print(f"{len(ports)} consumer processes ready; {args.orders} orders", flush=True)
            events = orders(args.orders, int(time.time()) % 100_000 * 1000)
            due = sum(due_per_order().values()) * args.orders
            cpu_before = {name: proc_cpu(pid) for name, pid in pids.items()}
            beam = pids_named("beam.smp")
            beam_before = sum(proc_cpu(pid) for pid in beam)
            started = time.perf_counter()
            await publish(settings, events)
            done = 0
            while time.perf_counter() < started + args.max_seconds:
                texts = [
                    (await client.get(f"http://127.0.0.1:{p}/metrics")).text for p in ports.values()
                ]
                done = sum(settled(t) for t in texts)
                if done >= due:
                    break
                await asyncio.sleep(0.2)
            elapsed = time.perf_counter() - started
            beam_cpu = sum(proc_cpu(pid) for pid in beam) - beam_before
            cpu = {name: proc_cpu(pid) - cpu_before[name] for name, pid in pids.items()}
        if done < due:
            raise SystemExit(f"settled {done} of {due} deliveries within {args.max_seconds:g}s")
        print(f"fleet: {done} deliveries settled in {elapsed:.1f}s ({done / elapsed:,.0f}/s)")
        per_order = due_per_order()
        for name, seconds in cpu.items():
            n = per_order.get(name, 0) * args.orders
            each = f"{seconds / n * 1000:.2f} ms per delivery" if n else "no deliveries"
            print(f"  {name:<16} {seconds:6.2f} s CPU, {each}")
        consumers_ms = sum(cpu.values()) / args.orders * 1000
        print(
            f"CPU per order: consumers {consumers_ms:.1f} ms, RabbitMQ (beam.smp, whole node, "
            f"shared) {beam_cpu / args.orders * 1000:.1f} ms ({beam_cpu / due * 1e6:.0f} us "
            f"per delivery)"
        )
        return args.orders / elapsed, smtp.received
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        controller.stop()
        work.cleanup()


async def run(args: argparse.Namespace) -> list[Figure]:
    processes: list[subprocess.Popen[bytes]] = []
    with throwaway_vhost("bench-fleet") as settings:
        connection = await connect(settings, name="bench-fleet")
        vhost = vhost_of(settings)
        with Management(settings.management_url.get_secret_value()) as management:
            await apply_fleet(connection, DEFAULT_FLEET, vhost=vhost, management=management)
        await connection.close()
        baseline = await broker_alone(settings, args.orders, 1)
        print(f"broker alone: {baseline:,.1f} orders/s", flush=True)
        rate, emails = await through_fleet(settings, args, processes)
    print(f"fleet: {rate:,.1f} orders/s; {emails} emails received by SMTP")
    bench = f"fleet ({args.orders} orders, {len(DEFAULT_FLEET.consumers)} processes)"
    return [Figure(bench, "every consumer", rate, "orders/s", "broker alone (ack only)", baseline)]


def parser() -> argparse.ArgumentParser:
    result = parser_for(__doc__, "scripts/bench-fleet")
    result.add_argument("--orders", type=int, default=500, help="orders to publish (500)")
    result.add_argument("--max-seconds", type=float, default=300, help="give up after (300)")
    return result


def cli(argv: Sequence[str] | None = None) -> None:
    main(parser(), run, argv)


if __name__ == "__main__":
    cli()
