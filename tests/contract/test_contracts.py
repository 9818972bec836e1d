"""Contracts against real WooCommerce payloads: normalising, the wire format, parse, properties."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from contracts import (
    OrderData,
    OrderEvent,
    ProductEvent,
    StockSyncCommand,
    event_id_for,
    message_body,
    message_properties,
    order_data_from_woo,
    parse,
)
from contracts.catalog import StockLevel, StockSync, product_data_from_woo
from fleet.errors import ContractError
from tests.builders import DATA, STORE, order_event, woo_order

#: Every order sample: the three from WooCommerce's REST docs and one real webhook delivery.
ORDER_SAMPLES = sorted(p.name for p in DATA.glob("*.json") if "ping" not in p.name)


def envelope(data: OrderData, event_type: str = "order.paid") -> OrderEvent:
    return OrderEvent(
        event_id=event_id_for(STORE, data.id, event_type, data.date_modified_gmt.isoformat()),
        event_type=event_type,
        schema_version=1,
        occurred_at=datetime(2026, 11, 28, 4, 43, tzinfo=UTC),
        source=STORE,
        data=data,
    )


def body_of(**changes: Any) -> bytes:
    raw = json.loads(message_body(order_event("order.paid")))
    raw.update(changes)
    return json.dumps(raw).encode()


# WooCommerce payloads -> OrderData -> the wire -> OrderData ---------------------------------------


def test_the_samples_are_all_there() -> None:
    assert len(ORDER_SAMPLES) == 4
    assert "real-delivery-order-created.json" in ORDER_SAMPLES


@pytest.mark.parametrize("sample", ORDER_SAMPLES)
def test_every_sample_order_round_trips_through_json(sample: str) -> None:
    # Given a WooCommerce order object, normalised
    data = order_data_from_woo(woo_order(sample))
    event = envelope(data)
    # When it goes over the wire and is parsed back
    body = message_body(event)
    parsed = parse(body, event_type="order.paid", accepted=[("order.paid", 1)])
    # Then nothing is lost
    assert parsed == event
    assert isinstance(parsed.data, OrderData)
    assert isinstance(parsed.data.total, Decimal)
    assert all(isinstance(li.unit_price, Decimal) for li in parsed.data.line_items)


@pytest.mark.parametrize("sample", ORDER_SAMPLES)
def test_a_body_built_from_already_serialised_data_is_byte_for_byte_the_same(sample: str) -> None:
    # Given an envelope and its data serialised on its own (as the webhook shares it by events)
    event = envelope(order_data_from_woo(woo_order(sample)))
    data_json = event.data.model_dump_json().encode()
    # Then splicing it in gives exactly the bytes of serialising the whole envelope
    assert message_body(event, data_json=data_json) == message_body(event)


@pytest.mark.parametrize("sample", ORDER_SAMPLES)
def test_money_travels_as_decimal_strings(sample: str) -> None:
    wire = json.loads(message_body(envelope(order_data_from_woo(woo_order(sample)))))["data"]
    money = [wire["total"], wire["total_tax"], wire["shipping_total"], wire["discount_total"]]
    for line in wire["line_items"]:
        money += [line["unit_price"], line["subtotal"], line["total"], line["total_tax"]]
    money += [line["total"] for line in wire["shipping_lines"]]
    money += [refund["amount"] for refund in wire["refunds"]]
    assert money
    for amount in money:
        assert isinstance(amount, str), amount
        Decimal(amount)  # and each is a decimal number


@pytest.mark.parametrize("sample", ORDER_SAMPLES)
def test_every_date_is_utc_aware(sample: str) -> None:
    data = order_data_from_woo(woo_order(sample))
    dates = [data.date_created_gmt, data.date_modified_gmt, data.date_paid_gmt]
    for value in [d for d in dates if d is not None]:
        assert value.tzinfo is not None
        assert value.utcoffset() == timedelta(0)


def test_gmt_dates_without_a_zone_are_read_as_utc() -> None:
    data = order_data_from_woo(woo_order("real-delivery-order-created.json"))
    assert data.date_created_gmt == datetime(2026, 11, 28, 4, 43, tzinfo=UTC)
    wire = json.loads(message_body(envelope(data)))["data"]
    assert wire["date_created_gmt"] == "2026-11-28T04:43:00Z"


def test_a_dated_value_with_another_zone_is_converted_to_utc() -> None:
    order = woo_order(date_modified_gmt="2026-11-28T06:43:00+02:00")
    data = order_data_from_woo(order)
    assert data.date_modified_gmt == datetime(2026, 11, 28, 4, 43, tzinfo=UTC)
    assert data.date_modified_gmt.tzinfo == UTC


def test_line_item_price_numbers_become_exact_decimals() -> None:
    # WooCommerce sends line_items[].price as a JSON number: 19.99 is no exact binary float
    order = woo_order("real-delivery-order-created.json")
    assert order["line_items"][0]["price"] == 19.99
    data = order_data_from_woo(order)
    assert data.line_items[0].unit_price == Decimal("19.99")
    assert str(data.line_items[0].unit_price) == "19.99"
    wire = json.loads(message_body(envelope(data)))
    assert wire["data"]["line_items"][0]["unit_price"] == "19.99"


def test_integer_prices_stay_exact_too() -> None:
    data = order_data_from_woo(woo_order("order-created.docs-create-paid-order-727.json"))
    assert [li.unit_price for li in data.line_items] == [Decimal(3), Decimal(12)]


def test_refunds_become_positive_amounts() -> None:
    order = woo_order("order-updated.docs-list-order-723-completed-customer.json")
    assert [r["total"] for r in order["refunds"]] == ["-10.00", "-9.00"]
    data = order_data_from_woo(order, refund_id=726)
    assert [(r.id, r.amount) for r in data.refunds] == [
        (726, Decimal("10.00")),
        (724, Decimal("9.00")),
    ]
    assert data.refunded_total == Decimal("19.00")
    assert data.refund is not None
    assert data.refund.amount == Decimal("10.00")
    wire = json.loads(message_body(envelope(data, "order.refunded")))
    assert wire["data"]["refund"]["amount"] == "10.00"


def test_non_ascii_names_survive_the_wire() -> None:
    order = woo_order(
        "order-updated.docs-list-order-723-completed-customer.json",
        customer_note="Bitte klingeln — Grüße, 佐藤",
    )
    data = order_data_from_woo(order)
    assert data.customer.first_name == "João"
    body = message_body(envelope(data))
    assert "João".encode() in body  # raw UTF-8, not \u escapes
    parsed = parse(body)
    assert isinstance(parsed.data, OrderData)
    assert parsed.data.billing.first_name == "João"
    assert parsed.data.customer_note == "Bitte klingeln — Grüße, 佐藤"


def test_a_body_that_is_no_order_fails_to_normalise() -> None:
    from pydantic import ValidationError

    with pytest.raises((ValidationError, KeyError)):
        order_data_from_woo({"webhook_id": "7"})


# parse: what is wrong, said plainly -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "body is not JSON"),
        (b"\xff\xfe", "body is not JSON"),
        (b"[1, 2]", "body is a JSON list, not an object"),
        (b'"order.paid"', "body is a JSON str, not an object"),
        (b'{"schema_version": 1}', "lacks a string event_type"),
        (b'{"event_type": "order.paid"}', "an integer schema_version"),
    ],
    ids=["bad-json", "not-utf8", "list", "string", "no-event-type", "no-version"],
)
def test_parse_rejects_malformed_bodies(body: bytes, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        parse(body)


@pytest.mark.parametrize("depth", [5_000, 100_000])
@pytest.mark.parametrize("properties", [False, True], ids=["bare", "typed"])
def test_a_body_nested_too_deep_for_the_parser_is_a_contract_error(
    depth: int, properties: bool
) -> None:
    # A contract error is dead-lettered at once; a RecursionError went round as a crash.
    inner = b'{"k":' * depth + b"1" + b"}" * depth
    body = b'{"event_type": "order.paid", "schema_version": 1, "data": ' + inner + b"}"
    typed = {"event_type": "order.paid", "schema_version": 1} if properties else {}
    with pytest.raises(ContractError, match="nests deeper"):
        parse(body, **typed)  # type: ignore[arg-type]
    with pytest.raises(ContractError, match="nests deeper"):
        parse(b"[" * depth + b"]" * depth, **typed)  # type: ignore[arg-type]


def test_parse_names_the_known_versions_of_an_unknown_version() -> None:
    with pytest.raises(
        ContractError, match=r"no contract for 'order.paid' version 9; known versions: \[1\]"
    ):
        parse(body_of(schema_version=9))


def test_parse_rejects_a_boolean_schema_version() -> None:
    with pytest.raises(ContractError, match="integer schema_version"):
        parse(body_of(schema_version=True))


def test_parse_rejects_an_unknown_event_type() -> None:
    with pytest.raises(ContractError, match=re.escape("no contract for 'order.shipped' version 1")):
        parse(body_of(event_type="order.shipped"))


def test_parse_rejects_an_amqp_type_that_disagrees_with_the_body() -> None:
    with pytest.raises(
        ContractError,
        match=re.escape("AMQP type 'order.completed' disagrees with body event_type 'order.paid'"),
    ):
        parse(body_of(), event_type="order.completed")


def test_parse_rejects_a_contract_the_consumer_does_not_accept() -> None:
    with pytest.raises(
        ContractError, match=re.escape("order.paid v1 is not a contract this consumer accepts")
    ):
        parse(body_of(), accepted=[("order.created", 1), ("order.paid", 2)])


def test_parse_says_where_the_body_fails_its_contract() -> None:
    raw = json.loads(body_of())
    del raw["data"]["total"]
    with pytest.raises(ContractError, match=r"order.paid v1 fails its contract .*data\.total"):
        parse(json.dumps(raw).encode())


def test_parse_ignores_fields_a_newer_publisher_added() -> None:
    # Tolerant reader: a new optional field is a compatible change, so an older consumer
    # must accept the message rather than dead-letter it.
    raw = json.loads(body_of())
    raw["data"]["loyalty_points"] = 12
    raw["trace_id"] = "abc"
    event = parse(json.dumps(raw).encode())
    assert not hasattr(event.data, "loyalty_points")
    assert str(event.data.total) == raw["data"]["total"]


def test_parse_accepts_what_the_consumer_declared() -> None:
    event = order_event("order.refunded")
    parsed = parse(
        message_body(event), event_type="order.refunded", accepted=[("order.refunded", 1)]
    )
    assert parsed == event


# AMQP properties ------------------------------------------------------------------------------


def test_message_properties_of_an_order_event() -> None:
    event = order_event("order.paid")
    props = message_properties(event, priority=3)
    assert props["message_id"] == str(event.event_id)
    assert props["correlation_id"] == str(event.data.id) == "11"
    assert props["type"] == "order.paid"
    assert props["content_type"] == "application/json"
    assert props["delivery_mode"] == 2
    assert props["priority"] == 3
    assert props["timestamp"] == event.occurred_at
    assert props["headers"] == {"woofleet-schema-version": 1}


def test_message_id_is_the_same_for_the_same_business_fact() -> None:
    first, again = order_event("order.paid"), order_event("order.paid")
    assert message_properties(first)["message_id"] == message_properties(again)["message_id"]
    later = order_event("order.paid", date_modified_gmt="2026-11-28T05:00:00")
    assert message_properties(later)["message_id"] != message_properties(first)["message_id"]
    completed = order_event("order.completed")
    assert message_properties(completed)["message_id"] != message_properties(first)["message_id"]


@pytest.mark.parametrize("priority", [0, 5])
def test_priority_accepts_zero_to_five(priority: int) -> None:
    assert message_properties(order_event(), priority=priority)["priority"] == priority


@pytest.mark.parametrize("priority", [-1, 6, 10])
def test_priority_outside_zero_to_five_is_refused(priority: int) -> None:
    with pytest.raises(ValueError, match="priority must be 0-5"):
        message_properties(order_event(), priority=priority)


def test_correlation_id_of_a_product_event_is_the_product_id() -> None:
    product = product_data_from_woo(
        {
            "id": 10,
            "name": "Bench T-Shirt",
            "price": "19.99",
            "date_created_gmt": "2026-11-28T04:43:00",
        }
    )
    event = ProductEvent(
        event_id=uuid.uuid4(),
        event_type="product.updated",
        schema_version=1,
        occurred_at=datetime.now(UTC),
        source=STORE,
        data=product,
    )
    assert message_properties(event)["correlation_id"] == "10"
    assert json.loads(message_body(event))["data"]["price"] == "19.99"


def test_correlation_id_of_a_bulk_command_is_its_event_id() -> None:
    command = StockSyncCommand(
        event_id=uuid.uuid4(),
        event_type="catalog.stock_sync",
        schema_version=1,
        occurred_at=datetime.now(UTC),
        source=STORE,
        data=StockSync(items=(StockLevel(product_id=10, stock_quantity=4),)),
    )
    assert message_properties(command)["correlation_id"] == str(command.event_id)
    assert parse(message_body(command), event_type="catalog.stock_sync") == command


@pytest.mark.parametrize("sample", ORDER_SAMPLES)
def test_the_webhooks_messages_are_valid_envelopes_of_what_the_plan_says(sample: str) -> None:
    # Given the events a first delivery of a sample order implies (as the webhook builds them:
    # envelopes constructed without validation, the order serialised once)
    from publisher.events import order_messages
    from publisher.lifecycle import plan_order

    order = woo_order(sample)
    data = order_data_from_woo(order)
    plan = plan_order(order, None)
    messages = order_messages(STORE, data, plan, priority=3)
    # Then each body validates as its contract and says what the plan and properties say
    assert [m.routing_key for m in messages] == [e.event_type for e in plan.events]
    for message, planned in zip(messages, plan.events, strict=True):
        parsed = parse(message.body, event_type=message.routing_key, accepted=None)
        assert isinstance(parsed, OrderEvent)
        # (a refund's event carries that refund in data.refund)
        assert parsed.data.refund == next(
            (r for r in data.refunds if r.id == planned.refund_id), None
        )
        assert parsed.data.model_copy(update={"refund": None}) == data
        assert str(parsed.event_id) == message.message_id == message.properties["message_id"]
        assert message.properties["priority"] == 3
        assert message.body == message_body(OrderEvent.model_validate(parsed.model_dump()))


def test_event_ids_are_uuid5_of_the_joined_parts_in_the_woofleet_namespace() -> None:
    # The ids are a public contract: deduplication across releases depends on them.
    from contracts.envelope import EVENT_ID_NAMESPACE

    for parts in [(STORE, 727, "order.paid", "2017-03-22T19:28:08"), ("København", 5, None)]:
        expected = uuid.uuid5(EVENT_ID_NAMESPACE, "|".join(str(p) for p in parts))
        assert event_id_for(*parts) == expected
    assert str(event_id_for("x")) == str(uuid.uuid5(EVENT_ID_NAMESPACE, "x"))
