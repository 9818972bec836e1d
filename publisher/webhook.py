"""``POST /webhooks/woocommerce``: verify, map, queue, confirm; plus /healthz, /readyz, /metrics
and ``POST /webhooks/carrier`` (:mod:`publisher.carrier`).

Answers, in the order they are checked (none of the refusals publishes anything):

* 413 body over the limit (from Content-Length, or while streaming it);
* 200 the unsigned form-encoded ping WooCommerce sends when a webhook is created;
* 401 signature missing or wrong (every configured secret is tried);
* 200 a signed topic woofleet does not handle (logged, nothing published);
* 202 a signed body woofleet cannot turn into events (not JSON, not an order or product it can
  read): kept whole, headers and raw body, in the state store, counted, for
  ``woofleet ingress list|show|replay``; nothing in a body gets a 5xx;
* 202 the state store is away: the delivery is held whole on the broker (``woo.ingress.held``,
  :mod:`publisher.held`) and turned into events once the store is back;
* 503 neither the state store nor the broker could take the delivery;
* 200 accepted: the delivery's events are committed to the outbox, and confirmed by the broker
  unless it is away (then the relay publishes them when it is back).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from fleet.errors import (
    BrokerUnavailable,
    ContractError,
    DependencyUnavailable,
    PublishError,
    TopologyError,
)
from fleet.scrub import shopper
from fleet.settings import Settings
from publisher.carrier import CARRIER_PATH, CarrierWebhook
from publisher.confirming_channel import open_confirming_channel
from publisher.events import (
    ORDER_TOPICS,
    PRODUCT_TOPICS,
    normalised_source,
    resource_of,
    resource_of_topic,
)
from publisher.held import HeldDeliveries, HeldDelivery
from publisher.ingest import Ingest, IngestResult
from publisher.metrics import IngressMetrics
from publisher.outbox import OutboxRelay
from publisher.priority import PriorityRules
from publisher.signature import signing_keys, verify
from publisher.store import PublisherStore
from publisher.stores import open_store
from topology.names import HELD_QUEUE

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/woocommerce"
_PING = re.compile(rb"webhook_id=\d+")
#: How often the webhook logs what it received (per-delivery lines are DEBUG).
SUMMARY_SECONDS = 30
#: How often the webhook looks for held deliveries when nothing woke it (a webhook that held
#: some may have gone before its store came back), and how many it processes per look.
HELD_POLL_SECONDS = 5.0
HELD_BATCH = 500
#: Outcomes that went through the state store: it is there.
STORED = frozenset({"accepted", "kept"})


#: The webhook's answer: status and JSON body (sent without a framework: it is the hot path).
Answer = tuple[int, dict[str, Any]]
_JSON_HEADERS = [(b"content-type", b"application/json")]


def _json(status: int, payload: dict[str, Any]) -> Response:
    return Response(orjson.dumps(payload), status, media_type="application/json")


async def _answer(
    send: Send, status: int, payload: dict[str, Any], extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = orjson.dumps(payload)
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class TooLarge(Exception):
    pass


class StoreFailed(DependencyUnavailable):
    """The state store answered but failed on this delivery (not an outage): a defect, logged
    with its traceback where it happened."""

    @classmethod
    def logged(cls, exc: Exception, message: str, *args: object) -> StoreFailed:
        """Log ``message`` with the traceback of ``exc`` being handled; the error to raise."""
        log.exception(message, *args)
        return cls(f"the state store failed ({type(exc).__name__})")


class Disconnected(Exception):
    pass


def header_map(scope: Scope) -> dict[str, str]:
    """The request headers by lower-case name (ASGI gives them lower-cased, as bytes)."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


async def read_limited(headers: dict[str, str], receive: Receive, limit: int) -> bytes:
    """The raw body, refusing (TooLarge) as soon as it passes ``limit`` bytes."""
    declared = headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise TooLarge
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def is_ping(headers: dict[str, str], body: bytes) -> bool:
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    return content_type == "application/x-www-form-urlencoded" and bool(
        _PING.fullmatch(body.strip())
    )


class WebhookApp:
    """The ingress: an ASGI app plus the store and outbox relay it runs with."""

    def __init__(
        self,
        settings: Settings,
        *,
        amqp_url: str | None = None,
        public_metrics: bool = True,
    ) -> None:
        """``public_metrics=False``: /metrics only on :attr:`operations` (a port of its own),
        not beside the public webhook."""
        self.settings = settings
        self.metrics = IngressMetrics()
        self._keys = signing_keys(settings.webhook_secrets())
        self._amqp_url = amqp_url
        self._store: PublisherStore | None = None
        self._ingest: Ingest | None = None
        self.relay: OutboxRelay | None = None
        self._relay_task: asyncio.Task[None] | None = None
        self._summary_task: asyncio.Task[None] | None = None
        # Deliveries being answered; ``_idle`` is set when there are none (the relay waits
        # for it before publishing, see OutboxRelay._make_way).
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._window: Counter[str] = Counter()
        self._window_events: Counter[str] = Counter()
        # While the state store is away: when it went, and the deliveries held on the broker
        # and answered 503 since (logged once when it goes and once when it is back).
        self._store_away_since: float | None = None
        self._store_away_held = self._store_away_refused = 0
        self.held = HeldDeliveries.for_settings(settings, amqp_url)
        self._held_wake = asyncio.Event()
        self._held_task: asyncio.Task[None] | None = None
        self._draining = asyncio.Lock()
        self.carrier = CarrierWebhook(settings, self.metrics.registry)
        # The other endpoints go through Starlette; POST /webhooks/woocommerce is answered
        # directly (see __call__), as it carries all the load.
        operational = [
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/metrics", self.metrics_endpoint, methods=["GET"]),
        ]
        public = operational if public_metrics else operational[:2]
        self._routes = Starlette(
            routes=[*public, Route(CARRIER_PATH, self.carrier.endpoint, methods=["POST"])],
            lifespan=self._lifespan,
        )
        #: /healthz, /readyz and /metrics alone: what a metrics port serves.
        self.operations = Starlette(routes=operational)
        if not self._keys:
            log.error(
                "WOOFLEET_WEBHOOK_SECRET is empty: every delivery will be refused with 401. "
                "Set it to the secret of the WooCommerce webhook (several, comma-separated, "
                "while rotating)."
            )

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._store = await open_store(self.settings.state_url)
        self._ingest = Ingest(self._store, PriorityRules.from_settings(self.settings))
        self.relay = OutboxRelay(
            self._store,
            lambda: open_confirming_channel(
                self.settings, name="woofleet webhook", url=self._amqp_url
            ),
            on_published=self.metrics.events_published.inc,
            on_set_aside=self.metrics.set_aside.inc,
            max_backoff=self.settings.outbox_retry_max_seconds,
            # Answering from the outbox commit: publishing may wait for a gap in deliveries.
            # Waiting for confirms: it must not.
            idle=self._idle if self.settings.webhook_confirm_wait_seconds == 0 else None,
        )
        self._relay_task = asyncio.create_task(self.relay.run(), name="outbox relay")
        self._summary_task = asyncio.create_task(self._summaries(), name="webhook summaries")
        self._held_task = asyncio.create_task(self._drain_held(), name="held deliveries")
        self._held_wake.set()
        self.relay.wake()

    async def stop(self) -> None:
        held_task, self._held_task = self._held_task, None
        if held_task is not None:
            held_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await held_task
        await self.held.close()
        if self._summary_task is not None:
            self._summary_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._summary_task
            self._log_summary()
        if self.relay is not None and self._relay_task is not None:
            await self.relay.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._relay_task, 10)
        if self._store is not None:
            await self._store.close()
        await self.carrier.aclose()
        self._store = self._ingest = self.relay = self._relay_task = self._summary_task = None

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    # -- endpoints -------------------------------------------------------------------------
    @property
    def asgi(self) -> WebhookApp:
        """The ASGI application (the app itself, callable as ASGI 3)."""
        return self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI: the webhook itself, or Starlette for everything else."""
        if scope["type"] != "http" or scope["path"] != WEBHOOK_PATH:
            await self._routes(scope, receive, send)
        elif scope["method"] == "POST":
            await self.webhook(scope, receive, send)
        else:
            await _answer(send, 405, {"error": "POST only"}, ((b"allow", b"POST"),))

    async def webhook(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = header_map(scope)
        try:
            outcome, answer, body = await self._read_body(headers, receive)
        except Disconnected:
            return  # WooCommerce gave up; nothing was read, so nothing was queued
        if body is not None:
            # Counted only once the body is in: a client still sending (or never finishing)
            # must not hold back the relay, which gives way to deliveries being answered.
            self._in_flight += 1
            self._idle.clear()
            try:
                # What is logged or reported about this delivery loses its shopper's values
                # (a contract error, a store's error quoting a row), whatever their shape.
                with shopper(lambda: orjson.loads(body)):
                    outcome, answer = await self._receive(headers, body)
            finally:
                self._in_flight -= 1
                if not self._in_flight:
                    self._idle.set()
        status, payload = answer
        await _answer(send, status, payload)
        self._window[outcome] += 1
        self.metrics.deliveries.labels(outcome).inc()
        self.metrics.latency.observe(time.perf_counter() - started)

    async def _read_body(
        self, headers: dict[str, str], receive: Receive
    ) -> tuple[str, Answer, bytes | None]:
        """The body, or the refusal (413, 408) to answer instead."""
        limit = self.settings.webhook_max_body_bytes
        try:
            async with asyncio.timeout(self.settings.webhook_body_seconds):
                return "", (200, {}), await read_limited(headers, receive, limit)
        except TooLarge:
            log.warning("webhook: refused a body over %d bytes (413)", limit)
            return "too_large", (413, {"error": "body too large"}), None
        except TimeoutError:
            log.warning(
                "webhook: a body took over %gs to arrive (408); WOOFLEET_WEBHOOK_BODY_SECONDS",
                self.settings.webhook_body_seconds,
            )
            return "too_slow", (408, {"error": "body too slow"}), None

    async def _receive(self, headers: dict[str, str], body: bytes) -> tuple[str, Answer]:
        signature = headers.get("x-wc-webhook-signature")
        if not signature:
            if is_ping(headers, body):
                log.info("webhook: ping from WooCommerce (a webhook was just created or saved)")
                return "ping", (200, {"ping": "ok"})
            log.warning("webhook: refused an unsigned delivery (401)")
            return "unsigned", (401, {"error": "missing X-WC-Webhook-Signature"})
        if not verify(body, signature, self._keys):
            log.warning(
                "webhook: refused a delivery whose signature matches no configured secret (401); "
                "check WOOFLEET_WEBHOOK_SECRET against the webhook's secret in WooCommerce"
            )
            return "bad_signature", (401, {"error": "signature does not match"})
        topic = headers.get("x-wc-webhook-topic", "").strip()
        if topic not in ORDER_TOPICS and topic not in PRODUCT_TOPICS:
            log.info("webhook: topic %r is not one woofleet handles; ignored", topic[:60])
            return "ignored", (200, {"ignored": topic[:60]})
        try:
            answered = await self._process(headers, body, topic)
        except DependencyUnavailable as exc:
            return await self._hold(headers, body, exc)
        if answered[0] in STORED:
            self._store_back()
        return answered

    async def _process(
        self, headers: dict[str, str], body: bytes, topic: str
    ) -> tuple[str, Answer]:
        """A signed delivery of a handled topic, through the state store: its events queued, or
        it kept. Raises DependencyUnavailable when the store cannot take it."""
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return await self._keep(headers, body, topic, "the body is not JSON")
        if not isinstance(payload, dict) or not isinstance(payload.get("id"), int):
            return await self._keep(headers, body, topic, "the body is not an object with an id")
        resource = resource_of(payload)
        if resource is not None and resource != resource_of_topic(topic):
            # The signature covers the body, not the topic header: a captured body resent
            # under another topic. Nothing WooCommerce sends; refused, nothing kept.
            mismatch = f"{'an' if resource == 'order' else 'a'} {resource} body under topic {topic}"
            log.warning("webhook: refused %s (400)", mismatch)
            return "topic_mismatch", (400, {"error": mismatch})
        return await self._handle(headers, body, topic, payload)

    async def _keep(
        self, headers: dict[str, str], body: bytes, topic: str, reason: str
    ) -> tuple[str, Answer]:
        """Keep a signed delivery woofleet cannot turn into events, whole, and answer 202:
        refusing it would lose it (WooCommerce counts refusals and disables the webhook)."""
        if self._store is None:
            return "error", (503, {"error": "starting up"})
        try:
            kept_id = await self._store.keep(headers, body, topic, reason)
        except DependencyUnavailable:
            raise
        except Exception as exc:
            raise StoreFailed.logged(exc, "webhook: could not keep a %s delivery", topic) from exc
        self.metrics.kept.inc()
        log.warning(
            "webhook: kept %s delivery #%d, it cannot be turned into events (%s); "
            "see `woofleet ingress show %d`, replay it once the cause is fixed",
            topic,
            kept_id,
            reason,
            kept_id,
        )
        return "kept", (202, {"kept": kept_id, "reason": reason})

    async def _handle(
        self, headers: dict[str, str], body: bytes, topic: str, payload: dict[str, Any]
    ) -> tuple[str, Answer]:
        if self._ingest is None or self.relay is None:
            return "error", (503, {"error": "starting up"})
        source = self.source_of(headers)
        if topic == "order.deleted":
            log.info(
                "webhook: order %s moved to the trash; woofleet has no event for it", payload["id"]
            )
            return "ignored", (200, {"ignored": topic})
        try:
            if topic in ORDER_TOPICS:
                result = await self._ingest.order(source, payload)
            else:
                result = await self._ingest.product(source, payload)
        except ContractError as exc:  # the body, not the store: Ingest says which
            return await self._keep(headers, body, topic, str(exc))
        except DependencyUnavailable:
            raise
        except Exception as exc:
            raise StoreFailed.logged(
                exc, "webhook: could not record %s for id %s", topic, payload.get("id")
            ) from exc
        await self._confirm(result)
        self._log_accepted(topic, payload["id"], result)
        return "accepted", (200, {"events": list(result.events)})

    async def _hold(
        self, headers: dict[str, str], body: bytes, exc: DependencyUnavailable
    ) -> tuple[str, Answer]:
        """The state store is away (or failed on this delivery, already logged): hold the
        delivery on the broker and answer 202 (it becomes events once the store takes it), or
        503 when the broker cannot take it either."""
        away = not isinstance(exc, StoreFailed)
        if away and self._store_away_since is None:
            self._store_away_since = time.monotonic()
            log.error(
                "webhook: the state store is away (%s); holding deliveries on the broker "
                "(%s) until it is back",
                exc,
                HELD_QUEUE,
            )
        try:
            await self.held.hold(headers, body)
        except (BrokerUnavailable, PublishError, TopologyError, TimeoutError) as held_exc:
            self._store_away_refused += 1
            if self._store_away_refused == 1:
                log.error(
                    "webhook: answering 503: the broker cannot hold deliveries either (%s)",
                    held_exc or "no confirm in time",
                )
            return "error", (503, {"error": "state store unavailable"})
        self._store_away_held += away
        self.metrics.held.inc()
        return "held", (202, {"held": True})

    def _store_back(self) -> None:
        if self._store_away_since is not None:
            log.warning(
                "webhook: the state store is back after %.0f s; %d deliveries were held on the "
                "broker meanwhile (turned into events now), %d answered 503",
                time.monotonic() - self._store_away_since,
                self._store_away_held,
                self._store_away_refused,
            )
            self._store_away_since = None
            self._store_away_held = self._store_away_refused = 0
            self._held_wake.set()

    # -- held deliveries ---------------------------------------------------------------------
    async def _drain_held(self) -> None:
        """Turn held deliveries into events while the store takes them: at start (a webhook
        that held them may be gone), when the store comes back, and every HELD_POLL_SECONDS."""
        failing = ""
        while self._held_task is not None:  # None once stop() began
            with contextlib.suppress(TimeoutError):
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that arrives as the wait ends, and stop() would wait for this loop forever.
                async with asyncio.timeout(HELD_POLL_SECONDS):
                    await self._held_wake.wait()
            self._held_wake.clear()
            if self._store_away_since is not None and not await self.store.writable():
                continue
            try:
                processed = await self.drain_held()
            except (BrokerUnavailable, PublishError, TopologyError, TimeoutError) as exc:
                why = str(exc) or type(exc).__name__
                if why != failing:
                    log.warning("webhook: cannot look for held deliveries now: %s", why)
                failing = why
                continue
            except Exception as exc:  # a defect: say it once, keep looking
                why = type(exc).__name__
                if why != failing:
                    log.exception("webhook: taking back held deliveries failed")
                failing = why
                continue
            failing = ""
            if sum(processed.values()) >= HELD_BATCH:
                self._held_wake.set()  # a full batch: there may be more

    async def drain_held(self, limit: int = HELD_BATCH) -> Counter[str]:
        """Process up to ``limit`` held deliveries; their outcomes (accepted, kept...). Stops
        at the first the store cannot take, which goes back to the queue."""
        async with self._draining:  # one drain at a time: a channel has one get in flight
            outcomes = await self._drain_batch(limit)
        if outcomes:
            log.info(
                "webhook: processed %d held deliveries (%s)",
                sum(outcomes.values()),
                ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())),
            )
        return outcomes

    async def _drain_batch(self, limit: int) -> Counter[str]:
        outcomes: Counter[str] = Counter()
        while sum(outcomes.values()) < limit:
            delivery = await self.held.take()
            if delivery is None:
                break
            try:
                outcome = await self._process_held(delivery)
                if outcome == "error":  # not started: nothing was done with it
                    raise DependencyUnavailable("the webhook is not started")
            except StoreFailed as exc:
                # The store is there but fails on this delivery: kept, so that it does not
                # stand in front of the others every time.
                try:
                    outcome, _ = await self._keep(
                        delivery.headers, delivery.body, delivery.topic, f"held; then {exc}"
                    )
                except DependencyUnavailable:
                    self.held.later(delivery)
                    break
            except DependencyUnavailable:
                self.held.later(delivery)
                break
            except BaseException:
                self.held.later(delivery)
                raise
            self.held.done(delivery)
            if outcome in STORED:
                self._store_back()
            outcomes[outcome] += 1
            self.metrics.held_processed.labels(outcome).inc()
        return outcomes

    async def _process_held(self, delivery: HeldDelivery) -> str:
        headers, body, topic = delivery.headers, delivery.body, delivery.topic
        if not verify(body, headers.get("x-wc-webhook-signature", ""), self._keys):
            # The secret was rotated away since: keep it, for a person to decide.
            reason = "held while the state store was away; its signature matches no secret now"
            return (await self._keep(headers, body, topic, reason))[0]
        with shopper(lambda: orjson.loads(body)):
            outcome, _ = await self._process(headers, body, topic)
        return outcome

    async def _confirm(self, result: IngestResult) -> None:
        for event_type in result.events:
            self.metrics.events_queued.labels(event_type).inc()
        relay = self.relay
        if relay is None or not result.seqs:
            return
        if relay.is_leader and relay.publishing and self.settings.webhook_confirm_wait_seconds > 0:
            confirmed = await relay.wait_published(
                result.seqs, self.settings.webhook_confirm_wait_seconds
            )
            if not confirmed:
                log.warning("webhook: broker slow to confirm; events stay in the outbox")
        else:
            relay.wake()

    def _log_accepted(self, topic: str, resource_id: Any, result: IngestResult) -> None:
        # One line per delivery only at DEBUG: at shop scale they would bury everything else;
        # INFO gets a summary every SUMMARY_SECONDS instead.
        self._window_events.update(result.events)
        if result.events:
            log.debug("webhook: %s id=%s -> %s", topic, resource_id, " ".join(result.events))
        else:
            log.debug("webhook: %s id=%s -> nothing (%s)", topic, resource_id, result.note)

    async def _summaries(self) -> None:
        while True:
            await asyncio.sleep(SUMMARY_SECONDS)
            self._log_summary()

    def _log_summary(self) -> None:
        if not self._window:
            return
        outcomes = ", ".join(f"{n} {o}" for o, n in sorted(self._window.items()))
        events = ", ".join(f"{n} {t}" for t, n in sorted(self._window_events.items())) or "none"
        broker = "up" if self.relay is not None and self.relay.broker_up else "AWAY (outbox)"
        log.info(
            "webhook: %d deliveries in the last %ds (%s); events queued: %s; broker %s",
            sum(self._window.values()),
            SUMMARY_SECONDS,
            outcomes,
            events,
            broker,
        )
        self._window.clear()
        self._window_events.clear()

    def source_of(self, headers: dict[str, str]) -> str:
        """The store: WOOFLEET_WOO_URL when set (the header is not signed), else the header."""
        header = headers.get("x-wc-webhook-source", "")
        return normalised_source(self.settings.woo_url or header or "unknown-store")

    async def healthz(self, request: Request) -> Response:
        return _json(200, {"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        broker = self.relay is not None and self.relay.broker_up
        outbox = self._store is not None and await self._store.writable()
        body: dict[str, Any] = {"broker": broker, "outbox_writable": outbox}
        if not self._keys:
            # Every delivery would be refused with 401: not ready to take traffic.
            body["reason"] = "WOOFLEET_WEBHOOK_SECRET is not set"
            return _json(503, body)
        if not outbox:
            # Every delivery is committed there first; while it is away deliveries are held on
            # the broker (publisher.held), and only with the broker away too is each one a 503.
            body["held_on_broker"] = broker
            body["reason"] = "the state store (WOOFLEET_STATE_URL) is not answering" + (
                f"; deliveries are held on the broker ({HELD_QUEUE})" if broker else ""
            )
            return _json(200 if broker else 503, body)
        return _json(200, body)

    @property
    def store(self) -> PublisherStore:
        """The state store (once started)."""
        if self._store is None:
            raise RuntimeError("the webhook app is not started")
        return self._store

    @property
    def ingest(self) -> Ingest:
        """What turns resource states into queued events (once started)."""
        if self._ingest is None:
            raise RuntimeError("the webhook app is not started")
        return self._ingest

    async def metrics_endpoint(self, request: Request) -> Response:
        if self._store is not None:
            self.metrics.outbox_depth.set(await self._store.depth())
            self.metrics.outbox_oldest.set(await self._store.oldest_age() or 0.0)
            self.metrics.kept_deliveries.set(await self._store.kept_count())
            self.metrics.set_aside_waiting.set(await self._store.set_aside_count())
        self.metrics.broker_up.set(1 if self.relay is not None and self.relay.broker_up else 0)
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def serve(settings: Settings, host: str, port: int, metrics_port: int | None = None) -> None:
    """Run the ingress on uvicorn until SIGINT/SIGTERM; with ``metrics_port``, /metrics (and the
    probes) on that port instead of beside the public webhook."""
    import uvicorn

    from fleet.health import serve_in_background
    from publisher.http_guard import guarded, limits_of

    app = WebhookApp(settings, public_metrics=metrics_port is None)
    limits = limits_of(settings)
    # Everything imported so far lives as long as the process: keep it out of the collector's
    # full passes, which otherwise stall every delivery in flight for their whole length.
    gc.freeze()
    log.info("webhook: listening on http://%s:%d%s", host, port, WEBHOOK_PATH)
    config = uvicorn.Config(
        app.asgi,
        host=host,
        port=port,
        http=guarded(limits),
        log_config=None,
        access_log=False,
        backlog=limits.max_connections,
    )

    async def run() -> None:
        server = uvicorn.Server(config)
        if metrics_port is None:
            await server.serve()
            return
        operations, task = await serve_in_background(app.operations, host, metrics_port)
        log.info("webhook: /healthz /readyz /metrics on http://%s:%d", host, metrics_port)
        try:
            await server.serve()
        finally:
            operations.should_exit = True
            await task

    # The event loop uvicorn.run would pick (uvloop when installed).
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(run())
