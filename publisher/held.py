"""Signed deliveries held on the broker while the webhook's state store is away.

The webhook commits every delivery to its state store before answering: that is what lets the
lifecycle emit each step once. While the store is away it cannot, and refusing (5xx) counts
toward WooCommerce disabling the webhook. So the webhook holds the delivery instead: headers
and raw body, published persistent and confirmed to ``woo.ingress``, which routes it to the
quorum queue ``woo.ingress.held``, and answers 202. Once the store is back the webhook takes
the held deliveries off the queue, one at a time, and runs each through the same path as a
delivery; a message is acknowledged only after its events are committed, so a crash in between
runs it again, and the lifecycle makes the second run emit nothing new.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pika
import pika.channel
import pika.frame
import pika.spec

from fleet.errors import BrokerUnavailable, PublishError
from fleet.settings import Settings
from publisher.confirming_channel import ConfirmingChannel, open_channel
from publisher.outgoing import Outgoing
from topology.names import HELD_QUEUE, INGRESS_EXCHANGE

#: Request headers a held delivery keeps: WooCommerce's own (topic, signature, source, ids)
#: and the content type; nothing else is needed to process it, or safe to keep.
_KEPT_PREFIX = "x-wc-"
#: Longest a delivery waits for the broker to confirm it is held before the webhook answers
#: 503 (WooCommerce gives up on a delivery after 5 s).
CONFIRM_SECONDS = 3.0
#: After the broker could not be reached, holding is not tried again for this long: while
#: both the store and the broker are away every delivery is answered 503 at once.
REOPEN_PAUSE_SECONDS = 1.0


@dataclass(frozen=True)
class HeldDelivery:
    """One delivery taken off ``woo.ingress.held``; settle it with :meth:`HeldDeliveries.done`
    or :meth:`HeldDeliveries.later`."""

    tag: int
    headers: dict[str, str]
    body: bytes
    #: The channel it came from: its tag means nothing on another one (the broker would close
    #: that channel for an unknown tag), and a closed one gives it back by itself.
    channel: HeldChannel = field(repr=False, compare=False)

    @property
    def topic(self) -> str:
        return self.headers.get("x-wc-webhook-topic", "").strip()


def held_message(headers: dict[str, str], body: bytes) -> Outgoing:
    """The AMQP message that holds one delivery."""
    kept = {
        name: value
        for name, value in headers.items()
        if name.startswith(_KEPT_PREFIX) or name == "content-type"
    }
    return Outgoing(
        HELD_QUEUE,
        body,
        {
            "message_id": uuid.uuid4().hex,
            "delivery_mode": 2,
            "app_id": "woofleet-webhook",
            "headers": kept,
        },
    )


def _text(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


class HeldChannel(ConfirmingChannel):
    """The confirming channel to ``woo.ingress``, which also takes held deliveries back."""

    def __init__(self) -> None:
        super().__init__(INGRESS_EXCHANGE)
        self._getting: asyncio.Future[HeldDelivery | None] | None = None

    def take(self) -> asyncio.Future[HeldDelivery | None]:
        """The next held delivery (unacknowledged), or None when the queue is empty."""
        future: asyncio.Future[HeldDelivery | None] = asyncio.get_running_loop().create_future()
        channel = self._channel
        if channel is None or not channel.is_open:
            future.set_exception(PublishError("the channel to the broker is closed"))
            return future
        self._getting = future

        def got(
            _: pika.channel.Channel,
            method: pika.spec.Basic.GetOk,
            properties: pika.BasicProperties,
            body: bytes,
        ) -> None:
            headers = {str(k): _text(v) for k, v in (properties.headers or {}).items()}
            if not future.done():
                future.set_result(HeldDelivery(method.delivery_tag, headers, body, self))

        def empty(_: pika.frame.Method) -> None:
            if not future.done():
                future.set_result(None)

        channel.add_callback(empty, [pika.spec.Basic.GetEmpty], one_shot=True)
        channel.basic_get(HELD_QUEUE, got)
        return future

    def settle(self, tag: int, *, done: bool) -> None:
        """Acknowledge a processed delivery, or give it back to the queue for later."""
        channel = self._channel
        if channel is None or not channel.is_open:
            return  # the broker gives it back by itself
        if done:
            channel.basic_ack(tag)
        else:
            channel.basic_nack(tag, requeue=True)

    def _fail_all(self, why: str) -> None:
        super()._fail_all(why)
        getting, self._getting = self._getting, None
        if getting is not None and not getting.done():
            getting.set_exception(PublishError(f"lost the broker: {why}"))


class HeldDeliveries:
    """Holding deliveries on the broker and taking them back, over one lazily opened channel."""

    def __init__(self, connect: Callable[[], Awaitable[HeldChannel]]) -> None:
        self._connect = connect
        self._channel: HeldChannel | None = None
        self._opening = asyncio.Lock()
        self._retry_at = 0.0

    @classmethod
    def for_settings(cls, settings: Settings, url: str | None = None) -> HeldDeliveries:
        async def connect() -> HeldChannel:
            name = "woofleet webhook (held deliveries)"
            return await open_channel(settings, HeldChannel(), name=name, url=url)

        return cls(connect)

    async def _open(self) -> HeldChannel:
        async with self._opening:
            if self._channel is not None and self._channel.is_open:
                return self._channel
            if time.monotonic() < self._retry_at:
                raise BrokerUnavailable("the broker was not reachable a moment ago")
            if self._channel is not None:
                await self._channel.close()
                self._channel = None
            try:
                self._channel = await self._connect()
            except BaseException:
                self._retry_at = time.monotonic() + REOPEN_PAUSE_SECONDS
                raise
            return self._channel

    async def hold(self, headers: dict[str, str], body: bytes) -> None:
        """Hold one delivery on the broker; returns once the broker confirmed it. Raises
        :class:`BrokerUnavailable`, :class:`PublishError` (incl. unroutable) or TimeoutError."""
        channel = await self._open()
        async with asyncio.timeout(CONFIRM_SECONDS):
            await channel.publish(held_message(headers, body))

    async def take(self) -> HeldDelivery | None:
        """The next held delivery, or None when there is none."""
        channel = await self._open()
        try:
            async with asyncio.timeout(CONFIRM_SECONDS):
                return await channel.take()
        except TimeoutError:
            # An answer arriving later would leave its message unacknowledged on a live
            # channel (and the channel refusing the next get): close it, the broker gives the
            # message back.
            await self.close()
            raise

    def done(self, delivery: HeldDelivery) -> None:
        """Processed: off the queue."""
        delivery.channel.settle(delivery.tag, done=True)

    def later(self, delivery: HeldDelivery) -> None:
        """Not processed (the store went away again): back to the queue."""
        delivery.channel.settle(delivery.tag, done=False)

    async def close(self) -> None:
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.close()
            self._channel = None
