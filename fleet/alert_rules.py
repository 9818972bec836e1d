"""What needs a person, read from the broker's management API and the processes' /metrics.

Each rule turns what it reads into :class:`Finding` objects: one per condition that is wrong
right now, with a stable key, how big it is, and the command to look closer.
:mod:`fleet.alert_state` decides which of them are new (fire), still there, or gone (resolve).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from topology.fleet import HELD_ALERT_SECONDS, FleetSpec
from topology.names import HELD_QUEUE

#: Where a finding comes from; a source that could not be read leaves its alerts as they were.
MANAGEMENT = "management"
STORE = "store"

#: Value of ``woofleet_breaker_state`` while a breaker is open (0 closed, 1 half-open).
BREAKER_OPEN = 2
#: A metrics endpoint (or the management API) must stay silent this long before it is
#: reported: restarts are normal.
SCRAPE_GRACE_SECONDS = 60.0


@dataclass(frozen=True)
class Finding:
    """One condition that needs a person, as seen in one evaluation."""

    #: Stable identity across evaluations, e.g. ``dlq:crm``.
    key: str
    #: What is wrong and how big, in one line: ``crm: 14 dead letters (threshold 10)``.
    title: str
    #: The command that shows more.
    command: str
    #: Where it was read: ``management``, ``store`` or a /metrics URL.
    source: str
    #: More context, a line or two (may be empty).
    detail: str = ""
    #: Seconds the condition must last before it is announced.
    hold: float = 0.0
    #: Seconds the condition had already lasted when first seen (an old message, an old outbox).
    age: float = 0.0


# --- the broker ------------------------------------------------------------------------------


def _rate(queue: Mapping[str, Any], stat: str) -> float:
    details = (queue.get("message_stats") or {}).get(f"{stat}_details") or {}
    return float(details.get("rate") or 0.0)


def oldest_message_age(
    queue: Mapping[str, Any], now: float, stalled_since: dict[str, float]
) -> float:
    """Seconds the message at the head of a work queue has waited (an estimate where needed).

    The broker reports the head message's ``timestamp`` only for queues kept in memory; for
    classic queues on disk (our storage policy) it reports none. Then the age is the backlog
    divided by the delivery rate (Little's law), or, when nothing is being delivered, the time
    since the queue was first seen stalled with messages (kept in ``stalled_since``).
    """
    name, ready = str(queue.get("name")), int(queue.get("messages_ready") or 0)
    if ready == 0:
        stalled_since.pop(name, None)
        return 0.0
    head = queue.get("head_message_timestamp")
    rate = _rate(queue, "deliver_get")
    if rate > 0:
        stalled_since.pop(name, None)
    if isinstance(head, int | float) and head > 0:
        return max(0.0, now - float(head))
    if rate > 0:
        return ready / rate
    return now - stalled_since.setdefault(name, now)


def queue_findings(
    queues: Iterable[Mapping[str, Any]],
    fleet: FleetSpec,
    *,
    now: float,
    dlq_threshold: int,
    dlq_thresholds: Mapping[str, int],
    stalled_since: dict[str, float],
) -> tuple[list[Finding], dict[str, float]]:
    """Deliveries held on the broker, dead letters above their threshold and work queues older
    than their class's target.

    Returns the findings and each consumer's oldest-message age (for /metrics).
    """
    by_name = {str(q.get("name")): q for q in queues}
    findings: list[Finding] = []
    ages: dict[str, float] = {}
    held = int((by_name.get(HELD_QUEUE) or {}).get("messages") or 0)
    if held:
        findings.append(
            Finding(
                key="held",
                title=f"{held} signed deliveries held on the broker: the webhook's state store "
                "is away",
                detail=f"they wait in {HELD_QUEUE} and become events once the store is back; "
                "check the server WOOFLEET_STATE_URL names",
                command="curl WEBHOOK/readyz",
                source=MANAGEMENT,
                hold=HELD_ALERT_SECONDS,  # a store restart is not worth waking anyone
            )
        )
    for consumer in fleet.consumers:
        dead = int((by_name.get(consumer.dead_letter_queue) or {}).get("messages") or 0)
        threshold = dlq_thresholds.get(consumer.name, dlq_threshold)
        if dead > threshold:
            findings.append(
                Finding(
                    key=f"dlq:{consumer.name}",
                    title=f"{consumer.name}: {dead} dead letters (threshold {threshold})",
                    detail=f"messages {consumer.name} gave up on wait in "
                    f"{consumer.dead_letter_queue}; replay them once the cause is fixed",
                    command=f"woofleet dlq list {consumer.name}",
                    source=MANAGEMENT,
                )
            )
        work = by_name.get(consumer.work_queue)
        if work is None:
            continue
        age = ages[consumer.name] = oldest_message_age(work, now, stalled_since)
        target = consumer.delay_target
        if age > target:
            ready, consumers = int(work.get("messages_ready") or 0), int(work.get("consumers") or 0)
            findings.append(
                Finding(
                    key=f"late:{consumer.name}",
                    title=f"{consumer.name}: oldest message waiting {duration(age)} "
                    f"({consumer.priority_class.value} target {duration(target)})",
                    detail=f"{ready} ready in {consumer.work_queue}, {consumers} "
                    + ("consumer" if consumers == 1 else "consumers")
                    + ("; nothing is consuming it" if consumers == 0 else ""),
                    command="woofleet status",
                    source=MANAGEMENT,
                    age=age,
                )
            )
    return findings, ages


def management_unreachable(error: str) -> Finding:
    return Finding(
        key="management",
        title="the RabbitMQ management API is not answering",
        detail=error,
        command="woofleet status",
        source="alerts",
        hold=SCRAPE_GRACE_SECONDS,  # a broker restart is not worth waking anyone
    )


# --- the processes' /metrics -----------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass
class Scrape:
    """One /metrics endpoint as read now: its samples, or why it could not be read."""

    url: str
    samples: list[Sample] = field(default_factory=list)
    error: str = ""

    def values(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.name == name]


def scrape(url: str, client: httpx.Client) -> Scrape:
    """Read one Prometheus text endpoint; a failure is recorded, never raised."""
    try:
        response = client.get(url)
        response.raise_for_status()
        families = list(text_string_to_metric_families(response.text))
    except (httpx.HTTPError, ValueError) as exc:
        return Scrape(url, error=f"{type(exc).__name__}: {exc}")
    samples = [Sample(s.name, dict(s.labels), s.value) for f in families for s in f.samples]
    return Scrape(url, samples)


def metric_findings(
    scrapes: Iterable[Scrape], *, breaker_open_seconds: float, outbox_seconds: float
) -> list[Finding]:
    """Open breakers, unprocessed signed deliveries, an outbox not draining, silent endpoints."""
    findings: list[Finding] = []
    for result in scrapes:
        if result.error:
            findings.append(
                Finding(
                    key=f"scrape:{result.url}",
                    title=f"{result.url} is not answering",
                    detail=f"{result.error}; the process may be down",
                    command="woofleet status",
                    source="alerts",
                    hold=SCRAPE_GRACE_SECONDS,
                )
            )
            continue
        for sample in result.values("woofleet_breaker_state"):
            consumer = sample.labels.get("consumer", "?")
            if sample.value >= BREAKER_OPEN:
                findings.append(
                    Finding(
                        key=f"breaker:{consumer}",
                        title=f"{consumer}: circuit breaker open",
                        detail=f"{consumer} stopped taking deliveries because its target keeps "
                        "failing; its queue grows until the target answers",
                        command=f"woofleet status  # and the {consumer} logs",
                        source=result.url,
                        hold=breaker_open_seconds,
                    )
                )
        for sample in result.values("woofleet_ingress_kept_deliveries"):
            if sample.value > 0:
                findings.append(
                    Finding(
                        key=f"kept:{result.url}",
                        title=f"{sample.value:.0f} signed deliveries kept unprocessed",
                        detail="the ingress could not turn them into events; fix the cause, "
                        "then replay them",
                        command="woofleet ingress list",
                        source=result.url,
                    )
                )
        findings += _outbox(result, outbox_seconds)
    return _one_per_key(findings)


def _outbox(result: Scrape, outbox_seconds: float) -> list[Finding]:
    depth = sum(s.value for s in result.values("woofleet_outbox_depth"))
    if depth <= 0:
        return []
    ages = [s.value for s in result.values("woofleet_outbox_oldest_seconds")]
    broker = [s.value for s in result.values("woofleet_broker_up")]
    detail = "events are safe in the outbox but reach no consumer"
    if broker and min(broker) == 0:
        detail += "; the publisher has no broker connection"
    finding = Finding(
        key=f"outbox:{result.url}",
        title=f"outbox not draining: {depth:.0f} events waiting",
        detail=detail,
        command="woofleet status",
        source=result.url,
    )
    if ages:  # the ingress says how old its oldest event is: announce once it is too old
        age = max(ages)
        return [] if age <= outbox_seconds else [replace(finding, age=age)]
    return [replace(finding, hold=outbox_seconds)]


def _one_per_key(findings: list[Finding]) -> list[Finding]:
    # Replicas of one consumer report the same breaker: one alert, not one per pod.
    seen: dict[str, Finding] = {}
    for finding in findings:
        seen.setdefault(finding.key, finding)
    return list(seen.values())


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3.5 h``: how long, for people."""
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"
