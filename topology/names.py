"""Pure name functions: every queue and exchange name is made here and nowhere else."""

from __future__ import annotations

#: Events from WooCommerce, routed by event type (topic).
EVENTS_EXCHANGE = "woo.events"
#: Messages returning from a retry tier or delay queue into one work queue (direct, key = its name).
WORK_EXCHANGE = "woo.work"
#: Signed deliveries the webhook holds on the broker while its state store is away (direct).
INGRESS_EXCHANGE = "woo.ingress"
#: Where they wait (a quorum queue) until the webhook, its store back, turns them into events.
HELD_QUEUE = "woo.ingress.held"

PREFIX = "woo."


def work_queue(consumer: str) -> str:
    return f"{PREFIX}{consumer}"


def retry_exchange(consumer: str) -> str:
    """A consumer's failed messages on their way to its retry tiers (direct, key = the tier
    queue's name). One per consumer, so that its broker user, which may write only here and to
    its dead-letter exchange, can reach no other consumer's queues."""
    return f"{PREFIX}{consumer}.retry"


def dead_letter_exchange(consumer: str) -> str:
    """A consumer's dead letters (direct, key = its DLQ's name); one per consumer, as above."""
    return f"{PREFIX}{consumer}.dlx"


def retry_queue(consumer: str, delay_seconds: float) -> str:
    return f"{PREFIX}{consumer}.retry.{duration_label(delay_seconds)}"


def delay_queue(consumer: str) -> str:
    return f"{PREFIX}{consumer}.delay"


def dead_letter_queue(consumer: str) -> str:
    return f"{PREFIX}{consumer}.dlq"


def consumer_of(queue_name: str) -> str:
    """The consumer a woofleet queue belongs to: ``woo.invoice.retry.4s`` → ``invoice``."""
    if not queue_name.startswith(PREFIX):
        raise ValueError(f"{queue_name!r} is not a woofleet queue")
    return queue_name[len(PREFIX) :].split(".", 1)[0]


def duration_label(seconds: float) -> str:
    """``0.25`` → ``250ms``, ``4`` → ``4s``, ``604800`` → ``7d``: short, exact, sortable by eye."""
    ms = round(seconds * 1000)
    if ms <= 0:
        raise ValueError(f"a delay must be positive, not {seconds}")
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
