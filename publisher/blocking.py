"""A small synchronous confirmed publisher on pika, for scripts and one-off tools."""

from __future__ import annotations

from typing import Any

import pika
import pika.exceptions

from contracts import message_body, message_properties
from contracts.envelope import Envelope
from fleet.errors import BrokerUnavailable, PublishError, UnroutableError
from fleet.settings import redact_url
from topology.names import EVENTS_EXCHANGE


class BlockingPublisher:
    """``BlockingConnection`` + ``confirm_delivery`` + mandatory publishes; one at a time."""

    def __init__(self, amqp_url: str, *, exchange: str = EVENTS_EXCHANGE) -> None:
        self._exchange = exchange
        try:
            self._connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
        except pika.exceptions.AMQPConnectionError as exc:
            raise BrokerUnavailable(
                f"RabbitMQ is not answering at {redact_url(amqp_url)} ({exc!r}); "
                "start it or fix WOOFLEET_AMQP_URL"
            ) from None
        self._channel = self._connection.channel()
        self._channel.confirm_delivery()

    def publish(self, envelope: Envelope[Any], *, priority: int = 0) -> None:
        """Publish and wait for the broker's confirm; raise unless it took the message."""
        props = message_properties(envelope, priority=priority)
        properties = pika.BasicProperties(
            message_id=props["message_id"],
            correlation_id=props["correlation_id"],
            type=props["type"],
            content_type=props["content_type"],
            delivery_mode=props["delivery_mode"],
            timestamp=int(props["timestamp"].timestamp()),
            priority=props["priority"],
            headers=props["headers"],
        )
        try:
            self._channel.basic_publish(
                self._exchange,
                envelope.event_type,
                message_body(envelope),
                properties=properties,
                mandatory=True,
            )
        except pika.exceptions.UnroutableError:
            raise UnroutableError(
                f"no queue is bound to exchange {self._exchange!r} for routing key "
                f"{envelope.event_type!r}; run `woofleet topology apply`"
            ) from None
        except pika.exceptions.NackError:
            raise PublishError(
                f"the broker refused a message for {self._exchange!r}/{envelope.event_type!r}"
            ) from None
        except pika.exceptions.AMQPError as exc:
            raise PublishError(f"lost the broker while publishing: {exc!r}") from None

    def close(self) -> None:
        if self._connection.is_open:
            self._connection.close()

    def __enter__(self) -> BlockingPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
