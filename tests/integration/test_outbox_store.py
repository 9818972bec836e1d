"""The SQLite outbox as the relay reads it: rows committed here come from memory, everything
else from the table, and both give the same rows in seq order."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from publisher import store_sqlite
from publisher.outgoing import Outgoing
from publisher.store import OutboxRow, ResourceKey
from publisher.store_sqlite import SqliteStore, seq_runs

pytestmark = pytest.mark.integration


def message(n: int, padding: int = 0) -> Outgoing:
    return Outgoing(
        routing_key="order.paid",
        body=f'{{"n":{n},"pad":"{"x" * padding}"}}'.encode(),
        properties={"message_id": f"m-{n}", "priority": 1, "headers": {"h": n}},
    )


async def queue(store: SqliteStore, *numbers: int, padding: int = 0) -> list[int]:
    """Commit one transition per number, each queueing one message (``padding`` bytes more)."""
    seqs: list[int] = []
    for n in numbers:

        def decide(raw: dict[str, Any] | None, n: int = n) -> tuple[None, list[Outgoing]]:
            return None, [message(n, padding)]

        seqs += await store.transition(ResourceKey("https://shop.example", "order", n), decide)
    return seqs


async def read_all(store: SqliteStore) -> list[str]:
    """Read the outbox as the relay does: batches after the last seq read, until none."""
    ids: list[str] = []
    after = 0
    while rows := await store.pending(10, after=after):
        ids += [r.message.message_id for r in rows]
        after = rows[-1].seq
    return ids


def view(rows: list[OutboxRow]) -> list[tuple[int, str, bytes, dict[str, Any]]]:
    return [(r.seq, r.message.message_id, r.message.body, r.message.properties) for r in rows]


async def test_rows_from_memory_are_the_rows_in_the_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    store, reader = SqliteStore.open(url), SqliteStore.open(url)
    try:
        await queue(store, 1, 2, 3)
        # The committing store answers from memory; a second one on the file reads the table
        assert view(await store.pending(10)) == view(await reader.pending(10))
        assert [r.seq for r in await store.pending(2, after=1)] == [2, 3]
    finally:
        await store.close()
        await reader.close()


async def test_a_row_another_writer_committed_in_between_is_not_skipped(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    store, other = SqliteStore.open(url), SqliteStore.open(url)
    try:
        await queue(store, 1)
        await queue(other, 2)  # e.g. `woofleet reconcile` on the same file
        await queue(store, 3)
        assert await read_all(store) == ["m-1", "m-2", "m-3"]
    finally:
        await store.close()
        await other.close()


async def test_deleted_rows_are_not_handed_out_again_after_a_restart_from_the_start(
    tmp_path: Path,
) -> None:
    store = SqliteStore.open(f"sqlite:///{tmp_path}/state.db")
    try:
        seqs = await queue(store, 1, 2, 3, 4, 5)
        assert len(await store.pending(10)) == 5  # all handed out
        await store.delete(seqs[:2])  # two confirmed; the relay then starts over from seq 0
        assert await read_all(store) == ["m-3", "m-4", "m-5"]
        await store.delete([seqs[2], seqs[4]])
        assert await read_all(store) == ["m-4"]
        assert await store.depth() == 1
    finally:
        await store.close()


def test_seq_runs_groups_unbroken_runs() -> None:
    assert seq_runs([9, 1, 2, 3, 7, 10, 3]) == [(1, 3), (7, 7), (9, 10)]
    assert seq_runs([]) == []


async def test_a_delivery_that_fails_to_decide_fails_alone_in_its_group_commit(
    tmp_path: Path,
) -> None:
    store = SqliteStore.open(f"sqlite:///{tmp_path}/state.db")

    def broken(raw: dict[str, Any] | None) -> tuple[None, list[Outgoing]]:
        raise ValueError("not an order")

    def good(n: int) -> Any:
        return lambda raw: ({"seen": n}, [message(n)])

    try:
        # Given three transitions committed together, the middle one failing
        key = ResourceKey("https://shop.example", "order", 1)
        results = await asyncio.gather(
            store.transition(key, good(1)),
            store.transition(ResourceKey("https://shop.example", "order", 2), broken),
            store.transition(ResourceKey("https://shop.example", "order", 3), good(3)),
            return_exceptions=True,
        )
        # Then only it failed; the others' events and states are committed
        assert isinstance(results[1], ValueError)
        assert await read_all(store) == ["m-1", "m-3"]
        seen: list[Any] = []

        def remember(raw: Any) -> tuple[None, list[Any]]:
            seen.append(raw)
            return None, []

        await store.transition(key, remember)
        assert seen == [{"seen": 1}]
    finally:
        await store.close()


async def test_commits_reach_the_database_file_at_the_next_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_sqlite, "CHECKPOINT_SECONDS", 0.2)
    store = SqliteStore.open(f"sqlite:///{tmp_path}/state.db")
    try:
        # Given three deliveries committed (to the WAL)
        await queue(store, 1, 2, 3)
        # When a checkpoint has run, the database file alone (what the WAL is copied into and
        # fsync'd) holds them: what is left after a power cut is at most one period behind
        await asyncio.sleep(0.6)
        shutil.copy(tmp_path / "state.db", tmp_path / "file-only.db")
        alone = sqlite3.connect(tmp_path / "file-only.db")
        try:
            assert alone.execute("SELECT count(*) FROM publisher_outbox").fetchone() == (3,)
        finally:
            alone.close()
    finally:
        await store.close()


async def commit_steadily(
    store: SqliteStore, seconds: float, *, first: int = 1, padding: int = 0
) -> tuple[int, float]:
    """A delivery every 2 ms for ``seconds``: (how many were committed, the slowest commit)."""
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    count, slowest = 0, 0.0
    while loop.time() < until:
        started = loop.time()
        await queue(store, first + count, padding=padding)
        slowest = max(slowest, loop.time() - started)
        count += 1
        await asyncio.sleep(0.002)
    return count, slowest


def restarting_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checkpoint_seconds: float
) -> SqliteStore:
    """A store checkpointing every ``checkpoint_seconds``, every checkpoint also a RESTART."""
    monkeypatch.setattr(store_sqlite, "CHECKPOINT_SECONDS", checkpoint_seconds)
    monkeypatch.setattr(store_sqlite, "RESTART_EVERY", 1)
    return SqliteStore.open(f"sqlite:///{tmp_path}/state.db")


async def test_the_wal_is_rewound_under_steady_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A writer rewinds the WAL only when it begins with every frame copied into the database.
    # When a checkpoint has enough to copy that a commit always lands while it runs (as at
    # 300 deliveries/s), PASSIVE ones never get there and the WAL keeps every frame ever
    # committed; the periodic RESTART lets the next commit start it over.
    store = restarting_store(tmp_path, monkeypatch, 0.2)
    try:
        # Given a commit every 2 ms for 2 s, each some 4 pages long
        count, _ = await commit_steadily(store, 2.0, padding=16000)
        # Then the WAL holds only the frames since it was last rewound, well under a run's
        # worth (the checkpoint answers: busy, frames in the WAL, frames copied)
        probe = sqlite3.connect(tmp_path / "state.db")
        try:
            [(_, frames, _)] = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            probe.close()
        assert frames < 2 * count, (frames, count)  # without the RESTART: about 7 per commit
        # and nothing was lost
        assert await store.depth() == count
    finally:
        await store.close()


async def test_a_long_reader_elsewhere_holds_commits_up_briefly_not_for_its_whole_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A RESTART waits for readers of the WAL and holds off new commits meanwhile: it gives up
    # after its short busy timeout rather than stall deliveries behind somebody's long query.
    store = restarting_store(tmp_path, monkeypatch, 0.05)
    await queue(store, 1)
    reader = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    try:
        # Given another process's read transaction open on the database
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM publisher_outbox").fetchall()
        await queue(store, 2)  # the WAL now has frames the reader's snapshot predates
        # When deliveries keep committing for a second
        _, slowest = await commit_steadily(store, 1.0, first=10)
        # Then no commit waited anywhere near the reader's whole second
        assert slowest < 0.4, slowest
    finally:
        reader.execute("COMMIT")
        reader.close()
        await store.close()
