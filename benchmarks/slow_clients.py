"""Valid deliveries while slow clients hold connections open to the webhook.

Starts ``woofleet webhook`` (SQLite state, the local broker), measures the latency of signed
deliveries alone (the baseline), then again while N connections each send a byte of request
head per second for ``--hold`` seconds (longer than the head deadline,
WOOFLEET_WEBHOOK_HEAD_SECONDS, 10 s by default, so the webhook closes them meanwhile), and prints
both side by side with how many slow connections the webhook closed and when. Bounded: the slow
clients stop after the run.

    python -m benchmarks.slow_clients [--connections 3000] [--deliveries 200] [--hold 15]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime

import aio_pika
import httpx

from benchmarks.common import free_port, throwaway_vhost
from fleet.settings import Settings
from publisher.simulate.encoding import delivery
from publisher.simulate.orders import make_order
from topology import names

SECRET = b"slow-clients"
HEAD = b"POST /webhooks/woocommerce HTTP/1.1\r\nHost: 127.0.0.1\r\n"


async def deliveries(port: int, count: int, first_id: int) -> list[float]:
    """Seconds to the answer of each of ``count`` signed new orders, sent one after another."""
    rng = random.Random(first_id)
    seconds = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for n in range(count):
            order = make_order(rng, first_id + n, datetime.now(UTC))
            item = delivery("order.created", order, SECRET)
            started = time.perf_counter()
            response = await client.post(
                "/webhooks/woocommerce", content=item.body, headers=item.headers
            )
            seconds.append(time.perf_counter() - started)
            if not response.is_success:
                raise SystemExit(f"a valid delivery got {response.status_code}: {response.text}")
    return seconds


async def paced_deliveries(port: int, seconds: float, rate: float, first_id: int) -> list[float]:
    """Signed new orders at ``rate`` a second for ``seconds``; the seconds to each answer."""
    found: list[float] = []
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        found += await deliveries(port, 1, first_id + n)
        n += 1
        await asyncio.sleep(max(0.0, 1 / rate - found[-1]))
    return found


async def slow_clients(port: int, count: int, stop: asyncio.Event) -> tuple[int, int, float]:
    """Open ``count`` connections and send one byte of head per second on each until ``stop``;
    returns how many opened, how many the webhook closed meanwhile, and the seconds from the
    first byte to the last close."""
    clients = []
    for _ in range(count):
        try:
            clients.append(await asyncio.open_connection("127.0.0.1", port))
        except OSError:
            break
    started = time.monotonic()
    closes: list[float] = []

    async def until_closed(reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.read(4096):  # the 408, if any, then the end
                pass
        closes.append(time.monotonic() - started)

    watching = [asyncio.create_task(until_closed(reader)) for reader, _ in clients]
    offset = 0
    while not stop.is_set():
        for (_, writer), watch in zip(clients, watching, strict=True):
            if not watch.done():
                with contextlib.suppress(ConnectionError):
                    writer.write(HEAD[offset % len(HEAD) : offset % len(HEAD) + 1])
        offset += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    closed = len(closes)
    last = max(closes, default=0.0)
    for (_, writer), watch in zip(clients, watching, strict=True):
        watch.cancel()
        writer.close()
    return len(clients), closed, last


def summary(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (
        f"p50 {statistics.median(ordered) * 1000:6.1f} ms  p99 {p99 * 1000:6.1f} ms"
        f"  max {ordered[-1] * 1000:6.1f} ms"
    )


async def run(connections: int, count: int, hold: float) -> None:
    with throwaway_vhost("bench-slow") as settings:
        # The exchange the relay publishes to, and a queue for what it publishes.
        connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
        async with connection:
            channel = await connection.channel()
            events = await channel.declare_exchange(
                names.EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
            )
            sink = await channel.declare_queue("bench-slow-sink")
            await sink.bind(events, "#")
        await measure(settings, connections, count, hold)


async def measure(settings: Settings, connections: int, count: int, hold: float) -> None:
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="woofleet-slow-")
    env = {
        **os.environ,
        "WOOFLEET_AMQP_URL": settings.amqp_url.get_secret_value(),
        "WOOFLEET_WEBHOOK_SECRET": SECRET.decode(),
        "WOOFLEET_STATE_URL": f"sqlite:///{workdir}/state.db",
        "WOOFLEET_LOG_LEVEL": "ERROR",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "woofleet", "webhook", "--port", str(port), env=env
    )
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            for _ in range(300):
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/healthz")).is_success:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        baseline = await deliveries(port, count, 7_000_000)
        stop = asyncio.Event()
        holding = asyncio.create_task(slow_clients(port, connections, stop))
        await asyncio.sleep(3)  # all connected and trickling
        loaded = await deliveries(port, count, 8_000_000)
        # and on through the head deadline, when the webhook closes them
        loaded += await paced_deliveries(port, hold - 3, 20, 9_000_000)
        stop.set()
        opened, closed, last_close = await holding
    finally:
        process.terminate()
        await process.wait()
    print(f"{'valid deliveries alone':<44} {summary(baseline)}")
    print(f"{f'with {opened:,} slow connections ({len(loaded)} deliveries)':<44} {summary(loaded)}")
    print(
        f"slow connections the webhook closed (head deadline or cap): {closed:,} of {opened:,}"
        f" within {hold:.0f} s"
        + (f", the last {last_close:.1f} s after they began" if closed else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--deliveries", type=int, default=200)
    parser.add_argument("--hold", type=float, default=15.0, help="seconds the slow clients last")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.connections + 512), hard))
    asyncio.run(run(args.connections, args.deliveries, max(args.hold, 4.0)))


if __name__ == "__main__":
    main()
