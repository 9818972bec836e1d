"""``Retry-After`` (RFC 9110 §10.2.3), as every HTTP client of the fleet reads it."""

from __future__ import annotations

import email.utils
import time
from datetime import UTC


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from now: ``delay-seconds`` (digits only) or an ``HTTP-date`` (a date already
    past is 0); None when absent or neither form (a negative or fractional number included)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(when.timestamp() - current, 0.0)
