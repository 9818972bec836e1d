"""The real ``woofleet webhook`` against clients that would hold it: huge heads, heads and bodies
sent a byte at a time, and more slow connections than it keeps open. Valid deliveries still go
through at their normal latency."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection

from publisher.signature import sign
from tests.integration.test_ingress_loopback import ORDER
from tests.integration.test_webhook import Captured, capture_events
from tests.support.net import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "hostile-secret"
LIMITS = {
    "WOOFLEET_WEBHOOK_MAX_HEADER_BYTES": "4096",
    "WOOFLEET_WEBHOOK_HEAD_SECONDS": "1",
    "WOOFLEET_WEBHOOK_BODY_SECONDS": "1",
    "WOOFLEET_WEBHOOK_MAX_CONNECTIONS": "100",
}
HEAD = b"POST /webhooks/woocommerce HTTP/1.1\r\nHost: 127.0.0.1\r\n"


@contextlib.contextmanager
def running_webhook(
    env: dict[str, str], port: int, *extra: str, open_files: int | None = None
) -> Iterator[None]:
    """``woofleet webhook`` on ``port`` until the block ends; ready once /healthz answers on
    ``--metrics-port`` when given, else on ``port``. ``open_files``: its hard limit on open
    files (a container's), which it cannot raise."""

    def limited() -> None:
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    probe = int(extra[extra.index("--metrics-port") + 1]) if "--metrics-port" in extra else port
    process = subprocess.Popen(
        [sys.executable, "-m", "woofleet.main", "webhook", "--port", str(port), *extra],
        env={**env, "WOOFLEET_WEBHOOK_SECRET": SECRET},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limited,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                if httpx.get(f"http://127.0.0.1:{probe}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the webhook never answered /healthz"
            time.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def port(cli_env: dict[str, str]) -> Iterator[int]:
    port = free_port()
    with running_webhook({**cli_env, **LIMITS}, port):
        yield port


@contextlib.asynccontextmanager
async def connection_to(
    port: int,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def status_line(reader: asyncio.StreamReader, timeout: float = 10) -> bytes:
    """The answer's status line, or b"" when the server closed without one."""
    return await asyncio.wait_for(reader.readline(), timeout)


async def valid_delivery(port: int) -> tuple[int, float]:
    body = json.dumps({**ORDER, "id": 4_000_000 + int(time.monotonic_ns() % 10**6)}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-WC-Webhook-Topic": "order.created",
        "X-WC-Webhook-Source": "https://shop.example/",
        "X-WC-Webhook-Signature": sign(body, SECRET.encode()),
    }
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        response = await client.post("/webhooks/woocommerce", content=body, headers=headers)
    return response.status_code, time.monotonic() - started


async def test_a_head_over_the_limit_is_431_and_closed(port: int) -> None:
    async with connection_to(port) as (reader, writer):
        writer.write(HEAD + b"X-Padding: " + b"a" * 8192 + b"\r\n")
        await writer.drain()
        assert (await status_line(reader)).startswith(b"HTTP/1.1 431")
        assert await asyncio.wait_for(reader.read(), 5) is not None  # closed: read returns


async def test_a_head_sent_a_byte_at_a_time_is_408_after_the_deadline(port: int) -> None:
    async with connection_to(port) as (reader, writer):
        started = time.monotonic()
        answer = asyncio.create_task(status_line(reader))
        for byte in HEAD[:40]:
            if answer.done() or time.monotonic() - started > 5:
                break
            with contextlib.suppress(ConnectionError):
                writer.write(bytes([byte]))
            await asyncio.sleep(0.05)
        line = await answer
    assert line.startswith(b"HTTP/1.1 408"), line
    assert 0.9 < time.monotonic() - started < 5


async def test_a_body_that_never_finishes_is_408(port: int) -> None:
    async with connection_to(port) as (reader, writer):
        writer.write(HEAD + b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{")
        await writer.drain()
        started = time.monotonic()
        line = await status_line(reader)
    assert line.startswith(b"HTTP/1.1 408"), line
    assert time.monotonic() - started < 5


async def test_slow_connections_beyond_the_cap_never_keep_a_delivery_out(port: int) -> None:
    # Given three times as many slow connections as the webhook keeps open, each having sent
    # part of a request head
    slow: list[asyncio.StreamWriter] = []
    try:
        for _ in range(300):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(HEAD[:10])
            slow.append(writer)
        await asyncio.gather(*(w.drain() for w in slow), return_exceptions=True)
        # When valid deliveries arrive meanwhile
        answers = [await valid_delivery(port) for _ in range(10)]
    finally:
        for writer in slow:
            writer.close()
    # Then each is answered 2xx, at its normal latency
    assert [status for status, _ in answers] == [200] * 10
    assert max(seconds for _, seconds in answers) < 1.0, answers


async def test_slow_connections_past_the_open_files_limit_never_keep_a_delivery_out(
    cli_env: dict[str, str],
) -> None:
    # Given a webhook whose process may open only 256 files (a container's hard limit, below
    # WOOFLEET_WEBHOOK_MAX_CONNECTIONS, 4,096 by default), and more slow connections than that
    port = free_port()
    slow: list[asyncio.StreamWriter] = []
    with running_webhook(cli_env, port, open_files=256):
        try:
            for _ in range(300):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(HEAD[:10])
                slow.append(writer)
            await asyncio.gather(*(w.drain() for w in slow), return_exceptions=True)
            # When valid deliveries arrive meanwhile
            answers = [await valid_delivery(port) for _ in range(10)]
        finally:
            for writer in slow:
                writer.close()
    # Then each is answered 2xx at its normal latency: the cap fits the files it may open, so
    # it closes the slow connections before accepting a new one fails for want of a file
    assert [status for status, _ in answers] == [200] * 10
    assert max(seconds for _, seconds in answers) < 1.0, answers


def test_metrics_on_a_port_of_their_own_are_not_served_beside_the_webhook(
    cli_env: dict[str, str],
) -> None:
    port, metrics_port = free_port(), free_port()
    with running_webhook(cli_env, port, "--metrics-port", str(metrics_port)):
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
        public = httpx.get(f"http://127.0.0.1:{port}/metrics")
    assert metrics.status_code == 200 and "woofleet_webhook_deliveries" in metrics.text
    assert public.status_code == 404


async def test_a_request_that_never_finishes_does_not_slow_the_relay(
    cli_env: dict[str, str], connection: AbstractRobustConnection
) -> None:
    # The relay gives way to deliveries being answered. A client that sends a head and part
    # of a body, then nothing, is not one: counted as in flight, it throttled every event
    # to 16 per 0.1 s for as long as it stayed (2,000 events: 12.5 s instead of under 1 s).
    inbox: asyncio.Queue[Captured] = asyncio.Queue()
    channel = await capture_events(connection, inbox)
    port = free_port()
    env = {**cli_env, "WOOFLEET_WEBHOOK_BODY_SECONDS": "120"}
    with running_webhook(env, port):
        async with connection_to(port) as (_, stuck):
            stuck.write(HEAD + b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{")
            await stuck.drain()
            # When a burst of 1,000 orders (2,000 events) arrives meanwhile
            orders = iter(range(5_000_000, 5_001_000))
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:

                async def sender() -> list[int]:
                    return [(await post_order(client, order_id)) for order_id in orders]

                statuses = [
                    s
                    for batch in await asyncio.gather(*(sender() for _ in range(20)))
                    for s in batch
                ]
            answered = time.monotonic()
            # Then the relay has published every event within moments of the last answer
            events = 0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(3.0):
                    while events < 2000:
                        await inbox.get()
                        events += 1
            drained = time.monotonic() - answered
    await channel.close()
    assert statuses == [200] * 1000
    assert events == 2000, f"{events} of 2,000 events published {drained:.1f}s after the burst"


async def post_order(client: httpx.AsyncClient, order_id: int) -> int:
    body = json.dumps({**ORDER, "id": order_id}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-WC-Webhook-Topic": "order.created",
        "X-WC-Webhook-Source": "https://shop.example/",
        "X-WC-Webhook-Signature": sign(body, SECRET.encode()),
    }
    response = await client.post("/webhooks/woocommerce", content=body, headers=headers)
    return response.status_code
