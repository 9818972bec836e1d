"""``woofleet status`` during an incident, against the real broker, ingress and consumers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection
from starlette.applications import Starlette

from consumers.runtime import Delivery, HandlerSpec, Supervisor
from consumers.runtime.breaker import BreakerState
from consumers.runtime.handler import AnyEnvelope
from contracts.messages import message_body, message_properties
from fleet.errors import TransientError
from fleet.health import health_routes, serve_in_background
from fleet.settings import Settings
from tests.builders import order_event
from tests.conftest import MANAGEMENT_URL
from tests.integration.test_dlq_tools import seed
from tests.support.amqp import apply, drain, publish, wait_until
from tests.support.net import free_port
from topology import names
from topology.fleet import DEFAULT_FLEET, BreakerPolicy
from topology.management import Management
from topology.management import q as q_

pytestmark = pytest.mark.integration

NO_PROBES = ("--ingress", "none", "--metrics", "none")


async def status(*args: str, env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """Run ``woofleet status --json`` without blocking this loop (it may scrape us)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "woofleet.main",
        "status",
        "--json",
        *args,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode in (0, 1), err.decode()
    return process.returncode, json.loads(out)


def row(document: dict[str, Any], consumer: str) -> dict[str, Any]:
    return next(c for c in document["consumers"] if c["name"] == consumer)


async def publish_to_work(
    connection: AbstractRobustConnection, consumer: str, *, age: float = 0, count: int = 1
) -> None:
    async with connection.channel(publisher_confirms=True) as channel:
        work = await channel.get_exchange(names.WORK_EXCHANGE, ensure=False)
        for _ in range(count):
            event = order_event("order.paid", unique=True)
            props = message_properties(event)
            props["timestamp"] = datetime.now(UTC) - timedelta(seconds=age)
            await work.publish(
                aio_pika.Message(message_body(event), **props), names.work_queue(consumer)
            )


async def test_a_healthy_fleet_exits_zero(
    connection: AbstractRobustConnection, vhost: str, cli_env: dict[str, str]
) -> None:
    await apply(connection, DEFAULT_FLEET, vhost)
    code, document = await status(*NO_PROBES, env=cli_env)
    assert (code, document["ok"], document["findings"]) == (0, True, [])
    assert document["schema"] == 1 and len(document["consumers"]) == len(DEFAULT_FLEET.consumers)


async def test_dead_letters_are_exact_at_once(
    connection: AbstractRobustConnection, vhost: str, cli_env: dict[str, str]
) -> None:
    await apply(connection, DEFAULT_FLEET, vhost)
    # Given a dead letter just written, and an event waiting in stock's queue
    await seed(connection, "crm", [{"reason": "TransientError: CRM down"}])
    await publish_to_work(connection, "stock", age=120)
    # When status runs at once
    code, document = await status(*NO_PROBES, env=cli_env)
    # Then both are counted (no statistics lag), and the dead letter needs a person
    assert code == 1
    assert row(document, "crm")["dead_letters"] == 1
    stock = row(document, "stock")
    assert (stock["ready"], stock["delay_target_seconds"]) == (1, 30)
    assert [f["key"] for f in document["findings"]] == ["dead_letters:crm"]


@pytest.mark.slow
@pytest.mark.serial
async def test_rates_are_a_minute_average_not_zero_after_a_burst(
    connection: AbstractRobustConnection, vhost: str, cli_env: dict[str, str]
) -> None:
    await apply(connection, DEFAULT_FLEET, vhost)
    # Given 30 events that came and were handled in a burst
    await publish_to_work(connection, "analytics", count=30)
    assert len(await drain(connection, names.work_queue("analytics"))) == 30
    # When the broker's rate (what status used to show) reads 0 again, and the management API
    # holds two samples of the minute
    with Management(MANAGEMENT_URL) as management:

        def settled() -> bool:
            [queue] = [
                q
                for q in management.get(f"/queues/{q_(vhost)}", msg_rates_age=60, msg_rates_incr=5)
                if q["name"] == names.work_queue("analytics")
            ]
            details = (queue.get("message_stats") or {}).get("publish_details") or {}
            return len(details.get("samples", [])) >= 2 and details["samples"][0]["sample"] == 30

        def instant_rate() -> float | None:
            queue = next(
                q for q in management.queues(vhost) if q["name"] == names.work_queue("analytics")
            )
            stats = queue.get("message_stats") or {}
            return float(stats["publish_details"]["rate"]) if stats.get("publish") == 30 else None

        await wait_until(settled, timeout=30, interval=0.5)
        await wait_until(lambda: instant_rate() == 0.0, timeout=40, interval=0.5)
    # Then status still shows the minute's rate: 30 in 60 s
    _, document = await status(*NO_PROBES, env=cli_env)
    analytics = row(document, "analytics")
    assert analytics["incoming_per_second"] == pytest.approx(0.5, rel=0.35)
    assert analytics["acked_per_second"] == pytest.approx(0.5, rel=0.35)
    assert analytics["rate_window_seconds"] == 60


SPEC = HandlerSpec()


async def failing(event: AnyEnvelope, delivery: Delivery) -> None:
    raise TransientError("crm POST /contacts: cannot reach https://crm.example")


async def test_breaker_from_consumer_metrics_and_outbox_from_the_ingress(
    connection: AbstractRobustConnection,
    vhost: str,
    settings: Settings,
    cli_env: dict[str, str],
) -> None:
    # Given crm's target down and its breaker open, its metrics served on loopback
    await apply(connection, DEFAULT_FLEET, vhost)
    crm = DEFAULT_FLEET.consumer("crm")
    breaker = BreakerPolicy(window=30, failure_ratio=0.5, min_calls=3, cool_down=120)
    fleet = replace(DEFAULT_FLEET, consumers=(replace(crm, prefetch=1, breaker=breaker),))
    sup = Supervisor(
        ["crm"], settings, fleet=fleet, middleware=[], handlers={"crm": (SPEC, failing)}
    )
    metrics_port, ingress_port = free_port(), free_port()
    server, task = await serve_in_background(
        Starlette(routes=health_routes(lambda: (True, {}))), "127.0.0.1", metrics_port
    )
    env = {**cli_env, "WOOFLEET_WEBHOOK_SECRET": "s3cret"}
    ingress = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "woofleet.main",
        "webhook",
        "--host",
        "127.0.0.1",
        "--port",
        str(ingress_port),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    await sup.start()
    try:
        for _ in range(6):
            await publish(connection, order_event("order.paid", unique=True))
        worker = sup.workers["crm"]
        await wait_until(lambda: worker.breaker.state is BreakerState.OPEN, timeout=15)

        async def ingress_up() -> bool:
            try:
                async with httpx.AsyncClient() as client:
                    answer = await client.get(f"http://127.0.0.1:{ingress_port}/healthz")
                    return answer.status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(ingress_up, timeout=30, interval=0.2)
        # When status reads both
        code, document = await status(
            "--metrics",
            f"http://127.0.0.1:{metrics_port}/metrics",
            "--ingress",
            f"http://127.0.0.1:{ingress_port}",
            env=env,
        )
    finally:
        await sup.stop(5)
        ingress.terminate()
        await ingress.wait()
        server.should_exit = True
        await task
    # Then the breaker is named, and the ingress's outbox and kept deliveries are there
    assert code == 1
    assert row(document, "crm")["breaker"] == "open"
    assert "breaker:crm" in [f["key"] for f in document["findings"]]
    assert document["ingress"] == {
        "url": f"http://127.0.0.1:{ingress_port}",
        "reachable": True,
        "outbox_depth": 0,
        "relay_lag_seconds": 0.0,
        "kept_deliveries": 0,
        "outbox_set_aside": 0,
        "broker_connected": True,
        "error": "",
    }


async def test_an_ingress_url_that_does_not_answer_is_a_finding(
    connection: AbstractRobustConnection, vhost: str, cli_env: dict[str, str]
) -> None:
    await apply(connection, DEFAULT_FLEET, vhost)
    url = f"http://127.0.0.1:{free_port()}"
    code, document = await status("--metrics", "none", "--ingress", url, env=cli_env)
    assert code == 1
    assert [f["kind"] for f in document["findings"]] == ["ingress_unreachable"]


async def test_watch_prints_one_json_document_per_interval(
    connection: AbstractRobustConnection, vhost: str, cli_env: dict[str, str]
) -> None:
    await apply(connection, DEFAULT_FLEET, vhost)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "woofleet.main",
        "status",
        "--json",
        "--watch",
        "0.2",
        *NO_PROBES,
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        first = json.loads(await asyncio.wait_for(process.stdout.readline(), 30))
        second = json.loads(await asyncio.wait_for(process.stdout.readline(), 30))
    finally:
        process.terminate()
        await process.wait()
    assert first["checked_at"] < second["checked_at"]
