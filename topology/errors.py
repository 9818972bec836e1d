"""The errors of the broker layer: topology/ is below fleet/, so they live here.

``fleet.errors`` draws the whole tree and re-exports these.
"""

from __future__ import annotations

from contracts.errors import WoofleetError


class BrokerUnavailable(WoofleetError):
    """RabbitMQ (AMQP or its management API) cannot be reached."""


class TopologyError(WoofleetError):
    """The broker's topology disagrees with topology/."""
