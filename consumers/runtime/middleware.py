"""The runtime's one extension mechanism: middleware with named, no-op hooks.

Metrics, log context, Sentry and the circuit breaker are ordinary middleware; the worker knows
nothing about them beyond calling these hooks in order.
"""

from __future__ import annotations

from typing import Any

from consumers.runtime.handler import AnyEnvelope, Delivery


class Middleware:
    """Base class: override the hooks you need; each is called for every delivery."""

    async def before_handle(self, event: AnyEnvelope, delivery: Delivery) -> None:
        """Just before the handler runs."""

    async def after_handle(
        self, event: AnyEnvelope, delivery: Delivery, exception: BaseException | None
    ) -> None:
        """Right after the handler returned or raised (timeouts arrive as TimeoutError)."""

    async def before_ack(self, delivery: Delivery, outcome: str) -> None:
        """Before the original message is acked; outcome is handled/duplicate/retried/dead."""

    async def on_retry(self, delivery: Delivery, exception: BaseException, tier: str) -> None:
        """A failed message was published, confirmed, to retry tier queue ``tier``."""

    async def on_dead_letter(
        self, consumer: str, message_id: str, reason: str, headers: dict[str, Any]
    ) -> None:
        """A message was published, confirmed, to its consumer's dead-letter queue."""
