"""Money as people read it: the order's currency symbol and its number of decimals."""

from __future__ import annotations

from decimal import Decimal

import pytest

from consumers.money import format_money, quantize


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("1234.5", "USD", "$1,234.50"),
        ("49.98", "EUR", "€49.98"),
        ("1234.5", "JPY", "¥1,235"),  # no minor unit; half rounds up
        ("4800", "JPY", "¥4,800"),
        ("1500000", "KRW", "₩1,500,000"),
        ("199", "THB", "฿199.00"),
        ("12.3456", "KWD", "KD 12.346"),  # three decimals
        ("99.5", "SEK", "99.50 kr"),
        ("-500", "JPY", "-¥500"),
        ("-0.005", "GBP", "-£0.01"),
        ("10", "XYZ", "10.00 XYZ"),  # unknown code: never wrong, only plain
        ("7", "usd", "$7.00"),
    ],
)
def test_format_money_uses_the_currency_symbol_and_decimals(
    amount: str, currency: str, expected: str
) -> None:
    assert format_money(Decimal(amount), currency) == expected


def test_quantize_rounds_half_up_to_the_minor_unit() -> None:
    assert quantize(Decimal("0.125"), "EUR") == Decimal("0.13")
    assert quantize(Decimal("2.5"), "JPY") == Decimal("3")
