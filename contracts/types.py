"""Field types shared by every contract: money as Decimal on the wire as a string, UTC dates."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator


def _to_decimal(value: Any) -> Any:
    # WooCommerce sends money as strings, but line_items[].price is a JSON number: read floats
    # through repr() so 19.99 stays 19.99 instead of 19.98999999999999843680598...
    if isinstance(value, float):
        return Decimal(repr(value))
    if value == "" or value is None:
        return Decimal("0")
    return value


def _as_utc(value: datetime) -> datetime:
    # WooCommerce's *_gmt fields carry no zone suffix and are UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


Money = Annotated[Decimal, BeforeValidator(_to_decimal)]
"""A monetary amount: ``Decimal`` in Python, a decimal string on the wire (pydantic writes a
Decimal as ``str(value)`` in JSON: exact, never a float)."""

UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
"""A timezone-aware UTC datetime; naive input is read as UTC."""
