"""Fixtures shared by the integration tests of the HTTP-target consumers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.http_target_server import HttpTargetServer


@pytest.fixture(scope="module")
def running_server() -> Iterator[HttpTargetServer]:
    """One real HTTP target on loopback per test module (starting uvicorn costs a moment)."""
    with HttpTargetServer() as running:
        yield running


@pytest.fixture
def server(running_server: HttpTargetServer) -> HttpTargetServer:
    """The module's target, forgetting earlier requests and failure modes."""
    running_server.reset()
    return running_server
