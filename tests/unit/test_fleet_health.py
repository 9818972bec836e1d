"""The fleet's health judged from data: what status reports and alerts notify about."""

from __future__ import annotations

from dataclasses import replace

from fleet.status import (
    ConsumerStatus,
    FleetStatus,
    IngressStatus,
    StoreWebhookProblem,
    StoreWebhooks,
    Thresholds,
    as_json,
    evaluate,
)


def consumer(name: str = "crm", **changes: object) -> ConsumerStatus:
    row = ConsumerStatus(
        consumer=name,
        priority_class="low",
        ready=0,
        unacked=0,
        consumers=1,
        in_retry=0,
        delayed=0,
        dead=0,
        oldest_age=None,
        delay_target=1800,
        incoming_rate=0.0,
        ack_rate=0.0,
        breaker="closed",
    )
    return replace(row, **changes)  # type: ignore[arg-type]


def fleet(*rows: ConsumerStatus, **changes: object) -> FleetStatus:
    status = FleetStatus(vhost="/", checked_at="2026-12-04T21:20:49.123Z", consumers=rows)
    return replace(status, **changes)  # type: ignore[arg-type]


def test_a_healthy_fleet_has_no_findings() -> None:
    healthy = fleet(
        consumer(ready=5, oldest_age=60),
        ingress=IngressStatus("http://in", True, 0, None, 0, True),
        webhooks=StoreWebhooks("https://shop", 2),
    )
    assert evaluate(healthy) == []
    assert as_json(healthy, [])["ok"] is True


def test_each_problem_is_one_finding_with_a_stable_key_and_a_command() -> None:
    sick = fleet(
        consumer("crm", dead=3, breaker="open", unacked=3, consumers=0),
        consumer("stock", priority_class="high", delay_target=30, ready=40, oldest_age=95),
        missing_queues=("woo.loyalty",),
        held_deliveries=42,
        ingress=IngressStatus("http://in", True, 12, 300.0, 2, False),
        webhooks=StoreWebhooks(
            "https://shop",
            2,
            (StoreWebhookProblem(7, "orders", "order.updated", "disabled", "is disabled", "…"),),
        ),
    )
    findings = evaluate(sick)
    assert [f.key for f in findings] == [
        "missing_queues",
        "dead_letters:crm",
        "breaker:crm",
        "delay:stock",
        "held_deliveries",
        "relay_lag",
        "kept_deliveries",
        "webhook:7",
    ]
    delay = findings[3]
    assert "95s old, over the high target of 30s" in delay.summary
    assert (delay.value, delay.threshold) == (95, 30)
    assert findings[1].command == "woofleet dlq list crm --by-reason"
    assert "broker not connected" in findings[5].summary
    assert findings[4].value == 42 and "state store is away" in findings[4].summary


def test_thresholds_allow_some_dead_letters_per_consumer() -> None:
    status = fleet(consumer("crm", dead=8), consumer("stock", dead=3))
    limits = Thresholds(dead_letters=10, dead_letters_for={"stock": 2})
    assert [f.key for f in evaluate(status, limits)] == ["dead_letters:stock"]


def test_an_ingress_that_does_not_answer_is_a_finding() -> None:
    status = fleet(ingress=IngressStatus("http://in", False, error="connection refused"))
    [finding] = evaluate(status)
    assert finding.kind == "ingress_unreachable" and "connection refused" in finding.summary


def test_the_json_shape_has_the_documented_keys() -> None:
    document = as_json(fleet(consumer(dead=1)), evaluate(fleet(consumer(dead=1))))
    assert set(document) == {
        "schema",
        "checked_at",
        "vhost",
        "ok",
        "consumers",
        "missing_queues",
        "unreachable_metrics",
        "held_deliveries",
        "ingress",
        "webhooks",
        "findings",
    }
    assert set(document["consumers"][0]) == {
        "name",
        "class",
        "ready",
        "unacked",
        "consumers",
        "retrying",
        "delayed",
        "dead_letters",
        "oldest_age_seconds",
        "delay_target_seconds",
        "incoming_per_second",
        "acked_per_second",
        "rate_window_seconds",
        "breaker",
    }
    assert set(document["findings"][0]) == {
        "key",
        "kind",
        "subject",
        "summary",
        "value",
        "threshold",
        "command",
    }


def test_delay_targets_are_topology_data_per_class() -> None:
    from topology.fleet import CLASSES, DEFAULT_FLEET, PriorityClass

    targets = {c.value: CLASSES[c].delay_target for c in PriorityClass}
    assert targets == {"high": 30, "medium": 300, "low": 1800, "bulk": 3600}
    assert DEFAULT_FLEET.consumer("payment-capture").delay_target == 30
    assert DEFAULT_FLEET.consumer("catalog").delay_target == 3600


def test_a_delayed_consumer_waits_from_the_end_of_its_delay() -> None:
    from fleet.status_sources import _waited

    week = 7 * 86400.0
    assert _waited(now=week + 100, published=0, delay=week) == 100
    assert _waited(now=100, published=0, delay=None) == 100
    assert _waited(now=100, published=150, delay=None) == 0


def test_outbox_rows_set_aside_are_a_finding() -> None:
    ingress = IngressStatus("http://in", True, 0, None, 0, True, set_aside_rows=2)
    [finding] = evaluate(fleet(consumer(), ingress=ingress))
    assert (finding.kind, finding.value, finding.command) == (
        "outbox_set_aside",
        2,
        "woofleet ingress list",
    )
