"""One evaluation of the fleet's health, and the message it sends (``woofleet alerts``).

Reads the management API (dead letters, oldest waiting message against the class's delay
target), the /metrics endpoints in ``WOOFLEET_METRICS_URLS`` (breakers, kept deliveries, the
outbox) and, when the caller gives one, the store's webhooks; then announces what started or
stopped through every configured notifier, in one message per evaluation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import httpx
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fleet.alert_rules import (
    MANAGEMENT,
    STORE,
    Finding,
    management_unreachable,
    metric_findings,
    queue_findings,
    scrape,
)
from fleet.alert_state import AlertState, Change
from fleet.errors import WoofleetError
from fleet.notify import Notifier, NotifyError
from fleet.settings import Settings
from topology.fleet import FleetSpec
from topology.management import Management

log = logging.getLogger("fleet.alerts")

#: Returns the findings about the store's webhooks, or raises WoofleetError when it cannot
#: tell (then the store's alerts stay as they were).
WebhookCheck = Callable[[], list[Finding]]


@dataclass
class Evaluation:
    """What one evaluation saw and did."""

    at: float
    findings: list[Finding] = field(default_factory=list)
    #: Sources that could not be read this time.
    unread: set[str] = field(default_factory=set)
    #: consumer → seconds its oldest ready message has waited.
    ages: dict[str, float] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    #: Notifier errors, one line each.
    errors: list[str] = field(default_factory=list)


class FleetAlerts:
    """Evaluates and notifies; keeps nothing itself but the latest evaluation (for /metrics)."""

    def __init__(
        self,
        settings: Settings,
        fleet: FleetSpec,
        vhost: str,
        notifiers: Sequence[Notifier],
        *,
        webhook_check: WebhookCheck | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.fleet = fleet
        self.vhost = vhost
        self.notifiers = notifiers
        self.webhook_check = webhook_check
        self.clock = clock
        self.latest: Evaluation | None = None
        self.context = f"woofleet · {settings.environment} · vhost {vhost}"

    def evaluate(self, state: AlertState) -> Evaluation:
        """Read every source, work out what changed, announce it, and record what was sent."""
        evaluation = Evaluation(at=self.clock())
        self._read_broker(evaluation, state)
        self._read_metrics(evaluation)
        self._read_store(evaluation)
        evaluation.changes = state.changes(
            evaluation.findings, now=evaluation.at, unread=evaluation.unread
        )
        if evaluation.changes:
            self._announce(evaluation, state)
        self.latest = evaluation
        return evaluation

    def _read_broker(self, evaluation: Evaluation, state: AlertState) -> None:
        settings = self.settings
        try:
            with Management(settings.management_url.get_secret_value()) as management:
                queues = management.queues(self.vhost)
        except (WoofleetError, httpx.HTTPError) as exc:
            evaluation.unread.add(MANAGEMENT)
            evaluation.findings.append(management_unreachable(str(exc)))
            return
        findings, evaluation.ages = queue_findings(
            queues,
            self.fleet,
            now=evaluation.at,
            dlq_threshold=settings.alert_dlq_threshold,
            dlq_thresholds=settings.alert_dlq_thresholds,
            stalled_since=state.stalled_since,
        )
        evaluation.findings += findings

    def _read_metrics(self, evaluation: Evaluation) -> None:
        if not self.settings.metrics_urls:
            return
        with httpx.Client(timeout=5.0) as client:
            scrapes = [scrape(url, client) for url in self.settings.metrics_urls]
        evaluation.unread |= {s.url for s in scrapes if s.error}
        evaluation.findings += metric_findings(
            scrapes,
            breaker_open_seconds=self.settings.alert_breaker_open_seconds,
            outbox_seconds=self.settings.alert_outbox_seconds,
        )

    def _read_store(self, evaluation: Evaluation) -> None:
        if self.webhook_check is None:
            return
        try:
            evaluation.findings += self.webhook_check()
        except WoofleetError as exc:
            evaluation.unread.add(STORE)
            log.warning("the store's webhooks could not be checked: %s", exc)

    def _announce(self, evaluation: Evaluation, state: AlertState) -> None:
        delivered = False
        for notifier in self.notifiers:
            try:
                notifier.send(evaluation.changes, self.context)
            except NotifyError as exc:
                evaluation.errors.append(str(exc))
            else:
                delivered = True
        # Once anyone was told, it counts as said: a second channel failing must not make the
        # first repeat the same message every evaluation.
        if delivered:
            state.announced(evaluation.changes)


class AlertsCollector(Collector):
    """The alerts process's /metrics: each work queue's oldest-message age against its class's
    delay target (the PrometheusRule and the dashboard read these), and what is firing."""

    def __init__(self, alerts: FleetAlerts, state: AlertState) -> None:
        self.alerts = alerts
        self.state = state

    def collect(self) -> Iterator[Metric]:
        oldest = GaugeMetricFamily(
            "woofleet_queue_oldest_message_seconds",
            "Seconds the oldest ready message of a work queue has waited (estimated where the "
            "broker does not report it)",
            labels=["consumer", "class"],
        )
        target = GaugeMetricFamily(
            "woofleet_queue_delay_target_seconds",
            "How long a message of the consumer's priority class may wait",
            labels=["consumer", "class"],
        )
        latest = self.alerts.latest
        for consumer in self.alerts.fleet.consumers:
            labels = [consumer.name, consumer.priority_class.value]
            target.add_metric(labels, consumer.delay_target)
            if latest is not None and consumer.name in latest.ages:
                oldest.add_metric(labels, latest.ages[consumer.name])
        firing = GaugeMetricFamily(
            "woofleet_alerts_firing", "Alerts announced and not yet resolved", labels=["alert"]
        )
        for tracked in self.state.firing():
            firing.add_metric([tracked.finding.key], 1)
        last = GaugeMetricFamily(
            "woofleet_alerts_last_evaluation_timestamp_seconds",
            "When the fleet was last evaluated (Unix time)",
        )
        if latest is not None:
            last.add_metric([], latest.at)
        yield from (oldest, target, firing, last)
