"""Prometheus Operator objects and the Grafana dashboard, for ``k8s/components/prometheus``.

The same alerts as ``woofleet alerts`` (dead letters, late queues, open breakers, kept or held
deliveries, an outbox not draining, the store's webhooks) as a PrometheusRule; PodMonitors for
woofleet's processes and the RabbitMQ nodes; and the dashboard an operator opens first. Queue
depths come from the broker's rabbitmq_prometheus plugin (per-queue figures on
``/metrics/detailed``); the oldest message's age against its class's target is exported by
``woofleet alerts``, which is the one that can tell it.
"""

from __future__ import annotations

import json
from typing import Any

from topology import names
from topology.fleet import (
    BREAKER_ALERT_SECONDS,
    CLASSES,
    DEFAULT_DLQ_ALERT_THRESHOLD,
    HELD_ALERT_SECONDS,
    OUTBOX_ALERT_SECONDS,
    PriorityClass,
)

Manifest = dict[str, Any]

COMPONENT_DIR = "components/prometheus"
DASHBOARD_FILE = "woofleet-dashboard.json"
DASHBOARD_CONFIG_MAP = "woofleet-grafana-dashboard"
#: How long a breaker stays open, or the outbox keeps events, before it is an alert.
BREAKER_OPEN_FOR = f"{BREAKER_ALERT_SECONDS / 60:g}m"
OUTBOX_STUCK_FOR = f"{OUTBOX_ALERT_SECONDS / 60:g}m"
HELD_FOR = f"{HELD_ALERT_SECONDS / 60:g}m"
#: Labels Prometheus adds to every scraped series (not in any /metrics output).
TARGET_LABELS = ("namespace", "pod", "job", "instance", "container", "endpoint")

_WORK_QUEUE = r'queue=~"woo\\.[^.]+"'
_DLQ = r'queue=~"woo\\.[^.]+\\.dlq"'


def delay_targets() -> str:
    """``high 30 s, medium 5 min, ...``: every class's delay target, for people."""
    return ", ".join(
        f"{c.value} {_human(CLASSES[c].delay_target)}" for c in PriorityClass.__members__.values()
    )


def _human(seconds: float) -> str:
    return (
        f"{seconds / 3600:g} h"
        if seconds >= 3600
        else f"{seconds / 60:g} min"
        if seconds >= 60
        else f"{seconds:g} s"
    )


def _rule(
    alert: str,
    expr: str,
    summary: str,
    command: str,
    *,
    for_: str = "1m",
    severity: str = "warning",
) -> Manifest:
    return {
        "alert": alert,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity, "team": "woofleet"},
        "annotations": {"summary": summary, "command": command},
    }


def alert_rules() -> list[Manifest]:
    """The rules, in the order an operator reads them."""
    return [
        _rule(
            "WoofleetDeadLetters",
            "label_replace(rabbitmq_detailed_queue_messages{" + _DLQ + '}, "consumer", "$1", '
            r'"queue", "woo\\.([^.]+)\\.dlq") > ' + str(DEFAULT_DLQ_ALERT_THRESHOLD),
            "{{ $labels.consumer }}: {{ $value }} dead letters (threshold "
            f"{DEFAULT_DLQ_ALERT_THRESHOLD})",
            "woofleet dlq list {{ $labels.consumer }}",
        ),
        _rule(
            "WoofleetQueueLate",
            "woofleet_queue_oldest_message_seconds > woofleet_queue_delay_target_seconds",
            "{{ $labels.consumer }}: oldest message waiting {{ $value | humanizeDuration }} "
            f"(class {{{{ $labels.class }}}}; targets: {delay_targets()})",
            "woofleet status",
        ),
        _rule(
            "WoofleetBreakerOpen",
            "max by (consumer) (woofleet_breaker_state) == 2",
            "{{ $labels.consumer }}: circuit breaker open for more than " + BREAKER_OPEN_FOR,
            "woofleet status",
            for_=BREAKER_OPEN_FOR,
        ),
        _rule(
            "WoofleetKeptDeliveries",
            "max(woofleet_ingress_kept_deliveries) > 0",
            "{{ $value }} signed deliveries kept unprocessed",
            "woofleet ingress list",
            for_="5m",
        ),
        _rule(
            "WoofleetHeldDeliveries",
            'rabbitmq_detailed_queue_messages{queue="' + names.HELD_QUEUE + '"} > 0',
            "{{ $value }} signed deliveries held on the broker: the webhook's state store is away",
            "curl WEBHOOK/readyz",
            for_=HELD_FOR,
        ),
        _rule(
            "WoofleetOutboxNotDraining",
            f"min_over_time(woofleet_outbox_depth[{OUTBOX_STUCK_FOR}]) > 0",
            "{{ $labels.pod }}: outbox not draining, {{ $value }} events waiting for "
            + OUTBOX_STUCK_FOR,
            "woofleet status",
            for_="0m",
        ),
        _rule(
            "WoofleetStoreWebhook",
            'woofleet_alerts_firing{alert=~"webhook:.*"} == 1',
            "a store webhook is disabled, paused or misdirected ({{ $labels.alert }})",
            "woofleet status",
            for_="0m",
        ),
        _rule(
            "WoofleetAlertsStalled",
            "time() - woofleet_alerts_last_evaluation_timestamp_seconds > 300",
            "woofleet alerts has not evaluated the fleet for {{ $value | humanizeDuration }}",
            "kubectl logs deploy/woofleet-alerts",
        ),
    ]


def prometheus_rule() -> Manifest:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "woofleet"},
        "spec": {"groups": [{"name": "woofleet", "rules": alert_rules()}]},
    }


def pod_monitors() -> list[Manifest]:
    """woofleet's processes (webhook, consumers, alerts) on their ``metrics`` port, and the
    RabbitMQ nodes' per-queue figures."""
    return [
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PodMonitor",
            "metadata": {"name": "woofleet"},
            "spec": {
                "selector": {"matchLabels": {"app.kubernetes.io/name": "woofleet"}},
                "podTargetLabels": ["app.kubernetes.io/component"],
                "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics", "interval": "30s"}],
            },
        },
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PodMonitor",
            "metadata": {"name": "woofleet-rabbitmq"},
            "spec": {
                # Pods of the RabbitmqCluster (k8s/rabbitmq), as the cluster operator labels them.
                "selector": {
                    "matchLabels": {
                        "app.kubernetes.io/name": "woofleet-rabbitmq",
                        "app.kubernetes.io/component": "rabbitmq",
                    }
                },
                "podMetricsEndpoints": [
                    {
                        "port": "prometheus",
                        "path": "/metrics/detailed",
                        # Per-queue depths only: every family per object is heavy on big brokers.
                        "params": {"family": ["queue_coarse_metrics"]},
                        "interval": "30s",
                    }
                ],
            },
        },
    ]


# --- the dashboard ---------------------------------------------------------------------------


def _panel(
    title: str,
    targets: list[tuple[str, str]],
    *,
    x: int,
    y: int,
    unit: str = "short",
    kind: str = "timeseries",
    description: str = "",
    extra: Manifest | None = None,
) -> Manifest:
    panel: Manifest = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "expr": expr,
                "legendFormat": legend,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
            }
            for i, (expr, legend) in enumerate(targets)
        ],
    }
    if extra:
        panel["fieldConfig"]["defaults"].update(extra)
    return panel


def dashboard_panels() -> list[Manifest]:
    rate = "[5m]"
    breaker_states = {
        "mappings": [
            {
                "type": "value",
                "options": {
                    "0": {"text": "closed", "color": "green"},
                    "1": {"text": "half-open", "color": "yellow"},
                    "2": {"text": "open", "color": "red"},
                },
            }
        ]
    }
    late = {
        "thresholds": {
            "mode": "absolute",
            "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}],
        },
        "custom": {"thresholdsStyle": {"mode": "line"}},
    }
    rows = [
        _panel(
            "Deliveries in (webhook)",
            [(f"sum by (outcome) (rate(woofleet_webhook_deliveries_total{rate}))", "{{outcome}}")],
            x=0,
            y=0,
            unit="reqps",
            description="Store deliveries by outcome; anything but accepted and ping needs a look.",
        ),
        _panel(
            "Events out (published to woo.events)",
            [
                (f"sum(rate(woofleet_events_published_total{rate}))", "published"),
                (
                    f"sum by (event_type) (rate(woofleet_events_queued_total{rate}))",
                    "{{event_type}}",
                ),
            ],
            x=12,
            y=0,
            unit="ops",
        ),
        _panel(
            "Per-consumer rate",
            [
                (
                    f"sum by (consumer, outcome) (rate(woofleet_consumer_messages_total{rate}))",
                    "{{consumer}} {{outcome}}",
                )
            ],
            x=0,
            y=8,
            unit="ops",
        ),
        _panel(
            "Handler latency p95 (p50 dashed)",
            [
                (
                    "histogram_quantile(0.95, sum by (consumer, le) "
                    f"(rate(woofleet_handler_seconds_bucket{rate})))",
                    "{{consumer}} p95",
                ),
                (
                    "histogram_quantile(0.5, sum by (consumer, le) "
                    f"(rate(woofleet_handler_seconds_bucket{rate})))",
                    "{{consumer}} p50",
                ),
                (
                    "histogram_quantile(0.99, sum by (le) "
                    f"(rate(woofleet_webhook_seconds_bucket{rate})))",
                    "webhook answer p99",
                ),
            ],
            x=12,
            y=8,
            unit="s",
        ),
        _panel(
            "Retries and dead letters",
            [
                (
                    'sum by (consumer) (rate(woofleet_consumer_messages_total{outcome="retried"}'
                    f"{rate}))",
                    "{{consumer}} retried",
                ),
                (
                    f"sum by (consumer) (rate(woofleet_dead_letters_total{rate}))",
                    "{{consumer}} dead-lettered",
                ),
                (
                    f"sum by (consumer) (rate(woofleet_consumer_requeues_total{rate}))",
                    "{{consumer}} requeued",
                ),
                (
                    f"sum by (consumer) (rate(woofleet_consumer_runtime_failures_total{rate}))",
                    "{{consumer}} runtime failures",
                ),
            ],
            x=0,
            y=16,
            unit="ops",
        ),
        _panel(
            "Dead-letter queues",
            [(f"sum by (queue) (rabbitmq_detailed_queue_messages{{{_DLQ}}})", "{{queue}}")],
            x=12,
            y=16,
            description=f"Alert above {DEFAULT_DLQ_ALERT_THRESHOLD} per consumer; "
            "`woofleet dlq list CONSUMER` shows why.",
        ),
        _panel(
            "Queue depth (ready, unacked)",
            [
                (
                    f"sum by (queue) (rabbitmq_detailed_queue_messages_ready{{{_WORK_QUEUE}}})",
                    "{{queue}} ready",
                ),
                (
                    f"sum by (queue) (rabbitmq_detailed_queue_messages_unacked{{{_WORK_QUEUE}}})",
                    "{{queue}} unacked",
                ),
            ],
            x=0,
            y=24,
        ),
        _panel(
            "Oldest message against the class target (1 = late)",
            [
                (
                    "max by (consumer, class) (woofleet_queue_oldest_message_seconds) / "
                    "max by (consumer, class) (woofleet_queue_delay_target_seconds)",
                    "{{consumer}} ({{class}})",
                )
            ],
            x=12,
            y=24,
            unit="percentunit",
            description=f"Targets: {delay_targets()}. From `woofleet alerts`.",
            extra=late,
        ),
        _panel(
            "Breaker states",
            [("max by (consumer) (woofleet_breaker_state)", "{{consumer}}")],
            x=0,
            y=32,
            kind="state-timeline",
            extra=breaker_states,
        ),
        _panel(
            "Outbox (events waiting for the broker)",
            [
                ("sum by (pod) (woofleet_outbox_depth)", "{{pod}} outbox"),
                ("min(woofleet_broker_up)", "broker connected"),
                ("max(woofleet_ingress_kept_deliveries)", "kept deliveries"),
            ],
            x=12,
            y=32,
        ),
    ]
    rows += [
        _panel(
            "HTTP targets: answers",
            [
                (
                    f"sum by (target, outcome) (rate(woofleet_target_requests_total{rate}))",
                    "{{target}} {{outcome}}",
                )
            ],
            x=0,
            y=40,
            unit="reqps",
            description="ok, transient (5xx, 429), rejected (other 4xx), timeout, unreachable.",
        ),
        _panel(
            "HTTP targets: latency p95",
            [
                (
                    "histogram_quantile(0.95, sum by (target, le) "
                    f"(rate(woofleet_target_request_seconds_bucket{rate})))",
                    "{{target}}",
                )
            ],
            x=12,
            y=40,
            unit="s",
        ),
    ]
    for number, panel in enumerate(rows, start=1):
        panel["id"] = number
    return rows


def dashboard() -> Manifest:
    """A Grafana dashboard (JSON model), provisioned by a ConfigMap for Grafana's sidecar."""
    return {
        "uid": "woofleet",
        "title": "woofleet",
        "tags": ["woofleet", "rabbitmq"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                }
            ]
        },
        "panels": dashboard_panels(),
    }


def dashboard_json() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def component_kustomization() -> Manifest:
    return {
        "apiVersion": "kustomize.config.k8s.io/v1alpha1",
        "kind": "Component",
        "resources": ["podmonitors.yaml", "prometheusrule.yaml"],
        "configMapGenerator": [
            {
                "name": DASHBOARD_CONFIG_MAP,
                "files": [DASHBOARD_FILE],
                # Grafana's dashboard sidecar picks up ConfigMaps with this label.
                "options": {"labels": {"grafana_dashboard": "1"}, "disableNameSuffixHash": True},
            }
        ],
    }
