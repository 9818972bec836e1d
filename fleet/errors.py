"""The one exception tree of woofleet.

    WoofleetError                 root: every error woofleet raises on purpose
    ├── ConfigError               a setting is missing or wrong; the message names the variable
    │   └── UnknownConsumer       a consumer name not in the consumer table (lists the valid ones)
    ├── BrokerUnavailable         RabbitMQ does not answer at WOOFLEET_AMQP_URL
    │   └── AccessRefused         ... it answers but refuses the user or vhost (also a ConfigError)
    ├── DependencyUnavailable     another dependency (the state store...) does not answer
    ├── TopologyError             the broker's queues disagree with topology/ (names the fix)
    ├── PublishError              the broker did not take a message
    │   └── UnroutableError       no queue is bound for the routing key (mandatory publish returned)
    ├── ContractError             a message does not validate against its contract: never retried
    └── HandlerError              raised by consumer handlers and adapters to steer the runtime
        ├── TransientError        may succeed later: next retry tier (timeouts, 5xx, 429, refused)
        └── PermanentError        will never succeed: straight to the dead-letter queue (other 4xx)

Every message says what to do next. Exceptions of other types raised by a handler are treated
as transient (retried, then dead-lettered) and reported to Sentry.

``WoofleetError`` and ``ContractError`` are defined in ``contracts.errors`` (the bottom layer),
``BrokerUnavailable``, ``TopologyError``, ``ConfigError`` and ``UnknownConsumer`` in
``topology.errors``; this module re-exports them so that the rest of the code imports the whole
tree from one place.
"""

from __future__ import annotations

from contracts.errors import ContractError, WoofleetError
from topology.errors import (
    AccessRefused,
    BrokerUnavailable,
    ConfigError,
    TopologyError,
    UnknownConsumer,
)

__all__ = [
    "AccessRefused",
    "BrokerUnavailable",
    "ConfigError",
    "ContractError",
    "DependencyUnavailable",
    "HandlerError",
    "PermanentError",
    "PublishError",
    "TopologyError",
    "TransientError",
    "UnknownConsumer",
    "UnroutableError",
    "WoofleetError",
]


class DependencyUnavailable(WoofleetError):
    """A dependency other than the broker (the state store, say) does not answer; the CLI
    exits 3 (the setting may be right: try again once it is up)."""


class PublishError(WoofleetError):
    """The broker refused or did not confirm a message."""


class UnroutableError(PublishError):
    """A mandatory publish was returned: nothing is bound for its routing key."""


class HandlerError(WoofleetError):
    """Base of the errors handlers raise to steer retry and dead-lettering."""


class TransientError(HandlerError):
    """The work may succeed if tried again later.

    ``retry_after`` (seconds) is a hint from the target, e.g. a 429's Retry-After.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(HandlerError):
    """The work can never succeed as it is: dead-letter it at once."""
