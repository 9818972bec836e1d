"""The webhook's HTTP connections, guarded against clients that would hold it.

A public endpoint meets clients that open connections and send a byte a second, or a header of
hundreds of megabytes. uvicorn's HTTP protocol has no deadline for a request head and no limit
on its size, and every open connection holds a file descriptor. :class:`GuardedHttp` adds, per
connection:

* a limit on the request head's size: past it, 431 and the connection closed;
* a deadline for the request head: past it, 408 (or a silent close when nothing came);
* a cap on open connections, fitted to the files the process may open: a new one beyond it
  closes the connection that has waited longest for its request head (a slow client), so
  connections doing real work keep their place and accepting never fails for want of a file.

The deadline for the body is the ASGI app's (:meth:`publisher.webhook.WebhookApp.webhook`).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from fleet.settings import Settings

log = logging.getLogger("publisher.webhook")


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int
    head_seconds: float
    max_connections: int


#: Open files the process needs besides its connections: the state store, the broker, the
#: listening sockets, the log, what libraries open.
FILES_RESERVE = 128


def limits_of(settings: Settings) -> Limits:
    """The settings' limits, with the connection cap fitted to the files this process may
    open (raised as far as the hard limit allows): past it, accepting a connection fails for
    want of a file and every valid delivery with it, so slow ones must be closed before."""
    wanted = settings.webhook_max_connections
    files = raise_open_files_limit(wanted + FILES_RESERVE)
    fitting = max(1, files - FILES_RESERVE)
    if fitting < wanted:
        log.warning(
            "webhook: only %d open files allowed, so at most %d connections are kept open, "
            "not WOOFLEET_WEBHOOK_MAX_CONNECTIONS (%d); raise the open-files limit "
            "(`ulimit -n`, the container's nofile) to keep more",
            files,
            fitting,
            wanted,
        )
    return Limits(
        max_header_bytes=settings.webhook_max_header_bytes,
        head_seconds=settings.webhook_head_seconds,
        max_connections=min(wanted, fitting),
    )


class GuardedHttp(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with the limits above; made per server by :func:`guarded`."""

    limits: ClassVar[Limits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_head = True
        self._head_bytes = 0
        self._head_since = 0.0
        self._head_timer: asyncio.TimerHandle | None = None

    # -- the connection ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()
        if len(self.connections) > self.limits.max_connections:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._reading_head and not self.transport.is_closing():
            # Still no complete head after this chunk: all of it was head.
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes:
                self._refuse(431, "Request Header Fields Too Large")

    # -- the request cycle ------------------------------------------------------------------
    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_head()  # keep-alive: the next request's head starts now

    # -- limits -----------------------------------------------------------------------------
    def _await_head(self) -> None:
        self._reading_head = True
        self._head_bytes = 0
        self._head_since = self.loop.time()
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.limits.head_seconds, self._head_overdue)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_overdue(self) -> None:
        self._head_timer = None
        if not self._reading_head or self.transport.is_closing():
            return
        if self._head_bytes:
            self._refuse(408, "Request Timeout")
        else:
            self.transport.close()  # an idle keep-alive connection, or one that never spoke

    def _make_room(self) -> None:
        waiting = [
            c
            for c in self.connections
            if isinstance(c, GuardedHttp) and c._reading_head and not c.transport.is_closing()
        ]
        oldest = min(waiting, key=lambda c: c._head_since, default=None)
        if oldest is None:
            self._refuse(503, "Service Unavailable")
            return
        log.warning(
            "webhook: %d connections open (WOOFLEET_WEBHOOK_MAX_CONNECTIONS %d); closed the one "
            "that waited %.1fs for its request head",
            len(self.connections),
            self.limits.max_connections,
            self.loop.time() - oldest._head_since,
        )
        oldest.transport.close()

    def _refuse(self, status: int, reason: str) -> None:
        self._cancel_head_timer()
        self._reading_head = False
        self.transport.write(
            f"HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode()
        )
        self.transport.close()


def guarded(limits: Limits) -> type[GuardedHttp]:
    """The protocol class uvicorn instantiates per connection, with ``limits``."""
    return type("WebhookHttp", (GuardedHttp,), {"limits": limits})


def raise_open_files_limit(wanted: int) -> int:
    """Lift the soft limit on open files towards ``wanted`` (as far as the hard limit allows):
    each connection holds one, and the usual soft default (1,024) is below the cap."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft
