"""Acknowledging in batches without ever acknowledging a delivery that is not finished.

``basic.ack(multiple=True)`` up to tag N settles every outstanding delivery up to N on its
channel, in one frame instead of one per message. Deliveries finish out of order (up to the
prefetch count run at once), so a multiple ack is only sent up to the *frontier*: the highest tag
below which every delivery is settled here. Settled tags above a gap (a slow handler) are acked
one by one once enough of them wait, so one slow message never holds the others' prefetch slots.
A multiple ack names the highest tag that still owes its ack, never one acked singly or nacked
already: the broker answers that with PRECONDITION_FAILED (unknown delivery tag) and closes the
channel, which sends every unacked delivery on it round again.

Tags are per channel: a window belongs to one channel and is thrown away with it. After a
``basic.cancel`` a delivery racing the cancel can be dropped by the client, leaving a gap that
would never close, so :meth:`AckWindow.stop_batching` makes every later ack a single one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aio_pika.exceptions
import aiormq.exceptions


@dataclass
class AckWindow:
    """Pure bookkeeping: which acks to send now. The worker sends them on the right channel."""

    #: Acks that may wait to go out together while the consumer is busy.
    batch: int = 16
    batching: bool = True
    _frontier: int = 0
    _acked_to: int = 0
    #: The highest tag up to the frontier whose ack is owed: what the next multiple ack names.
    _owed_to: int = 0
    #: Settled tags above the frontier: True while the ack is still owed.
    _above: dict[int, bool] = field(default_factory=dict)
    #: Once batching stopped: tags whose single ack is owed.
    _singles: list[int] = field(default_factory=list)

    def settle(self, tag: int, *, owes_ack: bool) -> None:
        """Delivery ``tag`` is finished; ``owes_ack`` is False when it was nacked already."""
        if not self.batching:
            if owes_ack:
                self._singles.append(tag)
            return
        self._above[tag] = owes_ack
        while (self._frontier + 1) in self._above:
            self._frontier += 1
            if self._above.pop(self._frontier):
                self._owed_to = self._frontier

    def due(self, *, idle: bool) -> tuple[int | None, list[int]]:
        """What to send now: a tag for one multiple ack (or None), and tags to ack singly.

        ``idle``: nothing else is being handled, so everything owed goes out.
        """
        if not self.batching:
            owed_singly, self._singles = self._singles, []
            return None, owed_singly
        multiple: int | None = None
        waiting = self._owed_to - self._acked_to
        if waiting > 0 and (idle or waiting >= self.batch):
            multiple = self._acked_to = self._owed_to
        if not self._above:  # in-order settles: nothing above the frontier (the common case)
            return multiple, []
        owed = [tag for tag, owes in self._above.items() if owes]
        singles: list[int] = []
        if owed and (idle or len(owed) >= self.batch):
            singles = sorted(owed)
            for tag in singles:
                self._above[tag] = False
        return multiple, singles

    def stop_batching(self) -> tuple[int | None, list[int]]:
        """Every later ack is a single one (see the module docstring); returns what is owed."""
        owed = self.due(idle=True)
        self.batching = False
        self._above.clear()
        return owed


class AckChannel(Protocol):
    """What sending acks needs of a channel (aiormq's channel has it)."""

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> Awaitable[Any]: ...


class AckSender:
    """One channel's acks, decided and sent in one order.

    Sending a frame waits for the connection's writer, and deliveries finish meanwhile. Were the
    decision taken outside the lock, a multiple ack decided later could reach the broker before a
    single ack decided earlier for a tag it covers: PRECONDITION_FAILED, the channel closed, and
    every unacked delivery on it (finished effects among them) sent round again.
    """

    def __init__(self, channel: AckChannel, batch: int, log: logging.LoggerAdapter[Any]) -> None:
        self.channel = channel
        self.window = AckWindow(batch=batch)
        self._log = log
        self._lock = asyncio.Lock()

    async def acked(self, tag: int) -> None:
        """``tag`` is finished and owes its ack: a full batch goes out now, the rest waits."""
        self.window.settle(tag, owes_ack=True)
        async with self._lock:
            await self._send(*self.window.due(idle=False))

    def nacked(self, tag: int) -> None:
        """``tag`` was given back (its nack is sent): it no longer holds up batched acks."""
        self.window.settle(tag, owes_ack=False)

    async def flush(self) -> bool:
        """Send everything owed; False when nothing was."""
        async with self._lock:
            multiple, singles = self.window.due(idle=True)
            if multiple is None and not singles:
                return False
            await self._send(multiple, singles)
            return True

    async def stop_batching(self) -> None:
        """After a basic.cancel (see the module docstring): what is owed goes now, singly later."""
        async with self._lock:
            await self._send(*self.window.stop_batching())

    async def _send(self, multiple: int | None, singles: list[int]) -> None:
        try:
            if multiple is not None:
                await self.channel.basic_ack(multiple, multiple=True)
            for tag in singles:
                await self.channel.basic_ack(tag)
        except (aio_pika.exceptions.ChannelInvalidStateError, aiormq.exceptions.AMQPError) as exc:
            # The channel died under us; the broker requeues what it held, and the ledger or
            # the redelivery count takes care of it next time.
            self._log.warning("could not send acks (%s); the broker will redeliver those", exc)
