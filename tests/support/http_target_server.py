"""A real HTTP server on 127.0.0.1 for HTTP-target tests: records requests, answers as told.

    with HttpTargetServer() as server:
        server.answer(503, headers={"Retry-After": "7"})   # the next request gets this
        server.hang(2.0)                                    # the next request hangs 2 s
        ... server.url, server.requests ...

Unscripted requests get ``200 {"ok": true}``, or whatever ``server.route`` returns when set
(a function of the recorded request, for targets with behaviour such as WooCommerce's batch).
It is uvicorn serving a Starlette app in a thread on a free port: the code under test speaks
real HTTP to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.requests import Request
from starlette.responses import Response

from consumers import registry
from consumers.runtime.handler import AnyEnvelope, Delivery, HandlerSpec
from contracts.orders import OrderEvent


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    #: The path as sent, percent-escapes intact.
    raw_path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode()))

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


@dataclass
class Answer:
    status: int = 200
    body: Any = field(default_factory=lambda: {"ok": True})
    headers: dict[str, str] = field(default_factory=dict)
    #: Seconds to wait before answering (longer than the client's timeout = a hang).
    delay: float = 0.0
    #: Answer this text as it is (text/plain) instead of ``body`` as JSON, as Slack does.
    text: str | None = None


Route = Callable[[Recorded], Answer]


class HttpTargetServer:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.route: Route | None = None
        self._script: deque[Answer] = deque()
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            lifespan="off",
            ws="none",
            interface="asgi3",
            access_log=False,
        )
        config.timeout_graceful_shutdown = 1
        self._server = uvicorn.Server(config)
        # A daemon: a test that fails before stop() must not keep the test run from exiting.
        self._thread = threading.Thread(
            target=self._run, name=f"http-target-{self.port}", daemon=True
        )
        self._released: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- scripting ---------------------------------------------------------------------
    def answer(
        self,
        status: int,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        times: int = 1,
        text: str | None = None,
    ) -> None:
        """The next ``times`` requests get this answer (before falling back to the default)."""
        with self._lock:
            for _ in range(times):
                self._script.append(Answer(status, body, headers or {}, text=text))

    def hang(self, seconds: float, *, times: int = 1) -> None:
        """The next ``times`` requests get no answer for ``seconds``."""
        with self._lock:
            for _ in range(times):
                self._script.append(Answer(200, {"ok": True}, {}, delay=seconds))

    def reset(self) -> None:
        """Forget recorded requests, scripted answers and the route (between tests)."""
        with self._lock:
            self.requests.clear()
            self._script.clear()
            self.route = None

    def paths(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.requests]

    # -- the app -------------------------------------------------------------------------
    async def _app(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        recorded = Recorded(
            method=request.method,
            path=request.url.path,
            raw_path=(scope.get("raw_path") or b"").decode(),
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.body(),
        )
        with self._lock:
            self.requests.append(recorded)
            scripted = self._script.popleft() if self._script else None
        answer = scripted or (self.route(recorded) if self.route else Answer())
        if answer.delay:
            assert self._released is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), answer.delay)
        media_type: str | None
        if answer.text is not None:
            content, media_type = answer.text.encode(), "text/plain"
        else:
            content = b"" if answer.body is None else json.dumps(answer.body).encode()
            media_type = "application/json" if content else None
        response = Response(
            content, status_code=answer.status, headers=answer.headers, media_type=media_type
        )
        await response(scope, receive, send)

    # -- lifecycle -------------------------------------------------------------------------
    def _run(self) -> None:
        async def serve() -> None:
            self._released = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            await self._server.serve(sockets=[self._sock])

        asyncio.run(serve())

    def start(self) -> HttpTargetServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("test HTTP server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._released is not None and self._loop is not None:
            # Let hanging requests finish so shutdown does not wait on them.
            self._loop.call_soon_threadsafe(self._released.set)
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> HttpTargetServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# -- helpers for tests of HTTP-target consumers ------------------------------------------------


def delivery_for(
    consumer: str, event: AnyEnvelope, *, priority: int = 0, attempt: int = 1
) -> Delivery:
    """The Delivery the runtime would hand ``consumer``'s handler for this event."""
    spec: HandlerSpec = registry.load(consumer).SPEC
    key = spec.business_key(event) if spec.business_key else str(event.event_id)
    return Delivery(
        consumer=consumer,
        message_id=str(event.event_id),
        attempt=attempt,
        priority=priority,
        redelivered=attempt > 1,
        business_key=key,
        log=logging.LoggerAdapter(logging.getLogger(f"consumers.{consumer}"), {}),
    )


def with_data(event: OrderEvent, **changes: Any) -> OrderEvent:
    """The event with fields of its OrderData replaced (e.g. ``refund=Refund(...)``)."""
    return event.model_copy(update={"data": event.data.model_copy(update=changes)})
