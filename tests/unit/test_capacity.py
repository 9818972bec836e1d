"""The capacity model: docs/capacity.md's replica table and the manifests' scaling settings are
the same arithmetic over the same measured costs (topology/capacity.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.contract.test_docs_tables import tables
from topology import capacity
from topology.fleet import CLASSES, CONSUMERS, ConsumerPolicy, PriorityClass

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "capacity.md"
RATES = (1.0, 10.0, 100.0, 500.0)


def replica_rows() -> dict[str, list[str]]:
    """The 'Replicas and requests' table: process name -> its cells."""
    for table in tables(DOCUMENT.read_text(encoding="utf-8")):
        if table[0][:2] == ["process", "CPU/order"]:
            return {row[0]: row for row in table[1:]}
    raise AssertionError("docs/capacity.md has no '| process | CPU/order |' table")


def test_every_consumer_type_has_a_measured_cost() -> None:
    assert set(capacity.MEASURED) == {c.name for c in CONSUMERS}


@pytest.mark.parametrize("consumer", CONSUMERS, ids=lambda c: c.name)
def test_the_documented_replicas_and_requests_are_the_models(consumer: ConsumerPolicy) -> None:
    row = replica_rows()[consumer.name]
    computed = [
        f"{capacity.replicas_for(consumer, rate)} x {capacity.cpu_per_replica(consumer, rate)}m"
        for rate in RATES
    ]
    assert row[2:6] == computed, f"docs/capacity.md's {consumer.name} row: expected {computed}"
    assert row[1].startswith(f"{capacity.cost(consumer).cpu_per_order * 1000:.1f} ms")


@pytest.mark.parametrize("consumer", CONSUMERS, ids=lambda c: c.name)
def test_a_replica_working_through_its_prefetch_alone_is_not_a_reason_to_scale_out(
    consumer: ConsumerPolicy,
) -> None:
    # The management API counts unacknowledged messages: a target at or below the prefetch
    # would add a replica for every busy one.
    assert capacity.target_queue_length(consumer) > consumer.effective_prefetch


def test_the_queue_target_is_the_backlog_a_replica_clears_within_its_class_budget() -> None:
    stock = next(c for c in CONSUMERS if c.name == "stock")
    invoice = next(c for c in CONSUMERS if c.name == "invoice")
    # stock: 0.6 core / 3.6 ms = 166 deliveries/s, 25 ms of them is 4, on top of its prefetch 4
    assert capacity.target_queue_length(stock) == 4 + 4
    # invoice: 0.6 / 29.5 ms = 20/s, 100 ms of them is 2
    assert capacity.target_queue_length(invoice) == 4 + 2


def test_maximum_replicas_carry_the_design_peak_and_never_undercut_the_minimum() -> None:
    for consumer in CONSUMERS:
        top = capacity.max_replicas(consumer)
        assert top >= max(1, CLASSES[consumer.priority_class].min_replicas)
        busy = capacity.cost(consumer).cpu_per_order * capacity.DESIGN_PEAK_ORDERS / top
        assert busy <= capacity.BUSY_CORE, consumer.name


def test_a_type_nobody_measured_is_costed_as_a_typical_http_consumer() -> None:
    new = ConsumerPolicy("gift-wrap", ("order.paid",), PriorityClass.MEDIUM, 3, 30)
    assert capacity.cost(new) == capacity.UNMEASURED
    assert capacity.max_replicas(new) == 1
    assert capacity.memory_request(new) == CLASSES[PriorityClass.MEDIUM].memory_request
