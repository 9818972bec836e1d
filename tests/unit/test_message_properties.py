"""Message properties: values no AMQP message can carry are left out where they are built."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts.messages import amqp_timestamp, message_properties
from contracts.orders import OrderEvent
from publisher.outgoing import Outgoing
from tests.builders import order_event


def event_at(moment: datetime) -> OrderEvent:
    event: OrderEvent = order_event("order.created")
    return event.model_copy(update={"occurred_at": moment, "event_id": uuid.uuid4()})


@pytest.mark.parametrize(
    "moment",
    [datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC)],
)
def test_a_date_before_1970_leaves_the_timestamp_out_and_encodes(moment: datetime) -> None:
    envelope = event_at(moment)
    assert message_properties(envelope)["timestamp"] is None
    outgoing = Outgoing.from_envelope(envelope)
    # pika refuses a negative timestamp while encoding: this must not raise
    outgoing.pika_properties().encode()
    # the body still carries the real date
    assert json.loads(outgoing.body)["occurred_at"].startswith(moment.date().isoformat())


def test_a_date_from_1970_on_is_the_timestamp() -> None:
    moment = datetime(1970, 1, 1, tzinfo=UTC)
    assert amqp_timestamp(moment) == moment
    stored: Any = Outgoing.from_envelope(event_at(moment)).pika_properties()
    assert stored.timestamp == 0
