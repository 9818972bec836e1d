"""THE table: every consumer type, what it binds, its class, attempts, timeout, prefetch and tiers.

Everything else (queues, bindings, Deployments, ScaledObjects, AsyncAPI channels, and the
contracts each consumer accepts, see :mod:`topology.routing`) is derived from this one table by
:func:`build_topology`, the exporters and the consumer runtime; a consumer module declares only
its handler and business key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from contracts.messages import MAX_PRIORITY as MAX_PRIORITY  # declared with the contract
from topology import names
from topology.errors import UnknownConsumer
from topology.model import (
    Binding,
    Exchange,
    ExchangeType,
    Policy,
    Queue,
    QueueArguments,
    QueueRole,
    Topology,
)

DEFAULT_RETRY_TIERS: tuple[float, ...] = (1, 2, 4, 8, 16)
#: Where a failure goes while its target looks down (the breaker open, or the ladder spent while
#: most recent calls failed): minutes up to an hour, the last repeating. These retries are not
#: attempts: an outage says nothing about the message.
DEFAULT_OUTAGE_TIERS: tuple[float, ...] = (30, 120, 600, 1800, 3600)
#: Outage retries before a message is dead-lettered after all: about two days of a target down.
OUTAGE_RETRY_LIMIT = 48
#: Dead-letter queues refuse new messages past this many, so a flood cannot fill the disk; the
#: runtime then keeps the original in its work queue (nothing is lost) and reports it.
DEFAULT_DLQ_MAX_LENGTH = 100_000
SEVEN_DAYS = 7 * 24 * 3600.0
#: Alerts (``woofleet alerts`` and the PrometheusRule): dead letters per consumer above this,
#: a breaker open or an outbox not draining for this many seconds.
DEFAULT_DLQ_ALERT_THRESHOLD = 10
BREAKER_ALERT_SECONDS = 180.0
OUTBOX_ALERT_SECONDS = 300.0
#: Deliveries held on the broker (the webhook's state store away) for this long are an alert.
HELD_ALERT_SECONDS = 300.0


class PriorityClass(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    BULK = "bulk"


@dataclass(frozen=True)
class ClassPolicy:
    """What a priority class implies for every consumer in it (scaling targets and maximum
    replicas follow each type's measured cost: :mod:`topology.capacity`)."""

    #: Small prefetch keeps priorities meaningful: RabbitMQ can only reorder what it still holds.
    prefetch: int
    #: 0 lets KEDA scale the type to zero while its queue is empty.
    min_replicas: int
    cpu_request: str
    #: A measured one-type process is 75-82 MB (docs/capacity.md); a type may need more.
    memory_request: str
    cpu_limit: str
    memory_limit: str
    #: Seconds an event may wait in the work queue before someone should look (status, alerts).
    delay_target: float


CLASSES: dict[PriorityClass, ClassPolicy] = {
    PriorityClass.HIGH: ClassPolicy(4, 1, "100m", "96Mi", "1", "256Mi", 30),
    PriorityClass.MEDIUM: ClassPolicy(4, 1, "100m", "96Mi", "1", "256Mi", 5 * 60),
    PriorityClass.LOW: ClassPolicy(20, 0, "50m", "96Mi", "500m", "256Mi", 30 * 60),
    PriorityClass.BULK: ClassPolicy(1, 0, "200m", "256Mi", "2", "1Gi", 60 * 60),
}


@dataclass(frozen=True)
class BreakerPolicy:
    """When a consumer stops taking deliveries because its target keeps failing."""

    #: Outcomes older than this (seconds) no longer count.
    window: float = 60.0
    failure_ratio: float = 0.5
    #: Fewer calls than this in the window never open the breaker.
    min_calls: int = 10
    #: Seconds to wait, not consuming, before one probe message is let through.
    cool_down: float = 30.0


@dataclass(frozen=True)
class SecretFile:
    """A file a consumer needs from a Secret: the manifests mount ``secret`` and point
    ``setting`` at its key ``key`` (the file name inside the mount)."""

    setting: str
    secret: str
    key: str = "credentials.json"


@dataclass(frozen=True)
class ConsumerPolicy:
    """One consumer type's queue and delivery policy."""

    name: str
    bindings: tuple[str, ...]
    priority_class: PriorityClass
    max_attempts: int
    timeout: float
    retry_tiers: tuple[float, ...] = DEFAULT_RETRY_TIERS
    outage_tiers: tuple[float, ...] = DEFAULT_OUTAGE_TIERS
    #: Deliver this many seconds after the event instead of at once (through a delay queue).
    delay: float | None = None
    prefetch: int | None = None
    dlq_max_length: int = DEFAULT_DLQ_MAX_LENGTH
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    #: Files this consumer reads from a Kubernetes Secret (e.g. a key), by the setting naming them.
    secret_files: tuple[SecretFile, ...] = ()

    @property
    def effective_prefetch(self) -> int:
        return self.prefetch or CLASSES[self.priority_class].prefetch

    @property
    def used_tiers(self) -> tuple[float, ...]:
        """The tiers a message can reach: attempt n (failed) goes to tier n-1, the last repeats."""
        retries = max(self.max_attempts - 1, 0)
        return tuple(sorted(set(self.retry_tiers[: min(retries, len(self.retry_tiers))])))

    @property
    def declared_tiers(self) -> tuple[float, ...]:
        """Every retry queue this consumer has: its ladder's and its outage tiers."""
        return tuple(sorted({*self.used_tiers, *self.outage_tiers}))

    def outage_tier_for(self, outage_retries: int, retry_after: float | None = None) -> float:
        """The delay after ``outage_retries`` earlier outage retries; the last tier repeats."""
        tiers = self.outage_tiers
        delay = tiers[min(outage_retries, len(tiers) - 1)]
        if retry_after is not None and retry_after > delay:
            delay = next((t for t in tiers if t >= retry_after), tiers[-1])
        return delay

    def tier_for(self, failed_attempt: int, retry_after: float | None = None) -> float:
        """The delay before attempt ``failed_attempt + 1``; honours a target's Retry-After hint."""
        tiers = self.used_tiers
        delay = tiers[min(failed_attempt - 1, len(tiers) - 1)]
        if retry_after is not None and retry_after > delay:
            delay = next((t for t in tiers if t >= retry_after), tiers[-1])
        return delay

    @property
    def delay_target(self) -> float:
        """Seconds its oldest waiting event may be old before someone should look."""
        return CLASSES[self.priority_class].delay_target

    @property
    def work_queue(self) -> str:
        return names.work_queue(self.name)

    @property
    def dead_letter_queue(self) -> str:
        return names.dead_letter_queue(self.name)


_P = PriorityClass

CONSUMERS: tuple[ConsumerPolicy, ...] = (
    # order.created too: gateways leave an authorised, uncaptured order on-hold (not paid).
    ConsumerPolicy("payment-capture", ("order.created", "order.paid"), _P.HIGH, 5, 30),
    ConsumerPolicy("stock", ("order.paid", "order.cancelled", "order.refunded"), _P.HIGH, 5, 30),
    ConsumerPolicy(
        "order-email",
        ("order.created", "order.paid", "order.completed", "order.refunded"),
        _P.HIGH,
        3,
        30,
    ),
    ConsumerPolicy(
        "erp-sync",
        ("order.paid", "order.completed", "order.cancelled", "order.refunded"),
        _P.MEDIUM,
        5,
        60,
    ),
    ConsumerPolicy("invoice", ("order.paid", "order.refunded"), _P.MEDIUM, 3, 30),
    ConsumerPolicy("warehouse", ("order.paid", "order.cancelled"), _P.MEDIUM, 3, 120),
    ConsumerPolicy("analytics", ("order.#",), _P.LOW, 2, 15),
    ConsumerPolicy("crm", ("order.#",), _P.LOW, 2, 30),
    ConsumerPolicy("loyalty", ("order.completed", "order.refunded"), _P.LOW, 2, 30),
    ConsumerPolicy("review-request", ("order.completed",), _P.LOW, 2, 30, delay=SEVEN_DAYS),
    ConsumerPolicy("catalog", ("product.#", "catalog.#"), _P.BULK, 1, 300),
    ConsumerPolicy(
        "push-notify",
        ("order.paid",),
        _P.HIGH,
        5,
        30,
        secret_files=(SecretFile("WOOFLEET_FCM_CREDENTIALS_FILE", "woofleet-fcm"),),
    ),
    ConsumerPolicy("shipping-label", ("order.paid", "order.cancelled"), _P.MEDIUM, 3, 120),
)

CONSUMER_NAMES: tuple[str, ...] = tuple(c.name for c in CONSUMERS)


@dataclass(frozen=True)
class FleetSpec:
    """A whole fleet: the consumer table plus the choices that apply to all of it."""

    consumers: tuple[ConsumerPolicy, ...] = CONSUMERS
    #: Quorum queues dead-letter at-least-once (3.10+); classic queues only at-most-once.
    quorum_tiers: bool = True
    #: Only one policy applies to a queue, the highest-priority match: one that matches
    #: woofleet's classic queues should repeat :func:`classic_storage` (see storage_policy).
    extra_policies: tuple[Policy, ...] = field(default=())

    @property
    def consumer_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.consumers)

    def check(self, requested: Iterable[str]) -> None:
        """Raise :class:`UnknownConsumer` naming every unknown name and listing the valid ones.

        The one check of consumer names: the command line, the runtime and the module registry
        all come here, so every verb answers a typo with the same message.
        """
        unknown = [n for n in requested if n not in self.consumer_names]
        if unknown:
            raise UnknownConsumer(unknown, self.consumer_names)

    def consumer(self, name: str) -> ConsumerPolicy:
        self.check([name])
        return next(c for c in self.consumers if c.name == name)

    def only(self, *consumer_names: str) -> FleetSpec:
        return replace(self, consumers=tuple(self.consumer(n) for n in consumer_names))


DEFAULT_FLEET = FleetSpec()


def _tier_arguments(consumer: ConsumerPolicy, ttl_seconds: float, quorum: bool) -> QueueArguments:
    # Per-queue TTL, never per-message: RabbitMQ expires only from the head of a queue, so mixed
    # per-message TTLs would block behind the longest one. One queue per delay avoids that.
    args: QueueArguments = {
        "x-message-ttl": round(ttl_seconds * 1000),
        "x-dead-letter-exchange": names.WORK_EXCHANGE,
        "x-dead-letter-routing-key": consumer.work_queue,
    }
    if quorum:
        args["x-queue-type"] = "quorum"
        # At-least-once dead lettering needs reject-publish overflow (quorum queues, 3.10+).
        args["x-dead-letter-strategy"] = "at-least-once"
        args["x-overflow"] = "reject-publish"
    return args


def _queue(
    name: str, role: QueueRole, consumer: str, args: QueueArguments, quorum: bool = False
) -> Queue:
    return Queue(
        name=name,
        role=role,
        consumer=consumer,
        type="quorum" if quorum else "classic",
        arguments=tuple(sorted(args.items())),  # type: ignore[arg-type]
    )


def _consumer_topology(consumer: ConsumerPolicy, quorum: bool) -> tuple[list[Queue], list[Binding]]:
    # x-max-priority is fixed at declaration (no policy can set it), hence an argument here.
    work = _queue(
        consumer.work_queue, QueueRole.WORK, consumer.name, {"x-max-priority": MAX_PRIORITY}
    )
    queues = [work]
    bindings = [Binding(names.WORK_EXCHANGE, work.name, work.name)]
    entry = work.name
    if consumer.delay is not None:
        entry = names.delay_queue(consumer.name)
        queues.append(
            _queue(
                entry,
                QueueRole.DELAY,
                consumer.name,
                _tier_arguments(consumer, consumer.delay, quorum),
                quorum,
            )
        )
    bindings += [Binding(names.EVENTS_EXCHANGE, entry, key) for key in consumer.bindings]
    for delay in consumer.declared_tiers:
        tier = names.retry_queue(consumer.name, delay)
        queues.append(
            _queue(
                tier,
                QueueRole.RETRY,
                consumer.name,
                _tier_arguments(consumer, delay, quorum),
                quorum,
            )
        )
        bindings.append(Binding(names.retry_exchange(consumer.name), tier, tier))
    if consumer.outage_tiers:
        # The way back from the outage tiers before their time (consumers/runtime/recall.py):
        # through the consumer's own exchange, so its broker user needs no other.
        bindings.append(Binding(names.retry_exchange(consumer.name), work.name, work.name))
    # Dead-letter queues stay classic whatever the tiers are: the runtime publishes into them
    # (confirmed), so broker dead lettering plays no part, and only a classic queue can be
    # browsed without changing it. A quorum queue puts a message read and given back behind
    # the others it returned and raises its x-delivery-count (measured on 3.10); a classic
    # queue puts it back where it was, counting nothing.
    dlq = _queue(consumer.dead_letter_queue, QueueRole.DEAD_LETTER, consumer.name, {})
    queues.append(dlq)
    bindings.append(Binding(names.dead_letter_exchange(consumer.name), dlq.name, dlq.name))
    return queues, bindings


# Classic queues keep their messages in storage format 2 (RabbitMQ 3.10+) and on disk rather
# than in memory ("lazy", what 3.12+ does anyway and 3.10/3.11 do only when told): about a
# fifth less broker CPU per persistent message on this fan-out (1.11 against 1.37 ms per event
# at 600 events/s), and no paging storms behind a backlog. Quorum queues need neither, and
# RabbitMQ 3.10 applies no policy at all to a quorum queue when it carries queue-mode, so
# these keys go only to policies that match classic queues.
def classic_storage(storage_v2: bool = True) -> tuple[tuple[str, int | str], ...]:
    """The storage keys for classic queues (brokers before 3.10 reject queue-version)."""
    lazy: tuple[tuple[str, int | str], ...] = (("queue-mode", "lazy"),)
    return (("queue-version", 2), *lazy) if storage_v2 else lazy


def storage_policy(quorum: bool, storage_v2: bool = True) -> Policy:
    """Classic-queue storage as a policy: RabbitMQ converts existing queues in place, where a
    new queue argument would clash with their declaration. With quorum tiers and DLQs only the
    work queues (``woo.<consumer>``) are classic; without, every queue is, and the DLQ limit
    policies (which outrank this one: one policy applies per queue) repeat the keys."""
    return Policy(
        name="woo-queue-storage",
        pattern="^woo[.][^.]+$" if quorum else "^woo[.]",
        apply_to="queues",
        definition=classic_storage(storage_v2),
    )


def dlq_policy(consumer: ConsumerPolicy, storage_v2: bool = True) -> Policy:
    """The DLQ length limit as a policy: an operator can change it live; queue args are fixed."""
    return Policy(
        name=f"{consumer.dead_letter_queue}-limit",
        pattern=f"^{consumer.dead_letter_queue.replace('.', '[.]')}$",
        apply_to="queues",
        definition=(
            ("max-length", consumer.dlq_max_length),
            ("overflow", "reject-publish"),
            # The DLQ is classic (see _consumer_topology) and this policy outranks the storage one.
            *classic_storage(storage_v2),
        ),
        priority=1,
    )


def build_topology(
    fleet: FleetSpec = DEFAULT_FLEET, *, quorum: bool | None = None, storage_v2: bool = True
) -> Topology:
    """Every exchange, queue, binding and policy of a fleet, in declaration order.

    ``storage_v2=False`` leaves ``queue-version`` out of the policies, for brokers older than
    3.10, which reject a policy carrying a key they do not know.
    """
    use_quorum = fleet.quorum_tiers if quorum is None else quorum
    exchanges = (
        Exchange(names.EVENTS_EXCHANGE, ExchangeType.TOPIC),
        Exchange(names.WORK_EXCHANGE, ExchangeType.DIRECT),
        Exchange(names.INGRESS_EXCHANGE, ExchangeType.DIRECT),
        *(
            Exchange(name, ExchangeType.DIRECT)
            for c in fleet.consumers
            for name in (names.retry_exchange(c.name), names.dead_letter_exchange(c.name))
        ),
    )
    # The webhook's held deliveries: replicated with the tiers (they are accepted orders).
    held_args: QueueArguments = {"x-queue-type": "quorum"} if use_quorum else {}
    held = _queue(names.HELD_QUEUE, QueueRole.HELD, "", held_args, use_quorum)
    queues: list[Queue] = [held]
    bindings = [Binding(names.INGRESS_EXCHANGE, held.name, held.name)]
    for consumer in fleet.consumers:
        q, b = _consumer_topology(consumer, use_quorum)
        queues += q
        bindings += b
    limits = tuple(dlq_policy(c, storage_v2) for c in fleet.consumers)
    policies = (storage_policy(use_quorum, storage_v2), *limits, *fleet.extra_policies)
    return Topology(exchanges, tuple(queues), tuple(bindings), policies)
