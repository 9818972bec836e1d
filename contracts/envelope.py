"""The envelope every woofleet message travels in."""

from __future__ import annotations

import hashlib
import uuid
from typing import ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from contracts.types import UtcDatetime

DataT = TypeVar("DataT", bound=BaseModel)

#: Namespace for deterministic event ids: the same business fact always gets the same id.
EVENT_ID_NAMESPACE = uuid.UUID("6f0d3a52-52a4-4c55-9d43-0a9f3c1d7e11")


_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes


def event_id_for(*parts: object) -> uuid.UUID:
    """A deterministic UUID for a business fact, e.g. (store, order id, event type, modified).

    ``uuid.uuid5(EVENT_ID_NAMESPACE, "|".join(parts))``, without re-deriving the namespace's
    bytes on every call (the webhook makes one per event).
    """
    name = "|".join(map(str, parts)).encode()
    digest = hashlib.sha1(_NAMESPACE_BYTES + name, usedforsecurity=False).digest()
    return uuid.UUID(bytes=digest[:16], version=5)


class Envelope(BaseModel, Generic[DataT]):
    """``event_id``, ``event_type``, ``schema_version``, ``occurred_at``, ``source``, ``data``."""

    # Tolerant readers: a consumer ignores fields added by a newer publisher (a compatible
    # change), so consumers need not be deployed before publishers.
    model_config = ConfigDict(frozen=True, extra="ignore")

    #: The (event_type, schema_version) pairs a concrete envelope class carries.
    EVENT_TYPES: ClassVar[tuple[str, ...]] = ()
    SCHEMA_VERSION: ClassVar[int] = 1

    event_id: uuid.UUID
    event_type: str
    schema_version: int = Field(ge=1)
    occurred_at: UtcDatetime
    source: str = Field(description="The store's URL, as X-WC-Webhook-Source gives it")
    data: DataT
