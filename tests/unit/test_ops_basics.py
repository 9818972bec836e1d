"""What operators expect of every woofleet command and log line."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

import pytest

from consumers.runtime.observe import MetricsMiddleware
from fleet.logging import RedactingFormatter
from tests.unit.test_runtime_metrics import delivery, sample
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
    await metrics.before_handle(None, first)  # type: ignore[arg-type]
    await metrics.before_handle(None, second)  # type: ignore[arg-type]
    await metrics.after_handle(None, first, None)  # type: ignore[arg-type]
    await metrics.after_handle(None, second, None)  # type: ignore[arg-type]
    # Then each consumer's handler timing counts its own delivery
    assert sample("woofleet_handler_seconds_count", consumer="timing-a") == 1
    assert sample("woofleet_handler_seconds_count", consumer="timing-b") == 1
