"""Real-broker fixtures: a throw-away virtual host per test, self-cleaning, named after the test.

Without a broker the integration tests skip locally and fail on CI (CI=true), so a broken CI
set-up can never pass by running nothing.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aio_pika.abc import AbstractRobustConnection

from fleet.amqp import connect
from fleet.settings import Settings
from topology.management import Management

AMQP_HOST, AMQP_PORT = "127.0.0.1", 5672
MANAGEMENT_URL = "http://guest:guest@127.0.0.1:15672"


def _broker_answers() -> bool:
    try:
        socket.create_connection((AMQP_HOST, AMQP_PORT), timeout=2).close()
    except OSError:
        return False
    return True


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No WOOFLEET_* or SENTRY_DSN from the developer's shell leaks into a test."""
    for key in list(os.environ):
        if key.startswith("WOOFLEET_") or key == "SENTRY_DSN":
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def management() -> Iterator[Management]:
    if not _broker_answers():
        message = f"no RabbitMQ at {AMQP_HOST}:{AMQP_PORT}; run scripts/broker-up"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with Management(MANAGEMENT_URL) as client:
        yield client


@pytest.fixture
def vhost(management: Management, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh virtual host for one test, deleted (with everything in it) afterwards."""
    name = f"test-{request.node.name[:40]}-{uuid.uuid4().hex[:8]}"
    management.create_vhost(name)
    try:
        yield name
    finally:
        management.delete_vhost(name)


@pytest.fixture
def amqp_url(vhost: str) -> str:
    from topology.management import q

    return f"amqp://guest:guest@{AMQP_HOST}:{AMQP_PORT}/{q(vhost)}"


@pytest.fixture
def settings(tmp_path: Path, amqp_url: str) -> Settings:
    """Settings for one test: its own vhost, its own state database and var directory."""
    return Settings(
        amqp_url=amqp_url,
        management_url=MANAGEMENT_URL,
        state_url=f"sqlite:///{tmp_path}/state.db",
        invoice_store=f"file://{tmp_path}/invoices",
        var_dir=tmp_path / "var",
        targets={},
    )


@pytest.fixture
def cli_env(amqp_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for a ``woofleet`` subprocess: this test's vhost, state and var directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WOOFLEET_")}
    env.update(
        WOOFLEET_AMQP_URL=amqp_url,
        WOOFLEET_MANAGEMENT_URL=MANAGEMENT_URL,
        WOOFLEET_STATE_URL=f"sqlite:///{tmp_path}/state.db",
        WOOFLEET_VAR_DIR=str(tmp_path / "var"),
        WOOFLEET_INVOICE_STORE=f"file://{tmp_path}/invoices",
    )
    return env


@pytest.fixture
async def connection(
    settings: Settings, request: pytest.FixtureRequest
) -> AsyncIterator[AbstractRobustConnection]:
    conn = await connect(settings, name=request.node.nodeid)
    try:
        yield conn
    finally:
        await conn.close()
