"""An event ready for the wire: routing key, body bytes and AMQP properties (storable as JSON)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aio_pika

from contracts import message_body, message_properties
from contracts.envelope import Envelope


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
    def from_envelope(cls, envelope: Envelope[Any], *, priority: int = 0) -> Outgoing:
        """Body and properties exactly as ``contracts.messages`` defines them."""
        return cls(
            routing_key=envelope.event_type,
            body=message_body(envelope),
            properties=dict(message_properties(envelope, priority=priority)),
        )

    def to_message(self) -> aio_pika.Message:
        props = dict(self.properties)
        timestamp = props.pop("timestamp", None)
        if isinstance(timestamp, str):
            timestamp = datetime.fromisoformat(timestamp)
        return aio_pika.Message(self.body, timestamp=timestamp, **props)

    def properties_json(self) -> str:
        """The properties as JSON (the timestamp as ISO 8601), for the outbox table."""
        props = dict(self.properties)
        if isinstance(props.get("timestamp"), datetime):
            props["timestamp"] = props["timestamp"].isoformat()
        return json.dumps(props, separators=(",", ":"))

    @classmethod
    def from_row(cls, routing_key: str, body: bytes, properties_json: str) -> Outgoing:
        return cls(
            routing_key=routing_key, body=bytes(body), properties=json.loads(properties_json)
        )
