"""The rendered definitions JSON is what the real broker imports, and what ``apply`` declares."""

from __future__ import annotations

from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection

from tests.support.amqp import apply
from topology import names
from topology.apply import broker_is_3_10_or_newer
from topology.export import definitions
from topology.fleet import CONSUMERS, DEFAULT_FLEET, build_topology
from topology.management import Management, q

pytestmark = pytest.mark.integration


def import_definitions(management: Management, vhost: str, body: dict[str, Any]) -> None:
    response = management.request("POST", f"/definitions/{q(vhost)}", json=body)
    assert response.status_code in (200, 201, 204), response.text


def test_the_broker_imports_the_definitions_with_every_queue_argument(
    management: Management, vhost: str
) -> None:
    # Given the default fleet rendered for a fresh vhost
    rendered = definitions(DEFAULT_FLEET, vhost=vhost, quorum=True)
    # When the management API imports it
    import_definitions(management, vhost, rendered)
    # Then every queue exists with exactly the arguments topology/ declares
    queues = {queue["name"]: queue for queue in management.queues(vhost)}
    topology = build_topology(DEFAULT_FLEET, quorum=True)
    assert set(queues) == {queue.name for queue in topology.queues}
    for queue in topology.queues:
        assert queues[queue.name]["arguments"] == queue.args(), queue.name
        assert queues[queue.name]["durable"] is True
        assert queues[queue.name]["type"] == queue.type, queue.name
    for consumer in CONSUMERS:
        work = management.queue(vhost, names.work_queue(consumer.name))
        assert work is not None
        assert work["arguments"] == {"x-max-priority": 5}
    # and the bindings and DLQ policies are in place
    bindings = {
        (b["source"], b["destination"], b["routing_key"])
        for b in management.get(f"/bindings/{q(vhost)}")
        if b["source"]  # the default exchange's implicit bindings have no source name
    }
    assert bindings == {(b.exchange, b.queue, b.routing_key) for b in topology.bindings}
    assert {p["name"] for p in management.policies(vhost)} == {p.name for p in topology.policies}


async def test_apply_over_imported_definitions_creates_nothing(
    management: Management, vhost: str, connection: AbstractRobustConnection
) -> None:
    # Given a vhost whose topology came from the definitions import, rendered for this broker
    quorum = broker_is_3_10_or_newer(connection)
    import_definitions(management, vhost, definitions(DEFAULT_FLEET, vhost=vhost, quorum=quorum))
    # When `topology apply` runs over it
    report = await apply(connection, DEFAULT_FLEET, vhost)
    # Then it finds everything in place: no precondition failures, nothing created
    assert report.created == []
    topology = build_topology(DEFAULT_FLEET, quorum=quorum, storage_v2=quorum)
    assert len(report.unchanged) == len(topology.exchanges) + len(topology.queues)
    assert report.warnings == []
    assert "0 created" in report.summary()
