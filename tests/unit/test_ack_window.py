"""Batched acks never cover a delivery that is still being handled."""

from __future__ import annotations

import asyncio
import logging
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.runtime.acks import AckSender, AckWindow

LOG = logging.LoggerAdapter(logging.getLogger("test"))


def test_in_order_settles_go_out_as_one_multiple_ack_per_batch() -> None:
    window = AckWindow(batch=3)
    for tag in (1, 2):
        window.settle(tag, owes_ack=True)
        assert window.due(idle=False) == (None, [])
    window.settle(3, owes_ack=True)
    assert window.due(idle=False) == (3, [])
    assert window.due(idle=False) == (None, [])


def test_a_multiple_ack_never_passes_an_unfinished_delivery() -> None:
    window = AckWindow(batch=2)
    window.settle(1, owes_ack=True)
    window.settle(3, owes_ack=True)  # 2 is still running
    assert window.due(idle=False) == (None, [])
    multiple, singles = window.due(idle=True)
    assert multiple == 1 and singles == [3]  # 3 goes singly; 2 is not covered
    window.settle(2, owes_ack=True)
    # names 2, not the frontier 3: the broker closes the channel on a tag acked already
    assert window.due(idle=True) == (2, [])


def test_settled_tags_behind_a_slow_one_go_out_singly_once_a_batch_waits() -> None:
    window = AckWindow(batch=3)
    for tag in (2, 3, 4):
        window.settle(tag, owes_ack=True)
    assert window.due(idle=False) == (None, [2, 3, 4])


def test_nacked_deliveries_close_gaps_but_owe_no_ack() -> None:
    window = AckWindow(batch=2)
    window.settle(1, owes_ack=False)
    window.settle(2, owes_ack=False)
    assert window.due(idle=True) == (None, [])
    window.settle(3, owes_ack=True)
    assert window.due(idle=True) == (3, [])


def test_a_multiple_ack_never_names_a_tag_acked_singly_or_nacked_already() -> None:
    # The flaky failure this guards against: 2-6 acked singly behind a slow 1, then 1 settles;
    # a multiple ack naming 6 got "PRECONDITION_FAILED - unknown delivery tag 6".
    window = AckWindow(batch=5)
    for tag in (2, 3, 4, 5, 6):
        window.settle(tag, owes_ack=True)
    assert window.due(idle=False) == (None, [2, 3, 4, 5, 6])
    window.settle(1, owes_ack=True)
    assert window.due(idle=True) == (1, [])
    window.settle(7, owes_ack=False)  # nacked: not outstanding either
    assert window.due(idle=True) == (None, [])


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_acks_are_always_valid_for_the_broker_and_none_is_left_owed(data: st.DataObject) -> None:
    # A broker's view: the outstanding tags. Every ack must name an outstanding tag, a
    # multiple one covers only finished deliveries, and once idle nothing owed is left.
    count = data.draw(st.integers(1, 30))
    order = data.draw(st.permutations(range(1, count + 1)))
    window = AckWindow(batch=data.draw(st.integers(1, 8)))
    outstanding: set[int] = set(range(1, count + 1))
    finished: set[int] = set()
    owed: set[int] = set()

    def send(multiple: int | None, singles: list[int]) -> None:
        if multiple is not None:
            assert multiple in outstanding
            covered = {t for t in outstanding if t <= multiple}
            assert covered <= finished
            outstanding.difference_update(covered)
            owed.difference_update(covered)
        for tag in singles:
            assert tag in outstanding and tag in finished
            outstanding.discard(tag)
            owed.discard(tag)

    cancel_at = data.draw(st.integers(0, count))  # a basic.cancel after this many (count: none)
    for done, tag in enumerate(order):
        if done == cancel_at:
            send(*window.stop_batching())
        acked = data.draw(st.booleans()) or tag % 3 != 0
        window.settle(tag, owes_ack=acked)
        finished.add(tag)
        if acked:
            owed.add(tag)
        else:
            outstanding.discard(tag)  # nacked: the broker took it back
        send(*window.due(idle=data.draw(st.booleans())))
    send(*window.due(idle=True))
    assert owed == set()


def test_after_a_cancel_every_ack_is_single() -> None:
    window = AckWindow(batch=10)
    window.settle(1, owes_ack=True)
    window.settle(3, owes_ack=True)
    assert window.stop_batching() == (1, [3])
    window.settle(5, owes_ack=True)
    window.settle(4, owes_ack=False)
    assert window.due(idle=False) == (None, [5])


def test_a_batch_never_needs_more_than_half_the_prefetch() -> None:
    from dataclasses import replace

    from consumers.runtime import ConsumerWorker, HandlerSpec
    from topology.fleet import DEFAULT_FLEET

    async def handler(event: object, delivery: object) -> None: ...

    policy = DEFAULT_FLEET.consumer("analytics")
    spec = HandlerSpec()

    def batch(prefetch: int) -> int:
        return ConsumerWorker(replace(policy, prefetch=prefetch), spec, handler).ack_batch

    batches = {prefetch: batch(prefetch) for prefetch in (1, 4, 20, 100)}
    # Finished deliveries waiting for a batch leave the broker room to send the rest of it.
    assert batches == {1: 1, 4: 2, 20: 10, 100: 16}


class BrokerTags:
    """The broker's side of one channel: its outstanding tags. A frame naming a tag that is not
    outstanding is what RabbitMQ closes the channel for (PRECONDITION_FAILED)."""

    def __init__(self, count: int, rng: random.Random) -> None:
        self.outstanding = set(range(1, count + 1))
        self.finished: set[int] = set()
        self.rng = rng

    async def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        assert delivery_tag in self.outstanding, f"unknown delivery tag {delivery_tag}"
        covered = {t for t in self.outstanding if t <= delivery_tag} if multiple else {delivery_tag}
        assert covered <= self.finished, "an ack covered a delivery still being handled"
        self.outstanding -= covered
        for _ in range(self.rng.randint(0, 3)):  # the connection's writer takes its time
            await asyncio.sleep(0)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_concurrent_completions_and_flushes_never_name_a_covered_tag(
    data: st.DataObject,
) -> None:
    count = data.draw(st.integers(1, 40))
    order = data.draw(st.permutations(range(1, count + 1)))
    nacked = {t for t in order if data.draw(st.booleans()) and t % 4 == 0}
    broker = BrokerTags(count, random.Random(data.draw(st.integers(0, 2**32))))
    sender = AckSender(broker, batch=data.draw(st.integers(1, 8)), log=LOG)
    waits = [data.draw(st.integers(0, 4)) for _ in order]
    flush_after = data.draw(st.sets(st.integers(0, count)))
    cancel_at = data.draw(st.integers(0, count * 2))

    async def finish(index: int, tag: int) -> None:
        for _ in range(waits[index]):  # deliveries finish in any interleaving
            await asyncio.sleep(0)
        broker.finished.add(tag)
        if tag in nacked:
            broker.outstanding.discard(tag)  # the nack went out: the broker took it back
            sender.nacked(tag)
        else:
            await sender.acked(tag)
        if index in flush_after:
            await sender.flush()
        if index == cancel_at:
            await sender.stop_batching()

    async def run() -> None:
        async with asyncio.TaskGroup() as group:
            for index, tag in enumerate(order):
                group.create_task(finish(index, tag))
        await sender.flush()

    asyncio.run(run())
    assert broker.outstanding == set(), "every finished delivery is acked once idle"
