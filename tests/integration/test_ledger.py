"""The idempotency ledger, the same suite on SQLite (embedded) and PostgreSQL (fleet)."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from consumers.runtime.ledger import Ledger, PostgresLedger, SQLiteLedger, open_ledger
from fleet.errors import DependencyUnavailable

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _postgres_answers() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
    except OSError:
        return False
    return True


@pytest.fixture(params=["sqlite", "postgresql"])
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Ledger]:
    if request.param == "sqlite":
        store: Ledger = SQLiteLedger(f"sqlite:///{tmp_path}/state.db")
    else:
        if not _postgres_answers():
            message = "no PostgreSQL on 127.0.0.1:5432"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        store = PostgresLedger(POSTGRES_URL)
    try:
        yield store
    finally:
        await store.close()


async def test_a_key_is_done_only_after_it_is_marked(ledger: Ledger) -> None:
    key = f"order.paid:{uuid.uuid4()}"
    assert not await ledger.is_done("invoice", key)
    await ledger.mark_done("invoice", key)
    await ledger.mark_done("invoice", key)  # marking twice is harmless
    assert await ledger.is_done("invoice", key)
    # keys are per consumer: the same fact is not done for another consumer
    assert not await ledger.is_done("order-email", key)


async def test_redeliveries_are_counted_per_consumer_and_message(ledger: Ledger) -> None:
    message_id = str(uuid.uuid4())
    assert [await ledger.count_redelivery("stock", message_id) for _ in range(3)] == [1, 2, 3]
    assert await ledger.count_redelivery("crm", message_id) == 1


def test_the_state_url_chooses_the_backend(tmp_path: Path) -> None:
    assert isinstance(open_ledger(f"sqlite:///{tmp_path}/x.db"), SQLiteLedger)
    assert isinstance(open_ledger(POSTGRES_URL), PostgresLedger)


def test_an_unknown_state_url_scheme_says_what_is_expected() -> None:
    from fleet.errors import ConfigError

    with pytest.raises(ConfigError, match=r"sqlite:///var/woofleet\.db or postgresql://"):
        open_ledger("mysql://root@localhost/shop")


async def test_concurrent_calls_each_get_their_own_answer(ledger: Ledger) -> None:
    # The PostgreSQL ledger answers calls made together with shared statements: each caller
    # must still see its own key, and a record must be readable once mark_done returns.
    done = [f"order.paid:{uuid.uuid4()}" for _ in range(50)]
    fresh = [f"order.paid:{uuid.uuid4()}" for _ in range(50)]
    await asyncio.gather(*(ledger.mark_done("stock", k) for k in done + done[:10]))
    answers = await asyncio.gather(*(ledger.is_done("stock", k) for k in done + fresh))
    assert answers == [True] * 50 + [False] * 50
    others = await asyncio.gather(*(ledger.is_done("crm", k) for k in done[:5]))
    assert others == [False] * 5


@pytest.mark.parametrize("batch", [True, False])
async def test_a_store_that_does_not_answer_fails_every_waiting_call(batch: bool) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = PostgresLedger(f"postgresql://postgres@127.0.0.1:{port}/test", batch=batch)
    calls = [store.is_done("stock", "k1"), store.mark_done("stock", "k2")] * 3
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, DependencyUnavailable) for r in results), results
    await store.close()
