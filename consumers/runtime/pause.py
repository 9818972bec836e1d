"""A dependency down is a pause, not a loop: stop taking deliveries, probe with backoff, resume.

When the state store (or another dependency every delivery needs) stops answering, handling
more deliveries only turns each into a requeue and a traceback. The worker instead gives back
what it holds, stops consuming, and probes the dependency at 1, 2, 4 ... 60 s; it logs once when
it pauses and once when it resumes, reports the reason on /readyz, and counts each pause.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fleet.errors import DependencyUnavailable

#: First probe after a pause, and the cap of the doubling backoff between probes, in seconds.
FIRST_PROBE = 1.0
MAX_PROBE_INTERVAL = 60.0


class DependencyPause:
    """One worker's pause: ``trip`` on a dependency failure; it resumes once ``probe`` passes."""

    def __init__(
        self,
        *,
        probe: Callable[[], Awaitable[None]],
        pause: Callable[[], Awaitable[None]],
        resume: Callable[[], Awaitable[None]],
        on_pause: Callable[[], None],
        log: logging.LoggerAdapter[Any],
        first_probe: float = FIRST_PROBE,
        max_interval: float = MAX_PROBE_INTERVAL,
    ) -> None:
        self._probe, self._pause, self._resume = probe, pause, resume
        self._on_pause = on_pause
        self._log = log
        self._first, self._max = first_probe, max_interval
        #: Why the worker is paused (None while it is not).
        self.reason: str | None = None
        self._since = 0.0
        self._task: asyncio.Task[None] | None = None

    def trip(self, exc: DependencyUnavailable) -> None:
        """A delivery met ``exc``: pause now unless paused already (then this changes nothing)."""
        if self.reason is not None:
            return
        self.reason = str(exc)
        self._since = time.monotonic()
        self._on_pause()
        self._log.error(
            "paused: %s; not taking deliveries, trying again in %.0fs", self.reason, self._first
        )
        self._task = asyncio.get_running_loop().create_task(self._recover())

    async def _recover(self) -> None:
        await self._pause()
        delay = self._first
        while True:
            await asyncio.sleep(delay)
            try:
                await self._probe()
            except DependencyUnavailable as exc:
                self.reason = str(exc)  # the newest cause, for /readyz; no log line per probe
                delay = min(delay * 2, self._max)
                continue
            break
        self._log.info(
            "resumed: the dependency answers again after %.0fs paused",
            time.monotonic() - self._since,
        )
        self.reason = None
        await self._resume()

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
