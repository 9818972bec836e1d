"""Run one or more consumer types in one process: start, health, SIGTERM drain, close."""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
import time
from collections.abc import Sequence

from aio_pika.abc import AbstractRobustConnection
from starlette.applications import Starlette

from consumers import registry
from consumers.runtime import observe
from consumers.runtime.handler import Handler, HandlerSpec
from consumers.runtime.ledger import Ledger, open_ledger
from consumers.runtime.middleware import Middleware
from consumers.runtime.observe import standard_middleware
from consumers.runtime.worker import ConsumerWorker
from fleet.amqp import connect
from fleet.health import health_routes, serve_in_background
from fleet.logging import redact
from fleet.settings import Settings
from topology.fleet import DEFAULT_FLEET, FleetSpec

log = logging.getLogger("consumers.supervisor")
#: Where aio_pika logs each failed reconnect attempt.
_RECONNECTS = logging.getLogger("aio_pika.robust_connection")


async def build_handler(name: str, settings: Settings) -> Handler:
    """The handler of consumer ``name``, built from its module's ``build(settings)``."""
    built = registry.load(name).build(settings)
    handler: Handler = await built if inspect.isawaitable(built) else built
    return handler


class Supervisor:
    """Owns the connection, the ledger and one worker per consumer type."""

    def __init__(
        self,
        consumer_names: Sequence[str],
        settings: Settings,
        *,
        fleet: FleetSpec = DEFAULT_FLEET,
        handlers: dict[str, tuple[HandlerSpec, Handler]] | None = None,
        middleware: Sequence[Middleware] | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        """``handlers`` replaces the modules' own (spec, handler) for some consumers (tests);
        ``ledger`` the one WOOFLEET_STATE_URL names (benchmarks compare ledger variants)."""
        self._given_ledger = ledger
        self._handlers = dict(handlers or {})
        fleet.check(consumer_names)
        for name in consumer_names:
            if name not in self._handlers:
                registry.load(name)  # a module that fails to import fails here, not later
        self.names = tuple(consumer_names)
        self.settings = settings
        self.fleet = fleet
        self._middleware = list(standard_middleware() if middleware is None else middleware)
        self.workers: dict[str, ConsumerWorker] = {}
        self.connection: AbstractRobustConnection | None = None
        self.ledger: Ledger | None = None
        #: Why the broker cannot be reached (None while it can), and since when.
        self.broker_away: str | None = None
        self._away_since = 0.0
        self._stopping = False

    async def start(self) -> None:
        # The state store first: one that cannot work refuses the start in one line (exit 2
        # or 3) before anything else is opened; one that stops answering later pauses workers.
        self.ledger = self._given_ledger or open_ledger(self.settings.state_url)
        try:
            await self.ledger.check()
            self.connection = await connect(
                self.settings, name=f"woofleet consume {' '.join(self.names)}"
            )
            self.connection.close_callbacks.add(self._broker_lost)
            self.connection.reconnect_callbacks.add(self._broker_back)
            _RECONNECTS.addFilter(self._quiet_reconnect_attempts)
            for name in self.names:
                if name not in self._handlers:
                    spec = registry.load(name).SPEC
                    self._handlers[name] = (spec, await build_handler(name, self.settings))
                spec, handler = self._handlers[name]
                worker = ConsumerWorker(
                    self.fleet.consumer(name),
                    spec,
                    handler,
                    ledger=self.ledger,
                    middleware=self._middleware,
                )
                await worker.start(self.connection)
                self.workers[name] = worker
        except BaseException:
            # Closed here, so a refused start ends in its one line, not in a closing
            # connection's traceback.
            if self.connection is not None:
                await self.connection.close()
            await self.ledger.close()
            raise

    def ready(self) -> tuple[bool, dict[str, object]]:
        connected = self.connection is not None and self.connection.connected.is_set()
        consuming = {name: w.consuming for name, w in self.workers.items()}
        # Why a consumer takes no work: the broker, its state store, or its target (breaker).
        paused = {
            name: reason
            for name, w in self.workers.items()
            if (reason := self.broker_away or w.dependency.reason or w.breaker_reason)
        }
        ok = connected and bool(consuming) and all(consuming.values()) and not paused
        detail: dict[str, object] = {"connected": connected, "consuming": consuming}
        if paused:
            detail["paused"] = paused
        return ok, detail

    # A broker away is a pause like a state store away: one line when it goes, one when it is
    # back, a count, and /readyz says why. aio_pika reconnects by itself meanwhile (consumers
    # included); its line per attempt is left out.
    def _broker_lost(self, _: object, exc: BaseException | None) -> None:
        if exc is None or self._stopping or self.broker_away is not None:
            return  # a close of our own, or already away
        assert self.connection is not None
        self.broker_away = (
            f"the broker named by WOOFLEET_AMQP_URL is not answering ({type(exc).__name__}: "
            f"{exc}); reconnecting every {getattr(self.connection, 'reconnect_interval', 5):g}s"
        )
        self._away_since = time.monotonic()
        for name in self.workers:
            observe.count_dependency_pause(name)
        log.error("paused: %s; nothing is taken meanwhile", redact(self.broker_away))

    def _broker_back(self, _: object) -> None:
        if self.broker_away is None:
            return
        self.broker_away = None
        log.info(
            "resumed: the broker answers again after %.0fs; consuming again",
            time.monotonic() - self._away_since,
        )

    def _quiet_reconnect_attempts(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (self.broker_away is not None and args and args[0] is self.connection)

    async def stop(self, grace: float | None = None) -> bool:
        """Drain every worker within ``grace`` (default: the longest handler timeout)."""
        if grace is None:
            grace = max((self.fleet.consumer(n).timeout for n in self.names), default=30.0)
        self._stopping = True
        results = await asyncio.gather(*(w.stop(grace) for w in self.workers.values()))
        for _, handler in self._handlers.values():
            aclose = getattr(handler, "aclose", None)
            if aclose is not None:
                await aclose()
        if self.ledger is not None:
            await self.ledger.close()
        if self.connection is not None:
            _RECONNECTS.removeFilter(self._quiet_reconnect_attempts)
            await self.connection.close()
        return all(results)


async def serve_consumers(
    consumer_names: Sequence[str],
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 9100,
    fleet: FleetSpec = DEFAULT_FLEET,
    grace: float | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """The body of ``woofleet consume``: run until SIGTERM/SIGINT (or ``stop``), then drain."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    supervisor = Supervisor(consumer_names, settings, fleet=fleet)
    await supervisor.start()
    app = Starlette(routes=health_routes(supervisor.ready))
    server, server_task = await serve_in_background(app, host, port)
    log.info("health and metrics on http://%s:%d (/healthz /readyz /metrics)", host, port)
    await stop.wait()
    log.info("stopping: no new deliveries; finishing what is in flight")
    finished = await supervisor.stop(grace)
    server.should_exit = True
    await server_task
    for name, worker in supervisor.workers.items():
        log.info("%s: %s", name, dict(worker.stats) or "no deliveries")
    return 0 if finished else 1
