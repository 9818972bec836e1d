"""An event ready for the wire (routing key, body bytes, AMQP properties storable as JSON), and
:class:`EventChannel`, the one publishing client's interface (see publisher.confirming_channel)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson
import pika

from contracts import message_body, message_properties
from contracts.envelope import Envelope
from contracts.messages import amqp_timestamp


@dataclass(frozen=True)
class Outgoing:
    """One message for ``woo.events``; ``routing_key`` is the event type."""

    routing_key: str
    body: bytes
    properties: dict[str, Any]

    @property
    def message_id(self) -> str:
        return str(self.properties["message_id"])

    @classmethod
    def from_envelope(
        cls, envelope: Envelope[Any], *, priority: int = 0, data_json: bytes | None = None
    ) -> Outgoing:
        """Body and properties exactly as ``contracts.messages`` defines them (``data_json``:
        see :func:`contracts.messages.message_body`)."""
        return cls(
            routing_key=envelope.event_type,
            body=message_body(envelope, data_json=data_json),
            properties=dict(message_properties(envelope, priority=priority)),
        )

    def pika_properties(self) -> pika.BasicProperties:
        """The properties as pika writes them (the timestamp, stored as ISO 8601 text, in whole
        seconds)."""
        props = dict(self.properties)
        timestamp = props.pop("timestamp", None)
        if isinstance(timestamp, str):
            timestamp = datetime.fromisoformat(timestamp)
        if timestamp is not None:
            # Rows queued before the contract left pre-1970 dates out still hold them.
            timestamp = amqp_timestamp(timestamp)
        seconds = int(timestamp.timestamp()) if timestamp is not None else None
        return pika.BasicProperties(timestamp=seconds, **props)

    def properties_json(self) -> str:
        """The properties as JSON (the timestamp as ISO 8601), for the outbox table."""
        return orjson.dumps(self.properties).decode()

    @classmethod
    def from_row(cls, routing_key: str, body: bytes, properties_json: str) -> Outgoing:
        return cls(
            routing_key=routing_key, body=bytes(body), properties=orjson.loads(properties_json)
        )


class EventChannel(Protocol):
    """A confirming channel to one exchange: what the outbox relay publishes through.

    :meth:`publish` sends persistent, mandatory; its future resolves once the broker confirmed
    the message, or fails with :class:`~fleet.errors.UnroutableError` (nothing bound) or
    :class:`~fleet.errors.PublishError` (nacked, or the channel went away).
    """

    @property
    def is_open(self) -> bool: ...

    def publish(self, item: Outgoing) -> asyncio.Future[None]: ...

    async def close(self) -> None: ...
