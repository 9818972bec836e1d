"""The storage policy takes effect on the real broker: every queue gets format 2."""

from __future__ import annotations

from typing import Any

from aio_pika.abc import AbstractRobustConnection

from fleet.management import Management
from tests.support.amqp import apply, fast_fleet, wait_until
from topology import names
from topology.apply import broker_is_3_10_or_newer
from topology.fleet import MAX_PRIORITY, build_topology


async def test_apply_puts_every_queue_on_storage_format_2(
    connection: AbstractRobustConnection, vhost: str, management: Management
) -> None:
    if not broker_is_3_10_or_newer(connection):
        return  # older brokers get no queue-version; test_topology covers that rendering
    # Given the fleet's topology applied with its policies
    fleet = fast_fleet("stock", "analytics")
    await apply(connection, fleet, vhost)
    queues = [q.name for q in build_topology(fleet).queues]

    def effective(name: str) -> dict[str, Any]:
        return (management.queue(vhost, name) or {}).get("effective_policy_definition") or {}

    # Then the broker reports format 2 as the effective setting of every queue, DLQs included
    # (their length-limit policy outranks the storage one and repeats it)
    await wait_until(
        lambda: all(effective(n).get("queue-version") == 2 for n in queues),
        timeout=15,
        interval=0.5,
    )
    assert effective(names.dead_letter_queue("stock"))["max-length"] > 0
    # and a work queue really stores in it: a priority queue sums the "version" of its
    # per-level backing queues (one per level, 0..MAX_PRIORITY); format 1 would give half.
    work = management.queue(vhost, names.work_queue("stock")) or {}
    assert work["backing_queue_status"]["version"] == 2 * (MAX_PRIORITY + 1)
