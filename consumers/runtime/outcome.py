"""How a delivery ends: one :class:`Outcome` each, settled once (``ConsumerWorker._settle``)."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """The end of one delivery's way down the ladder (``consumers/runtime/worker.py``).

    Every delivery ends in exactly one of these, and each passes the middleware's ``before_ack``
    hooks and ``woofleet_consumer_messages_total{outcome}`` once, dead letters for bad contracts
    and crash loops included.
    """

    #: The handler succeeded and the ledger recorded it: ack.
    HANDLED = "handled"
    #: The ledger already had this business fact: ack, no second effect.
    DUPLICATE = "duplicate"
    #: A copy is confirmed in a retry tier: ack.
    RETRIED = "retried"
    #: A copy is confirmed in the dead-letter queue: ack.
    DEAD = "dead"
    #: Given back to the broker (nack with requeue): the worker is stopping, a dependency is
    #: down, the broker refused the retry or dead letter, or the runtime itself failed.
    REQUEUED = "requeued"
