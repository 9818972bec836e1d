"""Connecting to RabbitMQ: one place that turns driver failures into one clear line."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

import aio_pika
import aio_pika.exceptions
import aiormq.abc
import aiormq.exceptions
from aio_pika.abc import AbstractRobustConnection
from pamqp import commands as spec

from fleet.errors import (
    AccessRefused,
    BrokerUnavailable,
    ConfigError,
    PublishError,
    UnroutableError,
)
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

#: What an aio-pika exchange raises when its channel or connection is gone.
_EXCHANGE_LOST: tuple[type[BaseException], ...] = (
    aio_pika.exceptions.ChannelInvalidStateError,
    *CONNECTION_ERRORS,
)
#: What the driver's channel under it raises then.
_CHANNEL_LOST: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
    *CONNECTION_ERRORS,
)


def broker_unavailable_message(url: str, exc: BaseException) -> str:
    reason = str(exc) or type(exc).__name__
    return (
        f"RabbitMQ is not answering at {redact_url(url)} ({reason}). Start one "
        "(`scripts/broker-up`, or `rabbitmq-server -detached`), or point WOOFLEET_AMQP_URL at one."
    )


def vhost_refused_message(url: str) -> str:
    """RabbitMQ closes the connection while opening it when the virtual host does not exist or
    the user has no permissions on it (it says which only in its own log)."""
    path = urlsplit(url).path
    vhost = unquote(path[1:]) if len(path) > 1 else "/"
    return (
        f"RabbitMQ refused the virtual host {vhost!r} named by WOOFLEET_AMQP_URL: it does not "
        f"exist or the user has no permissions on it. Create it (`rabbitmqctl add_vhost "
        f"{vhost}`), grant the user (`rabbitmqctl set_permissions -p {vhost} USER '.*' '.*' "
        "'.*'`), or fix the URL."
    )


def ssl_context(settings: Settings, url: str | None = None) -> ssl.SSLContext | None:
    """A TLS context for ``amqps://`` URLs (``url``, else the configured one), with the CA and
    client certificate files if set; :class:`ConfigError` when those files cannot be loaded."""
    if urlsplit(url or settings.amqp_url.get_secret_value()).scheme != "amqps":
        return None
    try:
        context = ssl.create_default_context(
            cafile=str(settings.amqp_ca_file) if settings.amqp_ca_file else None
        )
        if settings.amqp_cert_file:
            context.load_cert_chain(
                str(settings.amqp_cert_file),
                str(settings.amqp_key_file) if settings.amqp_key_file else None,
            )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load the TLS files for amqps ({exc}); check WOOFLEET_AMQP_CA_FILE, "
            "WOOFLEET_AMQP_CERT_FILE and WOOFLEET_AMQP_KEY_FILE"
        ) from None
    if settings.amqp_key_file and not settings.amqp_cert_file:
        raise ConfigError("WOOFLEET_AMQP_KEY_FILE is set without WOOFLEET_AMQP_CERT_FILE")
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
            ssl_context=ssl_context(settings, target),
            timeout=CONNECT_TIMEOUT,
        )
    except aio_pika.exceptions.ProbableAuthenticationError as exc:
        raise AccessRefused(
            f"RabbitMQ at {redact_url(target)} refused the credentials ({exc}); "
            "check the user and password in WOOFLEET_AMQP_URL."
        ) from None
    except aiormq.exceptions.InvalidFrameError as exc:
        if "Connection.Close" not in str(exc):
            raise
        raise AccessRefused(vhost_refused_message(target)) from None
    except CONNECTION_ERRORS as exc:
        raise BrokerUnavailable(broker_unavailable_message(target, exc)) from None


def unroutable(exchange: str, routing_key: str) -> UnroutableError:
    """A Basic.Return: no queue is bound for ``routing_key``."""
    return UnroutableError(
        f"no queue is bound to exchange {exchange!r} for routing key {routing_key!r}; "
        "run `woofleet topology apply`"
    )


def refused(exchange: str, routing_key: str | None = None) -> PublishError:
    """A Basic.Nack (the routing key when the caller knows it)."""
    where = repr(exchange) if routing_key is None else f"{exchange!r}/{routing_key!r}"
    return PublishError(
        f"the broker refused a message for {where} "
        "(a full queue with reject-publish, or a broker alarm)"
    )


@contextlib.contextmanager
def _publish_errors(
    exchange: str, routing_key: str, lost: tuple[type[BaseException], ...]
) -> Iterator[None]:
    """The driver's publish failures as UnroutableError or PublishError."""
    try:
        yield
    except aiormq.exceptions.PublishError as exc:  # a Basic.Return: nothing bound
        raise unroutable(exchange, routing_key) from exc
    except aiormq.exceptions.DeliveryError as exc:  # a Basic.Nack
        raise refused(exchange, routing_key) from exc
    except lost as exc:
        raise PublishError(
            f"lost the broker while publishing to {exchange!r}/{routing_key!r}: {exc}"
        ) from exc


async def publish_confirmed_frames(
    channel: aiormq.abc.AbstractChannel,
    exchange: str,
    routing_key: str,
    body: bytes,
    properties: spec.Basic.Properties,
) -> None:
    """:func:`publish_confirmed` on the driver's own channel, for prepared properties.

    The same errors, at a lower cost per message: no message object is built. The channel must
    be in confirm mode with returns raised (an aio-pika channel opened as
    :func:`publish_confirmed` asks gives one through ``get_underlay_channel()``).
    """
    with _publish_errors(exchange, routing_key, _CHANNEL_LOST):
        await channel.basic_publish(
            body, exchange=exchange, routing_key=routing_key, properties=properties, mandatory=True
        )


async def publish_confirmed(
    exchange: aio_pika.abc.AbstractExchange,
    message: aio_pika.abc.AbstractMessage,
    routing_key: str,
) -> None:
    """Publish mandatory on a confirming channel; raise unless the broker took the message.

    The channel must be opened with ``publisher_confirms=True, on_return_raises=True``.
    :class:`UnroutableError` when no queue is bound for ``routing_key``; :class:`PublishError`
    when the broker nacks (e.g. a full queue with ``reject-publish``) or the channel breaks.
    """
    with _publish_errors(exchange.name, routing_key, _EXCHANGE_LOST):
        await exchange.publish(message, routing_key, mandatory=True)
