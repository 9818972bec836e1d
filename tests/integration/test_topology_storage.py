"""The storage policy takes effect on the real broker, and leaves the DLQ limits in force."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aio_pika.abc import AbstractRobustConnection

from tests.support.amqp import apply, fast_fleet, wait_until
from topology import names
from topology.apply import broker_is_3_10_or_newer
from topology.fleet import MAX_PRIORITY, build_topology
from topology.management import Management
from topology.model import Policy


async def test_apply_puts_classic_queues_on_lazy_storage_format_2_and_keeps_dlq_limits(
    connection: AbstractRobustConnection, vhost: str, management: Management
) -> None:
    if not broker_is_3_10_or_newer(connection):
        return  # older brokers get no queue-version; test_topology covers that rendering
    # Given the fleet's topology applied with its policies
    fleet = fast_fleet("stock", "analytics")
    await apply(connection, fleet, vhost)
    topology = build_topology(fleet)

    def effective(name: str) -> dict[str, Any]:
        return (management.queue(vhost, name) or {}).get("effective_policy_definition") or {}

    def settled() -> bool:
        return all(
            effective(q.name).get("queue-version") == 2
            for q in topology.queues
            if q.type == "classic"
        ) and all(
            effective(names.dead_letter_queue(c)).get("max-length") for c in ("stock", "analytics")
        )

    # Then the broker reports lazy format 2 on every classic queue
    await wait_until(settled, timeout=15, interval=0.5)
    for queue in topology.queues:
        if queue.type == "classic":
            assert effective(queue.name)["queue-mode"] == "lazy", queue.name
    # and the (quorum) DLQs still have their length limit in force
    assert effective(names.dead_letter_queue("stock"))["overflow"] == "reject-publish"
    # and a work queue really stores in it: a priority queue sums the "version" of its
    # per-level backing queues (one per level, 0..MAX_PRIORITY); format 1 would give half.
    work = management.queue(vhost, names.work_queue("stock")) or {}
    assert work["backing_queue_status"]["version"] == 2 * (MAX_PRIORITY + 1)


async def test_a_policy_the_broker_refuses_is_a_warning_and_the_others_are_still_set(
    connection: AbstractRobustConnection, vhost: str, management: Management
) -> None:
    # Given a fleet with an extra policy carrying a key no RabbitMQ knows
    refused = Policy("refused-one", "^nothing$", "queues", (("no-such-key", 1),), priority=9)
    fleet = replace(fast_fleet("stock"), extra_policies=(refused,))
    # When the topology is applied
    report = await apply(connection, fleet, vhost)
    # Then the report names the refused policy and why, and every other policy is set
    [warning] = report.warnings
    assert "refused-one" in warning and "400" in warning
    wanted = {p.name for p in build_topology(fleet).policies} - {"refused-one"}
    assert set(report.policies) == wanted
    assert {p["name"] for p in management.policies(vhost)} == wanted
