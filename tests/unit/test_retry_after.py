"""Retry-After as RFC 9110 defines it: delay-seconds or an HTTP-date, nothing else."""

from __future__ import annotations

import pytest

from fleet.retry_after import parse_retry_after

DATE = "Wed, 21 Oct 2015 07:28:00 GMT"
AT = 1445412480


def test_delay_seconds() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 0 ") == 0.0


def test_http_date_is_seconds_from_now_and_never_negative() -> None:
    assert parse_retry_after(DATE, now=AT - 30) == 30.0
    assert parse_retry_after(DATE, now=AT + 30) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "1.5", "-3", "+5", "١٢", "Wed, 99 Foo"])
def test_anything_else_is_no_advice(value: str | None) -> None:
    assert parse_retry_after(value) is None
