"""Write-back to WooCommerce (notes, status, meta) against the loopback store, and the ingress's
view of the delivery each write causes (a webhook body is the REST order object)."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fleet.woo_rest import WooRest
from fleet.woo_writeback import STATUS_META, FileWriteBack, RestWriteBack, note_ref
from publisher.lifecycle import OrderState, plan_order
from tests.integration.test_webhook import Harness
from tests.support.woo_server import WooServer, WooStore

pytestmark = pytest.mark.integration

SAMPLE = json.loads(
    (
        Path(__file__).resolve().parents[1]
        / "data/woocommerce/order-created.docs-create-paid-order-727.json"
    ).read_text()
)


@pytest.fixture
async def woo() -> AsyncIterator[tuple[WooStore, RestWriteBack]]:
    with WooServer(WooStore()) as server:
        rest = WooRest(server.url, server.store.key, server.store.secret, backoff=0.01)
        writeback = RestWriteBack(rest)
        try:
            yield server.store, writeback
        finally:
            await writeback.aclose()


def delivered(store: WooStore, order_id: int = 727) -> dict[str, Any]:
    """The body of the next order.updated delivery: WooCommerce renders GET /orders/{id}."""
    return copy.deepcopy(store.orders[order_id])


def state_after(*orders: dict[str, Any]) -> OrderState | None:
    state: OrderState | None = None
    for order in orders:
        state = plan_order(order, state).state or state
    return state


def writes(store: WooStore, method: str, suffix: str = "") -> int:
    return sum(1 for r in store.requests if r["method"] == method and r["path"].endswith(suffix))


async def test_a_retried_note_is_added_once(woo: tuple[WooStore, RestWriteBack]) -> None:
    store, writeback = woo
    store.put_order(SAMPLE)
    assert await writeback.add_note(727, "Payment captured: pi_1", marker="capture:727")
    # The retry after a timeout (the first POST had committed) finds its ref and adds nothing.
    assert not await writeback.add_note(727, "Payment captured: pi_1", marker="capture:727")
    notes = store.notes[727]
    assert len(notes) == 1
    assert notes[0]["note"].endswith(note_ref("capture:727"))
    assert notes[0]["customer_note"] is False
    assert writes(store, "POST", "/notes") == 1


async def test_a_customer_note_is_a_customer_note(woo: tuple[WooStore, RestWriteBack]) -> None:
    store, writeback = woo
    store.put_order(SAMPLE)
    await writeback.add_note(727, "Your parcel: https://t.example/1", marker="m", customer=True)
    assert store.notes[727][0]["customer_note"] is True


async def test_a_note_changes_nothing_the_ingress_announces(
    woo: tuple[WooStore, RestWriteBack],
) -> None:
    store, writeback = woo
    store.put_order(SAMPLE)
    first = delivered(store)
    await writeback.add_note(727, "Payment captured: pi_1", marker="capture:727")
    plan = plan_order(delivered(store), state_after(first))
    assert plan.events == ()


async def test_meta_is_written_once_and_is_no_event(woo: tuple[WooStore, RestWriteBack]) -> None:
    store, writeback = woo
    store.put_order(SAMPLE)
    first = delivered(store)
    items = [{"tracking_provider": "", "tracking_number": "1Z999", "tracking_id": "abc"}]
    meta = {"_wc_shipment_tracking_items": items, "_woofleet_label": "txn_1"}
    assert await writeback.set_meta(727, meta)
    assert not await writeback.set_meta(727, meta)
    assert writes(store, "PUT") == 1
    after = delivered(store)
    assert after["date_modified_gmt"] >= first["date_modified_gmt"]
    assert plan_order(after, state_after(first)).events == ()


async def test_own_status_change_is_no_update_but_a_persons_is(
    woo: tuple[WooStore, RestWriteBack],
) -> None:
    store, writeback = woo
    store.put_order(SAMPLE)  # processing, paid
    first = delivered(store)
    change = await writeback.set_status(
        727, "on-hold", by="payment-capture", only_from={"processing", "pending"}
    )
    assert (change.changed, change.previous) == (True, "processing")
    echo = delivered(store)
    assert any(m["key"] == STATUS_META for m in echo["meta_data"])
    state = state_after(first)
    plan = plan_order(echo, state)
    assert plan.events == ()
    assert "payment-capture" in plan.note
    # The same change made by a person (no marker) is announced.
    by_hand = copy.deepcopy(echo)
    by_hand["meta_data"] = [m for m in by_hand["meta_data"] if m["key"] != STATUS_META]
    assert [e.event_type for e in plan_order(by_hand, state).events] == ["order.updated"]
    # A person's edit in the same delivery as woofleet's status change is announced.
    edited = copy.deepcopy(echo)
    edited["billing"] = {**edited["billing"], "city": "Chiang Mai"}
    assert [e.event_type for e in plan_order(edited, state).events] == ["order.updated"]
    # After the echo, a person moving the order on is announced (the marker no longer fits).
    later = copy.deepcopy(echo)
    later["status"] = "processing"
    after_echo = plan_order(echo, state).state
    moved_on = plan_order(later, after_echo)
    assert [e.event_type for e in moved_on.events] == ["order.updated"]
    # And a person making woofleet's change again (same marker still in the meta) is announced.
    again = copy.deepcopy(echo)
    again["date_modified_gmt"] = "2099-01-01T00:00:00"
    assert [e.event_type for e in plan_order(again, moved_on.state).events] == ["order.updated"]


async def test_status_write_is_idempotent_and_leaves_a_persons_status(
    woo: tuple[WooStore, RestWriteBack],
) -> None:
    store, writeback = woo
    store.put_order({**SAMPLE, "status": "on-hold", "date_paid_gmt": None, "date_paid": None})
    first = await writeback.set_status(
        727, "processing", by="payment-capture", only_from={"on-hold"}
    )
    again = await writeback.set_status(
        727, "processing", by="payment-capture", only_from={"on-hold"}
    )
    assert first.changed and not again.changed
    assert writes(store, "PUT") == 1
    store.orders[727]["status"] = "cancelled"  # a person cancelled it meanwhile
    late = await writeback.set_status(727, "completed", by="x", only_from={"processing"})
    assert (late.changed, late.status) == (False, "cancelled")
    assert store.orders[727]["status"] == "cancelled"


async def test_woofleet_moving_on_hold_to_processing_is_the_first_paid_once(
    woo: tuple[WooStore, RestWriteBack],
) -> None:
    store, writeback = woo
    store.put_order({**SAMPLE, "status": "on-hold", "date_paid_gmt": None, "date_paid": None})
    created = delivered(store)
    assert [e.event_type for e in plan_order(created, None).events] == ["order.created"]
    await writeback.set_status(727, "processing", by="payment-capture", only_from={"on-hold"})
    echo = delivered(store)
    state = state_after(created)
    plan = plan_order(echo, state)
    # The payment is real now: the fan-out happens once, and no order.updated beside it.
    assert [e.event_type for e in plan.events] == ["order.paid"]
    # The same delivery again (WooCommerce sends created+updated bodies alike) adds nothing.
    assert plan_order(echo, plan.state).events == ()


async def test_woofleet_completing_on_delivery_drives_completed_exactly_once(
    woo: tuple[WooStore, RestWriteBack],
) -> None:
    store, writeback = woo
    store.put_order(SAMPLE)
    first = delivered(store)
    await writeback.set_status(727, "completed", by="carrier", only_from={"processing"})
    await writeback.add_note(727, "Delivered", marker="delivered:727")
    echo = delivered(store)
    state = state_after(first)
    plan = plan_order(echo, state)
    assert [e.event_type for e in plan.events] == ["order.completed"]
    assert plan_order(echo, plan.state).events == ()


async def test_dev_sink_keeps_the_same_rules(tmp_path: Path) -> None:
    sink = FileWriteBack(tmp_path / "writes.jsonl")
    assert await sink.add_note(1, "hello", marker="m")
    assert not await sink.add_note(1, "hello", marker="m")
    assert (await sink.set_status(1, "processing", by="t", only_from={"on-hold"})).changed
    assert not (await sink.set_status(1, "processing", by="t", only_from={"on-hold"})).changed
    assert await sink.set_meta(1, {"_k": [1]})
    assert not await sink.set_meta(1, {"_k": [1]})
    lines = [json.loads(line) for line in (tmp_path / "writes.jsonl").read_text().splitlines()]
    assert [line["write"] for line in lines] == ["note", "status", "meta"]


# -- the same echoes through the real ingress (endpoint, state store, broker) ----------------


async def test_the_ingress_announces_nothing_for_an_echo_of_each_write(
    harness: Harness, woo: tuple[WooStore, RestWriteBack]
) -> None:
    store, writeback = woo
    store.put_order(SAMPLE)
    assert (await harness.send("order.created", delivered(store))).status_code == 200
    assert [e.routing_key for e in await harness.events(2)] == ["order.created", "order.paid"]
    # A note, meta, and a status change woofleet made: each delivered as WooCommerce would
    await writeback.add_note(727, "noted", marker="n")
    assert (await harness.send("order.updated", delivered(store))).status_code == 200
    await writeback.set_meta(727, {"_woofleet_shipping_label": "txn_1"})
    assert (await harness.send("order.updated", delivered(store))).status_code == 200
    await writeback.set_status(727, "on-hold", by="payment-capture", only_from={"processing"})
    assert (await harness.send("order.updated", delivered(store))).status_code == 200
    await harness.nothing_more()
    # A person's change afterwards is announced
    store.orders[727]["customer_note"] = "leave it at the door"
    assert (await harness.send("order.updated", delivered(store))).status_code == 200
    assert [e.routing_key for e in await harness.events(1)] == ["order.updated"]


async def test_the_ingress_turns_woofleets_capture_into_one_order_paid(
    harness: Harness, woo: tuple[WooStore, RestWriteBack]
) -> None:
    store, writeback = woo
    store.put_order({**SAMPLE, "status": "on-hold", "date_paid_gmt": None, "date_paid": None})
    assert (await harness.send("order.created", delivered(store))).status_code == 200
    assert [e.routing_key for e in await harness.events(1)] == ["order.created"]
    await writeback.set_status(727, "processing", by="payment-capture", only_from={"on-hold"})
    echo = delivered(store)
    for topic in ("order.updated", "order.updated"):
        assert (await harness.send(topic, echo)).status_code == 200
    assert [e.routing_key for e in await harness.events(1)] == ["order.paid"]
    await harness.nothing_more()
