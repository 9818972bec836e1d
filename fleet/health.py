"""``/healthz``, ``/readyz`` and ``/metrics`` for any woofleet process, served in its own loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

#: Returns (ready, detail) for /readyz.
ReadinessCheck = Callable[[], tuple[bool, dict[str, object]]]


def health_routes(ready: ReadinessCheck) -> list[Route]:
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        ok, detail = ready()
        return JSONResponse({"ready": ok, **detail}, status_code=200 if ok else 503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]


class EmbeddedServer(uvicorn.Server):
    """uvicorn inside a process that handles its own signals (SIGTERM drains consumers first)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_in_background(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    lifespan: bool = False,
    http: type[asyncio.Protocol] | None = None,
) -> tuple[EmbeddedServer, asyncio.Task[None]]:
    """Serve ``app`` as a task of the running loop; returns once it listens. ``http``: the
    HTTP protocol class (the webhook's guarded one), uvicorn's own by default."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=http or "auto",
        log_level="warning",
        log_config=None,
        access_log=False,
        lifespan="on" if lifespan else "off",
    )
    server = EmbeddedServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # surfaces "address already in use" and the like
        await asyncio.sleep(0.01)
    return server, task
