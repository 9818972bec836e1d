"""The announce-once state machine behind ``woofleet alerts``: fire, hold, resolve, persist."""

from __future__ import annotations

from pathlib import Path

from fleet.alert_rules import MANAGEMENT, Finding
from fleet.alert_state import AlertState

T0 = 1_796_400_000.0


def dlq(count: int = 14) -> Finding:
    return Finding(
        key="dlq:crm",
        title=f"crm: {count} dead letters (threshold 10)",
        command="woofleet dlq list crm",
        source=MANAGEMENT,
    )


def breaker(hold: float = 180) -> Finding:
    return Finding(
        key="breaker:crm",
        title="crm: circuit breaker open",
        command="woofleet status",
        source="http://127.0.0.1:9/metrics",
        hold=hold,
    )


def test_an_alert_fires_once_and_resolves_once() -> None:
    state = AlertState()

    # Given a condition seen in three evaluations in a row, then no more
    first = state.changes([dlq(14)], now=T0)
    state.announced(first)
    again = state.changes([dlq(15)], now=T0 + 60)
    state.announced(again)
    gone = state.changes([], now=T0 + 120)
    state.announced(gone)
    after = state.changes([], now=T0 + 180)

    # Then one firing message, nothing while it lasts, one resolved message carrying the
    # latest size and the start time, and silence afterwards
    assert [(c.kind, c.since) for c in first] == [("firing", T0)]
    assert again == []
    assert [(c.kind, c.finding.title, c.since) for c in gone] == [
        ("resolved", "crm: 15 dead letters (threshold 10)", T0)
    ]
    assert after == [] and state.tracked == {}


def test_a_held_condition_fires_only_once_it_has_lasted_its_hold() -> None:
    state = AlertState()
    assert state.changes([breaker(180)], now=T0) == []
    assert state.changes([breaker(180)], now=T0 + 179) == []
    fired = state.changes([breaker(180)], now=T0 + 180)
    assert [(c.kind, c.since) for c in fired] == [("firing", T0)]


def test_a_condition_gone_before_its_hold_is_never_announced() -> None:
    # Given a breaker open for a minute only (a blip)
    state = AlertState()
    state.changes([breaker(180)], now=T0)

    # Then neither a firing nor a resolved message, and no memory of it
    assert state.changes([], now=T0 + 60) == []
    assert state.tracked == {}


def test_an_old_condition_counts_from_when_it_started_not_from_when_it_was_seen() -> None:
    late = Finding("late:stock", "stock: late", "woofleet status", MANAGEMENT, hold=30, age=45)
    (change,) = AlertState().changes([late], now=T0)
    assert change.kind == "firing" and change.since == T0 - 45


def test_an_unreadable_source_neither_fires_nor_resolves_its_alerts() -> None:
    # Given a firing dead-letter alert
    state = AlertState()
    state.announced(state.changes([dlq()], now=T0))

    # When the management API cannot be read
    blind = state.changes([], now=T0 + 60, unread={MANAGEMENT})

    # Then the alert is not resolved (not seeing is not fixed), and later resolves normally
    assert blind == [] and "dlq:crm" in state.tracked
    assert [c.kind for c in state.changes([], now=T0 + 120)] == ["resolved"]


def test_an_undelivered_message_is_offered_again_and_then_only_once() -> None:
    state = AlertState()
    first = state.changes([dlq()], now=T0)  # the notifier failed: announced() not called
    retry = state.changes([dlq()], now=T0 + 60)
    state.announced(retry)
    assert [c.kind for c in first] == [c.kind for c in retry] == ["firing"]
    assert retry[0].since == T0  # still since the first sighting
    assert state.changes([dlq()], now=T0 + 120) == []


def test_state_survives_between_runs_and_a_damaged_file_starts_afresh(tmp_path: Path) -> None:
    # Given a firing alert and a stalled queue saved by one --once run
    path = tmp_path / "var" / "alerts.json"
    state = AlertState(stalled_since={"woo.crm": T0 - 5})
    state.announced(state.changes([dlq()], now=T0))
    state.save(path)

    # Then the next run knows it was announced, and resolves it once
    loaded = AlertState.load(path)
    assert loaded.stalled_since == {"woo.crm": T0 - 5}
    assert loaded.changes([dlq()], now=T0 + 60) == []
    assert [c.kind for c in loaded.changes([], now=T0 + 120)] == ["resolved"]

    # And a missing or damaged file means a fresh start, not a crash
    assert AlertState.load(tmp_path / "none.json").tracked == {}
    path.write_text("{not json", encoding="utf-8")
    assert AlertState.load(path).tracked == {}


def test_a_condition_hovering_at_its_threshold_resolves_once_it_has_stayed_away() -> None:
    # Given an alert that must stay unseen for a minute before it resolves
    state = AlertState(resolve_after=60)
    state.announced(state.changes([dlq(11)], now=T0))

    # When it dips under the threshold and comes back, twice, within the minute
    flapping = [
        state.changes([], now=T0 + 10),
        state.changes([dlq(11)], now=T0 + 20),
        state.changes([], now=T0 + 30),
        state.changes([dlq(12)], now=T0 + 40),
    ]

    # Then nothing is sent; once it has been away for a minute, one resolved message
    assert flapping == [[], [], [], []]
    assert state.changes([], now=T0 + 50) == []
    assert state.changes([], now=T0 + 100) == []
    (resolved,) = state.changes([], now=T0 + 110)
    assert resolved.kind == "resolved" and resolved.since == T0
    assert resolved.ended == T0 + 50  # gone since the first evaluation that missed it
