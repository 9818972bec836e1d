"""Open the publisher's state store that ``WOOFLEET_STATE_URL`` names (SQLite or PostgreSQL)."""

from __future__ import annotations

from fleet.state import backend_of
from publisher.store import PublisherStore


async def open_store(state_url: str) -> PublisherStore:
    """The store ``WOOFLEET_STATE_URL`` names, with its tables created."""
    if backend_of(state_url) == "postgresql":
        from publisher.store_postgres import PostgresStore

        return await PostgresStore.open(state_url)
    from publisher.store_sqlite import SqliteStore

    return SqliteStore.open(state_url)
