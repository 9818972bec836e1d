"""The runtime when processes die or the broker goes away: kill -9 in the middle of a handler, a
message that crashes its consumer every time, SIGTERM during slow work, a broker restart."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aio_pika.abc import AbstractRobustConnection

from consumers.runtime import Delivery, HandlerSpec, Supervisor
from consumers.runtime.failure import CRASH_LIMIT
from consumers.runtime.handler import AnyEnvelope
from contracts.messages import ERROR_HEADER
from fleet.errors import TransientError
from fleet.settings import Settings
from tests.builders import order_event
from tests.support.amqp import apply, depth, drain, fast_fleet, publish, wait_until
from topology import names

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CONSUMER = "analytics"  # the consumer tests/support/consumer_process.py runs
SPEC = HandlerSpec()
WORK, DLQ = names.work_queue(CONSUMER), names.dead_letter_queue(CONSUMER)

Spawn = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def markers(tmp_path: Path) -> Path:
    directory = tmp_path / "markers"
    directory.mkdir()
    return directory


@pytest.fixture
def spawn(amqp_url: str, settings: Settings, markers: Path) -> Iterator[Spawn]:
    """Start tests/support/consumer_process.py; whatever is still running at the end is killed."""
    started: list[subprocess.Popen[bytes]] = []

    def start(mode: str, *options: str) -> subprocess.Popen[bytes]:
        log = (markers / f"consumer-{len(started) + 1}.log").open("wb")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.consumer_process",
                amqp_url,
                settings.state_url,
                mode,
                str(markers),
                *options,
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(5)


def read(marker: Path) -> str:
    return marker.read_text()


def attempts(markers: Path) -> int:
    return len(list(markers.glob("attempt-*")))


def logs(markers: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(markers.glob("consumer-*.log")))


async def exited(process: subprocess.Popen[bytes], timeout: float, markers: Path) -> int:
    try:
        await wait_until(lambda: process.poll() is not None, timeout=timeout)
    except AssertionError:
        raise AssertionError(f"consumer still running after {timeout}s:\n{logs(markers)}") from None
    return process.returncode


async def appears(path: Path, timeout: float = 15) -> str:
    try:
        await wait_until(path.exists, timeout=timeout)
    except AssertionError:
        raise AssertionError(f"{path.name} never appeared:\n{logs(path.parent)}") from None
    return read(path)


@pytest.mark.chaos
async def test_kill_9_during_a_handler_loses_nothing_and_a_restarted_consumer_handles_it(
    connection: AbstractRobustConnection, vhost: str, spawn: Spawn, markers: Path
) -> None:
    # Given an order waiting for a consumer process
    await apply(connection, fast_fleet(CONSUMER), vhost)
    await publish(connection, order_event("order.paid"))
    first = spawn("hang-once")
    await appears(markers / "started")
    # When the process is killed with SIGKILL in the middle of the handler
    os.kill(first.pid, signal.SIGKILL)
    assert await exited(first, 5, markers) == -signal.SIGKILL

    # Then the message is back in the queue, and a restarted consumer handles it
    async def requeued() -> bool:
        return await depth(connection, WORK) == 1

    await wait_until(requeued, timeout=5)
    second = spawn("hang-once")
    assert await appears(markers / "done") == "True"  # flagged redelivered by the broker
    second.send_signal(signal.SIGTERM)
    assert await exited(second, 10, markers) == 0
    assert await depth(connection, WORK) == 0
    assert await depth(connection, DLQ) == 0


@pytest.mark.chaos
async def test_a_message_that_crashes_its_consumer_every_time_is_dead_lettered_after_the_limit(
    connection: AbstractRobustConnection, vhost: str, spawn: Spawn, markers: Path
) -> None:
    # Given a message whose handler kills its own process
    fleet = fast_fleet(CONSUMER)
    await apply(connection, fleet, vhost)
    event = order_event("order.paid")
    await publish(connection, event)
    # When the consumer is restarted after each crash, as Kubernetes would do
    crashes = 0
    for _ in range(CRASH_LIMIT + 1):
        process = spawn("crash")

        async def crashed_or_dead_lettered(process: subprocess.Popen[bytes] = process) -> bool:
            return process.poll() is not None or await depth(connection, DLQ) == 1

        await wait_until(crashed_or_dead_lettered, timeout=15)
        if process.poll() is None:
            break
        assert process.returncode == -signal.SIGKILL, logs(markers)
        crashes += 1
    # Then it crashed its consumer as many times as the limit allows, no more, and went to the
    # DLQ without its handler running again
    assert crashes == CRASH_LIMIT
    assert attempts(markers) == CRASH_LIMIT
    process.send_signal(signal.SIGTERM)
    assert await exited(process, 10, markers) == 0
    [dead] = await drain(connection, DLQ)
    assert dead.message_id == str(event.event_id)
    error = str((dead.headers or {})[ERROR_HEADER])
    assert f"ConsumerCrashed: its handling was cut short {CRASH_LIMIT} times" in error
    assert await depth(connection, WORK) == 0


@pytest.mark.slow
async def test_sigterm_during_a_slow_handler_lets_it_finish_and_exits_0_within_the_grace(
    connection: AbstractRobustConnection, vhost: str, spawn: Spawn, markers: Path
) -> None:
    # Given a consumer process in the middle of a 1.5 s handler, with a 5 s grace period
    await apply(connection, fast_fleet(CONSUMER), vhost)
    await publish(connection, order_event("order.paid"))
    process = spawn("slow", "--grace", "5", "--handler-seconds", "1.5")
    await appears(markers / "started")
    # When it receives SIGTERM
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    # Then the handler completes, its message is acked, and the process exits 0 within the grace
    assert await exited(process, 10, markers) == 0, logs(markers)
    assert time.monotonic() - signalled < 5
    assert (markers / "done").exists()
    assert await depth(connection, WORK) == 0
    assert await depth(connection, DLQ) == 0


@pytest.mark.slow
async def test_sigterm_during_a_handler_slower_than_the_grace_requeues_its_message(
    connection: AbstractRobustConnection,
    vhost: str,
    settings: Settings,
    spawn: Spawn,
    markers: Path,
) -> None:
    # Given a consumer process in the middle of a handler far longer than its 1 s grace period
    fleet = fast_fleet(CONSUMER)
    await apply(connection, fleet, vhost)
    event = order_event("order.paid")
    await publish(connection, event)
    process = spawn("slow", "--grace", "1", "--handler-seconds", "60")
    await appears(markers / "started")
    # When it receives SIGTERM
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    # Then it gives up after the grace, says so, and exits
    assert await exited(process, 10, markers) == 1, logs(markers)
    assert 1 <= time.monotonic() - signalled < 5
    assert "still running after 1s; the broker requeues them" in logs(markers)
    assert not (markers / "done").exists()
    # and the message is back in its queue, delivered again to the next consumer
    assert await depth(connection, WORK) == 1
    again: list[Delivery] = []

    async def record(event: AnyEnvelope, delivery: Delivery) -> None:
        again.append(delivery)

    sup = Supervisor(
        [CONSUMER], settings, fleet=fleet, middleware=[], handlers={CONSUMER: (SPEC, record)}
    )
    await sup.start()
    try:
        await wait_until(lambda: sup.workers[CONSUMER].stats["handled"] == 1)
    finally:
        await sup.stop(5)
    [delivery] = again
    assert delivery.message_id == str(event.event_id)
    assert delivery.redelivered


async def restart_broker_app() -> str:
    """``rabbitmqctl stop_app`` then ``start_app``, as one shell command: even if this test is
    interrupted half-way, the broker is started again."""
    rabbitmqctl = shutil.which("rabbitmqctl")
    if rabbitmqctl is None:
        pytest.skip("rabbitmqctl is not installed here: cannot restart the broker")
    process = await asyncio.create_subprocess_exec(
        "sh",
        "-c",
        '"$0" stop_app; stopped=$?; "$0" start_app && exit $stopped',
        rabbitmqctl,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    return output.decode()


@pytest.mark.chaos
@pytest.mark.slow
@pytest.mark.timeout(45)
async def test_after_a_broker_restart_consumers_reconnect_and_retry_tiers_keep_their_messages(
    connection: AbstractRobustConnection, vhost: str, settings: Settings
) -> None:
    # Given a running consumer and a message waiting in a (quorum) retry tier of 6 s
    fleet = fast_fleet(CONSUMER, tiers=(6.0,))
    await apply(connection, fleet, vhost)
    tier = names.retry_queue(CONSUMER, 6.0)
    retried, fresh = (order_event("order.paid", unique=True) for _ in range(2))
    handled: list[str] = []

    async def fails_once(event: AnyEnvelope, delivery: Delivery) -> None:
        if event.event_id == retried.event_id and delivery.attempt == 1:
            raise TransientError("ERP answered 503")
        handled.append(str(event.event_id))

    sup = Supervisor(
        [CONSUMER], settings, fleet=fleet, middleware=[], handlers={CONSUMER: (SPEC, fails_once)}
    )
    await sup.start()
    assert sup.connection is not None
    reconnected: list[str] = []
    sup.connection.reconnect_callbacks.add(lambda *_: reconnected.append("consumer"))
    connection.reconnect_callbacks.add(lambda *_: reconnected.append("test"))
    try:
        await publish(connection, retried)
        await wait_until(lambda: sup.workers[CONSUMER].stats["retried"] == 1, timeout=5)
        assert await depth(connection, tier) == 1
        # When the broker's application is stopped and started again
        await restart_broker_app()
        await wait_until(lambda: {"consumer", "test"} <= set(reconnected), timeout=12)
        # Then an event published after the restart is handled
        await publish(connection, fresh)
        # and so is the message that was in the retry tier while the broker was down
        await wait_until(lambda: len(handled) == 2, timeout=10)
    finally:
        await sup.stop(5)
    assert sorted(handled) == sorted([str(retried.event_id), str(fresh.event_id)])
    assert sup.workers[CONSUMER].stats == {"retried": 1, "handled": 2}
