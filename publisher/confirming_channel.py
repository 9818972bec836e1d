"""A confirming AMQP channel for the outbox relay: pika on the running asyncio loop.

The relay publishes every event of the fleet, so its cost per message is what matters most:
pika's asyncio adapter reports confirms through one callback (``multiple`` acks settle many
messages at once), where a coroutine-per-publish driver spends several times the CPU on locks,
queues and futures. Its transport sends every frame with a system call of its own (three per
publish); :class:`_CoalescingConnection` joins what one pass of the event loop wrote into one.

Semantics are those of :func:`fleet.amqp.publish_confirmed`: persistent, mandatory, confirmed.
:meth:`ConfirmingChannel.publish` returns a future that resolves when the broker acks the
message, or fails with :class:`~fleet.errors.UnroutableError` (returned: nothing bound),
:class:`~fleet.errors.PublishError` (nacked, or the channel or connection went away).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from typing import Any, TypeVar

import pika
import pika.channel
import pika.exceptions
import pika.frame
import pika.spec
from pika.adapters.asyncio_connection import AsyncioConnection

from fleet.amqp import CONNECT_TIMEOUT, broker_unavailable_message, refused, ssl_context, unroutable
from fleet.errors import BrokerUnavailable, PublishError, TopologyError
from fleet.settings import Settings
from publisher.outgoing import Outgoing
from topology.names import EVENTS_EXCHANGE


class _CoalescingConnection(AsyncioConnection):  # type: ignore[misc]  # pika is untyped
    """An asyncio pika connection that sends the frames queued during one pass of the event
    loop with one write: a relay pass of N publishes costs one ``send`` instead of 3N, and the
    broker reads one segment instead of 3N (on loopback both halves are this host's CPU)."""

    def __init__(self, *args: Any, custom_ioloop: asyncio.AbstractEventLoop, **kwargs: Any) -> None:
        self._loop = custom_ioloop
        self._frames: list[bytes] = []
        super().__init__(*args, custom_ioloop=custom_ioloop, **kwargs)

    def _adapter_emit_data(self, data: bytes) -> None:
        if not self._frames:
            self._loop.call_soon(self._flush_frames)
        self._frames.append(data)

    def _flush_frames(self) -> None:
        data, self._frames = b"".join(self._frames), []
        if self._transport is not None:  # None once the stream is gone: pika drops it too
            self._transport.write(data)


class ConfirmingChannel:
    """One connection with one channel in confirm mode, publishing to one exchange."""

    def __init__(self, exchange: str) -> None:
        self.exchange = exchange
        self._connection: _CoalescingConnection | None = None
        self._channel: pika.channel.Channel | None = None
        # Delivery tag -> its future, oldest first (tags grow by one per publish).
        self._unconfirmed: OrderedDict[int, asyncio.Future[None]] = OrderedDict()
        self._tag_of: dict[str, int] = {}  # message_id -> tag, to match a Basic.Return
        self._next_tag = 1
        self._closed_because = ""

    @property
    def is_open(self) -> bool:
        return self._channel is not None and self._channel.is_open

    async def open(self, parameters: pika.URLParameters) -> ConfirmingChannel:
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[None] = loop.create_future()

        def fail(exc: BaseException) -> None:
            if not opened.done():
                opened.set_exception(exc)

        def on_connection_open(connection: AsyncioConnection) -> None:
            connection.channel(on_open_callback=on_channel_open)

        def on_channel_open(channel: pika.channel.Channel) -> None:
            self._channel = channel
            channel.add_on_close_callback(self._on_channel_closed)
            channel.add_on_close_callback(lambda _, reason: fail(reason))  # e.g. no exchange
            channel.add_on_return_callback(self._on_return)
            channel.confirm_delivery(self._on_confirm, callback=lambda _: check_exchange(channel))

        def check_exchange(channel: pika.channel.Channel) -> None:
            channel.exchange_declare(
                self.exchange, passive=True, callback=lambda _: opened.set_result(None)
            )

        def on_open_error(_: AsyncioConnection, exc: BaseException | str) -> None:
            fail(exc if isinstance(exc, BaseException) else ConnectionError(str(exc)))

        def on_connection_closed(_: AsyncioConnection, reason: BaseException) -> None:
            self._fail_all(f"the connection closed ({reason})")
            fail(reason)

        self._connection = _CoalescingConnection(
            parameters,
            on_open_callback=on_connection_open,
            on_open_error_callback=on_open_error,
            on_close_callback=on_connection_closed,
            custom_ioloop=loop,
        )
        try:
            await asyncio.wait_for(opened, CONNECT_TIMEOUT)
        except pika.exceptions.ChannelClosedByBroker as exc:
            await self.close()
            if exc.reply_code == 404:
                raise TopologyError(
                    f"exchange {self.exchange!r} does not exist on this broker; "
                    "run `woofleet topology apply`"
                ) from None
            raise PublishError(f"the broker closed the channel: {exc}") from None
        except BaseException:
            await self.close()
            raise
        return self

    def publish(self, item: Outgoing) -> asyncio.Future[None]:
        """Send one message; the future resolves once the broker confirmed it."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        channel = self._channel
        if channel is None or not channel.is_open:
            future.set_exception(
                PublishError(f"the channel is closed ({self._closed_because or 'not open'})")
            )
            return future
        try:
            channel.basic_publish(
                self.exchange,
                item.routing_key,
                item.body,
                item.pika_properties(),
                mandatory=True,
            )
        except (pika.exceptions.AMQPError, OSError) as exc:
            future.set_exception(PublishError(f"lost the broker while publishing: {exc}"))
            return future
        tag, self._next_tag = self._next_tag, self._next_tag + 1
        self._unconfirmed[tag] = future
        self._tag_of[item.message_id] = tag
        return future

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        self._fail_all("the publisher was closed")
        if connection is None or connection.is_closed:
            return
        closed = asyncio.get_running_loop().create_future()
        connection.add_on_close_callback(
            lambda *_: closed.done() or closed.set_result(None)  # type: ignore[func-returns-value]
        )
        with contextlib.suppress(pika.exceptions.AMQPError):
            if not connection.is_closing:
                connection.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(closed, 5)

    # -- broker callbacks ----------------------------------------------------------------
    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        tag: int = method.delivery_tag
        acked = isinstance(method, pika.spec.Basic.Ack)
        unconfirmed = self._unconfirmed
        if method.multiple:
            settled = []
            while unconfirmed:
                first = next(iter(unconfirmed))
                if first > tag:
                    break
                settled.append(unconfirmed.popitem(last=False)[1])
        else:
            single = unconfirmed.pop(tag, None)
            settled = [single] if single is not None else []
        for future in settled:
            if future.done():  # returned (unroutable) before its ack
                continue
            if acked:
                future.set_result(None)
            else:
                future.set_exception(refused(self.exchange))
        if not unconfirmed:
            self._tag_of.clear()

    def _on_return(
        self,
        channel: pika.channel.Channel,
        method: pika.spec.Basic.Return,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        tag = self._tag_of.get(str(properties.message_id))
        future = self._unconfirmed.get(tag) if tag is not None else None
        if future is not None and not future.done():
            future.set_exception(unroutable(self.exchange, method.routing_key))

    def _on_channel_closed(self, channel: pika.channel.Channel, reason: BaseException) -> None:
        self._fail_all(f"the channel closed ({reason})")

    def _fail_all(self, why: str) -> None:
        self._closed_because = why
        unconfirmed, self._unconfirmed = self._unconfirmed, OrderedDict()
        self._tag_of.clear()
        for future in unconfirmed.values():
            if not future.done():
                future.set_exception(PublishError(f"not confirmed: {why}"))


_Channel = TypeVar("_Channel", bound=ConfirmingChannel)


async def open_confirming_channel(
    settings: Settings, *, name: str, url: str | None = None, exchange: str = EVENTS_EXCHANGE
) -> ConfirmingChannel:
    """A :class:`ConfirmingChannel` to ``url`` (default WOOFLEET_AMQP_URL), named ``name`` in
    the management UI; :class:`BrokerUnavailable` with one clear line when it cannot connect."""
    return await open_channel(settings, ConfirmingChannel(exchange), name=name, url=url)


async def open_channel(
    settings: Settings, channel: _Channel, *, name: str, url: str | None = None
) -> _Channel:
    """Open ``channel`` (a :class:`ConfirmingChannel` or one made from it), as above."""
    target = url or settings.amqp_url.get_secret_value()
    parameters = pika.URLParameters(target)
    parameters.client_properties = {"connection_name": name}
    parameters.connection_attempts = 1
    parameters.socket_timeout = CONNECT_TIMEOUT
    context = ssl_context(settings, target)
    if context is not None:
        parameters.ssl_options = pika.SSLOptions(context, parameters.host)
    try:
        await channel.open(parameters)
    except (TopologyError, PublishError):
        raise
    except pika.exceptions.ProbableAuthenticationError:
        raise BrokerUnavailable(
            "RabbitMQ refused the credentials; check the user and password in WOOFLEET_AMQP_URL."
        ) from None
    except (pika.exceptions.AMQPError, OSError, TimeoutError, ConnectionError) as exc:
        raise BrokerUnavailable(broker_unavailable_message(target, exc)) from None
    return channel
