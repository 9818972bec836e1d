"""Lifecycle from state (pure): which events a delivery implies after what was emitted."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from publisher.lifecycle import (
    FINGERPRINT_SCHEME,
    OrderState,
    fingerprint,
    legacy_fingerprint,
    plan_order,
    relevant_view,
)

PAYLOADS = Path(__file__).resolve().parents[1] / "data" / "woocommerce"


def order_727(status: str = "processing", **changes: Any) -> dict[str, Any]:
    order: dict[str, Any] = json.loads(
        (PAYLOADS / "order-created.docs-create-paid-order-727.json").read_text()
    )
    order["status"] = status
    order.update(changes)
    return order


def run(*orders: dict[str, Any]) -> list[list[str]]:
    """Feed deliveries in order, carrying the state; the event types of each."""
    state: OrderState | None = None
    emitted = []
    for order in orders:
        plan = plan_order(order, state)
        state = plan.state or state
        emitted.append(
            [e.event_type + (f"#{e.refund_id}" if e.refund_id else "") for e in plan.events]
        )
    return emitted


def test_first_delivery_showing_completed_yields_created_paid_completed() -> None:
    assert run(order_727("completed")) == [["order.created", "order.paid", "order.completed"]]


def test_pending_then_paid_then_completed_one_step_each() -> None:
    pending = order_727("pending", date_paid_gmt=None, date_paid=None)
    paid = order_727("processing", date_modified_gmt="2017-03-22T19:30:00")
    done = order_727("completed", date_modified_gmt="2017-03-22T20:00:00")
    assert run(pending, paid, done) == [["order.created"], ["order.paid"], ["order.completed"]]


def test_duplicate_delivery_emits_nothing() -> None:
    assert run(order_727(), order_727()) == [["order.created", "order.paid"], []]


def test_date_modified_alone_is_not_relevant() -> None:
    later = order_727(date_modified_gmt="2017-03-22T19:59:59")
    assert run(order_727(), later) == [["order.created", "order.paid"], []]


def test_own_underscore_meta_write_echo_emits_nothing() -> None:
    echo = order_727(date_modified_gmt="2017-03-22T19:29:00")
    echo["meta_data"] = [*echo["meta_data"], {"id": 1, "key": "_erp_sync_id", "value": "ERP-727"}]
    assert run(order_727(), echo) == [["order.created", "order.paid"], []]


def test_relevant_change_is_order_updated() -> None:
    moved = order_727(date_modified_gmt="2017-03-22T19:40:00")
    moved["shipping"] = {**moved["shipping"], "address_1": "1 Infinite Loop"}
    noted = order_727(date_modified_gmt="2017-03-22T19:41:00", customer_note="leave at the door")
    noted["shipping"] = moved["shipping"]
    assert run(order_727(), moved, noted) == [
        ["order.created", "order.paid"],
        ["order.updated"],
        ["order.updated"],
    ]


def test_line_item_and_shipping_changes_are_relevant() -> None:
    more = copy.deepcopy(order_727(date_modified_gmt="2017-03-22T19:40:00"))
    more["line_items"][0]["quantity"] = 3
    express = copy.deepcopy(more)
    express["date_modified_gmt"] = "2017-03-22T19:41:00"
    express["shipping_lines"][0]["method_title"] = "Express"
    assert run(order_727(), more, express)[1:] == [["order.updated"], ["order.updated"]]


def test_partial_then_full_refund_two_refunded_events() -> None:
    done = order_727("completed")
    partial = order_727(
        "completed",
        date_modified_gmt="2017-03-23T10:00:00",
        refunds=[{"id": 801, "reason": "broken", "total": "-10.00"}],
    )
    full = order_727(
        "refunded",
        date_modified_gmt="2017-03-24T10:00:00",
        refunds=[
            {"id": 802, "reason": "", "total": "-19.35"},
            {"id": 801, "reason": "broken", "total": "-10.00"},
        ],
    )
    assert run(done, partial, full)[1:] == [["order.refunded#801"], ["order.refunded#802"]]


def test_replaying_the_whole_sequence_emits_nothing_new() -> None:
    sequence = [
        order_727("pending", date_paid_gmt=None),
        order_727("completed", date_modified_gmt="2017-03-23T00:00:00"),
    ]
    state = None
    for order in sequence:
        state = plan_order(order, state).state or state
    for order in sequence:
        plan = plan_order(order, state)
        assert plan.events == () and plan.state is None


def test_cancelled_and_failed_are_emitted_on_each_entry() -> None:
    pending = order_727("pending", date_paid_gmt=None)
    cancelled = order_727("cancelled", date_paid_gmt=None, date_modified_gmt="2017-03-22T20:00:00")
    reopened = order_727("pending", date_paid_gmt=None, date_modified_gmt="2017-03-22T21:00:00")
    again = order_727("cancelled", date_paid_gmt=None, date_modified_gmt="2017-03-22T22:00:00")
    assert run(pending, cancelled, cancelled, reopened, again) == [
        ["order.created"],
        ["order.cancelled"],
        [],
        ["order.updated"],
        ["order.cancelled"],
    ]
    assert run(order_727("failed", date_paid_gmt=None)) == [["order.created", "order.failed"]]


def test_older_delivery_after_newer_emits_nothing_and_keeps_newer_state() -> None:
    newer = order_727("completed", date_modified_gmt="2017-03-22T20:00:00")
    older = order_727("processing", customer_note="old note")
    state = plan_order(newer, None).state
    plan = plan_order(older, state)
    assert plan.events == () and plan.state is None


def test_draft_orders_emit_nothing() -> None:
    assert run(order_727("checkout-draft")) == [[]]


def test_processing_means_paid_even_without_a_payment_date() -> None:
    # e.g. a bank transfer an admin marked as received: WooCommerce's processing is "paid"
    assert run(order_727("processing", date_paid_gmt=None, date_paid=None)) == [
        ["order.created", "order.paid"]
    ]


def test_completed_without_a_payment_date_is_not_paid() -> None:
    # cash on delivery completed before the money came in
    unpaid = order_727("completed", date_paid_gmt=None, date_paid=None)
    assert run(unpaid) == [["order.created", "order.completed"]]


def test_paid_then_fully_refunded_in_one_coalesced_delivery_still_emits_paid_first() -> None:
    refunded = order_727("refunded", refunds=[{"id": 900, "reason": "", "total": "-29.35"}])
    assert run(refunded) == [["order.created", "order.paid", "order.refunded#900"]]


def test_a_state_saved_with_a_legacy_fingerprint_still_recognises_an_unchanged_order() -> None:
    # Given the state an earlier release saved (its fingerprint in the legacy scheme)
    first = plan_order(order_727(), None)
    assert first.state is not None
    legacy = legacy_fingerprint(relevant_view(order_727()))
    saved = OrderState.from_json({**first.state.to_json(), "fingerprint": legacy})
    # When the same order arrives again, and then a really changed one
    again = plan_order(order_727(date_modified_gmt="2017-03-22T19:40:00"), saved)
    changed = plan_order(order_727(customer_note="leave at the door"), saved)
    # Then only the change is an update, and the state moves to the current scheme
    assert again.events == ()
    assert again.state is not None and again.state.fingerprint.startswith(FINGERPRINT_SCHEME)
    assert [e.event_type for e in changed.events] == ["order.updated"]


def test_fingerprints_tell_non_ascii_changes_apart() -> None:
    assert fingerprint({"city": "København"}) != fingerprint({"city": "Kobenhavn"})
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})


def test_the_current_fingerprint_sees_exactly_the_changes_the_legacy_one_saw() -> None:
    # Over simulated order histories (status jumps, refunds, edits, meta echoes), two
    # deliveries look the same to the current scheme exactly when they did to the legacy one.
    from datetime import UTC, datetime
    from itertools import pairwise
    from random import Random

    from publisher.lifecycle import relevant_values
    from publisher.simulate.orders import story

    rng = Random(11)
    start = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
    orders = [step.order for n in range(40) for step in story(rng, 9000 + n, start)]
    pairs = [*pairwise(orders), *((o, copy.deepcopy(o)) for o in orders)]
    for a, b in pairs:
        same_now = fingerprint(relevant_values(a)) == fingerprint(relevant_values(b))
        same_before = legacy_fingerprint(relevant_view(a)) == legacy_fingerprint(relevant_view(b))
        assert same_now == same_before


def test_public_meta_order_does_not_change_the_fingerprint() -> None:
    from publisher.lifecycle import relevant_values

    meta = [{"id": 1, "key": "gift", "value": "yes"}, {"id": 2, "key": "note", "value": {"a": 1}}]
    one, other = order_727(meta_data=meta), order_727(meta_data=list(reversed(meta)))
    assert fingerprint(relevant_values(one)) == fingerprint(relevant_values(other))


# -- statuses a plugin registered ----------------------------------------------------------


def test_a_status_a_plugin_registered_drives_the_lifecycle_by_its_payment_date() -> None:
    # A paid order moved to "shipped" (an order-status plugin), then completed.
    assert run(
        order_727("on-hold", date_paid_gmt=None, date_paid=None),
        order_727("shipped", date_modified_gmt="2030-01-01T00:00:00"),
        order_727("completed", date_modified_gmt="2030-01-02T00:00:00"),
    ) == [["order.created"], ["order.paid"], ["order.completed"]]


def test_an_unpaid_order_in_a_plugin_status_is_created_then_updated_not_paid() -> None:
    unpaid = {"date_paid_gmt": None, "date_paid": None}
    assert run(
        order_727("awaiting-shipment", **unpaid),
        order_727("on-hold", date_modified_gmt="2030-01-01T00:00:00", **unpaid),
    ) == [["order.created"], ["order.updated"]]


def test_a_meta_value_nested_a_thousand_levels_deep_is_still_an_order() -> None:
    deep: Any = []
    for _ in range(990):
        deep = [deep]
    order = order_727(meta_data=[{"id": 1, "key": "plugin", "value": deep}])
    assert run(order, order_727(date_modified_gmt="2030-01-01T00:00:00")) == [
        ["order.created", "order.paid"],
        ["order.updated"],
    ]
    # and the digest is stable and tells values apart
    assert fingerprint([deep]) == fingerprint([deep]) != fingerprint([[deep]])


def test_the_deep_fallback_writes_what_the_standard_library_writes() -> None:
    from publisher.lifecycle import _canonical_iterative

    value = {"b": [1, 2.5, {"z": None, "a": "é"}, []], "a": {}, "c": [[True]]}
    assert _canonical_iterative(value).decode() == json.dumps(
        value, sort_keys=True, ensure_ascii=False
    )
