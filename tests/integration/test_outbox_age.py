"""The outbox's oldest event age (the relay's lag), from both stores."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from publisher.stores import open_store
from tests.integration.test_outbox_store import queue

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_oldest_age_grows_while_an_event_waits_and_is_none_when_empty(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path}/state.db"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    store = await open_store(url)
    try:
        # Given an empty outbox
        assert await store.oldest_age() is None
        # When one event is queued and waits
        seqs = await queue(store, 1)  # type: ignore[arg-type]
        await asyncio.sleep(0.2)
        # Then its age is what it waited, and none once it is delivered
        age = await store.oldest_age()
        assert age is not None and 0.15 < age < 5
        await store.delete(seqs)
        assert await store.oldest_age() is None
    finally:
        await store.close()
