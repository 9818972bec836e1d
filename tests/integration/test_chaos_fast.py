"""The chaos suite's fast subset: each scenario on real processes and the real broker, small.

The full sizes run from ``scripts/chaos``; here each scenario must meet the same criterion:
nothing lost, no duplicate effect, no dead letter caused by infrastructure, no channel closed by
the broker, no 5xx to the store.
"""

from __future__ import annotations

import pytest

from tests.chaos.scenarios import FAST, FAST_SUBSET, SCENARIOS

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.chaos]


@pytest.mark.timeout(420)
@pytest.mark.parametrize("scenario", FAST_SUBSET)
async def test_scenario_meets_its_criterion(scenario: str) -> None:
    figures = await SCENARIOS[scenario](FAST)
    assert figures.ok(), "\n".join([figures.line(), *figures.notes])
