"""Declare a topology on a live broker, idempotently, with errors that say how to fix a mismatch."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import aio_pika
import aiormq.exceptions
import httpx
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from topology.errors import BrokerUnavailable, TopologyError
from topology.fleet import DEFAULT_FLEET, FleetSpec, build_topology
from topology.management import Management
from topology.model import Exchange, Queue, Topology

log = logging.getLogger(__name__)


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    bindings: int = 0
    policies: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (
            f"{len(self.created)} created, {len(self.unchanged)} unchanged, "
            f"{self.bindings} bindings ensured, {len(self.policies)} policies set"
        )
        return text + "".join(f"\nwarning: {w}" for w in self.warnings)


def vhost_of(amqp_url: str) -> str:
    """The virtual host an AMQP URL names (``/`` when the path is empty)."""
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def broker_is_3_10_or_newer(connection: AbstractRobustConnection) -> bool:
    """At-least-once dead lettering from quorum queues and classic queue storage format 2
    both arrived in RabbitMQ 3.10."""
    underlay = connection.transport
    props = getattr(underlay.connection if underlay else None, "server_properties", {}) or {}
    raw = props.get("version", b"0")
    version = raw.decode() if isinstance(raw, bytes) else str(raw)
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (3, 10)


async def _exists(connection: AbstractRobustConnection, kind: str, name: str) -> bool:
    # A passive declare of a missing entity closes its channel: use a throw-away channel.
    channel = await connection.channel(publisher_confirms=False)
    try:
        if kind == "queue":
            await channel.declare_queue(name, passive=True)
        else:
            await channel.get_exchange(name, ensure=True)
        return True
    except aiormq.exceptions.ChannelNotFoundEntity:
        return False
    finally:
        if not channel.is_closed:
            await channel.close()


def _mismatch(kind: str, name: str, wanted: object, reason: str, vhost: str) -> TopologyError:
    delete = (
        f"rabbitmqctl delete_queue {name} -p {vhost}"
        if kind == "queue"
        else f'rabbitmqctl eval \'rabbit_exchange:delete(rabbit_misc:r(<<"{vhost}">>, exchange, '
        f'<<"{name}">>), false, <<"woofleet">>).\''
    )
    return TopologyError(
        f"{kind} {name} exists with different arguments than topology/ declares "
        f"(broker says: {reason}; woofleet wants {wanted}). RabbitMQ cannot change these in "
        f"place. To fix: move or drain its messages (`woofleet dlq` for dead-letter queues), "
        f"delete it (`{delete}`), then run `woofleet topology apply` again."
    )


async def _declare(channel: AbstractChannel, item: Exchange | Queue) -> None:
    if isinstance(item, Exchange):
        await channel.declare_exchange(
            item.name, aio_pika.ExchangeType(item.type.value), durable=item.durable
        )
    else:
        arguments: dict[str, Any] = dict(item.args())
        await channel.declare_queue(item.name, durable=item.durable, arguments=arguments)


async def apply_topology(
    connection: AbstractRobustConnection,
    topology: Topology,
    *,
    vhost: str = "/",
    management: Management | None = None,
) -> ApplyReport:
    """Declare every exchange, queue, binding and policy; a second run changes nothing."""
    report = ApplyReport()
    items: list[Exchange | Queue] = [*topology.exchanges, *topology.queues]
    channel = await connection.channel(publisher_confirms=False)
    try:
        for item in items:
            kind = "exchange" if isinstance(item, Exchange) else "queue"
            existed = await _exists(connection, kind, item.name)
            try:
                await _declare(channel, item)
            except aiormq.exceptions.ChannelPreconditionFailed as exc:
                wanted = item.args() if isinstance(item, Queue) else item.type.value
                raise _mismatch(
                    kind, item.name, wanted, str(exc.args[0] if exc.args else exc), vhost
                ) from None
            (report.unchanged if existed else report.created).append(item.name)
        for binding in topology.bindings:
            queue = await channel.declare_queue(binding.queue, passive=True)
            await queue.bind(binding.exchange, binding.routing_key)
            report.bindings += 1
    finally:
        if not channel.is_closed:
            await channel.close()
    _apply_policies(topology, vhost, management, report)
    return report


def _apply_policies(
    topology: Topology, vhost: str, management: Management | None, report: ApplyReport
) -> None:
    if not topology.policies:
        return
    if management is None:
        report.warnings.append("no management API given: policies (DLQ length limits) not set")
        return
    try:
        for policy in topology.policies:
            try:
                management.put_policy(
                    vhost,
                    policy.name,
                    policy.pattern,
                    policy.definition_dict(),
                    apply_to=policy.apply_to,
                    priority=policy.priority,
                )
            except httpx.HTTPStatusError as exc:
                # One policy this broker refuses (a key its version does not know) must not
                # leave the others, the DLQ limits among them, unset.
                reason = exc.response.text.strip()[:200]
                report.warnings.append(
                    f"policy {policy.name} not set: the broker answered "
                    f"{exc.response.status_code} ({reason})"
                )
                continue
            report.policies.append(policy.name)
    except BrokerUnavailable as exc:
        report.warnings.append(f"policies not set: {exc}")


async def apply_fleet(
    connection: AbstractRobustConnection,
    fleet: FleetSpec = DEFAULT_FLEET,
    *,
    vhost: str = "/",
    management: Management | None = None,
) -> ApplyReport:
    """Build the fleet's topology for this broker's abilities and apply it."""
    modern = broker_is_3_10_or_newer(connection)
    if not modern:
        log.warning(
            "broker is older than 3.10: retry tiers and DLQs fall back to classic queues "
            "(at-most-once dead lettering), in the older storage format"
        )
    topology = build_topology(fleet, quorum=fleet.quorum_tiers and modern, storage_v2=modern)
    return await apply_topology(connection, topology, vhost=vhost, management=management)
