"""The circuit breaker's state machine, driven by a hand-moved clock (no sleeps)."""

from __future__ import annotations

import pytest

from consumers.runtime.breaker import BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def breaker(clock: Clock, **options: float) -> CircuitBreaker:
    settings: dict[str, float] = {
        "window": 60,
        "failure_ratio": 0.5,
        "min_calls": 4,
        "cool_down": 30,
    }
    settings.update(options)
    return CircuitBreaker(
        window=settings["window"],
        failure_ratio=settings["failure_ratio"],
        min_calls=int(settings["min_calls"]),
        cool_down=settings["cool_down"],
        clock=clock,
    )


def state(b: CircuitBreaker) -> BreakerState:
    # A call, not attribute access, so the type checker does not narrow it between steps.
    return b.state


def record(b: CircuitBreaker, *outcomes: bool) -> None:
    for ok in outcomes:
        b.record(ok)


def test_a_new_breaker_is_closed_and_allows_calls(clock: Clock) -> None:
    b = breaker(clock)
    assert state(b) is BreakerState.CLOSED
    assert b.allow() and b.allow()
    assert b.retry_in() == 0.0 and b.failure_rate == 0.0


def test_failures_below_min_calls_do_not_open_it(clock: Clock) -> None:
    b = breaker(clock)
    record(b, False, False, False)
    assert state(b) is BreakerState.CLOSED and b.allow()


def test_it_opens_when_the_failure_ratio_is_reached_with_enough_calls(clock: Clock) -> None:
    b = breaker(clock)
    record(b, True, True, False)
    assert state(b) is BreakerState.CLOSED
    b.record(False)  # 2 of 4 failed = 0.5
    assert state(b) is BreakerState.OPEN
    assert not b.allow()
    assert b.retry_in() == 30.0


def test_a_ratio_below_the_threshold_keeps_it_closed(clock: Clock) -> None:
    b = breaker(clock, failure_ratio=0.75)
    record(b, True, False, False, True, False, True)
    assert state(b) is BreakerState.CLOSED


def test_outcomes_older_than_the_window_no_longer_count(clock: Clock) -> None:
    b = breaker(clock)
    record(b, False, False, False)
    clock.advance(61)
    b.record(False)  # the three old failures have aged out: 1 call in the window
    assert state(b) is BreakerState.CLOSED
    assert b.failure_rate == 1.0
    record(b, True, True)
    assert b.failure_rate == pytest.approx(1 / 3)


def test_after_the_cool_down_it_is_half_open_and_lets_exactly_one_probe_through(
    clock: Clock,
) -> None:
    b = breaker(clock)
    record(b, False, False, False, False)
    clock.advance(29.9)
    assert state(b) is BreakerState.OPEN and not b.allow()
    assert b.retry_in() == pytest.approx(0.1)
    clock.advance(0.1)
    assert state(b) is BreakerState.HALF_OPEN
    assert b.retry_in() == 0.0
    assert b.allow() is True
    assert b.allow() is False  # the probe is still out


def test_a_successful_probe_closes_it_with_a_clean_window(clock: Clock) -> None:
    b = breaker(clock)
    record(b, False, False, False, False)
    clock.advance(30)
    assert b.allow()
    b.record(True)
    assert state(b) is BreakerState.CLOSED
    assert b.failure_rate == 0.0
    # A single failure after closing does not reopen: the old failures were forgotten.
    b.record(False)
    assert state(b) is BreakerState.CLOSED


def test_a_probe_that_reached_no_target_tells_nothing_and_the_next_call_probes(
    clock: Clock,
) -> None:
    b = breaker(clock)
    record(b, False, False, False, False)
    clock.advance(30)
    assert b.allow()
    # The probe's event needed no effect (a guest order earns no points): still half-open
    b.record_nothing()
    assert state(b) is BreakerState.HALF_OPEN
    # and the next call is the probe
    assert b.allow() is True
    assert b.allow() is False
    b.record(True)
    assert state(b) is BreakerState.CLOSED
    # Closed, such a call changes nothing either.
    record(b, False, False, False)
    b.record_nothing()
    assert state(b) is BreakerState.CLOSED and b.failure_rate == 1.0


def test_a_failed_probe_reopens_it_for_a_full_cool_down(clock: Clock) -> None:
    b = breaker(clock)
    record(b, False, False, False, False)
    clock.advance(45)
    assert b.allow()
    b.record(False)
    assert state(b) is BreakerState.OPEN
    assert b.retry_in() == 30.0
    clock.advance(30)
    assert state(b) is BreakerState.HALF_OPEN and b.allow()


def test_late_results_while_open_change_nothing(clock: Clock) -> None:
    b = breaker(clock)
    record(b, False, False, False, False)
    clock.advance(10)
    record(b, True, True, False)  # calls that started before it opened
    assert state(b) is BreakerState.OPEN
    assert b.retry_in() == 20.0


def test_listeners_hear_every_transition_once(clock: Clock) -> None:
    changes: list[tuple[str, str]] = []
    b = CircuitBreaker(
        window=60,
        failure_ratio=1.0,
        min_calls=2,
        cool_down=5,
        clock=clock,
        on_change=lambda old, new: changes.append((old.value, new.value)),
    )
    record(b, False, False)
    clock.advance(5)
    assert b.allow()
    b.record(False)
    clock.advance(5)
    assert b.allow()
    b.record(True)
    assert changes == [
        ("closed", "open"),
        ("open", "half-open"),
        ("half-open", "open"),
        ("open", "half-open"),
        ("half-open", "closed"),
    ]


def test_a_zero_cool_down_goes_half_open_at_once(clock: Clock) -> None:
    b = breaker(clock, cool_down=0, min_calls=1, failure_ratio=1.0)
    b.record(False)
    assert state(b) is BreakerState.HALF_OPEN
    assert b.allow() and not b.allow()


@pytest.mark.parametrize(
    "options",
    [
        {"window": 0},
        {"failure_ratio": 0},
        {"failure_ratio": 1.5},
        {"min_calls": 0},
        {"cool_down": -1},
    ],
)
def test_nonsense_settings_are_refused(clock: Clock, options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        breaker(clock, **options)


def test_repr_is_readable(clock: Clock) -> None:
    b = breaker(clock)
    record(b, True, False)
    assert repr(b) == "<CircuitBreaker closed failures 50% over 60s, cool-down 30s>"


def test_consecutive_failures_open_it_whatever_the_window_held_before(clock: Clock) -> None:
    # A busy consumer's window is full of successes when its target goes down: waiting for
    # half of it to fail would take most of a window.
    b = breaker(clock, min_calls=4)
    record(b, *([True] * 20), False, False, False)
    assert state(b) is BreakerState.CLOSED
    b.record(False)
    assert state(b) is BreakerState.OPEN


def test_the_latest_other_delivery_says_whether_the_target_fails(clock: Clock) -> None:
    b = breaker(clock, min_calls=10)
    assert b.others_failed("m1") is False  # nothing to tell by
    b.record(True, "m1")
    b.record(False, "m2")
    # m2's failure while the target answered m1: m2's own
    assert b.others_failed("m2") is False
    assert b.others_failed("m1") is True
    b.record(False, "m3")
    assert b.others_failed("m2") is True  # m3 fails too: the target's
    b.record(False, "m3")  # m3 again: still the latest other delivery for m2, m1 for m3's
    assert b.others_failed("m3") is True and b.others_failed("m2") is True
    clock.advance(61)
    assert b.others_failed("m2") is False  # outside the window it tells nothing
