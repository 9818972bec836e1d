"""The fleet's state from the management API: per consumer, its queues, consumers and rates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from topology import names
from topology.fleet import FleetSpec
from topology.management import Management


@dataclass(frozen=True)
class ConsumerStatus:
    consumer: str
    ready: int
    unacked: int
    consumers: int
    in_retry: int
    delayed: int
    dead: int
    incoming_rate: float
    ack_rate: float

    @property
    def healthy(self) -> bool:
        return self.consumers > 0 and self.dead == 0


def _rate(queue: dict[str, Any], stat: str) -> float:
    details = (queue.get("message_stats") or {}).get(f"{stat}_details") or {}
    return float(details.get("rate", 0.0))


def fleet_status(management: Management, vhost: str, fleet: FleetSpec) -> list[ConsumerStatus]:
    """One row per consumer in the table; queues missing on the broker count as empty."""
    by_name = {q["name"]: q for q in management.queues(vhost)}
    rows = []
    for consumer in fleet.consumers:
        work = by_name.get(consumer.work_queue, {})
        retry_total = sum(
            by_name.get(names.retry_queue(consumer.name, d), {}).get("messages", 0)
            for d in consumer.used_tiers
        )
        rows.append(
            ConsumerStatus(
                consumer=consumer.name,
                ready=work.get("messages_ready", 0),
                unacked=work.get("messages_unacknowledged", 0),
                consumers=work.get("consumers", 0),
                in_retry=retry_total,
                delayed=by_name.get(names.delay_queue(consumer.name), {}).get("messages", 0),
                dead=by_name.get(consumer.dead_letter_queue, {}).get("messages", 0),
                incoming_rate=_rate(work, "publish"),
                ack_rate=_rate(work, "ack"),
            )
        )
    return rows


def missing_queues(management: Management, vhost: str, fleet: FleetSpec) -> list[str]:
    from topology.fleet import build_topology

    present = {q["name"] for q in management.queues(vhost)}
    return [q.name for q in build_topology(fleet).queues if q.name not in present]
