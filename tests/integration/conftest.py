"""Fixtures shared by integration tests: a PostgreSQL schema, the HTTP-target server, a started
webhook app with a client on it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from aio_pika.abc import AbstractRobustConnection

from fleet.settings import Settings
from tests.integration.test_webhook import Harness, open_harness
from tests.support.http_target_server import HttpTargetServer

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL to the local PostgreSQL whose search_path is a fresh schema, dropped afterwards."""
    schema = f"pub_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        pytest.skip(f"no PostgreSQL at {POSTGRES}")
    admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES}?options=-csearch_path%3D{schema}"
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


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


@pytest.fixture
async def harness(
    settings: Settings, connection: AbstractRobustConnection
) -> AsyncIterator[Harness]:
    """A started webhook app (SQLite store), a client on it, and every event it publishes."""
    async with open_harness(settings, connection) as opened:
        yield opened
