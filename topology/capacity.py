"""The capacity model of docs/capacity.md as data, and the scaling settings it implies.

Each consumer type's CPU cost was measured (``scripts/bench-effect``, one process per type,
targets on loopback); from it and its class's latency budget follow how many messages per
replica KEDA aims for and how many replicas a type may reach. The Kubernetes exporter reads
its numbers from here, so the manifests follow the document's arithmetic, not a guess per class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from topology.fleet import CLASSES, ConsumerPolicy, PriorityClass

#: A consumer replica is one event loop: it uses at most one core, and its latency grows as it
#: gets busy. The model keeps each replica at most this busy.
BUSY_CORE = 0.6
#: The peak the maximum replica counts are sized for (orders/s of the simulator's mix).
DESIGN_PEAK_ORDERS = 500.0
#: How long an event may wait in its work queue, by class: the time-to-effect targets for high
#: and medium (p99 25 ms and 100 ms); low and bulk work is not waited on by anyone.
LATENCY_BUDGET: dict[PriorityClass, float] = {
    PriorityClass.HIGH: 0.025,
    PriorityClass.MEDIUM: 0.1,
    PriorityClass.LOW: 1.0,
    PriorityClass.BULK: 10.0,
}


@dataclass(frozen=True)
class Cost:
    """What one consumer type costs, measured (docs/capacity.md, "Measured cost per order")."""

    #: Seconds of CPU per delivery it handles.
    cpu_per_delivery: float
    #: Seconds of CPU per order of the simulator's mix (its deliveries per order times the above).
    cpu_per_order: float
    #: Overrides the class's memory request where the type holds more (fonts, a PDF being built).
    memory_request: str | None = None


#: A type nobody measured is costed like a typical HTTP consumer, with no per-order load.
UNMEASURED = Cost(cpu_per_delivery=0.004, cpu_per_order=0.0)

MEASURED: dict[str, Cost] = {
    "payment-capture": Cost(0.0024, 0.0044),
    "stock": Cost(0.0036, 0.0043),
    "order-email": Cost(0.0073, 0.0211),
    "push-notify": Cost(0.0019, 0.0015),
    "erp-sync": Cost(0.0039, 0.0078),
    "invoice": Cost(0.0295, 0.0327, memory_request="160Mi"),
    "warehouse": Cost(0.0040, 0.0036),
    "shipping-label": Cost(0.0030, 0.0027),
    "analytics": Cost(0.0037, 0.0118),
    "crm": Cost(0.0063, 0.0198),
    "loyalty": Cost(0.0030, 0.0033),
    # Not measured alone: its events arrive seven days after the order. One HTTP call per
    # completed order, like loyalty.
    "review-request": Cost(0.0030, 0.0033),
    # Product events only: no per-order load; a bulk import is what it scales for.
    "catalog": Cost(0.0040, 0.0),
}


def cost(consumer: ConsumerPolicy) -> Cost:
    return MEASURED.get(consumer.name, UNMEASURED)


def deliveries_per_replica(consumer: ConsumerPolicy) -> float:
    """Deliveries per second one replica settles while kept ``BUSY_CORE`` busy."""
    return BUSY_CORE / cost(consumer).cpu_per_delivery


def target_queue_length(consumer: ConsumerPolicy) -> int:
    """Messages per replica KEDA aims for: its prefetch (in progress, counted by the management
    API as unacknowledged) plus the backlog one replica clears within its class's budget."""
    backlog = math.floor(deliveries_per_replica(consumer) * LATENCY_BUDGET[consumer.priority_class])
    return consumer.effective_prefetch + max(backlog, 1)


def replicas_for(consumer: ConsumerPolicy, orders_per_second: float) -> int:
    """Replicas that carry ``orders_per_second`` with none more than ``BUSY_CORE`` busy."""
    needed = math.ceil(cost(consumer).cpu_per_order * orders_per_second / BUSY_CORE)
    return max(needed, 1, CLASSES[consumer.priority_class].min_replicas)


def max_replicas(consumer: ConsumerPolicy) -> int:
    return replicas_for(consumer, DESIGN_PEAK_ORDERS)


def memory_request(consumer: ConsumerPolicy) -> str:
    return cost(consumer).memory_request or CLASSES[consumer.priority_class].memory_request


def cpu_per_replica(consumer: ConsumerPolicy, orders_per_second: float) -> int:
    """Millicores each of ``replicas_for`` replicas uses at that rate, rounded up to 50m."""
    total = cost(consumer).cpu_per_order * orders_per_second * 1000
    share = total / replicas_for(consumer, orders_per_second)
    return max(50, math.ceil(round(share, 6) / 50) * 50)
