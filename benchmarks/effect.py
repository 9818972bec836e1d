"""Time to effect: signed WooCommerce deliveries of the simulator's mix (publisher/simulate) at a
fixed order rate through one `woofleet webhook` process, while one `woofleet consume` process
per consumer type runs; from each delivery's arrival to each consumer's effect. Prints figures;
not a test.

Targets on loopback, in a process of their own (benchmarks/effect_targets.py): one HTTP target
server (tests/support/http_target_server.py; each target on its own path) that notes when each
request arrives, an SMTP server (aiosmtpd) that notes when it accepts each email; invoices are
written to files (their modification time). Orders begun in the first --warm-up seconds are not
counted (each process's first deliveries open connections and compile templates). The ledger and the
webhook's outbox are SQLite files. An effect is matched to its order (the order id in the
idempotency key, the email or the invoice's path) and timed from the last delivery of that order
sent before it: exact while an effect comes before the order's next delivery (the simulator
sends an order's steps 16 deliveries apart, ~100 ms at 50 orders/s), shorter otherwise.

Printed per consumer: effects, p50/p99/max in ms (targets at 50 orders/s: p99 <= 25 ms for the
high class, <= 100 ms for medium), the deepest work queue seen while sending (the fleet keeps
up when it stays small), and the webhook's own answer time (its p99 is the baseline). Bounded:
--seconds of sending (default 20) and at most 30 s more to settle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import httpx

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
from benchmarks.fleet import HTTP_TARGETS, consumer_env, settled, spawn, wait_ready
from fleet.amqp import connect
from publisher.simulate.runner import SimulationPlan, deliveries
from topology import names
from topology.apply import apply_fleet
from topology.fleet import DEFAULT_FLEET, PriorityClass
from topology.management import Management

SECRET = "bench-effect-secret"
FIRST_ORDER = 300_000
TARGET_P99_MS = {PriorityClass.HIGH: 25.0, PriorityClass.MEDIUM: 100.0}
ORDER_IN_KEY = re.compile(r"order:(\d+)")
NUMBER = re.compile(rb"\d{6}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else 0.0


async def send_all(
    url: str, plan: SimulationPlan, orders_per_second: float, seconds: float
) -> tuple[dict[int, list[float]], list[float]]:
    """POST the simulator's deliveries at ``orders_per_second`` for ``seconds``: when each
    order's deliveries were sent, and the webhook's answer times (ms)."""
    items = list(deliveries(plan))
    rate = orders_per_second * len(items) / plan.orders
    items = items[: int(rate * seconds)]
    order_ids = [int(json.loads(item.body)["id"]) for item in items]
    sent: dict[int, list[float]] = defaultdict(list)
    answers: list[float] = []
    tasks: set[asyncio.Task[None]] = set()

    async def post(client: httpx.AsyncClient, index: int) -> None:
        begin = time.perf_counter()
        item = items[index]
        try:
            response = await client.post(url, content=item.body, headers=item.headers)
        except httpx.TransportError:
            # A kept-alive connection the server closed as it was reused: send again, as
            # WooCommerce would (the webhook deduplicates by delivery id).
            response = await client.post(url, content=item.body, headers=item.headers)
        answers.append((time.perf_counter() - begin) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"webhook answered {response.status_code}: {response.text[:200]}")

    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16, keepalive_expiry=2)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        started = time.perf_counter()
        for index in range(len(items)):
            due = started + index / rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            sent[order_ids[index]].append(time.time())
            task = asyncio.create_task(post(client, index))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
    print(f"sent {len(items):,} deliveries ({rate:.0f}/s) of {len(sent):,} orders", flush=True)
    return sent, answers


def since_arrival(sent: dict[int, list[float]], order: int, at: float) -> float | None:
    """ms from the last delivery of ``order`` sent before ``at``."""
    before = [t for t in sent.get(order, []) if t <= at]
    return (at - before[-1]) * 1000 if before else None


async def queue_depths(settings_url: str, vhost: str) -> int:
    """The deepest work queue now (ready + unacked)."""
    with Management(settings_url) as management:
        queues = management.get(f"/queues/{vhost.replace('/', '%2F')}")
    work = {names.work_queue(c.name) for c in DEFAULT_FLEET.consumers}
    return max((int(q.get("messages", 0)) for q in queues if q["name"] in work), default=0)


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def report_cpu(
    cpu: dict[str, float], texts: list[str], consumers: list[str], orders: int, deliveries: int
) -> None:
    """CPU seconds per process over the run, per delivery it settled and per order."""
    counts = dict(zip(consumers, (settled(t) for t in texts), strict=True))
    counts["webhook"] = deliveries
    counts["RabbitMQ"] = sum(counts.values())
    for name, seconds in cpu.items():
        n = counts.get(name, 0)
        each = f"{seconds / n * 1000:6.2f} ms per delivery" if n else "nothing settled"
        print(
            f"  cpu {name:<16} {seconds:6.2f} s, {n:>6} settled, {each}, "
            f"{seconds / orders * 1000:6.2f} ms per order"
        )
    total = sum(cpu.values())
    print(f"CPU per order, all processes and RabbitMQ: {total / orders * 1000:.1f} ms")


def match(
    sent: dict[int, list[float]], log: Path, invoices: Path, counted: set[int]
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Each effect's ms from its order's delivery, per consumer (orders in ``counted`` only);
    and effects not matched to an order."""
    latencies: dict[str, list[float]] = defaultdict(list)
    unmatched: dict[str, int] = defaultdict(int)
    known = set(sent)

    def note(consumer: str, at: float, order: int | None) -> None:
        ms = since_arrival(sent, order, at) if order is not None else None
        if ms is None:
            unmatched[consumer] += 1
        elif order in counted:
            latencies[consumer].append(ms)

    def order_in(text: bytes) -> int | None:
        return next((int(n) for n in NUMBER.findall(text) if int(n) in known), None)

    for line in log.read_text().splitlines():
        effect = json.loads(line)
        body = effect["body"].encode()
        if effect["kind"] == "smtp":
            note("order-email", effect["at"], order_in(body))
            continue
        consumer = effect["path"].strip("/").split("/")[0].replace("_", "-")
        key = ORDER_IN_KEY.search(effect["key"])
        note(consumer, effect["at"], int(key.group(1)) if key else order_in(body))
    for pdf in invoices.rglob("*.pdf"):
        note("invoice", pdf.stat().st_mtime, order_in(str(pdf).encode()))
    return latencies, unmatched


async def start_targets(work: str, smtp_port: int) -> tuple[subprocess.Popen[bytes], str]:
    """The targets' process (benchmarks/effect_targets.py) and the HTTP server's URL."""
    port_file = Path(work) / "http.port"
    process = spawn(
        ["-m", "benchmarks.effect_targets", str(port_file), str(smtp_port), f"{work}/effects.log"]
    )
    deadline = time.monotonic() + 30
    while not port_file.exists() or not port_file.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the loopback targets did not start")
        await asyncio.sleep(0.1)
    return process, f"http://127.0.0.1:{port_file.read_text()}"


async def run(args: argparse.Namespace) -> list[Figure]:
    processes: list[subprocess.Popen[bytes]] = []
    work = tempfile.TemporaryDirectory(prefix="woofleet-bench-effect-")
    smtp_port = free_port()
    targets, target_url = await start_targets(work.name, smtp_port)
    deepest = 0
    try:
        with throwaway_vhost("bench-effect") as settings:
            connection = await connect(settings, name="bench-effect")
            vhost = vhost_of(settings)
            management_url = settings.management_url.get_secret_value()
            with Management(management_url) as management:
                await apply_fleet(connection, DEFAULT_FLEET, vhost=vhost, management=management)
            await connection.close()
            env = consumer_env(settings, work.name, smtp_port, 0)
            env.update({f"WOOFLEET_{t.upper()}_URL": f"{target_url}/{t}" for t in HTTP_TARGETS})
            ports = {c.name: free_port() for c in DEFAULT_FLEET.consumers}
            for name, port in ports.items():
                command = ["-m", "woofleet", "consume", name, "--host", "127.0.0.1", "--port"]
                processes.append(spawn([*command, str(port)], env))
            webhook_port = free_port()
            webhook_env = {
                **env,
                "WOOFLEET_STATE_URL": f"sqlite:///{work.name}/outbox.db",
                "WOOFLEET_WEBHOOK_SECRET": SECRET,
            }
            command = ["-m", "woofleet", "webhook", "--host", "127.0.0.1", "--port"]
            processes.append(spawn([*command, str(webhook_port)], webhook_env))
            async with httpx.AsyncClient(timeout=5) as client:
                await wait_ready(client, {**ports, "webhook": webhook_port}, 90)
                print(f"{len(ports)} consumers and the webhook ready", flush=True)
                plan = SimulationPlan(
                    orders=int(args.rate * args.seconds) + 1,
                    rate=args.rate,
                    url=f"http://127.0.0.1:{webhook_port}/webhooks/woocommerce",
                    secret=SECRET.encode(),
                    first_order_id=FIRST_ORDER,
                )
                pids = {name: processes[i].pid for i, name in enumerate([*ports, "webhook"])}
                beam = pids_named("beam.smp")
                cpu_before = {name: proc_cpu(pid) for name, pid in pids.items()}
                cpu_before["RabbitMQ"] = sum(proc_cpu(pid) for pid in beam)
                sending = asyncio.create_task(send_all(plan.url, plan, args.rate, args.seconds))
                while not sending.done():
                    deepest = max(deepest, await queue_depths(management_url, vhost))
                    await asyncio.wait([sending], timeout=1)
                sent, answers = sending.result()
                # Settle: until no consumer settles anything more for 2 s (at most 30 s).
                last, still, deadline = -1, 0.0, time.monotonic() + 30
                while time.monotonic() < deadline and still < 2:
                    texts = [
                        (await client.get(f"http://127.0.0.1:{p}/metrics")).text
                        for p in ports.values()
                    ]
                    total = sum(settled(t) for t in texts)
                    still = still + 0.5 if total == last else 0.0
                    last = total
                    await asyncio.sleep(0.5)
                cpu = {name: proc_cpu(pid) - cpu_before[name] for name, pid in pids.items()}
                cpu["RabbitMQ"] = sum(proc_cpu(pid) for pid in beam) - cpu_before["RabbitMQ"]
                report_cpu(cpu, texts, list(ports), len(sent), sum(map(len, sent.values())))
            stop(processes)  # before the vhost goes, so they do not log its loss
    finally:
        stop([*processes, targets])
    # Orders whose first delivery came after the warm-up: the first deliveries of each process
    # pay for connections, lazy imports and template compilation once.
    warm_until = min(t[0] for t in sent.values()) + args.warm_up
    counted = {order for order, times in sent.items() if times[0] >= warm_until}
    work_dir = Path(work.name)
    latencies, unmatched = match(sent, work_dir / "effects.log", work_dir / "invoices", counted)
    work.cleanup()
    webhook_p99 = percentile(answers, 99)
    print(f"webhook answer: p50 {percentile(answers, 50):.1f} ms, p99 {webhook_p99:.1f} ms")
    print(f"deepest work queue while sending: {deepest} messages")
    bench = f"effect ({args.rate:g} orders/s for {args.seconds:g}s, simulator mix)"
    figures = []
    for consumer in sorted(latencies, key=lambda c: DEFAULT_FLEET.consumer(c).priority_class):
        values = latencies[consumer]
        klass = DEFAULT_FLEET.consumer(consumer).priority_class
        p50, p99, top = percentile(values, 50), percentile(values, 99), max(values)
        print(
            f"  {consumer:<16} {klass:<7} {len(values):>5} effects "
            f"({unmatched.get(consumer, 0)} unmatched): p50 {p50:6.1f}  p99 {p99:6.1f}  "
            f"max {top:6.1f} ms"
        )
        figures.append(
            Figure(
                bench,
                f"{consumer} ({klass}) p99 to effect",
                p99,
                "ms",
                "webhook answer p99",
                webhook_p99,
                higher_is_better=False,
                target_value=TARGET_P99_MS.get(klass),
            )
        )
    return figures


def parser() -> argparse.ArgumentParser:
    result = parser_for(__doc__, "scripts/bench-effect")
    result.add_argument("--rate", type=float, default=50, help="orders per second (50)")
    result.add_argument("--seconds", type=float, default=20, help="seconds of sending (20)")
    result.add_argument(
        "--warm-up", type=float, default=3, help="orders begun in the first seconds not counted (3)"
    )
    return result


def cli(argv: Sequence[str] | None = None) -> None:
    main(parser(), run, argv)


if __name__ == "__main__":
    cli()
