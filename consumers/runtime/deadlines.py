"""Handler time limits for one worker: one loop timer for all deliveries, not one each.

``asyncio.timeout`` per delivery schedules and cancels a timer handle on the event loop's heap
for every message: about 6 us, the largest single piece of the per-delivery bookkeeping.
Every delivery of a worker has the same limit, so deadlines expire in the order the handlers
started: the running handlers, kept in an insertion-ordered dict, form a queue ordered by
deadline, and a single timer for the oldest is enough. When it fires, it cancels the handlers
past their deadline and is armed again for the next one.

The cancellation is turned into a :class:`TimeoutError` exactly as ``asyncio.timeout`` does:
only when the task was cancelled by its deadline and by nothing else.
"""

from __future__ import annotations

import asyncio
from typing import Any

Task = asyncio.Task[Any]

#: A timer fires when the loop's clock is within its resolution of the deadline; handlers this
#: close to theirs are cancelled with it instead of arming a timer for a few microseconds.
_SLACK = 0.001


class Deadlines:
    """``enter()`` before awaiting a handler, ``leave()`` after; the handler's task is cancelled
    once ``limit`` seconds pass in between."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        #: Task → (deadline, the task's cancel requests when it entered), oldest first.
        self._running: dict[Task, tuple[float, int]] = {}
        #: Tasks cancelled by their deadline that have not left yet.
        self._expired: set[Task] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def enter(self) -> Task:
        """Start the clock for the current task's handler; returns the task for :meth:`leave`."""
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Deadlines.enter() must be called from a task")
        loop = self._loop
        if loop is None or loop is not task.get_loop():
            # A new event loop (tests run one per test): what the old one held is gone.
            loop = self._loop = task.get_loop()
            self._timer = None
            self._running.clear()
            self._expired.clear()
        deadline = loop.time() + self.limit
        self._running[task] = (deadline, task.cancelling())
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._expire)
        return task

    def leave(self, task: Task) -> bool:
        """Stop the clock. True when the deadline cancelled the task and nothing else did: the
        caller turns the :class:`asyncio.CancelledError` it caught into a timeout."""
        _, cancelling = self._running.pop(task)
        if self._expired and task in self._expired:
            self._expired.discard(task)
            return task.uncancel() <= cancelling
        return False

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        assert self._loop is not None
        now = self._loop.time() + _SLACK
        for task, (deadline, _) in self._running.items():
            if deadline > now:
                self._timer = self._loop.call_at(deadline, self._expire)
                return
            if task not in self._expired:
                self._expired.add(task)
                task.cancel()
