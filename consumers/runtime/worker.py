"""The consume loop of one consumer type: every delivery goes down one ladder.

    contract fails ─────────────────────────────▶ DLQ at once (confirmed)  ▶ Outcome.DEAD
    already in the ledger ──────────────────────▶ no second effect          ▶ Outcome.DUPLICATE
    handler succeeds ───────────────────────────▶ ledger                    ▶ Outcome.HANDLED
    transient error / timeout / unexpected ─────▶ next retry tier (confirmed) ▶ Outcome.RETRIED
    permanent error, or attempts exhausted ─────▶ DLQ (confirmed)           ▶ Outcome.DEAD
    handling cut short 5 times (crashes) ───────▶ DLQ (confirmed)           ▶ Outcome.DEAD
    stopping, dependency down, publish refused,
    runtime failure ────────────────────────────▶ given back to the broker  ▶ Outcome.REQUEUED

Each delivery ends in one :class:`Outcome`, settled by :meth:`ConsumerWorker._settle` alone:
the ``before_ack`` hooks and the outcome count once, then the ack (or, for REQUEUED, the nack).
The confirmed publish always comes before the ack, so a crash at any point loses nothing.

The circuit breaker lives here, in the worker, and is no middleware: it decides whether a
delivery is handled at all and stops and resumes consuming, which hooks cannot. It watches the
handler's outcomes: when the target keeps failing, the worker stops taking deliveries instead
of draining its queue into retries and the DLQ (what it holds goes to an outage tier untried,
never waiting unacked past a probe), lets one probe through after a cool-down, and resumes when
the probe succeeds, bringing back at once what waits in the outage tiers (``recall.py``).
``breaker.py`` keeps its state.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Coroutine, Sequence
from typing import Any

import aio_pika
import aiormq.exceptions
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from consumers.runtime import observe
from consumers.runtime.acks import AckSender, AckWindow
from consumers.runtime.breaker import BreakerState, CircuitBreaker
from consumers.runtime.deadlines import Deadlines
from consumers.runtime.failure import (
    CRASH_LIMIT,
    Action,
    attempt_of,
    copy_message,
    decide,
    describe,
    failure_headers,
    outage_retries_of,
)
from consumers.runtime.handler import AnyEnvelope, Delivery, Handler, HandlerSpec
from consumers.runtime.ledger import Ledger
from consumers.runtime.middleware import Middleware
from consumers.runtime.outcome import Outcome
from consumers.runtime.pause import DependencyPause
from consumers.runtime.recall import move_to_work_queue, probe_tier
from contracts.messages import OUTAGE_RETRIES_HEADER, SCHEMA_VERSION_HEADER
from contracts.registry import parse
from fleet.amqp import publish_confirmed
from fleet.errors import (
    ContractError,
    DependencyUnavailable,
    PublishError,
    TopologyError,
    TransientError,
)
from fleet.logging import with_context
from fleet.scrub import shopper
from topology import names
from topology.fleet import ConsumerPolicy
from topology.routing import accepted_contracts

log = logging.getLogger("consumers.runtime")

#: How long to hold a message whose retry or dead letter the broker refused before requeueing
#: it, so a full DLQ does not turn into a hot loop.
REFUSED_BACKOFF = 5.0

#: How long a done effect waits for the state store to record it before its delivery is given
#: back (and its effect may be repeated): well inside RabbitMQ's consumer_timeout (30 min), past
#: which the broker closes the channel of a delivery held unacked.
RECORD_PATIENCE = 20 * 60.0
MAX_RECORD_INTERVAL = 30.0

#: How long acks owed while nothing is being handled wait for the deliveries on their way to
#: finish and join them in one multiple ack. One ack frame per message costs the client about as
#: much CPU as the rest of the delivery; a few milliseconds cost nothing, since the broker keeps
#: sending into the prefetch slots not taken by finished deliveries.
ACK_DELAY = 0.005

#: Seconds a half-open worker waits for a delivery to probe with before it takes one early from
#: the outage tiers (recall.py).
PROBE_WAIT = 1.0


class ConsumerWorker:
    """Consumes ``woo.<consumer>`` and applies the ladder above to every delivery."""

    def __init__(
        self,
        policy: ConsumerPolicy,
        spec: HandlerSpec,
        handler: Handler,
        *,
        ledger: Ledger | None = None,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        self.policy = policy
        #: What the row's bindings route, in every version the registry knows: the contracts
        #: this consumer validates against (declared nowhere else).
        self.accepts = accepted_contracts(policy.bindings)
        self.spec = spec
        self.handler = handler
        self.ledger = ledger
        self.middleware = tuple(middleware)
        # Only hooks a middleware overrides are called: no-op awaits cost on every delivery.
        self._before_handle = _overriding(self.middleware, "before_handle")
        self._after_handle = _overriding(self.middleware[::-1], "after_handle")
        self._before_ack = _overriding(self.middleware, "before_ack")
        #: Outcome counts since start, keyed by :class:`Outcome` value.
        self.stats: Counter[str] = Counter()
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._publish_channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._retry: AbstractExchange | None = None
        self._dead: AbstractExchange | None = None
        self._consumer_tag: str | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._keys_in_progress: dict[str, asyncio.Event] = {}
        #: The acks of the channel deliveries currently arrive on (tags count per channel).
        self._acks: AckSender | None = None
        #: At most half the prefetch: finished deliveries waiting for a full batch must leave
        #: the broker slots to send more, or the batch would never fill (prefetch 1: at once).
        self.ack_batch = max(1, min(AckWindow.batch, policy.effective_prefetch // 2))
        #: Sends the acks owed once nothing is being handled (see _flush_acks).
        self._flush: asyncio.Task[None] | None = None
        self._deadlines = Deadlines(policy.timeout)
        #: Message ids this worker put back itself because the broker refused their retry or
        #: dead letter: their redelivery is not a crash and must not count towards the limit.
        self._refused: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._handling: set[asyncio.Task[None]] = set()
        self._log = with_context(log, consumer=policy.name)
        bp = policy.breaker
        self.breaker = CircuitBreaker(
            bp.window, bp.failure_ratio, bp.min_calls, bp.cool_down, on_change=self._breaker_moved
        )
        observe.watch_breaker(policy.name, lambda: self.breaker.state)
        #: The last failure the breaker counted, for /readyz while it is open.
        self._last_failure = ""
        self._opened_at = 0.0
        #: Why the last move from the outage tiers failed (None: it did not), logged once.
        self._recall_failure: str | None = None
        self.dependency = DependencyPause(
            probe=self._probe_dependencies,
            pause=self.pause,
            resume=self.resume,
            on_pause=lambda: observe.count_dependency_pause(policy.name),
            log=self._log,
        )

    @property
    def consuming(self) -> bool:
        return (
            self._consumer_tag is not None
            and self._channel is not None
            and not (self._channel.is_closed)
        )

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def start(self, connection: AbstractRobustConnection) -> None:
        """Open channels, check the queue exists, and start consuming."""
        self._connection = connection
        self._channel = await connection.channel()
        # A small prefetch keeps priorities meaningful: the broker reorders only what it holds.
        await self._channel.set_qos(prefetch_count=self.policy.effective_prefetch)
        self._publish_channel = await connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        self._retry = await self._publish_channel.get_exchange(
            names.retry_exchange(self.policy.name), ensure=False
        )
        self._dead = await self._publish_channel.get_exchange(
            names.dead_letter_exchange(self.policy.name), ensure=False
        )
        try:
            self._queue = await self._channel.declare_queue(self.policy.work_queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            raise TopologyError(
                f"queue {self.policy.work_queue} does not exist; run `woofleet topology apply`"
            ) from None
        await self.resume()
        self._log.info(
            "consuming %s (prefetch %d, timeout %ss, max attempts %d)",
            self.policy.work_queue,
            self.policy.effective_prefetch,
            self.policy.timeout,
            self.policy.max_attempts,
        )

    @property
    def broker_reachable(self) -> bool:
        return self._connection is not None and self._connection.connected.is_set()

    async def pause(self) -> None:
        """Stop taking new deliveries; what is in flight carries on."""
        if self._queue is not None and self._consumer_tag is not None:
            tag, self._consumer_tag = self._consumer_tag, None
            if not self.broker_reachable:
                # A call on a channel whose connection is away waits for it to come back: the
                # cancel goes out then (aio_pika would restore the consumer otherwise), and a
                # stopping worker, which closes the connection, does not wait for it.
                self._in_background(self._cancel_later(tag))
                return
            await self._queue.cancel(tag)
            if self._acks is not None:
                # A delivery racing the cancel may be dropped by the client: its tag would stay
                # a gap forever, so this channel's acks are single from now on.
                await self._acks.stop_batching()

    async def _cancel_later(self, tag: str) -> None:
        assert self._queue is not None
        await self._queue.cancel(tag)

    async def resume(self) -> None:
        if (
            self._queue is not None
            and self._consumer_tag is None
            and not self._stopping
            and self.dependency.reason is None
        ):
            self._consumer_tag = await self._queue.consume(self._on_message)

    async def _probe_dependencies(self) -> None:
        """What a paused worker tries before it resumes (DependencyUnavailable while down)."""
        if self.ledger is not None:
            await self.ledger.check()

    async def stop(self, grace: float) -> bool:
        """SIGTERM path: stop consuming, let in-flight work finish within ``grace`` seconds,
        then close; anything still unacked goes back to the queue. True if all finished."""
        self._stopping = True
        self.dependency.cancel()
        for task in list(self._background):
            task.cancel()
        await self.pause()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=grace)
            finished = True
        except TimeoutError:
            finished = False
            self._log.warning(
                "%d deliveries still running after %.0fs; the broker requeues them",
                self._in_flight,
                grace,
            )
        self._deadlines.close()
        if not self.broker_reachable:
            # Nothing can be said to a broker that is away (each call would wait for it to come
            # back): it gives every unacked delivery back by itself.
            return finished
        # Acks still waiting for a batch go out before the channel closes.
        if self._acks is not None:
            await self._acks.flush()
        for channel in (self._channel, self._publish_channel):
            if channel is not None and not channel.is_closed:
                await channel.close()
        return finished

    async def wait_idle(self) -> None:
        await self._idle.wait()

    # -- one delivery ---------------------------------------------------------------------------
    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # A closing channel cancels the callbacks it started. Handling runs in a task of its own
        # and goes on regardless, so an effect is never left without its ledger record: its ack
        # fails on the dead channel, and the redelivery finds the ledger's record.
        task = asyncio.get_running_loop().create_task(self._deliver(message))
        self._handling.add(task)
        task.add_done_callback(self._handling.discard)
        await asyncio.shield(task)

    async def _deliver(self, message: AbstractIncomingMessage) -> None:
        self._in_flight += 1
        self._idle.clear()
        # Whatever is said about this delivery (a failure, a target's echoed answer, Sentry)
        # is said without its shopper's name, address or phone, in whatever shape they come.
        try:
            with shopper(lambda: json.loads(message.body)):
                await self._handle_delivery(message)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0 and self._flush is None:
                self._flush = asyncio.get_running_loop().create_task(self._flush_acks())

    async def _handle_delivery(self, message: AbstractIncomingMessage) -> None:
        try:
            await self._process(message)
        except DependencyUnavailable as exc:
            # Every delivery needs it: give this one back uncounted and pause the worker.
            self.dependency.trip(exc)
            if message.message_id:
                self._refused.add(message.message_id)
            await self._settle(message, self._bare_delivery(message), Outcome.REQUEUED)
        except PublishError as exc:
            # The broker refused the retry or dead letter (e.g. a full DLQ): keep the original.
            self._log.error(
                "could not move message %s on (%s); it stays in %s",
                message.message_id,
                exc,
                self.policy.work_queue,
            )
            await asyncio.sleep(REFUSED_BACKOFF)
            if message.message_id:
                self._refused.add(message.message_id)
            await self._settle(message, self._bare_delivery(message), Outcome.REQUEUED)
        except Exception:
            observe.count_runtime_failure(self.policy.name)
            self._log.exception("runtime failure on message %s; it is requeued", message.message_id)
            await self._settle(message, self._bare_delivery(message), Outcome.REQUEUED)

    async def _flush_acks(self) -> None:
        """Nothing is being handled: every ack held back for a batch goes out within ACK_DELAY.

        Deliveries finishing meanwhile join the same multiple ack instead of costing one frame
        (and one wait for the connection's writer) each; a full batch goes out without waiting.
        """
        try:
            while (acks := self._acks) is not None:
                # Also after a send: what finished while it waited for the writer gathers again.
                if acks.window.batching:
                    await asyncio.sleep(ACK_DELAY)
                if not await acks.flush():
                    break
        except Exception:
            self._log.exception("could not send acks; the broker will redeliver those messages")
        finally:
            self._flush = None
            if self._in_flight == 0:
                self._idle.set()

    async def _process(self, message: AbstractIncomingMessage) -> None:
        headers: dict[str, Any] = dict(message.headers or {})
        attempt = attempt_of(headers)
        message_id = message.message_id or ""
        refused_before = message_id in self._refused
        self._refused.discard(message_id)
        # Redelivered without an ack: a crash may have come from this message (counted once its
        # handling starts again), unless this worker put it back itself.
        suspect = bool(message.redelivered) and not refused_before
        try:
            event = parse(
                message.body,
                event_type=message.type,
                schema_version=_int_or_none(headers.get(SCHEMA_VERSION_HEADER)),
                accepted=self.accepts,
            )
        except ContractError as exc:
            # No event, so no business key: the delivery as the message alone describes it.
            bare = self._bare_delivery(message, headers, attempt)
            await self._dead_letter(message, headers, bare, describe(exc))
            return
        key = self.spec.business_key(event) if self.spec.business_key else message_id
        delivery = Delivery(
            consumer=self.policy.name,
            message_id=message_id,
            attempt=attempt,
            priority=message.priority or 0,
            redelivered=bool(message.redelivered),
            business_key=key,
            log=with_context(
                log,
                consumer=self.policy.name,
                event=event.event_type,
                ref=message.correlation_id,
                attempt=attempt,
            ),
            headers=headers,
        )
        if self.spec.business_key is None or self.ledger is None:
            await self._handle(message, headers, event, delivery, suspect)
            return
        # Two copies of one fact can arrive in the same prefetch window (order.created and
        # order.updated with one body): the second waits for the first, then finds it done.
        while (running := self._keys_in_progress.get(key)) is not None:
            await running.wait()
        self._keys_in_progress[key] = asyncio.Event()
        try:
            if await self.ledger.is_done(self.policy.name, key):
                delivery.log.info("already done (duplicate delivery); acking, no second effect")
                await self._settle(message, delivery, Outcome.DUPLICATE)
                return
            await self._handle(message, headers, event, delivery, suspect)
        finally:
            self._keys_in_progress.pop(key).set()

    async def _handle(
        self,
        message: AbstractIncomingMessage,
        headers: dict[str, Any],
        event: AnyEnvelope,
        delivery: Delivery,
        suspect: bool = False,
    ) -> None:
        attempt, key = delivery.attempt, delivery.business_key
        # The breaker is closed nearly always: ask it directly before waiting in a coroutine.
        allowed = not self._stopping if self.breaker.allow() else await self._breaker_allows()
        if allowed is None:
            await self._wait_out_open_breaker(message, headers, delivery)
            return
        if not allowed:
            # Stopping while the breaker holds this message: the broker gets it back.
            await self._settle(message, delivery, Outcome.REQUEUED)
            return
        if suspect and self.ledger is not None:
            started = await self.ledger.count_redelivery(self.policy.name, delivery.message_id)
            if started >= CRASH_LIMIT:
                reason = (
                    f"ConsumerCrashed: its handling was cut short {started} times "
                    "(the consumer died or lost its connection while handling it)"
                )
                await self._dead_letter(message, headers, delivery, reason)
                return
        exception = await self._run_handler(event, delivery)
        # A target refusing (4xx) counts against it like one failing: refusing everything is
        # an outage too (a changed credential or API). A contract error is the message's, and a
        # handler with nothing to do reached no target: neither says anything about it (a guest
        # order earning no points must not close the breaker of a loyalty API that is down).
        if exception is None and not delivery.did_nothing:
            self.breaker.record(True, delivery.message_id)
        elif exception is None or isinstance(exception, ContractError):
            self.breaker.record_nothing()
        else:
            self.breaker.record(False, delivery.message_id)
            self._last_failure = describe(exception)
        if exception is None:
            if self.spec.business_key and self.ledger:
                await self._record_done(key)
            await self._settle(message, delivery, Outcome.HANDLED)
            return
        verdict = decide(
            self.policy,
            attempt,
            exception,
            breaker_open=self.breaker.state is not BreakerState.CLOSED,
            others_refused=self.breaker.others_failed(delivery.message_id),
            outage_retries=outage_retries_of(headers),
        )
        if verdict.action is not Action.DEAD:
            outage = verdict.action is Action.OUTAGE
            await self._send_to_retry(message, headers, delivery, exception, verdict.delay, outage)
        else:
            await self._dead_letter(message, headers, delivery, verdict.reason)

    async def _record_done(self, key: str) -> None:
        """Record a done effect in the ledger. While the state store is away the worker pauses
        and this keeps trying instead of giving the delivery back, whose redelivery would repeat
        the effect; only past RECORD_PATIENCE (or when stopping) does it give up."""
        assert self.ledger is not None
        delay, deadline = 0.5, time.monotonic() + RECORD_PATIENCE
        while True:
            try:
                await self.ledger.mark_done(self.policy.name, key)
                return
            except DependencyUnavailable as exc:
                if self._stopping or time.monotonic() + delay > deadline:
                    raise
                self.dependency.trip(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RECORD_INTERVAL)

    async def _breaker_allows(self) -> bool | None:
        """Wait while a probe is out: True once the breaker lets this delivery through, False if
        the worker stops meanwhile, None while it is open and the consumer has outage tiers (the
        delivery waits there, see _wait_out_open_breaker)."""
        while not self.breaker.allow():
            if self._stopping:
                return False
            if self._consumer_tag is not None:
                await self.pause()
            if self.policy.outage_tiers and self.breaker.state is BreakerState.OPEN:
                return None
            await asyncio.sleep(min(max(self.breaker.retry_in(), 0.05), 1.0))
        return not self._stopping

    async def _wait_out_open_breaker(
        self, message: AbstractIncomingMessage, headers: dict[str, Any], delivery: Delivery
    ) -> None:
        """A delivery the open breaker holds back waits in an outage tier, untried and counting
        as no attempt, not unacked in this worker: the broker closes a channel whose delivery
        stays unacked past its consumer_timeout (30 min by default), and outages last longer."""
        untried = TransientError(
            f"circuit open: {self.policy.name}'s target keeps failing; not tried"
        )
        verdict = decide(
            self.policy,
            delivery.attempt,
            untried,
            breaker_open=True,
            outage_retries=outage_retries_of(headers),
        )
        if verdict.action is Action.OUTAGE:
            await self._send_to_retry(
                message, headers, delivery, untried, verdict.delay, outage=True, tried=False
            )
        else:
            await self._dead_letter(message, headers, delivery, verdict.reason)

    @property
    def breaker_reason(self) -> str | None:
        """Why the breaker keeps this consumer from taking work (None while it is closed)."""
        if self.breaker.state is BreakerState.CLOSED:
            return None
        return (
            f"circuit open: the target keeps failing ({self._last_failure}); "
            f"one probe every {self.breaker.cool_down:g}s"
        )

    def _breaker_moved(self, old: BreakerState, new: BreakerState) -> None:
        # One line when an outage starts and one when it ends, not one per failed probe.
        if new is BreakerState.OPEN:
            if old is BreakerState.CLOSED:
                self._opened_at = time.monotonic()
                self._log.error(
                    "circuit open: %s keeps failing (%s); not taking deliveries, "
                    "one probe every %.0fs",
                    self.policy.name,
                    self._last_failure,
                    self.breaker.cool_down,
                )
            else:
                self._log.debug(
                    "probe failed; circuit open for another %.0fs", self.breaker.cool_down
                )
            # Paused, the worker may hold nothing to probe with: fetch one after the cool-down.
            self._in_background(self._resume_after(self.breaker.cool_down))
        elif new is BreakerState.CLOSED:
            self._log.info(
                "circuit closed: probe succeeded after %.0fs open; consuming %s again",
                time.monotonic() - self._opened_at,
                self.policy.work_queue,
            )
            self._in_background(self._resume_and_recall())

    async def _resume_and_recall(self) -> None:
        await self.resume()
        if self.policy.outage_tiers:
            await self._recall(probe=False)

    async def _resume_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.resume()
        # While nothing comes to probe with (the outage outlasted the orders, and what the
        # breaker held back waits in the outage tiers), one of those is taken early as the probe.
        while self.policy.outage_tiers and not self._stopping:
            await asyncio.sleep(PROBE_WAIT)
            if not (self.breaker.awaiting_probe and self.consuming):
                return
            await self._recall(probe=True)
            await asyncio.sleep(self.breaker.cool_down)

    async def _recall(self, *, probe: bool) -> int:
        """Move messages from the outage tiers to the work queue (recall.py): all of them once
        the breaker has closed, or one to probe with. Returns how many moved."""
        if self._connection is None or self._retry is None:
            return 0

        def keep_going() -> bool:
            return not self._stopping and (probe or self.breaker.state is BreakerState.CLOSED)

        try:
            moved = await move_to_work_queue(
                self._connection,
                self._retry,
                self.policy,
                limit=1 if probe else None,
                probe=probe,
                keep_going=keep_going,
            )
        except Exception as exc:
            # Nothing is lost: what stays in a tier comes back when its wait ends. Said once
            # per cause, not at every probe of an outage.
            reason = describe(exc)
            level = logging.DEBUG if reason == self._recall_failure else logging.ERROR
            self._recall_failure = reason
            self._log.log(
                level,
                "could not take messages back from the outage tiers (%s); "
                "they return when their wait ends",
                reason,
            )
            return 0
        self._recall_failure = None
        count = moved.total()
        observe.count_recalled(self.policy.name, count)
        if probe and count:
            self._log.debug("took a message from %s early to probe the target", next(iter(moved)))
        elif count:
            self._log.info(
                "the target answers again: took %d messages back early from the outage tiers (%s)",
                count,
                ", ".join(f"{tier} {n}" for tier, n in moved.items()),
            )
        return count

    def _in_background(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._stopping:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _run_handler(self, event: AnyEnvelope, delivery: Delivery) -> BaseException | None:
        for before in self._before_handle:
            await before(event, delivery)
        exception: BaseException | None = None
        task = self._deadlines.enter()
        try:
            await self.handler(event, delivery)
        except asyncio.CancelledError as cancelled:
            if not self._deadlines.leave(task):
                raise
            # As asyncio.timeout does it; the cause shows where the handler was stuck.
            exception = TimeoutError()
            exception.__cause__ = cancelled
        except Exception as exc:
            self._deadlines.leave(task)
            exception = exc
        else:
            self._deadlines.leave(task)
        for after in self._after_handle:
            await after(event, delivery, exception)
        return exception

    async def _send_to_retry(
        self,
        message: AbstractIncomingMessage,
        headers: dict[str, Any],
        delivery: Delivery,
        exc: BaseException,
        delay: float,
        outage: bool = False,
        tried: bool = True,
    ) -> None:
        assert self._retry is not None
        # An outage retry counts as no attempt: the failures recorded stay what they were.
        recorded = delivery.attempt - 1 if outage else delivery.attempt
        new_headers = failure_headers(
            headers, consumer=self.policy.name, attempt=recorded, error=describe(exc)
        )
        came_from = probe_tier(headers) if outage else None
        if came_from is not None and came_from in self.policy.outage_tiers:
            # Taken early to probe with (recall.py): back where it waited, counting nothing.
            delay = came_from
            new_headers[OUTAGE_RETRIES_HEADER] = outage_retries_of(headers)
        elif outage:
            new_headers[OUTAGE_RETRIES_HEADER] = outage_retries_of(headers) + 1
        tier = names.retry_queue(self.policy.name, delay)
        await publish_confirmed(self._retry, copy_message(message, new_headers), tier)
        if not tried:
            # The breaker's "circuit open" line says it once for all of them.
            delivery.log.debug("held back by the open breaker; waiting %ss in %s", delay, tier)
        elif outage and self.breaker.state is not BreakerState.CLOSED:
            # A failed probe (or the failure that opened it): that line speaks for them too.
            delivery.log.debug("probe failed (%s); waiting %ss in %s", describe(exc), delay, tier)
        elif outage:
            delivery.log.warning(
                "target failing (%s); not counted as an attempt, retrying in %ss via %s",
                describe(exc),
                delay,
                tier,
            )
        else:
            delivery.log.warning(
                "attempt %d failed (%s); retrying in %ss via %s",
                delivery.attempt,
                describe(exc),
                delay,
                tier,
            )
        for mw in self.middleware:
            await mw.on_retry(delivery, exc, tier)
        await self._settle(message, delivery, Outcome.RETRIED)

    async def _dead_letter(
        self,
        message: AbstractIncomingMessage,
        headers: dict[str, Any],
        delivery: Delivery,
        reason: str,
    ) -> None:
        assert self._dead is not None
        dlq = self.policy.dead_letter_queue
        new_headers = failure_headers(
            headers, consumer=self.policy.name, attempt=delivery.attempt, error=reason
        )
        await publish_confirmed(self._dead, copy_message(message, new_headers), dlq)
        self._log.error(
            "message %s (%s, ref %s) dead-lettered to %s: %s",
            message.message_id,
            message.type,
            message.correlation_id,
            dlq,
            reason,
        )
        for mw in self.middleware:
            await mw.on_dead_letter(self.policy.name, message.message_id or "", reason, new_headers)
        await self._settle(message, delivery, Outcome.DEAD)

    async def _settle(
        self, message: AbstractIncomingMessage, delivery: Delivery, outcome: Outcome
    ) -> None:
        """End ``message`` with ``outcome``: the one path every delivery leaves by.

        The ``before_ack`` hooks and the outcome count run once, then the ack (batched with
        others where that is safe, consumers/runtime/acks.py) or, for REQUEUED, the nack.
        """
        for before_ack in self._before_ack:
            try:
                await before_ack(delivery, outcome)
            except Exception:
                # The outcome is decided (an effect may be done, a copy confirmed): a failing
                # hook must not turn it into a requeue and a second pass through the hooks.
                observe.count_runtime_failure(self.policy.name)
                self._log.exception("before_ack hook failed on message %s", delivery.message_id)
        self.stats[outcome.value] += 1
        tag = message.delivery_tag or 0
        if outcome is Outcome.REQUEUED:
            observe.count_requeue(self.policy.name)
            await self._send(message.nack(requeue=True))
        try:
            sender = self._sender_for(message)
        except aio_pika.exceptions.ChannelInvalidStateError as exc:
            # Its channel closed while it was handled (and may be open again as a new one):
            # there is no tag left to settle, and the broker has put the message back already.
            if outcome is not Outcome.REQUEUED:  # the nack's failure said so already
                self._cannot_settle(exc)
            return
        if outcome is Outcome.REQUEUED:
            sender.nacked(tag)  # its tag no longer holds up batched acks
        else:
            await sender.acked(tag)

    def _bare_delivery(
        self,
        message: AbstractIncomingMessage,
        headers: dict[str, Any] | None = None,
        attempt: int | None = None,
    ) -> Delivery:
        """The delivery as its message alone describes it (no event: it failed its contract, or
        the runtime failed before reading it), keyed by its message id."""
        headers = dict(message.headers or {}) if headers is None else headers
        attempt = attempt_of(headers) if attempt is None else attempt
        message_id = message.message_id or ""
        return Delivery(
            consumer=self.policy.name,
            message_id=message_id,
            attempt=attempt,
            priority=message.priority or 0,
            redelivered=bool(message.redelivered),
            business_key=message_id,
            log=with_context(
                log, consumer=self.policy.name, ref=message.correlation_id, attempt=attempt
            ),
            headers=headers,
        )

    def _sender_for(self, message: AbstractIncomingMessage) -> AckSender:
        # Tags count per channel: a reconnected channel starts again at 1 with a sender of its
        # own, and acks for the old one are never sent on the new one.
        channel = message.channel
        if self._acks is None or channel is not self._acks.channel:
            self._acks = AckSender(channel, self.ack_batch, self._log)
        return self._acks

    async def _send(self, frame: Any) -> None:
        try:
            await frame
        except (aio_pika.exceptions.ChannelInvalidStateError, aiormq.exceptions.AMQPError) as exc:
            # The channel died under us; the broker requeues the message, and the ledger or the
            # redelivery count takes care of it next time.
            self._cannot_settle(exc)

    def _cannot_settle(self, exc: BaseException) -> None:
        self._log.warning(
            "could not settle a delivery (its channel closed: %s); the broker will redeliver it",
            describe(exc),
        )


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _overriding(middleware: Sequence[Middleware], hook: str) -> list[Any]:
    """The bound ``hook`` of each middleware that overrides the base class's no-op."""
    base = getattr(Middleware, hook)
    return [getattr(mw, hook) for mw in middleware if getattr(type(mw), hook) is not base]
