"""The outbox relay: publishes queued events, oldest first, and deletes each once confirmed.

Every event goes through the outbox (it is committed with the lifecycle state). One relay per
store holds a lease and publishes; the webhook waits briefly for its own events' confirms while
the broker is up, and answers from the outbox alone while it is away. When the broker comes
back the relay drains the backlog in order. A crash between confirm and delete republishes a
message with the same ``message_id``: consumers deduplicate on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable

from fleet.errors import DependencyUnavailable, PublishError, TopologyError, UnroutableError
from publisher.outgoing import EventChannel
from publisher.store import OutboxRow, PublisherStore

log = logging.getLogger(__name__)

LEASE_NAME = "outbox-relay"
LEASE_SECONDS = 15.0
#: Rows read from the outbox at a time (reading is synchronous: keep each read short).
BATCH = 256
#: Events sent and not yet confirmed, at most. Plenty for the confirm round trip (thousands of
#: events/s x tens of ms), and small enough that a backlog does not fill the heap with pending
#: sends (every object alive lengthens the garbage collector's pauses, and the webhook's p99).
WINDOW = 1_000
IDLE_POLL_SECONDS = 1.0
#: Confirmed rows are deleted this many at a time, or this often: a delete per delivery would
#: be a transaction per delivery. A crash in between republishes them (same message_id).
DELETE_BATCH = 500
DELETE_EVERY_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 10.0
OPEN_TIMEOUT_SECONDS = 5.0
#: How long closing waits for confirms of messages in flight.
CLOSE_SETTLE_SECONDS = 5.0
#: How long recovery waits for confirms of messages in flight before sending them again.
SETTLE_SECONDS = 30.0
#: Confirmed outbox rows remembered for requests that ask after the fact.
RECENT_CONFIRMS = 50_000
#: Events queued for sending between two yields to the event loop (and two looks at whether
#: the webhook has deliveries in hand): each costs the loop ~0.1 ms.
SEND_CHUNK = 16
#: Longest the relay holds back for the webhook before it sends a chunk anyway.
MAX_DEFER_SECONDS = 0.1

#: What encoding a message that cannot be an AMQP frame raises (a timestamp before 1970, a
#: header value of no AMQP type...). Raised before anything is written: the channel is fine,
#: the row is not, and no retry can change that.
UNENCODABLE = (struct.error, TypeError, ValueError, OverflowError)

#: Opens the channel the relay publishes on (see publisher.confirming_channel).
Connect = Callable[[], Awaitable[EventChannel]]


def relay_holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class OutboxRelay:
    """Drains ``store``'s outbox to ``woo.events`` through an :class:`EventChannel`."""

    def __init__(
        self,
        store: PublisherStore,
        connect: Connect,
        *,
        batch: int = BATCH,
        on_published: Callable[[int], None] | None = None,
        on_set_aside: Callable[[int], None] | None = None,
        max_backoff: float = MAX_BACKOFF_SECONDS,
        window: int = WINDOW,
        idle: asyncio.Event | None = None,
    ) -> None:
        self._max_backoff = max_backoff
        self._idle = idle
        self._store = store
        self._connect = connect
        self._batch = batch
        self._on_published = on_published
        self._on_set_aside = on_set_aside
        # Rows whose message could not be encoded, waiting to be moved out of the outbox.
        self._unsendable: list[tuple[int, str]] = []
        self.holder = relay_holder_id()
        self._publisher: EventChannel | None = None
        self._wake = asyncio.Event()
        self._waiters: dict[int, asyncio.Future[None]] = {}
        self._done: OrderedDict[int, None] = OrderedDict()
        self._backoff = 0.0
        self._retry_at = 0.0  # monotonic; no broker work before it after a failure
        self._stopped = asyncio.Event()
        self._failed = False
        self._sent_upto = 0
        self._slots = asyncio.Semaphore(window)
        self._inflight: set[asyncio.Future[None]] = set()
        self._confirmed: list[int] = []
        self._deleted_at = 0.0
        self.is_leader = False
        self._lease_renewed = 0.0
        self.last_error: str = ""

    # -- state the webhook reads ------------------------------------------------------------
    @property
    def broker_up(self) -> bool:
        return self._publisher is not None and self._publisher.is_open

    @property
    def publishing(self) -> bool:
        """Broker up and the last publish succeeded: worth waiting for a confirm."""
        return self.broker_up and not self._failed and not self.last_error

    def wake(self) -> None:
        self._wake.set()

    async def wait_published(self, seqs: Iterable[int], timeout: float) -> bool:
        """Wait until these outbox rows are confirmed by the broker (False on timeout)."""
        loop = asyncio.get_running_loop()
        # A row may be confirmed before its request gets here (the store yielded in between).
        futures = [
            self._waiters.setdefault(s, loop.create_future()) for s in seqs if s not in self._done
        ]
        self.wake()
        if not futures:
            return True
        try:
            await asyncio.wait_for(asyncio.gather(*futures), timeout)
        except TimeoutError:
            return False
        finally:
            for seq in seqs:
                future = self._waiters.get(seq)
                if future is not None and future.done():
                    del self._waiters[seq]
        return True

    # -- the loop --------------------------------------------------------------------------
    async def run(self) -> None:
        """Relay until :meth:`stop`; never raises for broker or lease trouble."""
        try:
            while not self._stopped.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._backoff or IDLE_POLL_SECONDS)
                self._wake.clear()
                if (pause := self._retry_at - time.monotonic()) > 0:
                    # Woken by a delivery while backing off: trying the broker again at every
                    # delivery would hammer it as it comes back. The outbox keeps the events.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopped.wait(), pause)
                if self._stopped.is_set():
                    break
                try:
                    await self.drain()
                except DependencyUnavailable:
                    # The webhook says so once (it answers 503 meanwhile); the outbox is
                    # tried again at 0.5 s, doubling, so the relay resumes soon after the store.
                    self._back_off()
                except Exception:
                    log.exception("outbox relay: unexpected error; trying again shortly")
                    self._back_off(self._max_backoff)
        finally:
            await self.close()

    async def close(self) -> None:
        """Drop the broker connection and give up the lease (another relay may take over)."""
        with contextlib.suppress(Exception):
            await self._settle(CLOSE_SETTLE_SECONDS)
        await self._close_publisher()
        with contextlib.suppress(Exception):
            await self._store.release_lease(LEASE_NAME, self.holder)

    async def flush(self, timeout: float) -> int:
        """Publish until the outbox is empty, the lease is elsewhere or ``timeout`` passes.

        For one-shot tools; returns how many events are left in the outbox.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await self._store.depth() and loop.time() < deadline:
            await self.drain()
            await self._settle()
            if not self.is_leader:
                break
            if await self._store.depth():
                await asyncio.sleep(min(max(self._backoff, 0.2), max(0.0, deadline - loop.time())))
        return await self._store.depth()

    async def stop(self) -> None:
        self._stopped.set()
        self.wake()

    async def drain(self) -> int:
        """Send everything queued after what is already in flight; return how many were sent.

        Sending does not wait for earlier confirms: each message's confirm resolves its waiter
        and queues its row for deletion on its own, so a delivery waits for its own events
        only. Messages go out on one channel in outbox order. After a failure, the rows still
        in the outbox are sent again, from the oldest, once the channel is reopened.
        """
        await self._delete_confirmed()
        if self._failed:
            await self._recover()
        if not self._inflight and not self._confirmed:
            # Nothing in flight and the confirmed rows are gone: whatever is left is unsent.
            # Starting from the oldest again catches a row whose transaction committed after a
            # higher seq was read (possible with several writers on PostgreSQL).
            self._sent_upto = 0
        if not await self._hold_lease():
            return 0
        if not await self._ensure_publisher():
            return 0
        sent = 0
        while not self._failed and await self._hold_lease():
            await self._delete_confirmed()
            rows = await self._store.pending(self._batch, after=self._sent_upto)
            if not rows:
                break
            for row in rows:
                if sent % SEND_CHUNK == 0:
                    # Let the chunk just queued go out, and the webhook answer in between.
                    await asyncio.sleep(0)
                    await self._make_way()
                await self._slots.acquire()
                if self._failed:
                    self._slots.release()
                    break
                if self._send(row):
                    sent += 1
                self._sent_upto = row.seq
            await self._set_aside()
        if not self._failed:
            self._backoff = 0.0
        return sent

    async def _make_way(self) -> None:
        """While the webhook has deliveries in hand (``idle`` clear), hold back a little.

        Answering WooCommerce comes first: its deliveries are not retried, and an answer held
        up behind publishing is a timeout. The outbox absorbs a burst and drains in the gaps;
        under sustained load a chunk still goes out every MAX_DEFER_SECONDS.
        """
        if self._idle is not None and not self._idle.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), MAX_DEFER_SECONDS)

    def _send(self, row: OutboxRow) -> bool:
        """Publish one row; its confirm (or failure) is handled by :meth:`_settled`.

        False when the row's message cannot be encoded at all: it is set aside (see
        :meth:`_set_aside`) instead of being tried forever in front of every row behind it.
        """
        publisher = self._publisher
        if publisher is None:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            future.set_exception(PublishError("the publisher was closed"))
        else:
            try:
                future = publisher.publish(row.message)
            except UNENCODABLE as exc:
                self._slots.release()
                self._unsendable.append((row.seq, f"cannot be encoded as AMQP: {exc}"))
                return False
        self._inflight.add(future)
        future.add_done_callback(lambda done: self._settled(row.seq, done))
        return True

    async def _set_aside(self) -> None:
        """Move the rows no broker can be given out of the outbox, each with its reason."""
        rows, self._unsendable = self._unsendable, []
        for seq, reason in rows:
            await self._store.set_aside(seq, reason)
            log.error(
                "outbox relay: outbox row %d set aside, it can never be published (%s); the "
                "rows behind it flow. See `woofleet ingress list`.",
                seq,
                reason,
            )
            if self._on_set_aside is not None:
                self._on_set_aside(1)

    def _settled(self, seq: int, future: asyncio.Future[None]) -> None:
        self._inflight.discard(future)
        self._slots.release()
        exc = None if future.cancelled() else future.exception()
        if future.cancelled() or exc is not None:
            if not self._failed:
                self._failed = True
                if isinstance(exc, PublishError):
                    self._report_failure(exc)
            self.wake()
            return
        self.last_error = ""
        self._confirmed.append(seq)
        self._resolve((seq,))
        if self._on_published is not None:
            self._on_published(1)
        # Confirmed rows are deleted in batches (DELETE_BATCH, DELETE_EVERY_SECONDS; at the
        # latest a round of the loop after that): a crash before that republishes them.

    async def _settle(self, timeout: float = SETTLE_SECONDS) -> None:
        """Wait for every message in flight to be confirmed or to fail; delete the confirmed.

        A send still pending after ``timeout`` is given up: its row stays in the outbox and is
        sent again (a possible duplicate, with the same message_id).
        """
        if self._inflight:
            _, stuck = await asyncio.wait(set(self._inflight), timeout=timeout)
            for future in stuck:
                future.cancel()  # settled as failed: the row stays in the outbox
        await self._delete_confirmed(now=True)

    async def _delete_confirmed(self, *, now: bool = False) -> None:
        if not self._confirmed:
            return
        moment = time.monotonic()
        if (
            not now
            and len(self._confirmed) < DELETE_BATCH
            and moment - self._deleted_at < DELETE_EVERY_SECONDS
        ):
            return
        confirmed, self._confirmed = self._confirmed, []
        self._deleted_at = moment
        await self._store.delete(confirmed)

    async def _recover(self) -> None:
        # Let everything in flight finish, so what was confirmed is deleted and what was not is
        # sent again from the oldest row, on a new channel.
        await self._settle()
        self._failed = False
        self._sent_upto = 0
        await self._close_publisher()

    async def _hold_lease(self) -> bool:
        now = time.monotonic()
        if not self.is_leader or now - self._lease_renewed > LEASE_SECONDS / 3:
            # Renewed a few times per lease period, not on every batch: it is a write.
            self.is_leader = await self._store.take_lease(LEASE_NAME, self.holder, LEASE_SECONDS)
            self._lease_renewed = now
        return self.is_leader

    def _resolve(self, seqs: Iterable[int]) -> None:
        for seq in seqs:
            self._done[seq] = None
            if len(self._done) > RECENT_CONFIRMS:
                self._done.popitem(last=False)
            future = self._waiters.pop(seq, None)
            if future is not None and not future.done():
                future.set_result(None)

    def _report_failure(self, error: PublishError) -> None:
        self.last_error = str(error)
        level = logging.ERROR if isinstance(error, UnroutableError) else logging.WARNING
        log.log(level, "outbox relay: events not confirmed, kept in the outbox (%s)", error)
        self._back_off()

    async def _ensure_publisher(self) -> bool:
        if self._publisher is not None and self._publisher.is_open:
            return True
        await self._close_publisher()
        try:
            self._publisher = await asyncio.wait_for(self._connect(), OPEN_TIMEOUT_SECONDS)
            log.info("outbox relay: connected to RabbitMQ")
        except Exception as exc:  # every way of not reaching the broker ends the same way
            self.last_error = str(exc) or type(exc).__name__
            if self._backoff == 0.0 or isinstance(exc, TopologyError):
                log.warning(
                    "outbox relay: broker not available, events stay in the outbox: %s",
                    self.last_error,
                )
            self._back_off()
            return False
        return True

    def _back_off(self, seconds: float | None = None) -> None:
        """Wait longer before the next try: 0.5 s, doubling up to ``max_backoff``."""
        if seconds is None:
            seconds = min(max(self._backoff * 2, 0.5), self._max_backoff)
        self._backoff = seconds
        self._retry_at = time.monotonic() + seconds

    async def _close_publisher(self) -> None:
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            with contextlib.suppress(Exception):
                await publisher.close()
