"""The Prometheus Operator component: PodMonitors, the PrometheusRule and the Grafana dashboard.

Their CRDs are large and not kept in tests/data/crds, so the objects are checked against the
subset of the Prometheus Operator's monitoring.coreos.com/v1 API that woofleet uses, with
unknown fields refused (a misspelt field is then caught here rather than dropped by the
API server). Which metrics and labels they name is checked against real processes in
tests/integration/test_monitoring_metrics.py.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import jsonschema
import pytest
import yaml

from fleet.settings import Settings
from tests.contract.test_k8s_manifests import K8S, _kubectl
from topology import monitoring

Manifest = dict[str, Any]

OVERLAY = "overlays/production-prometheus"


def _strict(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_METADATA = {"type": "object", "required": ["name", "namespace"]}
_SELECTOR = _strict({"matchLabels": _STRING_MAP})
_ENDPOINT = _strict(
    {
        "port": {"type": "string"},
        "path": {"type": "string"},
        "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
        "params": {"type": "object", "additionalProperties": {"type": "array"}},
    },
    ("port",),
)
_RULE = _strict(
    {
        "alert": {"type": "string"},
        "expr": {"type": "string", "minLength": 1},
        "for": {"type": "string", "pattern": "^(0|[0-9]+(ms|s|m|h))+$"},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
    },
    ("alert", "expr"),
)
SCHEMAS = {
    "PodMonitor": _strict(
        {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "PodMonitor"},
            "metadata": _METADATA,
            "spec": _strict(
                {
                    "selector": _SELECTOR,
                    "podTargetLabels": {"type": "array", "items": {"type": "string"}},
                    "podMetricsEndpoints": {"type": "array", "items": _ENDPOINT, "minItems": 1},
                },
                ("selector", "podMetricsEndpoints"),
            ),
        },
        ("apiVersion", "kind", "metadata", "spec"),
    ),
    "PrometheusRule": _strict(
        {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "PrometheusRule"},
            "metadata": _METADATA,
            "spec": _strict(
                {
                    "groups": {
                        "type": "array",
                        "items": _strict(
                            {
                                "name": {"type": "string"},
                                "rules": {"type": "array", "items": _RULE, "minItems": 1},
                            },
                            ("name", "rules"),
                        ),
                    }
                },
                ("groups",),
            ),
        },
        ("apiVersion", "kind", "metadata", "spec"),
    ),
}


@pytest.fixture(scope="module")
def objects() -> list[Manifest]:
    result = subprocess.run(
        [_kubectl(), "kustomize", str(K8S / OVERLAY)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_prometheus_operator_objects_use_only_the_fields_the_operator_knows(
    objects: list[Manifest],
) -> None:
    monitored = [o for o in objects if o["apiVersion"].startswith("monitoring.coreos.com/")]
    assert sorted(o["kind"] for o in monitored) == ["PodMonitor", "PodMonitor", "PrometheusRule"]
    for obj in monitored:
        errors = list(jsonschema.Draft7Validator(SCHEMAS[obj["kind"]]).iter_errors(obj))
        assert not errors, f"{obj['kind']}/{obj['metadata']['name']}: " + "; ".join(
            f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors
        )


def test_the_subset_schema_catches_a_misspelt_field() -> None:
    (rule,) = [monitoring.prometheus_rule()]
    rule["metadata"]["namespace"] = "woofleet"
    validator = jsonschema.Draft7Validator(SCHEMAS["PrometheusRule"])
    assert validator.is_valid(rule)
    rule["spec"]["groups"][0]["rules"][0]["annotation"] = {}
    assert not validator.is_valid(rule)


def test_pod_monitors_select_the_pods_that_serve_metrics(objects: list[Manifest]) -> None:
    monitor = next(
        o for o in objects if o["kind"] == "PodMonitor" and o["metadata"]["name"] == "woofleet"
    )
    wanted = monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    scraped = []
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        template = deployment["spec"]["template"]
        assert wanted.items() <= template["metadata"]["labels"].items(), deployment["metadata"]
        ports = {p["name"] for p in template["spec"]["containers"][0]["ports"]}
        assert endpoint["port"] in ports
        scraped.append(deployment["metadata"]["name"])
    assert {"woofleet-webhook", "woofleet-alerts", "woofleet-stock"} <= set(scraped)


def test_the_dashboard_config_map_holds_the_dashboard(objects: list[Manifest]) -> None:
    (config,) = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == monitoring.DASHBOARD_CONFIG_MAP
    ]
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = json.loads(config["data"][monitoring.DASHBOARD_FILE])
    assert board == monitoring.dashboard()
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    titles = " | ".join(p["title"] for p in board["panels"])
    for first_look in (
        "Deliveries in",
        "Events out",
        "Per-consumer rate",
        "latency",
        "Retries and dead letters",
        "Queue depth",
        "Oldest message against the class target",
        "Breaker states",
        "Outbox",
    ):
        assert first_look in titles
    for panel in board["panels"]:
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]


def test_the_rules_are_the_alerts_woofleet_alerts_sends_with_the_same_thresholds() -> None:
    rules = {r["alert"]: r for r in monitoring.alert_rules()}
    assert set(rules) >= {
        "WoofleetDeadLetters",
        "WoofleetQueueLate",
        "WoofleetBreakerOpen",
        "WoofleetKeptDeliveries",
        "WoofleetOutboxNotDraining",
        "WoofleetStoreWebhook",
    }
    defaults = Settings()
    assert rules["WoofleetDeadLetters"]["expr"].endswith(f"> {defaults.alert_dlq_threshold}")
    assert rules["WoofleetBreakerOpen"]["for"] == f"{defaults.alert_breaker_open_seconds / 60:g}m"
    assert (
        f"[{defaults.alert_outbox_seconds / 60:g}m]" in rules["WoofleetOutboxNotDraining"]["expr"]
    )
    for rule in rules.values():
        assert rule["annotations"]["summary"] and rule["annotations"]["command"], rule["alert"]
