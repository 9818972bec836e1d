"""What operators expect of every woofleet command and log line."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

import pytest

from consumers.runtime.observe import MetricsMiddleware
from fleet.logging import RedactingFormatter
from tests.unit.test_runtime_metrics import EVENT, delivery, sample
from woofleet.main import main


def test_json_log_time_is_rfc3339_utc_with_milliseconds() -> None:
    # Given a record made at a known instant
    record = logging.LogRecord("woofleet", logging.INFO, __file__, 1, "hello", None, None)
    record.created = datetime(2026, 12, 4, 21, 20, 49, 123456, tzinfo=UTC).timestamp()
    record.msecs = 123.456
    # When it is written as a JSON line
    payload = json.loads(RedactingFormatter(json_lines=True).format(record))
    # Then its time names the zone and keeps milliseconds
    assert payload["time"] == "2026-12-04T21:20:49.123Z"


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert re.fullmatch(r"woofleet \d+\.\d+\.\d+\S*\n", capsys.readouterr().out)


async def test_handler_timing_counts_each_consumer_when_they_share_a_message() -> None:
    # Given one metrics middleware in a process running two consumers that receive the same event
    metrics = MetricsMiddleware()
    first, second = delivery("timing-a", "same-id"), delivery("timing-b", "same-id")
    # When both handle it at the same time
    await metrics.before_handle(EVENT, first)
    await metrics.before_handle(EVENT, second)
    await metrics.after_handle(EVENT, first, None)
    await metrics.after_handle(EVENT, second, None)
    # Then each consumer's handler timing counts its own delivery
    assert sample("woofleet_handler_seconds_count", consumer="timing-a") == 1
    assert sample("woofleet_handler_seconds_count", consumer="timing-b") == 1


def test_breaker_state_is_a_gauge_read_when_scraped() -> None:
    from consumers.runtime.breaker import CircuitBreaker
    from consumers.runtime.observe import watch_breaker

    # Given a consumer's breaker that opens after two failures, and a clock we move
    now = [0.0]
    breaker = CircuitBreaker(60, 0.5, 2, 30, clock=lambda: now[0])
    watch_breaker("breaker-gauge", lambda: breaker.state)
    assert sample("woofleet_breaker_state", consumer="breaker-gauge") == 0
    # When its target fails, then the cool-down passes
    breaker.record(False)
    breaker.record(False)
    assert sample("woofleet_breaker_state", consumer="breaker-gauge") == 2
    now[0] = 31.0
    # Then the scrape reads the state at that moment: half-open
    assert sample("woofleet_breaker_state", consumer="breaker-gauge") == 1


def test_requeues_and_runtime_failures_are_counted_per_consumer() -> None:
    from consumers.runtime.observe import count_requeue, count_runtime_failure

    count_requeue("counted")
    count_requeue("counted")
    count_runtime_failure("counted")
    assert sample("woofleet_consumer_requeues_total", consumer="counted") == 2
    assert sample("woofleet_consumer_runtime_failures_total", consumer="counted") == 1


async def test_wait_is_counted_from_the_event_less_a_delayed_consumers_delay() -> None:
    from datetime import UTC, datetime, timedelta

    from tests.builders import order_event

    metrics = MetricsMiddleware()
    # Given an event from 45 s ago, and one review-request gets 7 days and 45 s after its event
    recent = order_event(unique=True).model_copy(
        update={"occurred_at": datetime.now(UTC) - timedelta(seconds=45)}
    )
    delayed = recent.model_copy(
        update={"occurred_at": datetime.now(UTC) - timedelta(days=7, seconds=45)}
    )

    def buckets(consumer: str) -> tuple[float, float]:
        """(≤ 30 s, ≤ 60 s) so far: other tests in this process may have counted some."""
        return tuple(  # type: ignore[return-value]
            sample("woofleet_consumer_wait_seconds_bucket", consumer=consumer, le=le) or 0.0
            for le in ("30.0", "60.0")
        )

    before = {c: buckets(c) for c in ("wait-test", "review-request")}
    await metrics.before_handle(recent, delivery("wait-test", "w1"))
    await metrics.before_handle(delayed, delivery("review-request", "w2"))
    # Then each waited 45 s: over the high class's 30 s target, under a minute
    for consumer, (at_30, at_60) in before.items():
        assert buckets(consumer) == (at_30, at_60 + 1)
