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


class MetricsMiddleware(Middleware):
    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    async def before_handle(self, event: AnyEnvelope, delivery: Delivery) -> None:
        IN_FLIGHT.labels(delivery.consumer).inc()
        self._started[delivery.message_id] = time.perf_counter()

    async def after_handle(
        self, event: AnyEnvelope, delivery: Delivery, exception: BaseException | None
    ) -> None:
        IN_FLIGHT.labels(delivery.consumer).dec()
        started = self._started.pop(delivery.message_id, None)
        if started is not None:
            HANDLER_SECONDS.labels(delivery.consumer).observe(time.perf_counter() - started)

    async def before_ack(self, delivery: Delivery, outcome: str) -> None:
        MESSAGES.labels(delivery.consumer, outcome).inc()

    async def on_dead_letter(
        self, consumer: str, message_id: str, reason: str, headers: dict[str, Any]
    ) -> None:
        DEAD_LETTERS.labels(consumer).inc()


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
    return [MetricsMiddleware(), SentryMiddleware()]
