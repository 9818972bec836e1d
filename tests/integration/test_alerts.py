"""``woofleet alerts`` against the real broker, a loopback server answering as Slack does, and
real /metrics text: one message when an alert fires, one when it resolves."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection
from pydantic import SecretStr

from fleet.alert_state import AlertState, Change
from fleet.alerts import FleetAlerts
from fleet.notify import JsonWebhookNotifier, Notifier, NotifyError, SlackNotifier
from fleet.settings import Settings
from tests.support.amqp import apply
from tests.support.http_target_server import Answer, HttpTargetServer, Recorded
from tests.support.net import free_port
from tests.support.woo_server import WooServer, WooStore
from topology.fleet import DEFAULT_FLEET, FleetSpec
from topology.management import Management, q
from woofleet.alerts import store_webhook_check

pytestmark = pytest.mark.integration

SLACK_PATH = "/services/T000/B000/XXXXXXXX"
FLEET: FleetSpec = DEFAULT_FLEET.only("stock", "crm")


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as http:
        yield http


def answering(text: str, status: int = 200) -> Callable[[Recorded], Answer]:
    """A route answering every request with this text, as /metrics or Slack do."""
    return lambda _: Answer(status, text=text)


def slack(server: HttpTargetServer, client: httpx.Client) -> SlackNotifier:
    return SlackNotifier(server.url + SLACK_PATH, client)


def posts(server: HttpTargetServer, path: str = SLACK_PATH) -> list[Recorded]:
    return [r for r in server.requests if r.method == "POST" and r.path == path]


def fill(management: Management, vhost: str, queue: str, count: int, age: float = 0) -> None:
    """Put ``count`` messages in ``queue`` and wait until the management API counts them."""
    for _ in range(count):
        management.request(
            "POST",
            f"/exchanges/{q(vhost)}/amq.default/publish",
            json={
                "properties": {"timestamp": int(time.time() - age), "delivery_mode": 2},
                "routing_key": queue,
                "payload": "{}",
                "payload_encoding": "string",
            },
        ).raise_for_status()
    settle(management, vhost, queue, count)


def settle(management: Management, vhost: str, queue: str, count: int) -> None:
    # The management API refreshes queue figures every few seconds.
    def counted() -> bool:
        return (management.queue(vhost, queue) or {}).get("messages") == count

    deadline = time.monotonic() + 20
    while not counted():
        assert time.monotonic() < deadline, f"{queue} never showed {count} messages"
        time.sleep(0.2)


async def declare(connection: AbstractRobustConnection, vhost: str) -> None:
    await apply(connection, FLEET, vhost)


def alerts_for(settings: Settings, vhost: str, *notifiers: Notifier, **kw: object) -> FleetAlerts:
    return FleetAlerts(settings, FLEET, vhost, list(notifiers), **kw)  # type: ignore[arg-type]


async def test_dead_letters_reach_slack_once_and_their_resolution_once(
    connection: AbstractRobustConnection,
    vhost: str,
    settings: Settings,
    management: Management,
    server: HttpTargetServer,
    client: httpx.Client,
) -> None:
    # Given crm's DLQ above its threshold on the real broker, and a Slack webhook that was
    # removed (404 no_service) the first time it is called
    await declare(connection, vhost)
    fill(management, vhost, "woo.crm.dlq", 11)
    alerts = alerts_for(
        settings, vhost, slack(server, client), JsonWebhookNotifier(server.url + "/hook", client)
    )
    state = AlertState()
    server.answer(404, text="no_service")

    # When it is evaluated: Slack refuses, the JSON webhook takes it
    first = alerts.evaluate(state)

    # Then one clear line about Slack, and the alert counts as said (the JSON webhook has it)
    assert first.errors == [
        "Slack refused the alert (404 no_service): the incoming webhook was removed or "
        "disabled; create a new one in Slack and set WOOFLEET_SLACK_WEBHOOK_URL"
    ]
    (hook,) = posts(server, "/hook")
    (alert,) = hook.json["alerts"]
    assert (alert["status"], alert["key"]) == ("firing", "dlq:crm")
    assert alert["title"] == "crm: 11 dead letters (threshold 10)"
    assert alert["command"] == "woofleet dlq list crm"

    # When it is evaluated again, still 11 dead letters: nothing more is sent
    server.reset()
    assert alerts.evaluate(state).changes == []
    assert server.requests == []

    # When the DLQ is emptied (replayed), one resolved message arrives at both
    management.request("DELETE", f"/queues/{q(vhost)}/woo.crm.dlq/contents").raise_for_status()
    settle(management, vhost, "woo.crm.dlq", 0)
    server.answer(200, text="ok")
    resolved = alerts.evaluate(state)
    assert [c.kind for c in resolved.changes] == ["resolved"] and resolved.errors == []
    (message,) = posts(server)
    assert message.json["text"] == (
        "RESOLVED: crm: 11 dead letters (threshold 10) — woofleet dlq list crm"
    )
    assert [b["type"] for b in message.json["blocks"]] == ["header", "section", "context"]
    assert alerts.evaluate(state).changes == [] and state.tracked == {}


async def test_a_message_slack_refused_is_sent_again_next_time_and_only_then(
    connection: AbstractRobustConnection,
    vhost: str,
    settings: Settings,
    management: Management,
    server: HttpTargetServer,
    client: httpx.Client,
) -> None:
    await declare(connection, vhost)
    fill(management, vhost, "woo.stock.dlq", 12)
    alerts = alerts_for(settings, vhost, slack(server, client))
    state = AlertState()

    server.answer(404, text="no_service")
    assert len(alerts.evaluate(state).errors) == 1
    server.answer(200, text="ok")
    again = alerts.evaluate(state)
    server.answer(200, text="ok")
    third = alerts.evaluate(state)

    assert [c.kind for c in again.changes] == ["firing"] and again.errors == []
    assert third.changes == []
    sent = posts(server)
    assert len(sent) == 2  # the refused one, then the accepted one; no third
    blocks = sent[1].json["blocks"]
    assert blocks[0]["text"]["text"] == "FIRING: stock: 12 dead letters (threshold 10)"
    assert "`woofleet dlq list stock`" in blocks[1]["text"]["text"]


def test_slack_rate_limiting_is_waited_out_as_retry_after_says(
    server: HttpTargetServer, client: httpx.Client
) -> None:
    # Given Slack answering 429 with Retry-After: 1 once
    server.answer(429, text="rate_limited", headers={"Retry-After": "1"})
    server.answer(200, text="ok")

    # When one message is sent
    started = time.monotonic()
    slack(server, client).send([firing()], "ctx")

    # Then it is posted again after the wait, and accepted
    assert time.monotonic() - started >= 1.0
    assert len(posts(server)) == 2


def test_slack_rate_limiting_that_does_not_end_is_one_error(
    server: HttpTargetServer, client: httpx.Client
) -> None:
    server.answer(429, text="rate_limited", headers={"Retry-After": "0"}, times=5)
    with pytest.raises(NotifyError, match="keeps answering 429"):
        slack(server, client).send([firing()], "ctx")
    assert len(posts(server)) == 3


def test_an_unreachable_slack_is_one_line_without_the_webhook_secret(
    client: httpx.Client,
) -> None:
    notifier = SlackNotifier(f"http://127.0.0.1:{free_port()}{SLACK_PATH}", client)
    with pytest.raises(NotifyError) as raised:
        notifier.send([firing()], "ctx")
    assert "did not answer" in str(raised.value) and "XXXXXXXX" not in str(raised.value)


def firing() -> Change:
    from fleet.alert_rules import Finding

    finding = Finding("dlq:crm", "crm: 11 dead letters", "woofleet dlq list crm", "management")
    return Change("firing", finding, since=time.time() - 60, at=time.time())


async def test_a_queue_nobody_consumes_is_late_against_its_class_target(
    connection: AbstractRobustConnection,
    vhost: str,
    settings: Settings,
    management: Management,
    server: HttpTargetServer,
    client: httpx.Client,
) -> None:
    # Given three orders waiting in stock's work queue (class high, target 30 s), no consumer
    await declare(connection, vhost)
    fill(management, vhost, "woo.stock", 3, age=5)
    now = [time.time()]
    alerts = alerts_for(settings, vhost, slack(server, client), clock=lambda: now[0])
    state = AlertState()

    # When evaluated now and 40 s later
    alerts.evaluate(state)
    now[0] += 40
    alerts.evaluate(state)

    # Then stock's lateness was announced once, with the class target and the missing consumer
    (message,) = posts(server)
    text = message.json["blocks"][1]["text"]["text"]
    assert "stock: oldest message waiting" in text and "(high target 30 s)" in text
    assert "3 ready in woo.stock, 0 consumers; nothing is consuming it" in text


def test_an_open_breaker_and_a_silent_process_are_announced_after_their_hold(
    vhost: str, settings: Settings, server: HttpTargetServer, client: httpx.Client
) -> None:
    # Given a consumer's /metrics saying crm's breaker is open, and a process that is down
    metrics = HttpTargetServer().start()
    try:
        metrics.route = answering(
            '# TYPE woofleet_breaker_state gauge\nwoofleet_breaker_state{consumer="crm"} 2.0\n'
        )
        dead = f"http://127.0.0.1:{free_port()}/metrics"
        configured = settings.model_copy(update={"metrics_urls": [metrics.url + "/metrics", dead]})
        now = [time.time()]
        alerts = alerts_for(configured, vhost, slack(server, client), clock=lambda: now[0])
        state = AlertState()

        # When evaluated at once, after 61 s and after 181 s
        first = alerts.evaluate(state)
        now[0] += 61
        second = alerts.evaluate(state)
        now[0] += 120
        third = alerts.evaluate(state)
    finally:
        metrics.stop()

    # Then nothing at first; the silent process after a minute; the breaker after 3 minutes
    assert first.changes == []
    assert [c.finding.key for c in second.changes] == [f"scrape:{dead}"]
    assert [c.finding.key for c in third.changes] == ["breaker:crm"]
    assert third.changes[0].since == now[0] - 181


def test_a_disabled_store_webhook_is_an_alert_with_its_fix(
    vhost: str, settings: Settings, server: HttpTargetServer, client: httpx.Client
) -> None:
    store = WooStore(permission="read")
    base = "https://hooks.shop.example/webhooks/woocommerce"
    store.webhooks = {
        1: {"id": 1, "name": "created", "status": "active", "topic": "order.created"},
        2: {"id": 2, "name": "updated", "status": "disabled", "topic": "order.updated"},
    }
    for hook in store.webhooks.values():
        hook["delivery_url"] = base
    with WooServer(store) as woo:
        configured = settings.model_copy(
            update={
                "woo_url": woo.url,
                "woo_key": SecretStr(store.key),
                "woo_secret": SecretStr(store.secret),
            }
        )
        alerts = alerts_for(
            configured,
            vhost,
            slack(server, client),
            webhook_check=store_webhook_check(configured),
        )
        evaluation = alerts.evaluate(AlertState())
    keys = sorted(c.finding.key for c in evaluation.changes)
    assert keys == ["webhook:2", "webhook:topics"]
    (message,) = posts(server)
    assert "store webhook 2 'updated' (order.updated) is disabled" in message.json["text"]
    assert "re-enable it" in json.dumps(message.json["blocks"])


# --- the command -------------------------------------------------------------------------------


def woofleet(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "woofleet.main", "alerts", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_alerts_once_from_cron_announces_once_across_runs(
    cli_env: dict[str, str], tmp_path: Path, server: HttpTargetServer
) -> None:
    # Given an ingress whose /metrics says 3 signed deliveries were kept unprocessed
    metrics = HttpTargetServer().start()
    metrics.route = answering("woofleet_ingress_kept_deliveries 3.0\n")
    state_file = tmp_path / "alerts-state.json"
    env = {
        **cli_env,
        "WOOFLEET_SLACK_WEBHOOK_URL": server.url + SLACK_PATH,
        "WOOFLEET_METRICS_URLS": metrics.url + "/metrics",
        "WOOFLEET_ALERT_STATE_FILE": str(state_file),
        "WOOFLEET_ALERT_RESOLVE_SECONDS": "0",
    }
    try:
        # When `woofleet alerts --once` runs twice, as cron would
        first = woofleet("--once", env=env)
        second = woofleet("--once", env=env)
        # and once more after the deliveries were replayed
        metrics.route = answering("woofleet_ingress_kept_deliveries 0.0\n")
        third = woofleet("--once", env=env)
    finally:
        metrics.stop()

    # Then one firing message, nothing on the second run, one resolved message
    assert first.returncode == 0, first.stderr
    assert first.stdout == "firing: 3 signed deliveries kept unprocessed\n"
    assert second.returncode == 0 and second.stdout == ""
    assert third.stdout == "resolved: 3 signed deliveries kept unprocessed\n"
    texts = [r.json["text"] for r in posts(server)]
    assert texts == [
        "FIRING: 3 signed deliveries kept unprocessed — woofleet ingress list",
        "RESOLVED: 3 signed deliveries kept unprocessed — woofleet ingress list",
    ]
    assert state_file.exists()


def test_alerts_with_a_removed_slack_webhook_exits_1_with_one_line(
    cli_env: dict[str, str], server: HttpTargetServer
) -> None:
    metrics = HttpTargetServer().start()
    metrics.route = answering("woofleet_ingress_kept_deliveries 1.0\n")
    server.route = answering("no_service", 404)
    env = {
        **cli_env,
        "WOOFLEET_SLACK_WEBHOOK_URL": server.url + SLACK_PATH,
        "WOOFLEET_METRICS_URLS": metrics.url + "/metrics",
    }
    try:
        result = woofleet("--once", env=env)
    finally:
        metrics.stop()
    assert result.returncode == 1
    assert result.stderr == (
        "woofleet alerts: Slack refused the alert (404 no_service): the incoming webhook was "
        "removed or disabled; create a new one in Slack and set WOOFLEET_SLACK_WEBHOOK_URL\n"
    )


def test_alerts_without_anywhere_to_send_says_what_to_set(cli_env: dict[str, str]) -> None:
    result = woofleet("--once", env=cli_env)
    assert result.returncode == 2
    assert "set WOOFLEET_SLACK_WEBHOOK_URL" in result.stderr
    assert result.stderr.count("\n") == 1


async def test_declared_fleet_is_quiet(
    connection: AbstractRobustConnection,
    vhost: str,
    settings: Settings,
    server: HttpTargetServer,
    client: httpx.Client,
) -> None:
    # A healthy fleet (queues declared, all empty) sends nothing at all
    await declare(connection, vhost)
    evaluation = alerts_for(settings, vhost, slack(server, client)).evaluate(AlertState())
    assert evaluation.findings == [] and server.requests == []


def test_a_refusing_json_webhook_is_one_line_naming_its_host_not_its_path(
    server: HttpTargetServer, client: httpx.Client
) -> None:
    server.answer(500, text="boom")
    notifier = JsonWebhookNotifier(server.url + "/hooks/secret-token", client)
    with pytest.raises(NotifyError) as raised:
        notifier.send([firing()], "ctx")
    message = str(raised.value)
    assert "answered 500 'boom'" in message and "WOOFLEET_ALERT_WEBHOOK_URL" in message
    assert "127.0.0.1" in message and "secret-token" not in message
