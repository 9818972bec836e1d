"""Start-up refuses what cannot work, in one line, through the real ``woofleet`` command:
exit 2 for a setting to fix, 3 for a dependency that does not answer, never a traceback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fleet.settings import Settings
from publisher.webhook import WebhookApp
from tests.integration.test_cli import woofleet
from tests.support.net import free_port

pytestmark = pytest.mark.integration


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("WOOFLEET_ENVIRONMENT", "prod", "'development' or 'production'"),
        ("WOOFLEET_LOG_LEVEL", "LOUD", "'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'"),
        ("WOOFLEET_LOG_FORMAT", "xml", "'text' or 'json'"),
    ],
)
def test_an_unknown_value_of_an_enumerated_setting_is_refused_naming_the_allowed_ones(
    cli_env: dict[str, str], variable: str, value: str, allowed: str
) -> None:
    result = woofleet("ingress", "list", env={**cli_env, variable: value})
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert variable in line and allowed in line and repr(value) in line


def test_enumerated_settings_ignore_case(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "WOOFLEET_LOG_LEVEL": "debug", "WOOFLEET_ENVIRONMENT": "Development"}
    assert woofleet("ingress", "list", env=env).returncode == 0


def test_the_webhook_without_a_secret_refuses_to_start_in_production(
    cli_env: dict[str, str], postgres_url: str
) -> None:
    env = {**cli_env, "WOOFLEET_ENVIRONMENT": "production", "WOOFLEET_STATE_URL": postgres_url}
    result = woofleet("webhook", "--port", str(free_port()), env=env, timeout=20)
    assert result.returncode == 2
    assert "WOOFLEET_WEBHOOK_SECRET" in one_line(result.stderr)


async def test_the_webhook_without_a_secret_is_not_ready_in_development(
    settings: Settings,
) -> None:
    app = WebhookApp(settings)
    await app.start()
    try:
        transport = httpx.ASGITransport(app=app.asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://w") as client:
            ready = await client.get("/readyz")
    finally:
        await app.stop()
    assert ready.status_code == 503
    assert "WOOFLEET_WEBHOOK_SECRET" in ready.json()["reason"]


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


def test_a_port_in_use_is_one_line_naming_the_port(
    cli_env: dict[str, str], taken_port: int
) -> None:
    env = {**cli_env, "WOOFLEET_WEBHOOK_SECRET": "s"}
    result = woofleet("webhook", "--port", str(taken_port), env=env, timeout=20)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert f"127.0.0.1:{taken_port} is already in use" in line and "--port" in line


@pytest.mark.parametrize(
    "verb", [("topology", "apply"), ("status",), ("dlq", "list", "stock")], ids=" ".join
)
def test_a_missing_vhost_is_one_line_naming_the_setting(
    cli_env: dict[str, str], verb: tuple[str, ...]
) -> None:
    url = cli_env["WOOFLEET_AMQP_URL"].rsplit("/", 1)[0] + "/no-such-vhost-here"
    result = woofleet(*verb, env={**cli_env, "WOOFLEET_AMQP_URL": url})
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert "no-such-vhost-here" in line and "WOOFLEET_AMQP_URL" in line


def test_a_consumer_on_a_missing_vhost_is_one_line(cli_env: dict[str, str]) -> None:
    url = cli_env["WOOFLEET_AMQP_URL"].rsplit("/", 1)[0] + "/no-such-vhost-here"
    result = woofleet("consume", "stock", env={**cli_env, "WOOFLEET_AMQP_URL": url})
    assert result.returncode == 2, result.stderr
    assert "WOOFLEET_AMQP_URL" in one_line(result.stderr)


def test_refused_credentials_are_a_setting_to_fix(cli_env: dict[str, str]) -> None:
    url = cli_env["WOOFLEET_AMQP_URL"].replace("guest:guest@", "guest:wrong@")
    result = woofleet("topology", "apply", env={**cli_env, "WOOFLEET_AMQP_URL": url})
    assert result.returncode == 2
    assert "WOOFLEET_AMQP_URL" in one_line(result.stderr)


def test_an_unreachable_state_store_is_exit_3(cli_env: dict[str, str]) -> None:
    env = {
        **cli_env,
        "WOOFLEET_WEBHOOK_SECRET": "s",
        "WOOFLEET_STATE_URL": f"postgresql://woofleet@127.0.0.1:{free_port()}/woofleet",
    }
    for verb in (("webhook", "--port", str(free_port())), ("ingress", "list")):
        result = woofleet(*verb, env=env, timeout=20)
        assert result.returncode == 3, (verb, result.stderr)
        assert "WOOFLEET_STATE_URL" in one_line(result.stderr)


def test_a_state_store_refusing_the_user_is_exit_2(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "WOOFLEET_STATE_URL": "postgresql://no_such_role@127.0.0.1:5432/test"}
    result = woofleet("ingress", "list", env=env, timeout=20)
    assert result.returncode == 2
    assert "WOOFLEET_STATE_URL" in one_line(result.stderr)


@pytest.mark.parametrize(
    ("state_url", "code"),
    [
        ("postgresql://no_such_role@127.0.0.1:5432/no_such_db", 2),
        (f"postgresql://woofleet@127.0.0.1:{free_port()}/woofleet", 3),
    ],
    ids=["refused", "unreachable"],
)
def test_a_consumer_whose_state_store_cannot_work_does_not_start(
    cli_env: dict[str, str], state_url: str, code: int
) -> None:
    # It started, answered /readyz 200 and requeued every delivery in a hot loop.
    result = woofleet("consume", "stock", env={**cli_env, "WOOFLEET_STATE_URL": state_url})
    assert result.returncode == code, result.stderr
    assert "WOOFLEET_STATE_URL" in one_line(result.stderr)


def test_an_unwritable_sqlite_store_is_one_line(cli_env: dict[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    env = {**cli_env, "WOOFLEET_STATE_URL": f"sqlite:///{blocker}/state.db"}
    result = woofleet("ingress", "list", env=env)
    assert result.returncode == 2
    assert "WOOFLEET_STATE_URL" in one_line(result.stderr)


def test_an_unreachable_management_api_is_exit_3(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "WOOFLEET_MANAGEMENT_URL": f"http://guest:guest@127.0.0.1:{free_port()}"}
    result = woofleet("status", env=env)
    assert result.returncode == 3
    assert "WOOFLEET_MANAGEMENT_URL" in one_line(result.stderr)
