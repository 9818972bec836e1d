"""The publisher's state: lifecycle steps per resource, the outbox, cursors and the relay lease.

State and outbox live in one store so that "remember the steps" and "queue their events"
commit together: a crash between them can neither lose an event nor emit it twice.
``WOOFLEET_STATE_URL`` picks SQLite (embedded default) or PostgreSQL (a fleet of publishers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from publisher.outgoing import Outgoing

#: ``decide(previous_state) -> (new_state or None to keep it, messages to queue)``; runs inside
#: the resource's transaction, so it must be quick and must not do I/O.
Decide = Callable[[dict[str, Any] | None], tuple[dict[str, Any] | None, Sequence[Outgoing]]]


@dataclass(frozen=True)
class ResourceKey:
    source: str
    kind: str  # "order" or "product"
    resource_id: int


@dataclass(frozen=True)
class OutboxRow:
    seq: int
    message: Outgoing


@dataclass(frozen=True)
class KeptDelivery:
    """A signed delivery woofleet could not turn into events, kept whole for a replay."""

    id: int
    received_at: str
    topic: str
    reason: str
    headers: dict[str, str]
    body: bytes
    replayed_at: str = ""


@dataclass(frozen=True)
class SetAsideRow:
    """An outbox row the broker could not be given (its message cannot be encoded), moved out
    of the outbox so the rows behind it flow."""

    seq: int
    message: Outgoing
    reason: str
    set_aside_at: str


class PublisherStore(Protocol):
    async def transition(self, key: ResourceKey, decide: Decide) -> list[int]:
        """Lock the resource's state, run ``decide``, save and queue; return the outbox seqs."""

    async def pending(self, limit: int, after: int = 0) -> list[OutboxRow]:
        """The oldest queued messages with ``seq > after``, in the order they were queued."""

    async def delete(self, seqs: Sequence[int]) -> None: ...

    async def depth(self) -> int: ...

    async def oldest_age(self) -> float | None:
        """Seconds the oldest event has waited in the outbox; None when it is empty."""
        ...

    async def take_lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        """Hold (or renew) the named lease; False while another holder's lease runs."""

    async def release_lease(self, name: str, holder: str) -> None: ...

    async def get_cursor(self, name: str) -> str | None: ...

    async def set_cursor(self, name: str, value: str) -> None: ...

    async def set_aside(self, seq: int, reason: str) -> None:
        """Move outbox row ``seq`` out of the outbox, with why it cannot be published."""

    async def set_aside_rows(self, limit: int) -> list[SetAsideRow]:
        """The rows set aside, oldest first."""

    async def set_aside_count(self) -> int: ...

    async def keep(self, headers: dict[str, str], body: bytes, topic: str, reason: str) -> int:
        """Keep a signed delivery that could not be turned into events; return its id."""

    async def kept_deliveries(
        self, limit: int, *, include_replayed: bool = False
    ) -> list[KeptDelivery]:
        """Kept deliveries, oldest first (by default only those not replayed yet)."""

    async def kept_delivery(self, kept_id: int) -> KeptDelivery | None: ...

    async def mark_replayed(self, kept_id: int) -> None: ...

    async def kept_count(self) -> int:
        """Kept deliveries not replayed yet."""

    async def writable(self) -> bool:
        """True when a write would succeed now (readiness)."""

    async def close(self) -> None: ...
