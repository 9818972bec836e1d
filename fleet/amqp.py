"""Connecting to RabbitMQ: one place that turns driver failures into one clear line."""

from __future__ import annotations

import asyncio
import socket
import ssl
from urllib.parse import urlsplit

import aio_pika
import aio_pika.exceptions
from aio_pika.abc import AbstractRobustConnection

from fleet.errors import BrokerUnavailable
from fleet.settings import Settings, redact_url

CONNECT_TIMEOUT = 10.0

#: Everything the AMQP driver raises when the broker is away, so callers catch one name.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    aio_pika.exceptions.AMQPConnectionError,
    ConnectionError,
    socket.gaierror,
    OSError,
    asyncio.TimeoutError,
)


def broker_unavailable_message(url: str, exc: BaseException) -> str:
    reason = str(exc) or type(exc).__name__
    return (
        f"RabbitMQ is not answering at {redact_url(url)} ({reason}). Start one "
        "(`scripts/broker-up`, or `rabbitmq-server -detached`), or point WOOFLEET_AMQP_URL at one."
    )


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """A TLS context for ``amqps://`` URLs, with the CA and client certificate files if set."""
    if urlsplit(settings.amqp_url.get_secret_value()).scheme != "amqps":
        return None
    context = ssl.create_default_context(
        cafile=str(settings.amqp_ca_file) if settings.amqp_ca_file else None
    )
    if settings.amqp_cert_file:
        context.load_cert_chain(
            str(settings.amqp_cert_file),
            str(settings.amqp_key_file) if settings.amqp_key_file else None,
        )
    return context


async def connect(
    settings: Settings, *, name: str, url: str | None = None
) -> AbstractRobustConnection:
    """A robust (self-reconnecting) connection named ``name`` in the management UI.

    Raises :class:`BrokerUnavailable` with one actionable line when the first connect fails.
    """
    target = url or settings.amqp_url.get_secret_value()
    try:
        return await aio_pika.connect_robust(
            target,
            client_properties={"connection_name": name},
            ssl_context=ssl_context(settings),
            timeout=CONNECT_TIMEOUT,
        )
    except aio_pika.exceptions.ProbableAuthenticationError as exc:
        raise BrokerUnavailable(
            f"RabbitMQ at {redact_url(target)} refused the credentials ({exc}); "
            "check the user and password in WOOFLEET_AMQP_URL."
        ) from None
    except CONNECTION_ERRORS as exc:
        raise BrokerUnavailable(broker_unavailable_message(target, exc)) from None
