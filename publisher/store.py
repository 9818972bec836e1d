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

    async def writable(self) -> bool:
        """True when a write would succeed now (readiness)."""

    async def close(self) -> None: ...
