"""A circuit breaker for a consumer whose target is down: stop hammering it, probe, resume.

    closed ──(≥ min_calls in the window and failure ratio ≥ failure_ratio,
              or min_calls failures in a row)──▶ open
    open ──(cool_down elapsed)──▶ half-open: allow() lets exactly one probe through
    half-open ──probe succeeds──▶ closed (window cleared)
    half-open ──probe fails──▶ open (cool-down starts again)

The window is a time window: outcomes older than ``window`` seconds no longer count, so a
quiet consumer is not tripped by failures from an hour ago. The worker decides what a failure
is; the intended rule is "the target did not answer usefully" (a TransientError or a timeout).
The worker counts a 4xx as a failure too: a target refusing every order is as good as down.

Failures in a row open it whatever the window held before: a busy consumer's window is full of
successes when its target goes away, and waiting for half of it to fail takes most of a window.

:meth:`others_failed` tells the worker whose fault a refusal (a 4xx) is: when the latest call
for another delivery failed too, the target's (it refuses everything: the refusal costs the
message no attempt); otherwise the order's own.

The breaker only keeps state; the worker acts on it: pause consuming while open, resume for a
probe once ``allow()`` says so (``retry_in()`` says when), and keep going on success.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


StateListener = Callable[[BreakerState, BreakerState], None]


class CircuitBreaker:
    """Counts recent outcomes and opens when too many fail. ``clock`` is injectable for tests."""

    def __init__(
        self,
        window: float = 60.0,
        failure_ratio: float = 0.5,
        min_calls: int = 10,
        cool_down: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: StateListener | None = None,
    ) -> None:
        if window <= 0 or cool_down < 0:
            raise ValueError("window must be > 0 and cool_down >= 0 seconds")
        if not 0 < failure_ratio <= 1:
            raise ValueError(f"failure_ratio must be in (0, 1], not {failure_ratio}")
        if min_calls < 1:
            raise ValueError(f"min_calls must be at least 1, not {min_calls}")
        self.window = window
        self.failure_ratio = failure_ratio
        self.min_calls = min_calls
        self.cool_down = cool_down
        self._clock = clock
        self._on_change = on_change
        self._outcomes: deque[tuple[float, bool]] = deque()
        #: Failures among ``_outcomes``, kept as they come and go: a busy consumer records
        #: thousands of outcomes per window, too many to count on every call.
        self._failures = 0
        #: Failures at the end of ``_outcomes`` (those that aged out excepted).
        self._streak = 0
        #: The latest call (time, delivery key, success), and the latest for a key other than
        #: its key: enough to answer others_failed for any key.
        self._latest: tuple[float, str, bool] | None = None
        self._latest_other: tuple[float, str, bool] | None = None
        self._state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._probe_out = False

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose cool-down has passed reads half-open."""
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.cool_down:
            self._move(BreakerState.HALF_OPEN)
        return self._state

    def allow(self) -> bool:
        """May a call go ahead now? In half-open, True once (the probe) until it is recorded."""
        if self._state is BreakerState.CLOSED:  # every delivery asks: the common case first
            return True
        state = self.state
        if state is BreakerState.HALF_OPEN and not self._probe_out:
            self._probe_out = True
            return True
        return False

    @property
    def awaiting_probe(self) -> bool:
        """Half-open and no probe let through yet: no delivery has come to probe with."""
        return self.state is BreakerState.HALF_OPEN and not self._probe_out

    def retry_in(self) -> float:
        """Seconds until a probe may go (0 when calls may go now or a probe is due)."""
        if self.state is BreakerState.OPEN:
            return max(self.cool_down - (self._clock() - self._opened_at), 0.0)
        return 0.0

    def record(self, success: bool, key: str = "") -> None:
        """Record the outcome of a call that :meth:`allow` let through, made for delivery
        ``key`` (its message id: the retries of one message share it)."""
        state = self.state
        now = self._clock()
        latest = self._latest
        if latest is not None and latest[1] != key:
            self._latest_other = latest
        self._latest = (now, key, success)
        if state is BreakerState.HALF_OPEN:
            if success:
                self._forget_all()
                self._move(BreakerState.CLOSED)
            else:
                self._open(now)
            return
        if state is BreakerState.OPEN:
            # Late results of calls that started before the breaker opened change nothing.
            return
        self._outcomes.append((now, success))
        if success:
            self._streak = 0
        else:
            self._failures += 1
            self._streak += 1
        if self._outcomes[0][0] <= now - self.window:
            self._forget_before(now - self.window)
        if self._failures:
            calls = len(self._outcomes)
            in_a_row = min(self._streak, calls)
            if calls >= self.min_calls and (
                self._failures / calls >= self.failure_ratio or in_a_row >= self.min_calls
            ):
                self._open(now)

    def record_nothing(self) -> None:
        """A call :meth:`allow` let through reached no target (its event needed no effect, or
        broke its contract): it tells nothing, so in half-open the next call is the probe."""
        if self._state is BreakerState.HALF_OPEN:
            self._probe_out = False

    def others_failed(self, key: str) -> bool:
        """Did the latest call for a delivery other than ``key``, within the window, fail?"""
        latest = self._latest
        if latest is not None and latest[1] == key:
            latest = self._latest_other
        return latest is not None and latest[0] > self._clock() - self.window and not latest[2]

    @property
    def failure_rate(self) -> float:
        """Failures / calls within the window (0.0 with no calls): for metrics and logs."""
        self._forget_before(self._clock() - self.window)
        if not self._outcomes:
            return 0.0
        return self._failures / len(self._outcomes)

    def _forget_before(self, cutoff: float) -> None:
        while self._outcomes and self._outcomes[0][0] <= cutoff:
            _, ok = self._outcomes.popleft()
            if not ok:
                self._failures -= 1

    def _forget_all(self) -> None:
        self._outcomes.clear()
        self._failures = 0
        self._streak = 0

    def _open(self, now: float) -> None:
        self._opened_at = now
        self._forget_all()
        self._move(BreakerState.OPEN)

    def _move(self, new: BreakerState) -> None:
        old, self._state = self._state, new
        self._probe_out = False
        if old is not new and self._on_change is not None:
            self._on_change(old, new)

    def __repr__(self) -> str:
        return (
            f"<CircuitBreaker {self._state} failures {self.failure_rate:.0%} "
            f"over {self.window:g}s, cool-down {self.cool_down:g}s>"
        )
