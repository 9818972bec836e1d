"""How an envelope becomes an AMQP message: body bytes and the properties every message carries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypedDict

from contracts.envelope import Envelope

HEADER_PREFIX = "woofleet-"
SCHEMA_VERSION_HEADER = "woofleet-schema-version"
#: Header names on retried and dead-lettered messages.
ATTEMPT_HEADER = "woofleet-attempt"
#: Retries spent while the target looked down, which do not count as attempts.
OUTAGE_RETRIES_HEADER = "woofleet-outage-retries"
#: On a message taken early from an outage tier to probe its target: the tier's delay in
#: seconds, where it goes back, counting nothing, if the target still fails.
PROBE_FROM_HEADER = "woofleet-probe-from"
ERROR_HEADER = "woofleet-error"
FIRST_FAILED_HEADER = "woofleet-first-failed-at"
LAST_FAILED_HEADER = "woofleet-last-failed-at"
CONSUMER_HEADER = "woofleet-consumer"

#: The highest AMQP priority an event carries, and every work queue's x-max-priority (RabbitMQ
#: advises at most 5 levels; more cost memory and CPU per queue).
MAX_PRIORITY = 5

#: AMQP's timestamp property is an unsigned 64-bit count of seconds since 1970: earlier dates
#: (orders imported from older systems) cannot be carried in it.
AMQP_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class MessageProperties(TypedDict):
    message_id: str
    correlation_id: str
    type: str
    content_type: str
    delivery_mode: int
    timestamp: Any
    priority: int
    headers: dict[str, Any]


def correlation_id(envelope: Envelope[Any]) -> str:
    """The order (or product) id the message is about; the event id for bulk commands."""
    data_id = getattr(envelope.data, "id", None)
    return str(data_id) if data_id is not None else str(envelope.event_id)


def amqp_timestamp(moment: datetime) -> datetime | None:
    """``moment`` as the message's timestamp property, or None when no AMQP message can carry
    it (before 1970): the message then has no timestamp, and the body's ``occurred_at`` keeps
    the real date. Refusing the event instead would lose an order; a made-up date would lie."""
    return moment if moment >= AMQP_EPOCH else None


def message_properties(envelope: Envelope[Any], *, priority: int = 0) -> MessageProperties:
    """An envelope's AMQP properties (docs/architecture.md; ``message_id`` = ``event_id``)."""
    if not 0 <= priority <= MAX_PRIORITY:
        raise ValueError(f"priority must be 0-{MAX_PRIORITY}, not {priority}")
    return MessageProperties(
        message_id=str(envelope.event_id),
        correlation_id=correlation_id(envelope),
        type=envelope.event_type,
        content_type="application/json",
        delivery_mode=2,
        timestamp=amqp_timestamp(envelope.occurred_at),
        priority=priority,
        headers={SCHEMA_VERSION_HEADER: envelope.schema_version},
    )


def message_body(envelope: Envelope[Any], *, data_json: bytes | None = None) -> bytes:
    """The envelope as JSON bytes.

    ``data_json`` is ``envelope.data`` already serialised: the events one delivery yields share
    their order, and serialising it once instead of per event is most of the cost. The bytes are
    the same either way (``data`` is the envelope's last field).
    """
    if data_json is None:
        return envelope.model_dump_json().encode()
    head = envelope.model_dump_json(exclude={"data"}).encode()
    return b"".join((head[:-1], b',"data":', data_json, b"}"))
