"""The broker topology as frozen, hashable data: what ``apply`` declares and ``export`` renders."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, TypedDict

QueueType = Literal["classic", "quorum"]


#: The ``x-`` queue arguments woofleet sets, keyed by their literal names (the dashes need the
#: functional TypedDict form).
QueueArguments = TypedDict(
    "QueueArguments",
    {
        "x-queue-type": str,
        "x-max-priority": int,
        "x-message-ttl": int,
        "x-dead-letter-exchange": str,
        "x-dead-letter-routing-key": str,
        "x-dead-letter-strategy": str,
        "x-overflow": str,
        "x-max-length": int,
    },
    total=False,
)


class ExchangeType(StrEnum):
    TOPIC = "topic"
    DIRECT = "direct"


class QueueRole(StrEnum):
    """What a queue is for; KEDA scales on WORK queues only."""

    WORK = "work"
    RETRY = "retry"
    DELAY = "delay"
    DEAD_LETTER = "dead-letter"
    #: Signed deliveries held while the webhook's state store is away (no consumer type's).
    HELD = "held"


@dataclass(frozen=True)
class Exchange:
    name: str
    type: ExchangeType
    durable: bool = True


@dataclass(frozen=True)
class Queue:
    name: str
    role: QueueRole
    consumer: str
    type: QueueType = "classic"
    arguments: tuple[tuple[str, int | str], ...] = ()
    durable: bool = True

    def args(self) -> dict[str, int | str]:
        return dict(self.arguments)


@dataclass(frozen=True)
class Binding:
    exchange: str
    queue: str
    routing_key: str


@dataclass(frozen=True)
class Policy:
    """A RabbitMQ policy: settings an operator may change live without redeclaring queues."""

    name: str
    pattern: str
    apply_to: Literal["queues", "exchanges", "all"]
    definition: tuple[tuple[str, int | str], ...]
    priority: int = 0

    def definition_dict(self) -> dict[str, int | str]:
        return dict(self.definition)


@dataclass(frozen=True)
class Topology:
    exchanges: tuple[Exchange, ...]
    queues: tuple[Queue, ...]
    bindings: tuple[Binding, ...]
    policies: tuple[Policy, ...] = field(default=())

    def queue(self, name: str) -> Queue:
        for queue in self.queues:
            if queue.name == name:
                return queue
        raise KeyError(name)
