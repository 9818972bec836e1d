"""`woofleet simulate` against a real `woofleet webhook` app on uvicorn on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from fleet.errors import ConfigError
from fleet.settings import Settings
from publisher.simulate.runner import SimulationPlan, deliveries, require_loopback
from publisher.webhook import WebhookApp
from tests.integration.test_webhook import webhook_settings
from woofleet.main import main

pytestmark = pytest.mark.integration


@pytest.fixture
def webhook_url(settings: Settings) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = WebhookApp(webhook_settings(settings))
    server = uvicorn.Server(uvicorn.Config(app.asgi, log_level="warning", log_config=None))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/webhooks/woocommerce"
    server.should_exit = True
    thread.join(10)
    sock.close()


def test_simulate_sends_signed_orders_that_are_all_accepted(
    webhook_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WOOFLEET_WEBHOOK_SECRET", "bench-secret")
    code = main(
        [
            "simulate",
            "--orders",
            "12",
            "--rate",
            "200",
            "--url",
            webhook_url,
            "--first-order-id",
            "5000",
        ]
    )
    out = capsys.readouterr().out
    # Exit code 0: every delivery got a 2xx (the command exits 1 on any refusal).
    assert code == 0, out
    assert "accepted (2xx)" in out and "latency p99" in out and "200: " in out


def test_simulated_orders_are_varied_and_woocommerce_encoded() -> None:
    items = list(deliveries(SimulationPlan(orders=60, rate=1, secret=b"s", seed=3)))
    bodies = b"".join(d.body for d in items)
    assert b"\\/" in bodies and b"\\u0e" in bodies  # escaped slashes, Thai as \u0eXX
    assert b'"status":"refunded"' in bodies and b'"status":"cancelled"' in bodies
    assert b"Express" in bodies and b"_vip_customer" in bodies and b'"coupon_lines":[{' in bodies
    assert {d.topic for d in items} == {"order.created", "order.updated"}
    assert all(d.body.isascii() for d in items)


def test_simulate_refuses_remote_addresses_by_default() -> None:
    require_loopback("http://127.0.0.1:8080/webhooks/woocommerce")
    require_loopback("http://localhost:8080/webhooks/woocommerce")
    with pytest.raises(ConfigError, match="--allow-remote"):
        require_loopback("https://shop.example/webhooks/woocommerce")
