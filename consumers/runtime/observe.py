"""Standard middleware: Prometheus metrics and Sentry reporting."""

from __future__ import annotations

import re
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from consumers.runtime.handler import AnyEnvelope, Delivery
from consumers.runtime.middleware import Middleware
from consumers.runtime.outcome import Outcome
from fleet.errors import HandlerError
from topology.fleet import DEFAULT_FLEET

#: Upper bounds of woofleet_handler_seconds, in seconds.
HANDLER_SECONDS_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
)
_BOUNDS = (*(float(b) for b in HANDLER_SECONDS_BUCKETS), float("inf"))
# "le" labels as prometheus_client writes its own histograms' ("1.0", "+Inf").
_BUCKET_LABELS: tuple[str, ...] = tuple(
    floatToGoString(b)  # type: ignore[no-untyped-call]
    for b in _BOUNDS
)

#: Upper bounds of woofleet_consumer_wait_seconds: the class delay targets (30 s, 5 min, 30 min,
#: 1 h) are bounds, so "over target" is one bucket lookup.
WAIT_SECONDS_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
_WAIT_BOUNDS = (*(float(b) for b in WAIT_SECONDS_BUCKETS), float("inf"))
_WAIT_LABELS: tuple[str, ...] = tuple(
    floatToGoString(b)  # type: ignore[no-untyped-call]
    for b in _WAIT_BOUNDS
)
#: A delayed consumer (review-request) starts waiting when its delay queue hands the event over.
_DELAYS = {c.name: c.delay or 0.0 for c in DEFAULT_FLEET.consumers}


class _Figures:
    """One consumer's metrics as plain numbers, turned into Prometheus metrics when scraped.

    prometheus_client's metric objects take a lock and several calls per update, and there are
    four updates per delivery: a third of the runtime's own CPU per message. The event loop is
    the only writer, and /metrics is served on the same loop, so plain numbers are enough.
    """

    __slots__ = (
        "dead",
        "dependency_pauses",
        "handling",
        "outcomes",
        "recalled",
        "requeues",
        "runtime_failures",
        "seconds_buckets",
        "seconds_sum",
        "wait_buckets",
        "wait_sum",
    )

    def __init__(self) -> None:
        self.handling = 0
        #: outcome → deliveries (every Outcome: handled, duplicate, retried, dead, requeued)
        self.outcomes: dict[str, int] = {}
        #: Observations per bucket of _BOUNDS (not cumulative; the scrape adds them up).
        self.seconds_buckets = [0] * len(_BOUNDS)
        self.seconds_sum = 0.0
        self.dead = 0
        #: Deliveries given back to the broker (nack with requeue), whatever the cause.
        self.requeues = 0
        #: Failures of the runtime itself (not of a handler): the message was requeued.
        self.runtime_failures = 0
        #: Times the consumer paused because a dependency (the state store) stopped answering.
        self.dependency_pauses = 0
        #: Messages brought back early from the outage tiers once the target answered again.
        self.recalled = 0
        self.wait_buckets = [0] * len(_WAIT_BOUNDS)
        self.wait_sum = 0.0


#: consumer → its figures, shared by every MetricsMiddleware in the process (as the metrics are).
_FIGURES: dict[str, _Figures] = {}


def _figures(consumer: str) -> _Figures:
    figures = _FIGURES.get(consumer)
    if figures is None:
        figures = _FIGURES[consumer] = _Figures()
    return figures


#: consumer → a function reading its circuit breaker's state ("closed", "half-open", "open").
_BREAKERS: dict[str, Callable[[], str]] = {}
#: woofleet_breaker_state values: anything above 0 means the consumer is not taking work freely.
BREAKER_STATE_VALUES = {"closed": 0, "half-open": 1, "open": 2}


def watch_breaker(consumer: str, state: Callable[[], str]) -> None:
    """Report ``state()`` as ``woofleet_breaker_state{consumer}`` at every scrape."""
    _BREAKERS[consumer] = state


def count_requeue(consumer: str) -> None:
    _figures(consumer).requeues += 1


def count_runtime_failure(consumer: str) -> None:
    _figures(consumer).runtime_failures += 1


def count_dependency_pause(consumer: str) -> None:
    _figures(consumer).dependency_pauses += 1


def count_recalled(consumer: str, messages: int) -> None:
    _figures(consumer).recalled += messages


class _RuntimeMetrics(Collector):
    """``woofleet_consumer_messages_total``, ``woofleet_handler_seconds``,
    ``woofleet_consumer_in_flight``, ``woofleet_dead_letters_total``,
    ``woofleet_consumer_requeues_total``, ``woofleet_consumer_runtime_failures_total``,
    ``woofleet_consumer_dependency_pauses_total``, ``woofleet_consumer_recalled_total`` and
    ``woofleet_breaker_state`` (0 closed, 1 half-open, 2 open), labelled by consumer."""

    def collect(self) -> Iterator[Metric]:
        messages = CounterMetricFamily(
            "woofleet_consumer_messages",
            "Deliveries by consumer and outcome (handled, duplicate, retried, dead, requeued)",
            labels=["consumer", "outcome"],
        )
        seconds = HistogramMetricFamily(
            "woofleet_handler_seconds", "Time spent in handlers", labels=["consumer"]
        )
        in_flight = GaugeMetricFamily(
            "woofleet_consumer_in_flight", "Deliveries being handled", labels=["consumer"]
        )
        dead = CounterMetricFamily(
            "woofleet_dead_letters", "Messages sent to a dead-letter queue", labels=["consumer"]
        )
        requeues = CounterMetricFamily(
            "woofleet_consumer_requeues",
            "Deliveries given back to the broker (nack with requeue)",
            labels=["consumer"],
        )
        failures = CounterMetricFamily(
            "woofleet_consumer_runtime_failures",
            "Failures of the consumer runtime itself (the message was requeued)",
            labels=["consumer"],
        )
        pauses = CounterMetricFamily(
            "woofleet_consumer_dependency_pauses",
            "Times the consumer stopped taking deliveries: the state store stopped answering",
            labels=["consumer"],
        )
        recalled = CounterMetricFamily(
            "woofleet_consumer_recalled",
            "Messages brought back early from the outage tiers: the target answered again",
            labels=["consumer"],
        )
        breakers = GaugeMetricFamily(
            "woofleet_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open (probing), 2 open (not consuming)",
            labels=["consumer"],
        )
        wait = HistogramMetricFamily(
            "woofleet_consumer_wait_seconds",
            "Time from the event to the start of its handling, less a delayed consumer's delay",
            labels=["consumer"],
        )
        for consumer, state in list(_BREAKERS.items()):
            breakers.add_metric([consumer], BREAKER_STATE_VALUES.get(str(state()), 2))
        for consumer, figures in list(_FIGURES.items()):
            for outcome, count in list(figures.outcomes.items()):
                messages.add_metric([consumer, outcome], count)
            cumulative, buckets = 0, []
            for label, count in zip(_BUCKET_LABELS, figures.seconds_buckets, strict=True):
                cumulative += count
                buckets.append((label, cumulative))
            seconds.add_metric([consumer], buckets, figures.seconds_sum)
            in_flight.add_metric([consumer], figures.handling)
            dead.add_metric([consumer], figures.dead)
            cumulative, waits = 0, []
            for label, count in zip(_WAIT_LABELS, figures.wait_buckets, strict=True):
                cumulative += count
                waits.append((label, cumulative))
            wait.add_metric([consumer], waits, figures.wait_sum)
            requeues.add_metric([consumer], figures.requeues)
            failures.add_metric([consumer], figures.runtime_failures)
            pauses.add_metric([consumer], figures.dependency_pauses)
            recalled.add_metric([consumer], figures.recalled)
        yield from (
            messages,
            seconds,
            in_flight,
            dead,
            requeues,
            failures,
            pauses,
            recalled,
            breakers,
            wait,
        )


REGISTRY.register(_RuntimeMetrics())


class MetricsMiddleware(Middleware):
    def __init__(self) -> None:
        # Keyed by consumer too: every consumer in a process that binds the same event gets
        # the same message id, and one middleware instance serves them all.
        self._started: dict[tuple[str, str], float] = {}

    async def before_handle(self, event: AnyEnvelope, delivery: Delivery) -> None:
        figures = _figures(delivery.consumer)
        figures.handling += 1
        waited = (datetime.now(UTC) - event.occurred_at).total_seconds()
        waited = max(waited - _DELAYS.get(delivery.consumer, 0.0), 0.0)
        figures.wait_buckets[bisect_left(_WAIT_BOUNDS, waited)] += 1
        figures.wait_sum += waited
        self._started[(delivery.consumer, delivery.message_id)] = time.perf_counter()

    async def after_handle(
        self, event: AnyEnvelope, delivery: Delivery, exception: BaseException | None
    ) -> None:
        figures = _figures(delivery.consumer)
        figures.handling -= 1
        started = self._started.pop((delivery.consumer, delivery.message_id), None)
        if started is not None:
            seconds = time.perf_counter() - started
            # The first bucket whose upper bound is >= seconds, as Prometheus histograms count.
            figures.seconds_buckets[bisect_left(_BOUNDS, seconds)] += 1
            figures.seconds_sum += seconds

    async def before_ack(self, delivery: Delivery, outcome: Outcome) -> None:
        outcomes = _figures(delivery.consumer).outcomes
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    async def on_dead_letter(
        self, consumer: str, message_id: str, reason: str, headers: dict[str, Any]
    ) -> None:
        _figures(consumer).dead += 1


#: The exception's class at the head of a failure reason ("PermanentError: ...", "attempts
#: exhausted (5/5): TransientError: ...", "ConsumerCrashed: ...").
_ERROR_CLASS = re.compile(r"(?:^|: )([A-Z][A-Za-z0-9_]*(?:Error|Exception|Crashed))\b")


def error_class(reason: str) -> str:
    found = _ERROR_CLASS.search(reason)
    return found.group(1) if found else "unknown"


class SentryMiddleware(Middleware):
    """Reports unexpected handler exceptions (not the Transient/Permanent ones handlers raise on
    purpose) and every dead letter, once each, tagged with the consumer, the event type and the
    error class. Does nothing unless Sentry was initialised (fleet/sentry.py scrubs it all)."""

    def __init__(self) -> None:
        #: (consumer, message id) → event type, from handling to settling: a dead letter's tag.
        self._types: dict[tuple[str, str], str] = {}

    async def before_handle(self, event: AnyEnvelope, delivery: Delivery) -> None:
        self._types[(delivery.consumer, delivery.message_id)] = event.event_type

    async def after_handle(
        self, event: AnyEnvelope, delivery: Delivery, exception: BaseException | None
    ) -> None:
        if exception is None or isinstance(exception, HandlerError):
            return
        import sentry_sdk

        with sentry_sdk.new_scope() as scope:
            scope.set_tag("consumer", delivery.consumer)
            scope.set_tag("event_type", event.event_type)
            scope.set_tag("error_class", type(exception).__name__)
            scope.set_context(
                "delivery", {"message_id": delivery.message_id, "attempt": delivery.attempt}
            )
            sentry_sdk.capture_exception(exception)

    async def before_ack(self, delivery: Delivery, outcome: Outcome) -> None:
        self._types.pop((delivery.consumer, delivery.message_id), None)

    async def on_dead_letter(
        self, consumer: str, message_id: str, reason: str, headers: dict[str, Any]
    ) -> None:
        import sentry_sdk

        kind = error_class(reason)
        with sentry_sdk.new_scope() as scope:
            scope.set_tag("consumer", consumer)
            scope.set_tag("event_type", self._types.get((consumer, message_id), "unreadable"))
            scope.set_tag("error_class", kind)
            scope.set_context("dead_letter", {"message_id": message_id, "reason": reason})
            sentry_sdk.capture_message(f"{consumer}: message dead-lettered ({kind})", level="error")


def standard_middleware() -> list[Middleware]:
    """Metrics always; Sentry only where it was initialised (SENTRY_DSN set)."""
    import sentry_sdk

    middleware: list[Middleware] = [MetricsMiddleware()]
    if sentry_sdk.is_initialized():
        middleware.append(SentryMiddleware())
    return middleware
