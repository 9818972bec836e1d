"""The runtime's metrics as Prometheus scrapes them."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import REGISTRY

from consumers.runtime.handler import Delivery
from consumers.runtime.observe import MetricsMiddleware
from consumers.runtime.outcome import Outcome
from tests.builders import order_event

EVENT = order_event()


def delivery(consumer: str, message_id: str) -> Delivery:
    return Delivery(
        consumer=consumer,
        message_id=message_id,
        attempt=1,
        priority=0,
        redelivered=False,
        business_key=message_id,
        log=logging.LoggerAdapter(logging.getLogger("test"), {}),
    )


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_outcomes_handler_seconds_in_flight_and_dead_letters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("consumers.runtime.observe.time.perf_counter", lambda: clock[0])
    metrics = MetricsMiddleware()
    consumer = "metrics-test"
    for i, (seconds, outcome) in enumerate(
        [(0.005, Outcome.HANDLED), (0.3, Outcome.HANDLED), (500, Outcome.DEAD)]
    ):
        d = delivery(consumer, f"m{i}")
        await metrics.before_handle(EVENT, d)
        clock[0] += seconds
        await metrics.after_handle(EVENT, d, None)
        await metrics.before_ack(d, outcome)
    await metrics.on_dead_letter(consumer, "m2", "ValueError: no", {})
    await metrics.before_handle(EVENT, delivery(consumer, "m3"))

    assert sample("woofleet_consumer_messages_total", consumer=consumer, outcome="handled") == 2
    assert sample("woofleet_consumer_messages_total", consumer=consumer, outcome="dead") == 1
    # A bucket counts what is <= its bound: 5 ms falls in le="0.005".
    assert sample("woofleet_handler_seconds_bucket", consumer=consumer, le="0.005") == 1
    assert sample("woofleet_handler_seconds_bucket", consumer=consumer, le="0.25") == 1
    assert sample("woofleet_handler_seconds_bucket", consumer=consumer, le="0.5") == 2
    assert sample("woofleet_handler_seconds_bucket", consumer=consumer, le="300.0") == 2
    assert sample("woofleet_handler_seconds_bucket", consumer=consumer, le="+Inf") == 3
    assert sample("woofleet_handler_seconds_count", consumer=consumer) == 3
    assert sample("woofleet_handler_seconds_sum", consumer=consumer) == pytest.approx(500.305)
    assert sample("woofleet_consumer_in_flight", consumer=consumer) == 1
    assert sample("woofleet_dead_letters_total", consumer=consumer) == 1
