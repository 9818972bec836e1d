"""The fleet's health as data, and what in it needs a person.

:class:`FleetStatus` is what ``woofleet status`` gathers (see fleet/status_sources.py):
per consumer its queues, rates, consumers and breaker; the ingress's outbox and kept
deliveries; the store's webhooks. :func:`evaluate` is pure — status in, findings out — so that
``woofleet status`` and ``woofleet alerts`` judge the same data the same way. :func:`as_json`
is the documented, stable ``status --json`` shape (docs/operations.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

#: Bumped only when a field of the JSON shape changes meaning or goes away (additions do not).
JSON_SCHEMA = 1


@dataclass(frozen=True)
class ConsumerStatus:
    """One consumer type: its work queue, retry tiers, delay queue and DLQ."""

    consumer: str
    priority_class: str
    #: Exact, from the broker (not from statistics, which lag by up to 5 s).
    ready: int
    unacked: int
    consumers: int
    in_retry: int
    delayed: int
    dead: int
    #: Seconds since the event at the head of the work queue was published; None when empty.
    oldest_age: float | None
    delay_target: float
    #: Per second, averaged over ``rate_window`` seconds (an instant rate reads 0 between bursts).
    incoming_rate: float
    ack_rate: float
    rate_window: float = 60.0
    #: "closed", "half-open" or "open" from the consumers' /metrics; None when not scraped.
    breaker: str | None = None

    @property
    def late(self) -> bool:
        return self.oldest_age is not None and self.oldest_age > self.delay_target


@dataclass(frozen=True)
class IngressStatus:
    """The webhook ingress, from its /metrics."""

    url: str
    reachable: bool
    outbox_depth: int | None = None
    #: Age of the oldest event waiting in the outbox: how far the relay is behind.
    relay_lag: float | None = None
    kept_deliveries: int | None = None
    broker_connected: bool | None = None
    error: str = ""
    #: Outbox rows set aside because their message can never be published.
    set_aside_rows: int | None = None


@dataclass(frozen=True)
class StoreWebhookProblem:
    webhook_id: int
    name: str
    topic: str
    status: str
    problem: str
    fix: str


@dataclass(frozen=True)
class StoreWebhooks:
    """Whether the store's webhooks still deliver to woofleet."""

    store: str
    checked: int
    problems: tuple[StoreWebhookProblem, ...] = ()
    missing_topics: tuple[str, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class FleetStatus:
    vhost: str
    #: RFC 3339 UTC, when the data was read.
    checked_at: str
    consumers: tuple[ConsumerStatus, ...]
    missing_queues: tuple[str, ...] = ()
    #: None: not checked (no ingress URL answered or was given).
    ingress: IngressStatus | None = None
    #: None: not checked (no store credentials).
    webhooks: StoreWebhooks | None = None
    #: Consumer /metrics endpoints that did not answer ("URL: error"): breakers unknown there.
    unreachable_metrics: tuple[str, ...] = ()
    #: Signed deliveries held on the broker while the webhook's state store is away (None: the
    #: queue does not exist).
    held_deliveries: int | None = None


@dataclass(frozen=True)
class Thresholds:
    """When a figure needs a person. ``status`` flags any dead letter; alerts allow some."""

    dead_letters: int = 0
    #: Per-consumer overrides of ``dead_letters``.
    dead_letters_for: Mapping[str, int] = field(default_factory=dict)
    #: Seconds the oldest outbox event may wait before the relay counts as stuck.
    relay_lag: float = 60.0
    kept_deliveries: int = 0

    def dead_letters_allowed(self, consumer: str) -> int:
        return self.dead_letters_for.get(consumer, self.dead_letters)


@dataclass(frozen=True)
class Finding:
    """Something that needs a person: what, how big, against what, and where to look next."""

    #: Stable identity across evaluations ("dead_letters:crm"): alerts fire and resolve by it.
    key: str
    kind: str
    #: A consumer name, "ingress", "topology" or "webhooks".
    subject: str
    summary: str
    value: float
    threshold: float
    command: str


def evaluate(status: FleetStatus, thresholds: Thresholds | None = None) -> list[Finding]:
    """Every finding in ``status``, in a stable order (the table's, then ingress, webhooks)."""
    limits = thresholds or Thresholds()
    findings: list[Finding] = []
    if status.missing_queues:
        findings.append(
            Finding(
                "missing_queues",
                "missing_queues",
                "topology",
                f"{len(status.missing_queues)} queue(s) missing: "
                + ", ".join(status.missing_queues[:4])
                + (", ..." if len(status.missing_queues) > 4 else ""),
                len(status.missing_queues),
                0,
                "woofleet topology apply",
            )
        )
    for c in status.consumers:
        findings += _consumer_findings(c, limits)
    if status.held_deliveries:
        findings.append(
            Finding(
                "held_deliveries",
                "held_deliveries",
                "ingress",
                f"{status.held_deliveries} signed delivery(ies) held on the broker: the webhook's "
                "state store is away (they become events once it is back)",
                status.held_deliveries,
                0,
                "curl WEBHOOK/readyz",
            )
        )
    for where in status.unreachable_metrics:
        url = where.split(": ", 1)[0]
        findings.append(
            Finding(
                f"metrics_unreachable:{url}",
                "metrics_unreachable",
                "consumers",
                f"consumer metrics not answering at {where}; its breakers are unknown",
                1,
                0,
                f"curl {url}",
            )
        )
    if status.ingress is not None:
        findings += _ingress_findings(status.ingress, limits)
    if status.webhooks is not None:
        findings += _webhook_findings(status.webhooks)
    return findings


def _consumer_findings(c: ConsumerStatus, limits: Thresholds) -> list[Finding]:
    found = []
    allowed = limits.dead_letters_allowed(c.consumer)
    if c.dead > allowed:
        found.append(
            Finding(
                f"dead_letters:{c.consumer}",
                "dead_letters",
                c.consumer,
                f"{c.consumer}: {c.dead} dead letter(s) waiting (threshold {allowed})",
                c.dead,
                allowed,
                f"woofleet dlq list {c.consumer} --by-reason",
            )
        )
    if c.late and c.oldest_age is not None:
        found.append(
            Finding(
                f"delay:{c.consumer}",
                "delay",
                c.consumer,
                f"{c.consumer}: oldest waiting event is {_duration(c.oldest_age)} old, over the "
                f"{c.priority_class} target of {_duration(c.delay_target)} "
                f"({c.ready} ready, {c.consumers} consumer(s))",
                round(c.oldest_age, 1),
                c.delay_target,
                "woofleet status --watch",
            )
        )
    if c.breaker in ("open", "half-open"):
        found.append(
            Finding(
                f"breaker:{c.consumer}",
                "breaker_open",
                c.consumer,
                f"{c.consumer}: circuit breaker {c.breaker}, its target keeps failing "
                f"({c.unacked} held, {c.ready} waiting)",
                1 if c.breaker == "half-open" else 2,
                0,
                f"woofleet dlq list {c.consumer}; the consumer's logs name the target",
            )
        )
    return found


def _ingress_findings(ingress: IngressStatus, limits: Thresholds) -> list[Finding]:
    if not ingress.reachable:
        return [
            Finding(
                "ingress_unreachable",
                "ingress_unreachable",
                "ingress",
                f"ingress not answering at {ingress.url}: {ingress.error}",
                1,
                0,
                f"curl {ingress.url}/readyz",
            )
        ]
    found = []
    if ingress.relay_lag is not None and ingress.relay_lag > limits.relay_lag:
        found.append(
            Finding(
                "relay_lag",
                "relay_lag",
                "ingress",
                f"outbox not draining: {ingress.outbox_depth or 0} event(s) waiting, the oldest "
                f"for {_duration(ingress.relay_lag)}"
                + ("" if ingress.broker_connected is not False else " (broker not connected)"),
                round(ingress.relay_lag, 1),
                limits.relay_lag,
                f"curl {ingress.url}/readyz",
            )
        )
    if ingress.kept_deliveries is not None and ingress.kept_deliveries > limits.kept_deliveries:
        found.append(
            Finding(
                "kept_deliveries",
                "kept_deliveries",
                "ingress",
                f"{ingress.kept_deliveries} signed delivery(ies) kept unprocessed",
                ingress.kept_deliveries,
                limits.kept_deliveries,
                "woofleet ingress list",
            )
        )
    if ingress.set_aside_rows:
        found.append(
            Finding(
                "outbox_set_aside",
                "outbox_set_aside",
                "ingress",
                f"{ingress.set_aside_rows} outbox row(s) set aside: they can never be published",
                ingress.set_aside_rows,
                0,
                "woofleet ingress list",
            )
        )
    return found


def _webhook_findings(webhooks: StoreWebhooks) -> list[Finding]:
    if webhooks.error:
        return [
            Finding(
                "webhooks_unchecked",
                "webhooks_unchecked",
                "webhooks",
                f"could not check the webhooks of {webhooks.store}: {webhooks.error}",
                1,
                0,
                "woofleet status",
            )
        ]
    found = [
        Finding(
            f"webhook:{p.webhook_id}",
            "webhook",
            "webhooks",
            f"store webhook {p.webhook_id} {p.name!r} ({p.topic}) {p.problem}; fix: {p.fix}",
            1,
            0,
            "woofleet reconcile --once",
        )
        for p in webhooks.problems
    ]
    if webhooks.missing_topics:
        found.append(
            Finding(
                "webhook_topics",
                "webhook",
                "webhooks",
                "no active webhook to woofleet for " + ", ".join(webhooks.missing_topics),
                len(webhooks.missing_topics),
                0,
                "woofleet status",
            )
        )
    return found


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def as_json(status: FleetStatus, findings: list[Finding]) -> dict[str, Any]:
    """The ``woofleet status --json`` document (schema 1, see docs/operations.md)."""
    return {
        "schema": JSON_SCHEMA,
        "checked_at": status.checked_at,
        "vhost": status.vhost,
        "ok": not findings,
        "consumers": [
            {
                "name": c.consumer,
                "class": c.priority_class,
                "ready": c.ready,
                "unacked": c.unacked,
                "consumers": c.consumers,
                "retrying": c.in_retry,
                "delayed": c.delayed,
                "dead_letters": c.dead,
                "oldest_age_seconds": None if c.oldest_age is None else round(c.oldest_age, 1),
                "delay_target_seconds": c.delay_target,
                "incoming_per_second": round(c.incoming_rate, 3),
                "acked_per_second": round(c.ack_rate, 3),
                "rate_window_seconds": c.rate_window,
                "breaker": c.breaker,
            }
            for c in status.consumers
        ],
        "missing_queues": list(status.missing_queues),
        "unreachable_metrics": list(status.unreachable_metrics),
        "held_deliveries": status.held_deliveries,
        "ingress": None
        if status.ingress is None
        else {
            "url": status.ingress.url,
            "reachable": status.ingress.reachable,
            "outbox_depth": status.ingress.outbox_depth,
            "relay_lag_seconds": status.ingress.relay_lag,
            "kept_deliveries": status.ingress.kept_deliveries,
            "outbox_set_aside": status.ingress.set_aside_rows,
            "broker_connected": status.ingress.broker_connected,
            "error": status.ingress.error,
        },
        "webhooks": None if status.webhooks is None else asdict(status.webhooks),
        "findings": [asdict(f) for f in findings],
    }
