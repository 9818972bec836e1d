"""No secret or shopper PII leaves the fleet: real consumer processes meet targets that echo what
they were sent in their errors, with Sentry on, and everything that left (every Sentry envelope,
the process's log, the dead-letter headers) is searched for the planted values."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection

from tests.builders import order_event
from tests.support.amqp import apply, depth, drain, publish, wait_until
from tests.support.http_target_server import Answer, HttpTargetServer, Recorded
from tests.support.net import free_port
from tests.support.sentry_server import SentryServer
from topology import names
from topology.fleet import DEFAULT_FLEET

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONSUMERS = ("crm", "warehouse")
SECRET = "PlantedApiSecret7781"
PII = {
    "email": "ana.planted@example.com",
    "first_name": "Anaplanted",
    "last_name": "Plantedsurname",
    "phone": "+1 555 0199",
    "address_1": "42 Plantedstraat",
    "city": "Plantedville",
    "postcode": "PL4 9TD",
}
PLANTED = (SECRET, *PII.values(), "81.2.69.160")


@pytest.fixture
def sentry() -> Iterator[SentryServer]:
    with SentryServer() as server:
        yield server


@pytest.fixture
def echo() -> Iterator[HttpTargetServer]:
    """A target that fails every request, echoing it: 503 first, then 400 (the order's fault)."""
    server = HttpTargetServer()
    seen: dict[str, int] = {}

    def answer(request: Recorded) -> Answer:
        seen[request.path] = seen.get(request.path, 0) + 1
        status = 503 if seen[request.path] == 1 else 400
        echoed: dict[str, Any] = {"error": "rejected", "you_sent": request.json, "q": request.query}
        return Answer(status, echoed)

    server.route = answer
    server.start()
    yield server
    server.stop()


async def test_nothing_planted_reaches_sentry_the_log_or_the_dlq_headers(
    connection: AbstractRobustConnection,
    vhost: str,
    cli_env: dict[str, str],
    sentry: SentryServer,
    echo: HttpTargetServer,
) -> None:
    # The processes run the real policies (crm and warehouse: a 1 s rung, then outage tiers)
    await apply(connection, DEFAULT_FLEET.only(*CONSUMERS), vhost)
    address = {k: PII[k] for k in ("first_name", "last_name", "address_1", "city", "postcode")}
    event = order_event(
        "order.paid",
        unique=True,
        billing={**address, "email": PII["email"], "phone": PII["phone"], "country": "NL"},
        shipping={**address, "phone": PII["phone"], "country": "NL"},
        customer_ip_address="81.2.69.160",
    )
    env = {
        **cli_env,
        "SENTRY_DSN": sentry.dsn,
        "WOOFLEET_CRM_URL": f"{echo.url}/?api_secret={SECRET}",
        "WOOFLEET_WAREHOUSE_URL": f"{echo.url}/?apikey={SECRET}",
        "WOOFLEET_LOG_LEVEL": "DEBUG",
    }
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "woofleet", "consume", *CONSUMERS, "--port", str(free_port())),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await publish(connection, event)

        async def both_dead_lettered() -> bool:
            dlqs = [await depth(connection, names.dead_letter_queue(c)) for c in CONSUMERS]
            return dlqs == [1, 1]

        await wait_until(both_dead_lettered, timeout=60, interval=0.5)
        await wait_until(lambda: len(sentry.events()) >= 2, timeout=30, interval=0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), 30)
    log = output.decode()
    headers = [
        str(message.headers)
        for consumer in CONSUMERS
        for message in await drain(connection, names.dead_letter_queue(consumer))
    ]

    # The errors really happened and were reported: one event per dead letter, tagged
    assert len(echo.requests) == 4, echo.paths()
    events = sentry.events()
    tags = sorted(
        (e["tags"]["consumer"], e["tags"]["event_type"], e["tags"]["error_class"]) for e in events
    )
    assert tags == [
        ("crm", "order.paid", "PermanentError"),
        ("warehouse", "order.paid", "PermanentError"),
    ], log
    assert "answered 400" in log and "woofleet-error" in "".join(headers)
    # and nothing planted is anywhere
    everything = {"sentry": sentry.text(), "log": log, "dlq headers": "\n".join(headers)}
    leaks = [
        (where, value) for where, text in everything.items() for value in PLANTED if value in text
    ]
    assert leaks == [], leaks
