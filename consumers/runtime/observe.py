"""Standard middleware: Prometheus metrics and Sentry reporting."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from consumers.runtime.handler import AnyEnvelope, Delivery
from consumers.runtime.middleware import Middleware
from fleet.errors import HandlerError

MESSAGES = Counter(
    "woofleet_consumer_messages_total",
    "Deliveries by consumer and outcome (handled, duplicate, retried, dead)",
    ["consumer", "outcome"],
)
HANDLER_SECONDS = Histogram(
    "woofleet_handler_seconds",
    "Time spent in handlers",
    ["consumer"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
IN_FLIGHT = Gauge("woofleet_consumer_in_flight", "Deliveries being handled", ["consumer"])
DEAD_LETTERS = Counter(
    "woofleet_dead_letters_total", "Messages sent to a dead-letter queue", ["consumer"]
)


class _ConsumerMetrics:
    """The labelled children of one consumer, looked up once: labels() costs on every call."""

    def __init__(self, consumer: str) -> None:
        self.in_flight = IN_FLIGHT.labels(consumer)
        self.seconds = HANDLER_SECONDS.labels(consumer)
        self.dead = DEAD_LETTERS.labels(consumer)
        self.outcomes: dict[str, Any] = {}

    def outcome(self, consumer: str, outcome: str) -> Any:
        child = self.outcomes.get(outcome)
        if child is None:
            child = self.outcomes[outcome] = MESSAGES.labels(consumer, outcome)
        return child


class MetricsMiddleware(Middleware):
    def __init__(self) -> None:
        self._started: dict[str, float] = {}
        self._by_consumer: dict[str, _ConsumerMetrics] = {}

    def _metrics(self, consumer: str) -> _ConsumerMetrics:
        metrics = self._by_consumer.get(consumer)
        if metrics is None:
            metrics = self._by_consumer[consumer] = _ConsumerMetrics(consumer)
        return metrics

    async def before_handle(self, event: AnyEnvelope, delivery: Delivery) -> None:
        self._metrics(delivery.consumer).in_flight.inc()
        self._started[delivery.message_id] = time.perf_counter()

    async def after_handle(
        self, event: AnyEnvelope, delivery: Delivery, exception: BaseException | None
    ) -> None:
        metrics = self._metrics(delivery.consumer)
        metrics.in_flight.dec()
        started = self._started.pop(delivery.message_id, None)
        if started is not None:
            metrics.seconds.observe(time.perf_counter() - started)

    async def before_ack(self, delivery: Delivery, outcome: str) -> None:
        self._metrics(delivery.consumer).outcome(delivery.consumer, outcome).inc()

    async def on_dead_letter(
        self, consumer: str, message_id: str, reason: str, headers: dict[str, Any]
    ) -> None:
        self._metrics(consumer).dead.inc()


class SentryMiddleware(Middleware):
    """Reports unexpected handler exceptions (not the Transient/Permanent ones handlers raise on
    purpose) and every dead letter. Does nothing unless Sentry was initialised."""

    async def after_handle(
        self, event: AnyEnvelope, delivery: Delivery, exception: BaseException | None
    ) -> None:
        if exception is None or isinstance(exception, HandlerError):
            return
        import sentry_sdk

        with sentry_sdk.new_scope() as scope:
            scope.set_tag("consumer", delivery.consumer)
            scope.set_tag("event_type", event.event_type)
            scope.set_context(
                "delivery", {"message_id": delivery.message_id, "attempt": delivery.attempt}
            )
            sentry_sdk.capture_exception(exception)

    async def on_dead_letter(
        self, consumer: str, message_id: str, reason: str, headers: dict[str, Any]
    ) -> None:
        import sentry_sdk

        with sentry_sdk.new_scope() as scope:
            scope.set_tag("consumer", consumer)
            scope.set_context("dead_letter", {"message_id": message_id, "reason": reason})
            sentry_sdk.capture_message(f"{consumer}: message dead-lettered", level="error")


def standard_middleware() -> list[Middleware]:
    """Metrics always; Sentry only where it was initialised (SENTRY_DSN set)."""
    import sentry_sdk

    middleware: list[Middleware] = [MetricsMiddleware()]
    if sentry_sdk.is_initialized():
        middleware.append(SentryMiddleware())
    return middleware
