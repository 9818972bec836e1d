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
(dead-lettered at once); any other exception counts as transient. A handler that finds
nothing to do for an event (a guest order earns no points) returns after
``delivery.nothing_to_do(reason)``: the circuit breaker then learns nothing from its success,
which reached no target.
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
    #: Filled by :meth:`nothing_to_do` (a list: the dataclass is frozen, this one mark is not).
    _nothing_done: list[str] = field(default_factory=list, repr=False)

    def nothing_to_do(self, message: str, *args: Any, level: int = logging.INFO) -> None:
        """Log why this event needs no effect and reach no target for it. The handler's success
        then says nothing about its target: a probe of an open circuit breaker that did nothing
        does not close it (an outage is not over because a guest order earns no points)."""
        self.log.log(level, message, *args)
        self._nothing_done.append(message)

    @property
    def did_nothing(self) -> bool:
        """Whether the handler said it had nothing to do (see :meth:`nothing_to_do`)."""
        return bool(self._nothing_done)

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
