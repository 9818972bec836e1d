"""No secret or shopper PII leaves the fleet. Real ``woofleet webhook`` and ``woofleet consume``
processes, Sentry on and pointed at a local endpoint that records every envelope, are driven to
real errors: refused and unusable deliveries, a state store whose error quotes the row, and
targets that fail echoing what they were sent (as text, JSON inside JSON, XML). Everything that
left (every Sentry envelope, both processes' logs, the dead-letter headers) is searched for the
planted values, in every spelling they could take there."""

from __future__ import annotations

import asyncio
import copy
import json
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import psycopg
import pytest
from aio_pika.abc import AbstractRobustConnection

from publisher.signature import sign
from publisher.simulate.encoding import wp_json_encode
from tests.integration.test_webhook import capture_events, load
from tests.support.amqp import apply, depth, drain, wait_until
from tests.support.http_target_server import Answer, HttpTargetServer, Recorded
from tests.support.net import free_port
from tests.support.sentry_server import SentryServer
from tests.support.woo_server import WooServer, WooStore
from topology import names
from topology.fleet import DEFAULT_FLEET

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: One event each (order.paid): a target refusing several orders at once is an outage, not
#: the order's fault, and would wait in the outage tiers instead of dead-lettering.
CONSUMERS = ("erp-sync", "warehouse")
SECRET = "PlantedApiSecret7781"
WEBHOOK_SECRET = "PlantedWebhookSecret4410"
PII = {
    "email": "ana.planted@example.com",
    "first_name": "Anaplanted",
    "last_name": "Plantedsurname",
    "company": "Plantedcorp",
    "phone": "+1 555 0199",
    "address_1": "42 Plantedstraat",
    "address_2": "Plantedflat 3b",
    "city": "Plantedville",
    "postcode": "PL4 9TD",
}
IP = "81.2.69.160"
PLANTED = (SECRET, WEBHOOK_SECRET, *PII.values(), IP)


def spellings(value: str) -> set[str]:
    """How a planted value may show: as it is, upper case (a label), JSON-escaped, and hex
    (a bytea column quoted by a database error)."""
    return {value, value.upper(), json.dumps(value)[1:-1], value.encode().hex()}


def leaves(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in leaves(v)]
    return [] if value is None else [str(value)]


def xml(value: Any, tag: str = "request") -> str:
    if isinstance(value, dict):
        inner = "".join(xml(v, k) for k, v in value.items())
    elif isinstance(value, list):
        inner = "".join(xml(v, "item") for v in value)
    else:
        inner = "" if value is None else str(value)
    return f"<{tag}>{inner}</{tag}>"


@pytest.fixture
def sentry() -> Iterator[SentryServer]:
    with SentryServer() as server:
        yield server


@pytest.fixture
def echo() -> Iterator[HttpTargetServer]:
    """A target that fails every request, echoing it: first 503 with what it was sent as an
    upper-case sentence, then 400 (the order's fault) with it as JSON inside a JSON string
    (the ERP) or as XML (the warehouse); the query string (its key) comes back each time."""
    server = HttpTargetServer()
    seen: dict[str, int] = {}

    def answer(request: Recorded) -> Answer:
        key = request.idempotency_key or request.path
        seen[key] = seen.get(key, 0) + 1
        query = "?" + urlencode(request.query)
        if seen[key] == 1:
            words = " ".join(leaves(request.json)).upper()
            return Answer(503, text=f"{query} upstream refused: {words}")
        if request.path.startswith("/fulfilments"):
            return Answer(400, text=f"<error>{query}{xml(request.json)}</error>")
        return Answer(400, {"error": f"invalid order {query}: {json.dumps(request.json)}"})

    server.route = answer
    server.start()
    yield server
    server.stop()


class Process:
    """A ``woofleet`` command whose output (stdout and stderr) is kept for the search."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.output = ""

    async def stop(self) -> str:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await self.finished()

    async def finished(self) -> str:
        output, _ = await asyncio.wait_for(self.process.communicate(), 30)
        self.output = output.decode()
        return self.output


async def start(env: dict[str, str], *args: str) -> Process:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "woofleet", *args),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    return Process(process)


@pytest.fixture
async def processes() -> AsyncIterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        if process.process.returncode is None:
            await process.stop()


def order(order_id: int, **changes: Any) -> dict[str, Any]:
    """A paid order (order.created and order.paid) whose shopper is the planted one."""
    body = copy.deepcopy(load("order-created.docs-create-paid-order-727.json"))
    shipping = {k: v for k, v in PII.items() if k != "email"}
    body.update(
        id=order_id,
        number=str(order_id),
        billing={**body["billing"], **PII},
        shipping={**body["shipping"], **shipping},
        customer_ip_address=IP,
        **changes,
    )
    return body


async def deliver(
    client: httpx.AsyncClient, body: dict[str, Any], topic: str = "order.created", key: str = ""
) -> httpx.Response:
    raw = wp_json_encode(body)
    headers = {
        "Content-Type": "application/json",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Source": "https://shop.example/",
        "X-WC-Webhook-Signature": sign(raw, (key or WEBHOOK_SECRET).encode()),
    }
    return await client.post("/webhooks/woocommerce", content=raw, headers=headers)


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_nothing_planted_reaches_sentry_the_logs_or_the_dlq_headers(
    log_format: str,
    connection: AbstractRobustConnection,
    vhost: str,
    cli_env: dict[str, str],
    postgres_url: str,
    sentry: SentryServer,
    echo: HttpTargetServer,
    processes: list[Process],
) -> None:
    # The processes run the real policies (a 1 s first rung)
    await apply(connection, DEFAULT_FLEET.only(*CONSUMERS), vhost)
    # order.created, which neither consumer takes, must route somewhere (mandatory publishes)
    channel = await capture_events(connection, asyncio.Queue())
    env = {
        **cli_env,
        "SENTRY_DSN": sentry.dsn,
        "WOOFLEET_LOG_LEVEL": "DEBUG",
        "WOOFLEET_LOG_FORMAT": log_format,  # json for log shippers: escaped quotes, one line
    }
    port = free_port()
    webhook_env = {
        **env,
        "WOOFLEET_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "WOOFLEET_STATE_URL": postgres_url,
    }
    consumer_env = {
        **env,
        "WOOFLEET_ERP_SYNC_URL": f"{echo.url}/?api_secret={SECRET}",
        "WOOFLEET_WAREHOUSE_URL": f"{echo.url}/?apikey={SECRET}",
    }
    webhook = await start(webhook_env, "webhook", "--port", str(port))
    consumers = await start(consumer_env, "consume", *CONSUMERS, "--port", str(free_port()))
    processes += [webhook, consumers]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:

        async def webhook_up() -> bool:
            try:
                return (await client.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(webhook_up, timeout=30, interval=0.1)
        # Deliveries the webhook refuses or keeps: a wrong signature, another resource's
        # topic, a body it cannot turn into events
        assert (await deliver(client, order(9001), key="not-the-secret")).status_code == 401
        assert (await deliver(client, order(9002), "product.updated")).status_code == 400
        unusable = order(9003, line_items=[{"id": "x", "name": PII["last_name"]}])
        assert (await deliver(client, unusable)).status_code == 202
        # A state store whose error quotes the row it refused (the outbox body, as hex): the
        # delivery is held on the broker, and kept once taken back (the store fails it again)
        with psycopg.connect(postgres_url, autocommit=True) as db:
            refuse = "ALTER TABLE publisher_outbox ADD CONSTRAINT planted_refusal CHECK (false)"
            db.execute(f"{refuse} NOT VALID")
            assert (await deliver(client, order(9004))).status_code == 202

            async def kept_after_its_hold() -> bool:
                row = db.execute("SELECT count(*) FROM publisher_kept").fetchone()
                return row is not None and row[0] == 2

            await wait_until(kept_after_its_hold, timeout=30, interval=0.2)
            db.execute("ALTER TABLE publisher_outbox DROP CONSTRAINT planted_refusal")
        # and one it takes, whose events the consumers' targets fail
        assert (await deliver(client, order(9005))).status_code in (200, 202)

        async def all_dead_lettered() -> bool:
            dlqs = [await depth(connection, names.dead_letter_queue(c)) for c in CONSUMERS]
            return dlqs == [1, 1]

        try:
            await wait_until(all_dead_lettered, timeout=90, interval=0.5)
        except AssertionError:
            dlqs = [await depth(connection, names.dead_letter_queue(c)) for c in CONSUMERS]
            output = [await p.stop() for p in (webhook, consumers)]
            raise AssertionError(f"dead letters {dlqs}; logs:\n" + "\n".join(output)) from None

        def reported() -> bool:
            return len(dead_letter_events(sentry)) >= 2 and len(webhook_events(sentry)) >= 2

        await wait_until(reported, timeout=30, interval=0.2)
    logs = {"webhook log": await webhook.stop(), "consumer log": await consumers.stop()}
    await channel.close()
    headers = [
        str(message.headers)
        for consumer in CONSUMERS
        for message in await drain(connection, names.dead_letter_queue(consumer))
    ]

    # The errors really happened, were logged, and were reported once each, tagged
    assert len(echo.requests) == 4, echo.paths()
    assert "could not record order.created" in logs["webhook log"]
    assert "kept order.created delivery" in logs["webhook log"]
    assert "answered 503" in logs["consumer log"] and "answered 400" in logs["consumer log"]
    assert all("woofleet-error" in h and "answered 400" in h for h in headers), headers
    tags = sorted(
        (e["tags"]["consumer"], e["tags"]["event_type"], e["tags"]["error_class"])
        for e in dead_letter_events(sentry)
    )
    assert tags == [
        ("erp-sync", "order.paid", "PermanentError"),
        ("warehouse", "order.paid", "PermanentError"),
    ], logs["consumer log"]
    # one event per failure: the dead letters' ERROR log lines are breadcrumbs, not events
    consumer_events = [e for e in sentry.events() if e["tags"].get("component") == "consume"]
    assert len(consumer_events) == 2, [
        e.get("logentry") or e.get("message") for e in consumer_events
    ]
    # the store's failure, on the delivery and again on taking it back
    store_errors = webhook_events(sentry)
    assert len(store_errors) == 2, store_errors
    assert all(e["level"] == "error" and "could not record" in json.dumps(e) for e in store_errors)
    # and nothing planted is anywhere, in any spelling
    everything = {**logs, "sentry": sentry.text(), "dlq headers": "\n".join(headers)}
    leaks = [
        (where, form)
        for where, text in everything.items()
        for value in PLANTED
        for form in spellings(value)
        if form in text
    ]
    assert leaks == [], leaks


def dead_letter_events(sentry: SentryServer) -> list[dict[str, Any]]:
    return [e for e in sentry.events() if "dead-lettered" in json.dumps(e.get("message", ""))]


def webhook_events(sentry: SentryServer) -> list[dict[str, Any]]:
    return [e for e in sentry.events() if e.get("tags", {}).get("component") == "webhook"]


async def test_reconcile_reports_to_sentry_and_leaks_nothing(
    cli_env: dict[str, str], connection: AbstractRobustConnection, sentry: SentryServer
) -> None:
    # `woofleet reconcile` never initialised Sentry: its errors went nowhere but its log
    channel = await capture_events(connection, asyncio.Queue())
    with WooServer(WooStore(), https=False) as woo:
        broken = order(9101, currency="not a currency", date_modified_gmt="2026-11-28T05:00:01")
        woo.store.put_order(broken)
        env = {
            **cli_env,
            "SENTRY_DSN": sentry.dsn,
            "WOOFLEET_WOO_URL": woo.url,
            "WOOFLEET_WOO_KEY": woo.store.key,
            "WOOFLEET_WOO_SECRET": woo.store.secret,
        }
        reconcile = await start(env, "reconcile", "--once", "--since", "2026-11-28T05:00:00")
        log = await reconcile.finished()
        planted = (*PLANTED, woo.store.key, woo.store.secret)
    await channel.close()
    assert reconcile.process.returncode == 0, log
    assert "kept order 9101" in log
    [event] = sentry.events()
    assert event["tags"]["component"] == "reconcile" and event["level"] == "error"
    everything = {"sentry": sentry.text(), "log": log}
    leaks = [
        (where, form)
        for where, text in everything.items()
        for value in planted
        for form in spellings(value)
        if form in text
    ]
    assert leaks == [], leaks
