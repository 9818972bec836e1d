"""The chaos harness cleans up after itself, even when a fleet fails to start.

A fleet left running by a failed start once slowed every test after it until the suite ran out
of time, and its HTTP target's thread kept the test run from exiting.
"""

from __future__ import annotations

import threading

import pytest

from tests.chaos.harness import ChaosFleet
from topology.management import Management

pytestmark = [pytest.mark.integration]


class NeverReady(ChaosFleet):
    async def wait_ready(self, timeout: float = 60.0) -> None:
        raise RuntimeError("not ready (on purpose)")


async def test_a_fleet_that_fails_to_start_leaves_no_process_thread_or_vhost(
    management: Management,
) -> None:
    fleet = NeverReady(consumers=["analytics"])
    with pytest.raises(RuntimeError, match="on purpose"):
        async with fleet:
            pytest.fail("a fleet that is not ready must not be entered")
    started = fleet.all_processes()
    assert set(started) == {"analytics", "webhook"}
    assert all(p.poll() is not None for p in started.values())
    assert f"http-target-{fleet.target.port}" not in {t.name for t in threading.enumerate()}
    assert fleet.vhost not in {v["name"] for v in management.get("/vhosts")}
