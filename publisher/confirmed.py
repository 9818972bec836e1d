"""The confirmed publisher: persistent, mandatory, publisher-confirmed, pipelined.

Every message goes through :func:`fleet.amqp.publish_confirmed`, so a returned (unroutable)
message raises :class:`~fleet.errors.UnroutableError` and a nack raises
:class:`~fleet.errors.PublishError`. ``publish_many`` keeps up to ``window`` messages in flight
on one channel; the broker confirms them out of band, and their order on the wire is kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import aiormq.abc
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange

from contracts.envelope import Envelope
from fleet.amqp import publish_confirmed_frames
from fleet.errors import PublishError, TopologyError
from publisher.outgoing import Outgoing
from topology.names import EVENTS_EXCHANGE

log = logging.getLogger(__name__)

#: Confirms outstanding at once in ``send_many``. The caller's list is already in memory, so
#: this only bounds the futures waiting for acks; a batch within it is one plain gather.
DEFAULT_WINDOW = 100_000


class ConfirmedPublisher:
    """Publishes to one exchange on its own confirming channel of ``connection``."""

    def __init__(
        self,
        connection: AbstractConnection,
        *,
        exchange: str = EVENTS_EXCHANGE,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        self._connection = connection
        self._exchange_name = exchange
        self._window = window
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._frames: aiormq.abc.AbstractChannel | None = None

    async def open(self) -> ConfirmedPublisher:
        """Open the channel and check that the exchange exists (it is never declared here)."""
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        try:
            self._exchange = await channel.get_exchange(self._exchange_name, ensure=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            raise TopologyError(
                f"exchange {self._exchange_name!r} does not exist on this broker; "
                "run `woofleet topology apply`"
            ) from None
        self._channel = channel
        # Messages go out on the driver's channel under it (see send).
        self._frames = await channel.get_underlay_channel()
        return self

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()
        self._channel = None
        self._exchange = None
        self._frames = None

    async def __aenter__(self) -> ConfirmedPublisher:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def is_open(self) -> bool:
        return self._channel is not None and not self._channel.is_closed

    async def publish(self, envelope: Envelope[Any], *, priority: int = 0) -> None:
        """Publish one envelope (routing key = event type); return once the broker confirmed."""
        await self.send(Outgoing.from_envelope(envelope, priority=priority))

    async def send(self, item: Outgoing) -> None:
        """Publish one prepared message; return once the broker confirmed it."""
        if self._frames is None:
            raise PublishError("the publisher is not open; call open() first")
        # Straight to the driver's channel: an aio-pika Message per event costs more than the
        # rest of publishing it. A channel closed since open() fails here as a PublishError;
        # the owner opens a new publisher (aio-pika's robust channel has a new one under it).
        await publish_confirmed_frames(
            self._frames, self._exchange_name, item.routing_key, item.body, item.amqp_properties()
        )

    async def publish_many(
        self, envelopes: Sequence[Envelope[Any]], *, priority: int = 0
    ) -> list[BaseException | None]:
        """Publish envelopes pipelined; see :meth:`send_many`."""
        return await self.send_many(
            [Outgoing.from_envelope(e, priority=priority) for e in envelopes]
        )

    async def send_many(self, items: Sequence[Outgoing]) -> list[BaseException | None]:
        """Publish many messages with up to ``window`` in flight; wait for every confirm.

        Returns one entry per message, in order: ``None`` when the broker confirmed it, or the
        :class:`~fleet.errors.PublishError` it failed with. Never raises for a single message.
        """
        if len(items) <= self._window:
            return list(await asyncio.gather(*(self._outcome(item) for item in items)))
        results: list[BaseException | None] = [None] * len(items)
        slots = asyncio.Semaphore(self._window)

        async def one(index: int, item: Outgoing) -> None:
            try:
                results[index] = await self._outcome(item)
            finally:
                slots.release()

        tasks = []
        for index, item in enumerate(items):
            await slots.acquire()
            tasks.append(asyncio.ensure_future(one(index, item)))
        await asyncio.gather(*tasks)
        return results

    async def _outcome(self, item: Outgoing) -> PublishError | None:
        try:
            await self.send(item)
        except PublishError as exc:
            return exc
        return None


async def open_publisher(
    connection: AbstractConnection, *, exchange: str = EVENTS_EXCHANGE
) -> ConfirmedPublisher:
    """A :class:`ConfirmedPublisher` with its channel open."""
    return await ConfirmedPublisher(connection, exchange=exchange).open()
