"""The ``woofleet`` command as an operator uses it, against the real broker."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection

from tests.builders import order_event
from tests.support.amqp import apply, depth, fast_fleet
from tests.support.net import free_port
from topology import names
from topology.fleet import CONSUMER_NAMES, build_topology

pytestmark = pytest.mark.integration


def woofleet(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "woofleet.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_topology_apply_twice_reports_nothing_new(cli_env: dict[str, str]) -> None:
    topology = build_topology()
    declared = len(topology.exchanges) + len(topology.queues)  # 55 for the default table
    first = woofleet("topology", "apply", env=cli_env)
    assert first.returncode == 0, first.stderr
    assert f"{declared} created, 0 unchanged" in first.stdout
    second = woofleet("topology", "apply", env=cli_env)
    assert f"0 created, {declared} unchanged" in second.stdout


def test_missing_broker_is_one_line_not_a_traceback(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "WOOFLEET_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}/"}
    result = woofleet("topology", "apply", env=env)
    assert result.returncode == 3  # a dependency that does not answer
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert "RabbitMQ is not answering" in result.stderr and "WOOFLEET_AMQP_URL" in result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ("consume", "emails"),
        ("consume", "stock", "emails"),
        ("dlq", "list", "emails"),
        ("dlq", "show", "emails"),
        ("dlq", "replay", "emails"),
        ("dlq", "purge", "emails", "--yes"),
    ],
)
def test_every_verb_answers_an_unknown_consumer_with_one_line_and_exit_code_2(
    cli_env: dict[str, str], argv: tuple[str, ...]
) -> None:
    result = woofleet(*argv, env=cli_env)
    assert result.returncode == 2
    assert result.stderr == (
        f"woofleet: unknown consumer 'emails'; valid consumers: {', '.join(CONSUMER_NAMES)}\n"
    )


def test_consume_serves_health_and_drains_on_sigterm(cli_env: dict[str, str]) -> None:
    assert woofleet("topology", "apply", env=cli_env).returncode == 0
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "woofleet.main",
            "consume",
            "analytics",
            "crm",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        ready = None
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        assert ready is not None and ready.status_code == 200, "consumer never became ready"
        assert ready.json()["consuming"] == {"analytics": True, "crm": True}
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert "woofleet_consumer_messages_total" in metrics
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert "stopping: no new deliveries" in stderr


async def test_dlq_list_show_replay_and_purge(
    connection: AbstractRobustConnection, vhost: str, cli_env: dict[str, str]
) -> None:
    # Given two dead letters in woo.analytics.dlq (bodies that break the contract)
    await apply(connection, fast_fleet("analytics"), vhost)
    async with connection.channel(publisher_confirms=True) as channel:
        import aio_pika

        dlx = await channel.get_exchange(names.dead_letter_exchange("analytics"), ensure=False)
        for n in range(2):
            event = order_event("order.paid", unique=True)
            await dlx.publish(
                aio_pika.Message(
                    b'{"broken": %d}' % n,
                    message_id=str(event.event_id),
                    type="order.paid",
                    headers={
                        "woofleet-attempt": 1,
                        "woofleet-error": "ContractError: body lacks event_type",
                    },
                ),
                names.dead_letter_queue("analytics"),
            )
    listed = woofleet("dlq", "list", "analytics", env=cli_env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("ContractError: body lacks event_type") == 2
    shown = woofleet("dlq", "show", "analytics", "--limit", "1", env=cli_env)
    assert '"broken": 0' in shown.stdout
    # listing and showing took nothing away
    assert await depth(connection, names.dead_letter_queue("analytics")) == 2
    replayed = woofleet("dlq", "replay", "analytics", "--limit", "1", env=cli_env)
    assert "replayed 1 dead letter to woo.analytics" in replayed.stdout
    assert await depth(connection, names.work_queue("analytics")) == 1
    refused = woofleet("dlq", "purge", "analytics", env=cli_env)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    purged = woofleet("dlq", "purge", "analytics", "--yes", env=cli_env)
    assert "purged 1 dead letter(s)" in purged.stdout
    assert await depth(connection, names.dead_letter_queue("analytics")) == 0
