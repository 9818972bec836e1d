"""``woofleet dlq`` as an on-call operator uses it, against the real broker.

Browsing never changes a dead-letter queue; filters are shared by list, show, replay and purge;
replay and purge act on exactly what the same filters list.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import boto3
import pytest
from aio_pika.abc import AbstractRobustConnection

from contracts.messages import message_body, message_properties
from tests.builders import order_event
from tests.integration.test_cli import woofleet
from tests.support.amqp import apply, depth, drain, fast_fleet
from tests.support.moto_server import fake_aws_credentials, moto_server
from topology import names
from topology.fleet import CONSUMER_NAMES

pytestmark = pytest.mark.integration

HOST_REASON = (
    "TransientError: crm POST /contacts: cannot reach https://crm.internal.example:8443/api/v2 "
    "(ConnectError: [Errno 111] Connection refused) after 2 attempts with the breaker closed; "
    "host crm-backend-7.eu-west-1.internal.example"
)


async def seed(
    connection: AbstractRobustConnection,
    consumer: str,
    letters: list[dict[str, Any]],
) -> list[str]:
    """Dead letters as the runtime writes them; returns their message ids in queue order."""
    ids = []
    async with connection.channel(publisher_confirms=True) as channel:
        dlx = await channel.get_exchange(names.dead_letter_exchange(consumer), ensure=False)
        for spec in letters:
            event = order_event(
                spec.get("event", "order.paid"),
                unique=True,
                id=spec.get("order", 1000),
                number=str(spec.get("order", 1000)),
            )
            failed = datetime.now(UTC) - timedelta(seconds=spec.get("age", 0))
            props = message_properties(event)
            props["headers"] = {
                **props.get("headers", {}),
                "woofleet-attempt": 2,
                "woofleet-error": spec.get("reason", "PermanentError: 422 from target"),
                "woofleet-first-failed-at": failed.isoformat(timespec="milliseconds"),
                "woofleet-last-failed-at": failed.isoformat(timespec="milliseconds"),
                "woofleet-consumer": consumer,
            }
            await dlx.publish(
                aio_pika.Message(message_body(event), **props), names.dead_letter_queue(consumer)
            )
            ids.append(str(event.event_id))
    return ids


def ids_listed(stdout: str) -> list[str]:
    return [line.split()[0] for line in stdout.splitlines() if line.startswith("  ")]


async def test_browsing_changes_neither_order_nor_delivery_counts(
    connection: AbstractRobustConnection, vhost: str, cli_env: dict[str, str]
) -> None:
    # Given six dead letters for crm
    await apply(connection, fast_fleet("crm", "erp-sync"), vhost)
    seeded = await seed(connection, "crm", [{"order": 2000 + n} for n in range(6)])
    # When an operator lists three times, shows once, and lists a prefix twice
    for _ in range(3):
        assert woofleet("dlq", "list", "crm", env=cli_env).returncode == 0
    assert woofleet("dlq", "show", "crm", "--limit", "2", env=cli_env).returncode == 0
    first = woofleet("dlq", "list", "crm", "--limit", "3", env=cli_env)
    second = woofleet("dlq", "list", "crm", "--limit", "3", env=cli_env)
    # Then the queue is as it was: same order, no delivery counted
    left = await drain(connection, names.dead_letter_queue("crm"))
    assert [m.message_id for m in left] == seeded
    assert [(m.headers or {}).get("x-delivery-count") for m in left] == [None] * 6
    # and both prefixes were the same first three
    assert ids_listed(first.stdout) == ids_listed(second.stdout) == seeded[:3]


async def test_replay_limit_one_replays_the_first_listed(
    connection: AbstractRobustConnection, vhost: str, cli_env: dict[str, str]
) -> None:
    await apply(connection, fast_fleet("erp-sync"), vhost)
    seeded = await seed(connection, "erp-sync", [{"order": 3000 + n} for n in range(4)])
    # the operator browses a prefix first (which used to reorder the queue)
    woofleet("dlq", "list", "erp-sync", "--limit", "2", env=cli_env)
    listed = ids_listed(woofleet("dlq", "list", "erp-sync", "--limit", "3", env=cli_env).stdout)
    replayed = woofleet("dlq", "replay", "erp-sync", "--limit", "1", env=cli_env)
    assert replayed.returncode == 0, replayed.stderr
    [back] = await drain(connection, names.work_queue("erp-sync"))
    assert back.message_id == listed[0] == seeded[0]
    # the replayed copy is a first attempt again
    assert "woofleet-attempt" not in (back.headers or {})
    assert await depth(connection, names.dead_letter_queue("erp-sync")) == 3


@pytest.mark.parametrize("verb", ["show", "replay", "purge"])
async def test_an_id_that_does_not_exist_is_an_error(
    connection: AbstractRobustConnection, vhost: str, cli_env: dict[str, str], verb: str
) -> None:
    await apply(connection, fast_fleet("crm"), vhost)
    await seed(connection, "crm", [{}])
    extra = ["--yes"] if verb == "purge" else []
    result = woofleet("dlq", verb, "crm", "--id", "does-not-exist", *extra, env=cli_env)
    assert result.returncode == 1
    assert "no dead letter does-not-exist in woo.crm.dlq" in result.stderr
    assert await depth(connection, names.dead_letter_queue("crm")) == 1


async def test_reasons_are_shown_whole(
    connection: AbstractRobustConnection, vhost: str, cli_env: dict[str, str]
) -> None:
    await apply(connection, fast_fleet("crm"), vhost)
    await seed(connection, "crm", [{"reason": HOST_REASON}])
    assert HOST_REASON in woofleet("dlq", "list", "crm", env=cli_env).stdout
    shown = json.loads(woofleet("dlq", "show", "crm", env=cli_env).stdout)
    assert shown["reason"] == HOST_REASON


async def test_list_without_a_consumer_covers_every_queue_with_totals_and_groups_reasons(
    connection: AbstractRobustConnection, vhost: str, cli_env: dict[str, str]
) -> None:
    await apply(connection, fast_fleet(), vhost)
    await seed(connection, "crm", [{"reason": HOST_REASON}, {"reason": HOST_REASON}])
    await seed(connection, "invoice", [{"reason": "ContractError: body lacks data"}])
    listed = woofleet("dlq", "list", env=cli_env)
    assert listed.returncode == 0, listed.stderr
    assert "woo.crm.dlq: 2 dead letters" in listed.stdout
    assert "woo.invoice.dlq: 1 dead letter" in listed.stdout
    assert f"total: 3 dead letters in 2 of {len(CONSUMER_NAMES)} queues" in listed.stdout
    grouped = woofleet("dlq", "list", "--by-reason", env=cli_env).stdout
    assert f"2  crm  {HOST_REASON}" in grouped
    assert "1  invoice  ContractError: body lacks data" in grouped


async def test_filters_select_the_same_letters_for_list_replay_and_dry_run(
    connection: AbstractRobustConnection, vhost: str, cli_env: dict[str, str]
) -> None:
    # Given letters that differ in reason, event type, order and age
    await apply(connection, fast_fleet("erp-sync"), vhost)
    seeded = await seed(
        connection,
        "erp-sync",
        [
            {"order": 11, "reason": "TransientError: ERP down", "age": 7200},
            {"order": 12, "reason": "PermanentError: 422 bad SKU", "event": "order.completed"},
            {"order": 13, "reason": "TransientError: ERP down", "age": 60},
            {"order": 14, "reason": "TransientError: ERP down", "event": "order.refunded"},
        ],
    )

    def listed(*filters: str) -> list[str]:
        return ids_listed(woofleet("dlq", "list", "erp-sync", *filters, env=cli_env).stdout)

    assert listed("--reason", "erp DOWN") == [seeded[0], seeded[2], seeded[3]]
    assert listed("--event", "order.completed") == [seeded[1]]
    assert listed("--order", "13") == [seeded[2]]
    assert listed("--older-than", "1h") == [seeded[0]]
    assert listed("--newer-than", "5m", "--reason", "down") == [seeded[2], seeded[3]]
    # A dry run names what would go and sends nothing
    dry = woofleet("dlq", "replay", "erp-sync", "--reason", "down", "--dry-run", env=cli_env)
    assert dry.returncode == 0, dry.stderr
    assert ids_listed(dry.stdout) == [seeded[0], seeded[2], seeded[3]]
    assert await depth(connection, names.work_queue("erp-sync")) == 0
    # When replayed with the same filters (rate-limited), exactly those go back, in order
    replay = woofleet("dlq", "replay", "erp-sync", "--reason", "down", "--rate", "20", env=cli_env)
    assert replay.returncode == 0, replay.stderr
    assert "replayed 3 dead letters to woo.erp-sync" in replay.stdout
    back = await drain(connection, names.work_queue("erp-sync"))
    assert [m.message_id for m in back] == [seeded[0], seeded[2], seeded[3]]
    assert listed() == [seeded[1]]


async def test_purge_asks_first_and_archives_before_deleting(
    connection: AbstractRobustConnection, vhost: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    await apply(connection, fast_fleet("crm"), vhost)
    seeded = await seed(connection, "crm", [{"reason": "A"}, {"reason": "B"}, {"reason": "A"}])
    archive = tmp_path / "crm-purged.jsonl"
    # Without --yes and without a terminal to ask on, nothing is deleted
    refused = woofleet("dlq", "purge", "crm", "--archive", str(archive), env=cli_env)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert await depth(connection, names.dead_letter_queue("crm")) == 3 and not archive.exists()
    # With --yes, the letters the filter selects are archived, then deleted
    purged = woofleet(
        "dlq", "purge", "crm", "--reason", "A", "--archive", str(archive), "--yes", env=cli_env
    )
    assert purged.returncode == 0, purged.stderr
    assert "purged 2 dead letter(s) from woo.crm.dlq" in purged.stdout
    lines = [json.loads(line) for line in archive.read_text().splitlines()]
    assert [line["message_id"] for line in lines] == [seeded[0], seeded[2]]
    assert lines[0]["body"]["data"]["id"] == 1000 and lines[0]["reason"] == "A"
    left = await drain(connection, names.dead_letter_queue("crm"))
    assert [m.message_id for m in left] == [seeded[1]]


async def test_purge_archives_to_s3(
    connection: AbstractRobustConnection,
    vhost: str,
    cli_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await apply(connection, fast_fleet("crm"), vhost)
    seeded = await seed(connection, "crm", [{}, {}])
    fake_aws_credentials(monkeypatch)
    with moto_server() as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(
            Bucket="dlq-archive", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        env = {**cli_env, **_aws_env(), "WOOFLEET_S3_ENDPOINT_URL": endpoint}
        target = "s3://dlq-archive/crm/purge.jsonl"
        purged = woofleet("dlq", "purge", "crm", "--archive", target, "--yes", env=env)
        assert purged.returncode == 0, purged.stderr
        body = s3.get_object(Bucket="dlq-archive", Key="crm/purge.jsonl")["Body"].read()
    assert [json.loads(line)["message_id"] for line in body.splitlines()] == seeded
    assert await depth(connection, names.dead_letter_queue("crm")) == 0


def _aws_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
