"""A whole fleet on loopback for chaos runs: real processes, a real broker, real targets.

:class:`ChaosFleet` creates a throw-away virtual host, applies the topology, starts recording
targets (one HTTP server for every HTTP target, an SMTP server), the webhook and one consumer
process per type, and then measures what a run did:

* every event the ingress published, from an audit queue bound to ``#`` on ``woo.events``;
* every effect, from the ledger rows the consumers recorded and the requests the targets saw;
* dead letters (DLQ depths) and channel closures (the broker's log, when readable).

Nothing here is a fake: the scenarios in :mod:`tests.chaos.scenarios` kill and restart these
processes and switch the targets off while orders flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aio_pika
import httpx
import psycopg

from consumers.registry import load
from consumers.runtime.handler import AnyEnvelope
from contracts.errors import ContractError
from contracts.registry import parse
from fleet.amqp import connect
from fleet.settings import Settings
from publisher.simulate.encoding import Delivery
from publisher.simulate.runner import SimulationPlan, deliveries
from tests.support.http_target_server import HttpTargetServer
from tests.support.net import free_port
from tests.support.smtp_server import SmtpServer, smtp_server
from topology import names
from topology.apply import apply_fleet
from topology.errors import BrokerUnavailable
from topology.fleet import DEFAULT_FLEET, ConsumerPolicy
from topology.management import Management
from topology.routing import topic_matches

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
SECRET = "chaos-secret"
AUDIT_QUEUE = "chaos.audit"
#: Consumers whose work does not arrive within a chaos run (a 7-day delay; no order events).
NOT_IN_RUN = frozenset({"review-request", "catalog"})
BROKER_LOG_GLOB = "/var/log/rabbitmq/rabbit@*.log"


@dataclass
class Sent:
    """What the store's side saw: answers by status, and the orders with an accepted delivery."""

    statuses: Counter[str] = field(default_factory=Counter)
    accepted_orders: set[int] = field(default_factory=set)

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    @property
    def accepted(self) -> int:
        return sum(n for s, n in self.statuses.items() if s.startswith("2"))

    @property
    def server_errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s.startswith("5"))


@dataclass
class Figures:
    """What one scenario prints: the counts its criterion is judged on."""

    scenario: str
    sent: int = 0
    accepted: int = 0
    events: int = 0
    effects: int = 0
    lost: int = 0
    duplicated: int = 0
    #: Emails that may rightly arrive twice: those in flight in an email consumer killed with
    #: kill -9 between the SMTP server's acceptance and the ledger's record (email has no
    #: idempotency key). At most its prefetch per kill.
    email_window: int = 0
    emails: int = 0
    resent: int = 0
    dead_lettered: int = 0
    channel_closures: int | None = None
    server_errors: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def ok(self, *, allow_dead_letters: int = 0) -> bool:
        return (
            self.lost == 0
            and self.duplicated <= self.email_window
            and self.dead_lettered <= allow_dead_letters
            and self.server_errors == 0
            and not self.channel_closures
        )

    def line(self) -> str:
        closures = "n/a" if self.channel_closures is None else str(self.channel_closures)
        return (
            f"{self.scenario:<16} sent {self.sent:>6}  accepted {self.accepted:>6}  "
            f"events {self.events:>6}  effects {self.effects:>6}  lost {self.lost:>3}  "
            f"duplicated {self.duplicated:>3} (of {self.emails} emails, "
            f"window {self.email_window})  "
            f"resent {self.resent:>4}  "
            f"dead-lettered {self.dead_lettered:>4}  channel closures {closures:>3}  "
            f"5xx {self.server_errors:>3}  {self.seconds:6.1f} s"
        )


class BrokerLog:
    """Counts the channel closures RabbitMQ logs for one virtual host from a point in time."""

    def __init__(self, vhost: str, path: Path | None = None) -> None:
        self.vhost = vhost
        paths = [path] if path else sorted(Path("/").glob(BROKER_LOG_GLOB.lstrip("/")))
        self.path = paths[0] if paths else None
        self.offset = self._size()

    def _size(self) -> int:
        try:
            return self.path.stat().st_size if self.path else 0
        except OSError:
            return 0

    def channel_closures(self) -> int | None:
        if self.path is None:
            return None
        try:
            with self.path.open("rb") as log:
                log.seek(self.offset)
                text = log.read().decode("utf-8", "replace")
        except OSError:
            return None
        # RabbitMQ logs a channel error on two lines: the connection with its vhost, then the
        # operation. Topology checks close channels on purpose (passive declares); count only
        # closures caused by deliveries, acks and publishes in our vhost.
        lines = text.splitlines()
        marker = f"vhost: '{self.vhost}'"
        return sum(
            1
            for line, following in itertools.pairwise(lines)
            if "Channel error on connection" in line
            and marker in line
            and "operation basic." in following
        )


class ChaosFleet:
    """Start with ``async with ChaosFleet(...) as fleet``; everything stops at the end."""

    def __init__(
        self,
        consumers: Iterable[str] | None = None,
        *,
        state_url: str | None = None,
        log_level: str = "WARNING",
        amqp_url: str | None = None,
        management_url: str | None = None,
        broker_log: Path | None = None,
    ) -> None:
        self.policies: list[ConsumerPolicy] = [
            c
            for c in DEFAULT_FLEET.consumers
            if (consumers is None or c.name in consumers) and c.name not in NOT_IN_RUN
        ]
        self.vhost = f"chaos-{uuid.uuid4().hex[:8]}"
        base = Settings()
        self.management_url = management_url or base.management_url.get_secret_value()
        amqp = (amqp_url or base.amqp_url.get_secret_value()).rstrip("/")
        self.amqp_url = f"{amqp}/{quote(self.vhost, safe='')}"
        self.work = Path(tempfile.mkdtemp(prefix="woofleet-chaos-"))
        self.state_url = state_url or f"sqlite:///{self.work}/state.db"
        self.log_level = log_level
        self.target = HttpTargetServer()
        self._smtp_cm = smtp_server()
        self.smtp: SmtpServer
        self.webhook_port = free_port()
        self.webhook: subprocess.Popen[bytes] | None = None
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}
        self.management = Management(self.management_url)
        self.broker_log = BrokerLog(self.vhost, broker_log)
        self.audit: list[dict[str, Any]] = []
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._restarts = 0
        self.kills: Counter[str] = Counter()
        self._stack = contextlib.AsyncExitStack()
        #: Keep the work folder (logs, state) after the run: a scenario that failed sets it.
        self.keep_work = False

    # life cycle ---------------------------------------------------------------------------------
    async def __aenter__(self) -> ChaosFleet:
        # A consumer killed in the middle of a request is expected here, not worth a traceback.
        logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
        try:
            await self._start()
        except BaseException:
            # ``async with`` does not exit what failed to enter: stop whatever did start, so no
            # process outlives the run (a stray fleet slows every test after it).
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        await self._stack.aclose()
        # A failed run keeps its folder: the processes' logs say what went wrong.
        if kind is None and not self.keep_work:
            shutil.rmtree(self.work, ignore_errors=True)

    async def _start(self) -> None:
        """Start everything, each part with its stop on the exit stack (undone in reverse)."""
        stack = self._stack
        self._managed(lambda: self.management.create_vhost(self.vhost))
        stack.callback(self.management.close)
        stack.callback(self._managed, lambda: self.management.delete_vhost(self.vhost))
        stack.enter_context(self.target)
        self.smtp = stack.enter_context(self._smtp_cm)
        settings = Settings(amqp_url=self.amqp_url, management_url=self.management_url)
        self._connection = await connect(settings, name="chaos-harness")
        stack.push_async_callback(self._connection.close)
        await apply_fleet(
            self._connection, DEFAULT_FLEET, vhost=self.vhost, management=self.management
        )
        channel = await self._connection.channel()
        audit = await channel.declare_queue(AUDIT_QUEUE, durable=True)
        await audit.bind(names.EVENTS_EXCHANGE, "#")
        await audit.consume(self._record_event)
        stack.callback(self.stop_processes)
        self.start_webhook()
        for policy in self.policies:
            self.start_consumer(policy.name)
        await self.wait_ready()

    def all_processes(self) -> dict[str, subprocess.Popen[bytes]]:
        """Every process the run started and has not replaced, by name (the webhook included)."""
        return {**self.processes, **({"webhook": self.webhook} if self.webhook else {})}

    def stop_processes(self, grace: float = 20.0) -> None:
        """SIGTERM to every process still running, then kill -9 for any not gone within
        ``grace`` seconds (one grace for all, so ten stuck processes cost 20 s, not 200)."""
        running = list(self.all_processes().values())
        for process in running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in running:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    async def _record_event(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        # Poison published by a scenario reaches the audit queue too: keep well-formed events.
        try:
            body = json.loads(message.body)
        except (ValueError, RecursionError):
            body = None
        if isinstance(body, dict) and isinstance(body.get("data"), dict):
            self.audit.append(body)
        await message.ack()

    # processes ----------------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        url = self.target.url
        env = {
            **os.environ,
            "WOOFLEET_AMQP_URL": self.amqp_url,
            "WOOFLEET_MANAGEMENT_URL": self.management_url,
            "WOOFLEET_STATE_URL": self.state_url,
            "WOOFLEET_VAR_DIR": str(self.work / "var"),
            "WOOFLEET_INVOICE_STORE": f"file://{self.work}/invoices",
            "WOOFLEET_SMTP_URL": f"smtp+insecure://127.0.0.1:{self.smtp.port}",
            "WOOFLEET_PAYMENT_CAPTURE_METHODS": "stripe",
            "WOOFLEET_WEBHOOK_SECRET": SECRET,
            "WOOFLEET_LOG_LEVEL": self.log_level,
            "PYTHONPATH": str(ROOT),
        }
        # Every plain HTTP target records on one server; the carrier API has a protocol of its
        # own, so shipping-label runs on its dev sink here.
        for policy in DEFAULT_FLEET.consumers:
            if policy.name != "shipping-label":
                env[f"WOOFLEET_{policy.name.replace('-', '_').upper()}_URL"] = url
        return env

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.work / f"{name}.log").open("ab")
        return subprocess.Popen(
            [sys.executable, "-m", "woofleet", *args],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.work,
        )

    def start_webhook(self) -> None:
        self.webhook = self._spawn(
            "webhook", "webhook", "--host", "127.0.0.1", "--port", str(self.webhook_port)
        )

    def start_consumer(self, name: str) -> None:
        port = self.ports.setdefault(name, free_port())
        self.processes[name] = self._spawn(
            name, "consume", name, "--host", "127.0.0.1", "--port", str(port)
        )

    def kill(self, name: str) -> None:
        """kill -9, as the kernel's OOM killer or a node failure would."""
        process = self.webhook if name == "webhook" else self.processes[name]
        assert process is not None
        self.kills[name] += 1
        process.kill()
        process.wait()

    def restart(self, name: str) -> None:
        self._restarts += 1
        if name == "webhook":
            self.start_webhook()
        else:
            self.start_consumer(name)

    async def wait_ready(self, timeout: float = 60.0) -> None:
        endpoints = dict(self.ports)
        endpoints["webhook"] = self.webhook_port
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as client:
            for name, port in endpoints.items():
                url = f"http://127.0.0.1:{port}/readyz"
                last = "no answer"
                while True:
                    try:
                        response = await client.get(url)
                    except httpx.HTTPError as exc:
                        last = f"no answer ({type(exc).__name__})"
                    else:
                        if response.status_code == 200:
                            break
                        last = f"{response.status_code} {response.text[:300]}"
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"{name} ({url}) not ready within {timeout:.0f} s; last answer: "
                            f"{last}; its log ends:\n{self.log_tail(name)}"
                        )
                    await asyncio.sleep(0.1)

    def log_tail(self, name: str, lines: int = 20) -> str:
        try:
            text = (self.work / f"{name}.log").read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    # traffic ------------------------------------------------------------------------------------
    async def send_orders(self, orders: int, rate: float, *, seed: int = 1) -> Sent:
        """The simulator's realistic deliveries, signed, at ``rate`` per second (open loop)."""
        plan = SimulationPlan(
            orders=orders,
            rate=rate,
            secret=SECRET.encode(),
            seed=seed,
            first_order_id=random.Random(seed).randrange(10**6, 10**7),
        )
        return await self.post_all(list(deliveries(plan)), rate)

    async def post_all(self, items: list[Delivery], rate: float, concurrency: int = 32) -> Sent:
        url = f"http://127.0.0.1:{self.webhook_port}/webhooks/woocommerce"
        sent = Sent()
        slots = asyncio.Semaphore(concurrency)
        started = time.monotonic()

        async def post(client: httpx.AsyncClient, item: Delivery) -> None:
            try:
                response = await client.post(url, content=item.body, headers=item.headers)
            except httpx.HTTPError:
                sent.statuses["refused"] += 1
            else:
                sent.statuses[str(response.status_code)] += 1
                if response.is_success:
                    with contextlib.suppress(ValueError, KeyError, TypeError, RecursionError):
                        sent.accepted_orders.add(int(json.loads(item.body)["id"]))
            finally:
                slots.release()

        async with httpx.AsyncClient(timeout=10) as client, asyncio.TaskGroup() as group:
            for index, item in enumerate(items):
                delay = started + index / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await slots.acquire()
                group.create_task(post(client, item))
        return sent

    # measuring ----------------------------------------------------------------------------------
    def _managed(self, call: Callable[[], T]) -> T:
        """A management call that waits (up to two minutes) while the broker is restarting."""
        deadline = time.monotonic() + 120
        while True:
            try:
                return call()
            except BrokerUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def queue_depths(self) -> dict[str, int]:
        queues = self._managed(
            lambda: self.management.get(
                f"/queues/{quote(self.vhost, safe='')}", columns="name,messages"
            )
        )
        return {q["name"]: int(q.get("messages") or 0) for q in queues}

    async def _ready(self, queue: str) -> int:
        """Ready messages, from the broker itself (the management figures lag seconds behind)."""
        assert self._connection is not None
        channel = await self._connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
            return int(declared.declaration_result.message_count or 0)
        finally:
            await channel.close()

    async def settle(self, timeout: float = 300.0, quiet: float = 8.0) -> bool:
        """Wait until the running consumers' work and retry queues hold nothing ready and the
        ledger has not grown for ``quiet`` seconds (so nothing is still being handled)."""
        deadline = time.monotonic() + timeout
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            queues = [
                name
                for name in self.queue_depths()
                for p in self.policies
                if name == names.work_queue(p.name)
                or name.startswith(f"{names.work_queue(p.name)}.retry.")
            ]
            ready = sum([await self._ready(q) for q in queues])
            done = len(self.ledger())
            if ready or done != last:
                last, since = done, time.monotonic()
            elif time.monotonic() - since > quiet:
                return True
            await asyncio.sleep(1)
        return False

    def dead_letters(self) -> int:
        return sum(n for name, n in self.queue_depths().items() if name.endswith(".dlq"))

    def ledger(self) -> set[tuple[str, str]]:
        query = "SELECT consumer, business_key FROM consumer_ledger"
        if self.state_url.startswith("postgresql://"):
            try:
                with psycopg.connect(self.state_url, connect_timeout=5) as db:
                    return {(c, k) for c, k in db.execute(query)}
            except psycopg.errors.UndefinedTable:
                return set()
        path = self.state_url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as db:
            try:
                return set(db.execute(query))
            except sqlite3.OperationalError:
                return set()  # no consumer has run yet: no table

    def events(self) -> list[AnyEnvelope]:
        """The well-formed events published (poison a scenario published is left out)."""
        events = []
        for body in self.audit:
            with contextlib.suppress(ContractError):
                events.append(parse(json.dumps(body).encode()))
        return events

    def expected_effects(self) -> set[tuple[str, str]]:
        """(consumer, business key) for every published event each running consumer receives."""
        expected = set()
        for event in self.events():
            for policy in self.policies:
                if not any(topic_matches(b, event.event_type) for b in policy.bindings):
                    continue
                key = load(policy.name).SPEC.business_key
                if key is not None:
                    expected.add((policy.name, key(event)))
        return expected

    def recalled(self) -> int:
        """Messages the running consumers brought back early from their outage tiers (their
        ``woofleet_consumer_recalled_total``; a consumer killed meanwhile took its count along)."""
        total = 0
        with httpx.Client(timeout=2) as client:
            for port in self.ports.values():
                try:
                    text = client.get(f"http://127.0.0.1:{port}/metrics").text
                except httpx.HTTPError:
                    continue
                total += sum(
                    round(float(line.rsplit(" ", 1)[1]))
                    for line in text.splitlines()
                    if line.startswith("woofleet_consumer_recalled_total{")
                )
        return total

    def figures(self, scenario: str, sent: Sent | None, seconds: float) -> Figures:
        done = self.ledger()
        expected = self.expected_effects()
        published_orders = {
            int(event.data.id) for event in self.events() if hasattr(event.data, "id")
        }
        # An accepted delivery whose order never reached the exchange was lost by the ingress.
        lost_at_ingress = len(sent.accepted_orders - published_orders) if sent else 0
        keys = Counter(
            r.idempotency_key for r in self.target.requests if r.idempotency_key is not None
        )
        # Email has no idempotency key: the same message (recipient and subject name the order
        # and the step) arriving twice is a duplicate effect.
        messages = Counter(
            (m.message.get("To"), m.message.get("Subject")) for m in self.smtp.received
        )
        figures = Figures(
            scenario=scenario,
            sent=sent.total if sent else 0,
            accepted=sent.accepted if sent else 0,
            events=len(self.events()),
            effects=len(done & expected),
            lost=len(expected - done) + lost_at_ingress,
            duplicated=sum(n - 1 for n in messages.values() if n > 1),
            emails=len(self.smtp.received),
            email_window=sum(
                self.kills[p.name] * p.effective_prefetch
                for p in self.policies
                if p.name == "order-email"
            ),
            # Targets see an idempotency key again after a crash between effect and ledger;
            # they deduplicate it, so it is counted apart from duplicates.
            resent=sum(n - 1 for n in keys.values() if n > 1),
            dead_lettered=self.dead_letters(),
            channel_closures=self.broker_log.channel_closures(),
            server_errors=sent.server_errors if sent else 0,
            seconds=seconds,
        )
        if self._restarts:
            figures.notes.append(f"{self._restarts} process restarts")
        # A process the run did not kill that is gone (a restart that could not start, say)
        # leaves its queue unconsumed: name it, with how it ended.
        exited = {
            name: process.returncode
            for name, process in self.all_processes().items()
            if process.poll() is not None
        }
        if exited:
            figures.notes.append(f"exited by themselves (exit codes): {exited}")
        if recalled := self.recalled():
            figures.notes.append(f"{recalled} messages brought back early from outage tiers")
        missing = Counter(consumer for consumer, _ in expected - done)
        if missing:
            figures.notes.append(f"lost by consumer: {dict(sorted(missing.items()))}")
        dlqs = {q: n for q, n in self.queue_depths().items() if q.endswith(".dlq") and n}
        if dlqs:
            figures.notes.append(f"dead letters by queue: {dict(sorted(dlqs.items()))}")
        return figures
