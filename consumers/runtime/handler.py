"""What a consumer module declares and what its handler receives.

A consumer module (``consumers/<name>.py``) exposes::

    SPEC = HandlerSpec(business_key=business_key)

    def build(settings: Settings) -> Handler: ...

Which events it receives, and its class, attempts and timeout, are its row in
``topology/fleet.py`` and nowhere else: the runtime accepts every contract version the registry
knows for the event types the row's bindings route (:func:`topology.routing.accepted_contracts`).

The handler makes no broker calls: ack, retry, dead-lettering, timeouts and the idempotency
ledger belong to the runtime. Its failure classes are the errors it raises:
:class:`~fleet.errors.TransientError` (retried) and :class:`~fleet.errors.PermanentError`
(dead-lettered at once); any other exception counts as transient.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from contracts.envelope import Envelope

AnyEnvelope = Envelope[Any]


# slots: one is built per delivery, and a frozen dataclass without them builds slowly.
@dataclass(frozen=True, slots=True)
class Delivery:
    """What a handler may know about the delivery it is working on."""

    consumer: str
    message_id: str
    #: 1 for the first try, 2 after one failure, ...
    attempt: int
    priority: int
    redelivered: bool
    #: The ledger key of this message's business fact (also the idempotency key sent to targets).
    business_key: str
    log: logging.LoggerAdapter[logging.Logger]
    headers: dict[str, Any] = field(default_factory=dict)

    @property
    def idempotency_key(self) -> str:
        """A key targets can use to recognise a repeated request: stable across retries."""
        return f"woofleet:{self.consumer}:{self.business_key}"


class Handler(Protocol):
    async def __call__(self, event: AnyEnvelope, delivery: Delivery) -> None: ...


def default_business_key(event: AnyEnvelope) -> str:
    """The event id: deterministic for the same business fact, so a duplicate maps to one key."""
    return str(event.event_id)


@dataclass(frozen=True)
class HandlerSpec:
    """A consumer module's declaration: how it keys its effects (the rest is its topology row)."""

    #: Key of the idempotency ledger; None means the handler is naturally idempotent.
    business_key: Callable[[AnyEnvelope], str] | None = default_business_key
