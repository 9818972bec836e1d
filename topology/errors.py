"""The errors of the broker layer: topology/ is below fleet/, so they live here.

``fleet.errors`` draws the whole tree and re-exports these.
"""

from __future__ import annotations

from collections.abc import Iterable

from contracts.errors import WoofleetError


class BrokerUnavailable(WoofleetError):
    """RabbitMQ (AMQP or its management API) cannot be reached."""


class TopologyError(WoofleetError):
    """The broker's topology disagrees with topology/."""


class ConfigError(WoofleetError):
    """A setting or an argument is missing or invalid (the command line exits 2)."""


class AccessRefused(BrokerUnavailable, ConfigError):
    """RabbitMQ answers but refuses the credentials or the virtual host: a setting to fix
    (the command line exits 2), which code retrying an absent broker still catches."""


class UnknownConsumer(ConfigError):
    """Consumer names that are not in the consumer table; the message lists the valid ones."""

    def __init__(self, unknown: Iterable[str], valid: Iterable[str]) -> None:
        self.unknown = tuple(unknown)
        self.valid = tuple(valid)
        names = ", ".join(repr(n) for n in self.unknown)
        super().__init__(f"unknown consumer {names}; valid consumers: {', '.join(self.valid)}")
