"""Per-target request outcomes and latency, measured against a real HTTP server on loopback."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from consumers.adapters.http_target import HttpTargetClient
from fleet.errors import PermanentError, TransientError
from tests.support.http_target_server import HttpTargetServer
from tests.support.net import free_port


def outcomes(target: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "woofleet_target_requests_total", {"target": target, "outcome": outcome}
    )
    return value or 0.0


async def test_each_request_counts_its_outcome_and_latency(server: HttpTargetServer) -> None:
    # Given a target that answers 200, then 503, then 422
    client = HttpTargetClient("metrics_target", server.url)
    server.answer(200, {"ok": True})
    server.answer(503, {"error": "busy"})
    server.answer(422, {"error": "bad"})
    try:
        # When the consumer sends three requests
        await client.send("POST", "/a", idempotency_key="k1", json={})
        with pytest.raises(TransientError):
            await client.send("POST", "/a", idempotency_key="k2", json={})
        with pytest.raises(PermanentError):
            await client.send("POST", "/a", idempotency_key="k3", json={})
    finally:
        await client.aclose()
    # Then each outcome is counted under the target's name, and every request timed
    assert outcomes("metrics_target", "ok") == 1
    assert outcomes("metrics_target", "transient") == 1
    assert outcomes("metrics_target", "rejected") == 1
    count = REGISTRY.get_sample_value(
        "woofleet_target_request_seconds_count", {"target": "metrics_target"}
    )
    assert count == 3


async def test_an_unreachable_target_counts_as_unreachable() -> None:
    client = HttpTargetClient("metrics_gone", f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(TransientError):
            await client.send("GET", "/", idempotency_key="k")
    finally:
        await client.aclose()
    assert outcomes("metrics_gone", "unreachable") == 1
