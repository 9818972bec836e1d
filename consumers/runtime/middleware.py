"""The runtime's one extension mechanism: middleware with named, no-op hooks.

Metrics and Sentry are ordinary middleware (``consumers/runtime/observe.py``); the worker knows
nothing about them beyond calling these hooks in order. The circuit breaker is not one: it
decides whether a delivery is handled at all and stops and resumes consuming, so it lives in
the worker (``worker.py`` acts on it, ``breaker.py`` keeps its state).
"""

from __future__ import annotations

from typing import Any

from consumers.runtime.handler import AnyEnvelope, Delivery
from consumers.runtime.outcome import Outcome


class Middleware:
    """Base class: override the hooks you need; each is called for every delivery."""

    async def before_handle(self, event: AnyEnvelope, delivery: Delivery) -> None:
        """Just before the handler runs."""

    async def after_handle(
        self, event: AnyEnvelope, delivery: Delivery, exception: BaseException | None
    ) -> None:
        """Right after the handler returned or raised (timeouts arrive as TimeoutError)."""

    async def before_ack(self, delivery: Delivery, outcome: Outcome) -> None:
        """Once per delivery, as it is settled: acked for every :class:`Outcome` but REQUEUED,
        which gives it back to the broker. Dead letters for bad contracts come here too (their
        delivery carries the message id as business key). An exception is logged, never
        changes the outcome."""

    async def on_retry(self, delivery: Delivery, exception: BaseException, tier: str) -> None:
        """A failed message was published, confirmed, to retry tier queue ``tier``."""

    async def on_dead_letter(
        self, consumer: str, message_id: str, reason: str, headers: dict[str, Any]
    ) -> None:
        """A message was published, confirmed, to its consumer's dead-letter queue."""
