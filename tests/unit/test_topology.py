"""The topology as data: names, queues, arguments and bindings built from the consumer table."""

from __future__ import annotations

import re

import pytest

from contracts.registry import REGISTRY
from topology import names
from topology.errors import ConfigError, UnknownConsumer
from topology.fleet import (
    CONSUMER_NAMES,
    CONSUMERS,
    DEFAULT_FLEET,
    DEFAULT_OUTAGE_TIERS,
    MAX_PRIORITY,
    SEVEN_DAYS,
    ConsumerPolicy,
    PriorityClass,
    build_topology,
)
from topology.model import Binding, Queue, QueueRole, Topology
from topology.routing import accepted_contracts


@pytest.fixture(scope="module")
def topology() -> Topology:
    return build_topology(DEFAULT_FLEET, quorum=True)


def queues_of(topology: Topology, consumer: str, role: QueueRole) -> list[Queue]:
    return [q for q in topology.queues if q.consumer == consumer and q.role is role]


# names -------------------------------------------------------------------------------------------


def test_work_queue_is_woo_dot_consumer() -> None:
    assert names.work_queue("payment-capture") == "woo.payment-capture"


@pytest.mark.parametrize(
    ("seconds", "name"),
    [
        (0.3, "woo.invoice.retry.300ms"),
        (1, "woo.invoice.retry.1s"),
        (16, "woo.invoice.retry.16s"),
        (90, "woo.invoice.retry.90s"),
        (120, "woo.invoice.retry.2m"),
        (3600, "woo.invoice.retry.1h"),
        (7 * 86_400, "woo.invoice.retry.7d"),
    ],
)
def test_retry_queue_names_carry_a_short_exact_duration_label(seconds: float, name: str) -> None:
    assert names.retry_queue("invoice", seconds) == name


def test_a_retry_delay_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        names.retry_queue("invoice", 0)


def test_dead_letter_and_delay_queue_names() -> None:
    assert names.dead_letter_queue("stock") == "woo.stock.dlq"
    assert names.delay_queue("review-request") == "woo.review-request.delay"


@pytest.mark.parametrize(
    "queue",
    ["woo.invoice", "woo.invoice.retry.4s", "woo.invoice.dlq", "woo.invoice.delay"],
)
def test_consumer_of_finds_the_consumer_of_any_of_its_queues(queue: str) -> None:
    assert names.consumer_of(queue) == "invoice"


def test_consumer_of_rejects_a_queue_that_is_not_woofleets() -> None:
    with pytest.raises(ValueError, match="not a woofleet queue"):
        names.consumer_of("amq.gen-123")


# the consumer table ------------------------------------------------------------------------------


def test_bindings_on_woo_events_are_each_rows_bindings_and_nothing_else(
    topology: Topology,
) -> None:
    bound: dict[str, set[str]] = {}
    for binding in topology.bindings:
        if binding.exchange == names.EVENTS_EXCHANGE:
            bound.setdefault(names.consumer_of(binding.queue), set()).add(binding.routing_key)
    assert bound == {c.name: set(c.bindings) for c in CONSUMERS}


def test_a_consumer_accepts_every_registered_version_of_what_its_bindings_route() -> None:
    # Given bindings with an exact key, a one-word and a many-word wildcard
    accepted = accepted_contracts(("order.paid", "catalog.*", "product.#"))
    # Then every registered contract they route is accepted, in every version, and no other
    assert accepted == {
        key
        for key in REGISTRY
        if key[0] == "order.paid" or key[0].startswith(("catalog.", "product."))
    }
    assert ("order.created", 1) not in accepted


def test_every_rows_bindings_route_at_least_one_known_contract() -> None:
    # A binding that matches no contract is a typo: its consumer would dead-letter everything.
    for consumer in CONSUMERS:
        for pattern in consumer.bindings:
            assert accepted_contracts([pattern]), f"{consumer.name}: {pattern} routes no contract"


def test_unknown_consumer_names_are_all_named_in_one_message_with_the_valid_ones() -> None:
    with pytest.raises(UnknownConsumer) as raised:
        DEFAULT_FLEET.check(["stock", "emails", "stok"])
    assert str(raised.value) == (
        f"unknown consumer 'emails', 'stok'; valid consumers: {', '.join(CONSUMER_NAMES)}"
    )
    assert isinstance(raised.value, ConfigError)
    DEFAULT_FLEET.check(CONSUMER_NAMES)  # every known name passes


# work queues -------------------------------------------------------------------------------------


@pytest.mark.parametrize("consumer", [c.name for c in CONSUMERS])
def test_every_consumer_has_a_durable_classic_work_queue_with_five_priorities(
    topology: Topology, consumer: str
) -> None:
    work = topology.queue(names.work_queue(consumer))
    assert work.role is QueueRole.WORK
    assert work.durable
    assert work.type == "classic"
    assert work.args() == {"x-max-priority": 5}
    assert MAX_PRIORITY == 5


@pytest.mark.parametrize("consumer", [c.name for c in CONSUMERS])
def test_every_work_queue_takes_returning_messages_from_woo_work_by_its_own_name(
    topology: Topology, consumer: str
) -> None:
    work = names.work_queue(consumer)
    returning = [b for b in topology.bindings if b.exchange == names.WORK_EXCHANGE]
    assert [(b.queue, b.routing_key) for b in returning if b.queue == work] == [(work, work)]


# retry tiers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("consumer", "tiers"),
    [
        ("payment-capture", (1, 2, 4, 8)),
        ("stock", (1, 2, 4, 8)),
        ("order-email", (1, 2)),
        ("invoice", (1, 2)),
        ("analytics", (1,)),
        ("review-request", (1,)),
        ("catalog", ()),
    ],
)
def test_a_consumer_gets_one_retry_tier_per_retry_its_attempts_allow_and_the_outage_tiers(
    topology: Topology, consumer: str, tiers: tuple[float, ...]
) -> None:
    retry_queues = queues_of(topology, consumer, QueueRole.RETRY)
    expected = sorted({*tiers, *DEFAULT_OUTAGE_TIERS})
    assert [q.name for q in retry_queues] == [names.retry_queue(consumer, t) for t in expected]
    assert DEFAULT_OUTAGE_TIERS[-1] == 3600  # minutes up to an hour


@pytest.mark.parametrize("consumer", [c.name for c in CONSUMERS])
def test_retry_tiers_use_per_queue_ttl_and_dead_letter_to_their_own_work_queue_only(
    topology: Topology, consumer: str
) -> None:
    policy = DEFAULT_FLEET.consumer(consumer)
    for tier in queues_of(topology, consumer, QueueRole.RETRY):
        delay = next(
            d for d in policy.declared_tiers if names.retry_queue(consumer, d) == tier.name
        )
        args = tier.args()
        assert args["x-message-ttl"] == round(delay * 1000)
        assert args["x-dead-letter-exchange"] == names.WORK_EXCHANGE
        assert args["x-dead-letter-routing-key"] == names.work_queue(consumer)
        # quorum tiers dead-letter at least once
        assert args["x-queue-type"] == "quorum"
        assert args["x-dead-letter-strategy"] == "at-least-once"
        assert args["x-overflow"] == "reject-publish"
        bindings = [b for b in topology.bindings if b.queue == tier.name]
        assert [(b.exchange, b.routing_key) for b in bindings] == [
            (names.retry_exchange(consumer), tier.name)
        ]


def test_no_queue_ever_dead_letters_back_to_woo_events(topology: Topology) -> None:
    targets = {q.args().get("x-dead-letter-exchange") for q in topology.queues} - {None}
    assert targets == {names.WORK_EXCHANGE}


def test_catalog_with_one_attempt_retries_only_through_outage_tiers(topology: Topology) -> None:
    catalog = DEFAULT_FLEET.consumer("catalog")
    assert catalog.max_attempts == 1
    assert catalog.used_tiers == ()
    retry_queues = queues_of(topology, "catalog", QueueRole.RETRY)
    assert [q.name for q in retry_queues] == [
        names.retry_queue("catalog", t) for t in DEFAULT_OUTAGE_TIERS
    ]


def test_classic_tiers_when_the_broker_cannot_dead_letter_quorum_queues() -> None:
    classic = build_topology(DEFAULT_FLEET, quorum=False)
    for queue in classic.queues:
        assert queue.type == "classic", queue.name
        assert "x-queue-type" not in queue.args(), queue.name
        assert "x-dead-letter-strategy" not in queue.args(), queue.name


# dead letters and delays ------------------------------------------------------------------------


@pytest.mark.parametrize("consumer", [c.name for c in CONSUMERS])
def test_every_consumer_has_a_dlq_bound_on_woo_dlx_by_its_own_name(
    topology: Topology, consumer: str
) -> None:
    dlq = names.dead_letter_queue(consumer)
    assert topology.queue(dlq).role is QueueRole.DEAD_LETTER
    # classic, so that browsing it changes nothing (see topology/fleet.py)
    assert topology.queue(dlq).args() == {}
    assert topology.queue(dlq).type == "classic"
    bindings = [(b.exchange, b.routing_key) for b in topology.bindings if b.queue == dlq]
    assert bindings == [(names.dead_letter_exchange(consumer), dlq)]


def test_every_dlq_has_a_length_limit_policy_matching_only_itself(topology: Topology) -> None:
    queue_names = [q.name for q in topology.queues]
    limits = [p for p in topology.policies if p.name.endswith("-limit")]
    assert len(limits) == len(CONSUMERS)
    for policy in limits:
        matched = [n for n in queue_names if re.search(policy.pattern, n)]
        assert len(matched) == 1
        assert matched[0].endswith(".dlq")
        assert policy.apply_to == "queues"
        # classic DLQs: this policy outranks the storage one, so it repeats its keys
        assert policy.definition_dict() == {
            "max-length": 100_000,
            "overflow": "reject-publish",
            "queue-version": 2,
            "queue-mode": "lazy",
        }


@pytest.mark.parametrize("quorum", [True, False])
@pytest.mark.parametrize("storage_v2", [True, False])
def test_classic_queues_get_their_storage_from_the_policy_that_wins_on_them(
    quorum: bool, storage_v2: bool
) -> None:
    # RabbitMQ applies only the highest-priority matching policy, so whichever wins must say it;
    # on a quorum queue, the winner must carry no storage key (3.10 would skip the policy).
    topology = build_topology(DEFAULT_FLEET, quorum=quorum, storage_v2=storage_v2)
    classic = {"queue-version": 2, "queue-mode": "lazy"} if storage_v2 else {"queue-mode": "lazy"}
    for queue in topology.queues:
        matching = [p for p in topology.policies if re.search(p.pattern, queue.name)]
        winner = max(matching, key=lambda p: p.priority, default=None)
        if winner is not None:
            assert [p.priority for p in matching].count(winner.priority) == 1, queue.name
        storage = {k: v for k, v in winner.definition if k.startswith("queue-")} if winner else {}
        assert storage == (classic if queue.type == "classic" else {}), queue.name


def test_review_request_waits_seven_days_in_a_delay_queue_bound_to_order_completed(
    topology: Topology,
) -> None:
    delay = names.delay_queue("review-request")
    work = names.work_queue("review-request")
    assert DEFAULT_FLEET.consumer("review-request").delay == SEVEN_DAYS == 604_800
    assert topology.queue(delay).role is QueueRole.DELAY
    args = topology.queue(delay).args()
    assert args["x-message-ttl"] == 604_800_000
    assert args["x-dead-letter-exchange"] == names.WORK_EXCHANGE
    assert args["x-dead-letter-routing-key"] == work
    on_events = [
        (b.queue, b.routing_key) for b in topology.bindings if b.exchange == names.EVENTS_EXCHANGE
    ]
    assert (delay, "order.completed") in on_events
    # the work queue itself is not bound to woo.events: nothing skips the delay
    assert not [q for q, _ in on_events if q == work]


def test_only_review_request_has_a_delay_queue(topology: Topology) -> None:
    delayed = {q.consumer for q in topology.queues if q.role is QueueRole.DELAY}
    assert delayed == {"review-request"}


def test_held_deliveries_wait_in_one_replicated_queue_of_their_own() -> None:
    topology = build_topology()
    held = topology.queue(names.HELD_QUEUE)
    assert (held.role, held.consumer, held.type, held.durable) == (
        QueueRole.HELD,
        "",
        "quorum",
        True,
    )
    assert [b for b in topology.bindings if b.queue == names.HELD_QUEUE] == [
        Binding(names.INGRESS_EXCHANGE, names.HELD_QUEUE, names.HELD_QUEUE)
    ]
    # and nothing else reaches it: no event lands there, nothing held reaches a consumer
    assert [b.queue for b in topology.bindings if b.exchange == names.INGRESS_EXCHANGE] == [
        names.HELD_QUEUE
    ]
    assert build_topology(quorum=False).queue(names.HELD_QUEUE).type == "classic"


def test_exchanges_are_durable_and_typed() -> None:
    exchanges = {e.name: (e.type.value, e.durable) for e in build_topology().exchanges}
    assert exchanges == {
        "woo.events": ("topic", True),
        "woo.work": ("direct", True),
        # deliveries held while the webhook's state store is away
        "woo.ingress": ("direct", True),
        # one retry and one dead-letter exchange per consumer: its user may write only there
        **{f"woo.{c}.retry": ("direct", True) for c in CONSUMER_NAMES},
        **{f"woo.{c}.dlx": ("direct", True) for c in CONSUMER_NAMES},
    }


# tier_for ---------------------------------------------------------------------------------------


@pytest.fixture
def five_attempts() -> ConsumerPolicy:
    return ConsumerPolicy("x", ("order.paid",), PriorityClass.HIGH, 5, 30)


@pytest.mark.parametrize(("failed_attempt", "delay"), [(1, 1), (2, 2), (3, 4), (4, 8), (9, 8)])
def test_tier_for_walks_up_the_tiers_and_repeats_the_last(
    five_attempts: ConsumerPolicy, failed_attempt: int, delay: float
) -> None:
    assert five_attempts.tier_for(failed_attempt) == delay


@pytest.mark.parametrize(
    ("retry_after", "delay"),
    [(0.5, 1), (1, 1), (1.5, 2), (3, 4), (8, 8), (600, 8)],
)
def test_tier_for_honours_retry_after_with_the_smallest_tier_at_least_that_long(
    five_attempts: ConsumerPolicy, retry_after: float, delay: float
) -> None:
    assert five_attempts.tier_for(1, retry_after=retry_after) == delay


def test_a_retry_after_shorter_than_the_current_tier_does_not_shorten_it(
    five_attempts: ConsumerPolicy,
) -> None:
    assert five_attempts.tier_for(3, retry_after=1) == 4
