"""The alert rules on what the broker and the processes report."""

from __future__ import annotations

from fleet.alert_rules import (
    SCRAPE_GRACE_SECONDS,
    Sample,
    Scrape,
    metric_findings,
    oldest_message_age,
    queue_findings,
)
from fleet.alert_state import AlertState
from fleet.notify import slack_message
from topology.fleet import DEFAULT_FLEET

NOW = 1_796_400_000.0
URL = "http://127.0.0.1:9100/metrics"


def queue(name: str, ready: int, **extra: object) -> dict[str, object]:
    return {"name": name, "messages_ready": ready, "messages": ready, **extra}


def test_the_head_timestamp_gives_the_age_when_the_broker_reports_it() -> None:
    stalled: dict[str, float] = {}
    head = queue("woo.stock", 3, head_message_timestamp=int(NOW - 42))
    assert oldest_message_age(head, NOW, stalled) == 42


def test_without_a_head_timestamp_the_age_is_backlog_over_rate_or_time_stalled() -> None:
    stalled: dict[str, float] = {}
    moving = queue("woo.crm", 100, message_stats={"deliver_get_details": {"rate": 4.0}})
    assert oldest_message_age(moving, NOW, stalled) == 25.0

    # A queue with messages and no deliveries ages from when it was first seen so
    stuck = queue("woo.crm", 100)
    assert oldest_message_age(stuck, NOW, stalled) == 0.0
    assert oldest_message_age(stuck, NOW + 50, stalled) == 50.0
    # and an empty queue forgets it
    assert oldest_message_age(queue("woo.crm", 0), NOW + 60, stalled) == 0.0
    assert stalled == {}


def test_dead_letters_above_the_threshold_and_late_queues_are_findings() -> None:
    fleet = DEFAULT_FLEET.only("stock", "crm", "analytics")
    queues = [
        queue("woo.crm.dlq", 11),
        queue("woo.analytics.dlq", 11),  # under its own threshold
        queue("woo.stock.dlq", 10),  # at the threshold: not above it
        queue("woo.stock", 5, head_message_timestamp=int(NOW - 31), consumers=0),
        queue("woo.crm", 5, head_message_timestamp=int(NOW - 31)),  # low class: 30 min
    ]
    findings, ages = queue_findings(
        queues,
        fleet,
        now=NOW,
        dlq_threshold=10,
        dlq_thresholds={"analytics": 50},
        stalled_since={},
    )
    by_key = {f.key: f for f in findings}
    assert set(by_key) == {"dlq:crm", "late:stock"}
    assert by_key["dlq:crm"].title == "crm: 11 dead letters (threshold 10)"
    assert by_key["dlq:crm"].command == "woofleet dlq list crm"
    late = by_key["late:stock"]
    assert late.title == "stock: oldest message waiting 31 s (high target 30 s)"
    assert "nothing is consuming it" in late.detail and late.age == 31
    assert ages == {"stock": 31, "crm": 31}


def test_deliveries_held_on_the_broker_are_a_finding_once_they_have_waited_five_minutes() -> None:
    # Given deliveries held while the webhook's state store is away
    queues = [queue("woo.ingress.held", 612)]

    # When the rules read the broker, and the alert state judges the finding over time
    findings, _ = queue_findings(
        queues, DEFAULT_FLEET, now=NOW, dlq_threshold=10, dlq_thresholds={}, stalled_since={}
    )
    [held] = findings
    state = AlertState()

    # Then it names the count and the cause, and fires only once it has lasted its hold
    assert held.key == "held" and held.title.startswith("612 signed deliveries held")
    assert "state store is away" in held.title
    assert state.changes([held], now=NOW) == []
    assert [c.kind for c in state.changes([held], now=NOW + held.hold)] == ["firing"]
    empty, _ = queue_findings(
        [queue("woo.ingress.held", 0)],
        DEFAULT_FLEET,
        now=NOW,
        dlq_threshold=10,
        dlq_thresholds={},
        stalled_since={},
    )
    assert empty == []


def test_metric_findings_cover_breakers_kept_deliveries_the_outbox_and_silence() -> None:
    consumer = Scrape(
        URL,
        [
            Sample("woofleet_breaker_state", {"consumer": "crm"}, 2),
            Sample("woofleet_breaker_state", {"consumer": "stock"}, 1),  # half-open: probing
        ],
    )
    replica = Scrape(URL + "?2", [Sample("woofleet_breaker_state", {"consumer": "crm"}, 2)])
    webhook = Scrape(
        "http://127.0.0.1:8080/metrics",
        [
            Sample("woofleet_outbox_depth", {}, 12),
            Sample("woofleet_broker_up", {}, 0),
            Sample("woofleet_ingress_kept_deliveries", {}, 3),
        ],
    )
    silent = Scrape("http://127.0.0.1:9101/metrics", error="ConnectError: refused")
    findings = metric_findings(
        [consumer, replica, webhook, silent], breaker_open_seconds=180, outbox_seconds=300
    )
    by_key = {f.key: f for f in findings}
    assert set(by_key) == {
        "breaker:crm",  # one alert for both replicas
        "kept:http://127.0.0.1:8080/metrics",
        "outbox:http://127.0.0.1:8080/metrics",
        "scrape:http://127.0.0.1:9101/metrics",
    }
    assert by_key["breaker:crm"].hold == 180
    assert by_key["outbox:http://127.0.0.1:8080/metrics"].hold == 300
    assert "no broker connection" in by_key["outbox:http://127.0.0.1:8080/metrics"].detail
    assert by_key["kept:http://127.0.0.1:8080/metrics"].command == "woofleet ingress list"
    assert by_key["scrape:http://127.0.0.1:9101/metrics"].hold == SCRAPE_GRACE_SECONDS


def test_an_outbox_with_an_age_fires_only_when_its_oldest_event_is_too_old() -> None:
    def outbox(age: float) -> Scrape:
        samples = [
            Sample("woofleet_outbox_depth", {}, 2),
            Sample("woofleet_outbox_oldest_seconds", {}, age),
        ]
        return Scrape(URL, samples)

    assert metric_findings([outbox(10)], breaker_open_seconds=180, outbox_seconds=300) == []
    (old,) = metric_findings([outbox(400)], breaker_open_seconds=180, outbox_seconds=300)
    assert old.age == 400 and old.hold == 0


def test_the_slack_message_has_blocks_a_text_fallback_and_the_command() -> None:
    findings, _ = queue_findings(
        [queue("woo.crm.dlq", 14)],
        DEFAULT_FLEET.only("crm"),
        now=NOW,
        dlq_threshold=10,
        dlq_thresholds={},
        stalled_since={},
    )
    changes = AlertState().changes(findings, now=NOW)
    message = slack_message(changes, "woofleet · production · vhost /")
    assert message["text"] == "FIRING: crm: 14 dead letters (threshold 10) — woofleet dlq list crm"
    header, section, context = message["blocks"]
    assert header["text"]["text"] == "FIRING: crm: 14 dead letters (threshold 10)"
    assert "`woofleet dlq list crm`" in section["text"]["text"]
    assert "since 2026-" in section["text"]["text"]
    assert context["elements"][0]["text"] == "woofleet · production · vhost /"
