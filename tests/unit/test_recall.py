"""Which tiers come back early, and what marks a probe taken early (consumers/runtime/recall.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from consumers.runtime.failure import failure_headers
from consumers.runtime.recall import probe_tier, recallable_tiers
from contracts.messages import OUTAGE_RETRIES_HEADER, PROBE_FROM_HEADER
from topology.fleet import DEFAULT_FLEET


def test_only_outage_tiers_come_back_shortest_first() -> None:
    erp = DEFAULT_FLEET.consumer("erp-sync")
    assert recallable_tiers(erp) == (30, 120, 600, 1800, 3600)
    # A delay the ladder uses too holds retries of the message itself: they wait their turn.
    shared = replace(erp, retry_tiers=(1, 30), outage_tiers=(3600, 30))
    assert recallable_tiers(shared) == (3600,)
    assert recallable_tiers(replace(erp, outage_tiers=())) == ()


@pytest.mark.parametrize(
    ("value", "expected"),
    [(600.0, 600.0), (30, 30.0), (None, None), (0, None), (-5, None), (True, None), ("600", None)],
)
def test_a_probe_is_known_by_a_positive_number_of_seconds(
    value: object, expected: float | None
) -> None:
    headers = {} if value is None else {PROBE_FROM_HEADER: value}
    assert probe_tier(headers) == expected


def test_the_probe_mark_holds_for_one_delivery_only() -> None:
    # Whatever becomes of the probe (retried, dead-lettered), its copy is no probe any more.
    headers = failure_headers(
        {PROBE_FROM_HEADER: 600.0, OUTAGE_RETRIES_HEADER: 2},
        consumer="crm",
        attempt=1,
        error="TransientError: down",
    )
    assert PROBE_FROM_HEADER not in headers
    assert headers[OUTAGE_RETRIES_HEADER] == 2
