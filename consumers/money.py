"""Money for people: an amount in an order's currency, with its symbol and minor-unit digits."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal


@dataclass(frozen=True)
class CurrencyFormat:
    symbol: str
    decimals: int = 2
    #: True when the symbol follows the amount ("12.00 kr"). Separators stay "," and "." for
    #: every currency: the order's locale is not in the event, and mixed styles confuse more.
    suffix: bool = False


# ISO 4217 minor units (JPY and KRW have none; the Gulf dinars have three). Unknown codes fall
# back to two decimals followed by the code, which is never wrong, only less pretty.
CURRENCIES: dict[str, CurrencyFormat] = {
    "USD": CurrencyFormat("$"),
    "EUR": CurrencyFormat("€"),
    "GBP": CurrencyFormat("£"),
    "JPY": CurrencyFormat("¥", 0),
    "CNY": CurrencyFormat("CN¥"),
    "KRW": CurrencyFormat("₩", 0),
    "THB": CurrencyFormat("฿"),
    "INR": CurrencyFormat("₹"),
    "VND": CurrencyFormat("₫", 0, suffix=True),
    "IDR": CurrencyFormat("Rp", 0),
    "AUD": CurrencyFormat("A$"),
    "CAD": CurrencyFormat("CA$"),
    "NZD": CurrencyFormat("NZ$"),
    "HKD": CurrencyFormat("HK$"),
    "SGD": CurrencyFormat("S$"),
    "CHF": CurrencyFormat("CHF "),
    "SEK": CurrencyFormat(" kr", suffix=True),
    "NOK": CurrencyFormat(" kr", suffix=True),
    "DKK": CurrencyFormat(" kr", suffix=True),
    "PLN": CurrencyFormat(" zł", suffix=True),
    "CZK": CurrencyFormat(" Kč", suffix=True),
    "HUF": CurrencyFormat(" Ft", 0, suffix=True),
    "ISK": CurrencyFormat(" kr", 0, suffix=True),
    "CLP": CurrencyFormat("CLP$", 0),
    "BRL": CurrencyFormat("R$"),
    "MXN": CurrencyFormat("MX$"),
    "ZAR": CurrencyFormat("R"),
    "TRY": CurrencyFormat("₺"),
    "ILS": CurrencyFormat("₪"),
    "RUB": CurrencyFormat(" ₽", suffix=True),
    "UAH": CurrencyFormat("₴"),
    "BHD": CurrencyFormat("BD ", 3),
    "KWD": CurrencyFormat("KD ", 3),
    "OMR": CurrencyFormat("OMR ", 3),
    "JOD": CurrencyFormat("JD ", 3),
    "TND": CurrencyFormat("DT ", 3),
}


def currency_format(currency: str) -> CurrencyFormat:
    code = currency.upper()
    return CURRENCIES.get(code) or CurrencyFormat(f" {code}", 2, suffix=True)


def quantize(amount: Decimal, currency: str) -> Decimal:
    """The amount rounded half-up to the currency's minor unit (what a receipt shows)."""
    return amount.quantize(Decimal(1).scaleb(-currency_format(currency).decimals), ROUND_HALF_UP)


def format_money(amount: Decimal | int | str, currency: str) -> str:
    """``format_money(Decimal("1234.5"), "USD")`` → ``$1,234.50``; JPY → ``¥1,235``."""
    fmt = currency_format(currency)
    value = quantize(Decimal(amount), currency)
    sign = "-" if value < 0 else ""
    digits = f"{abs(value):,.{fmt.decimals}f}"
    if fmt.suffix:
        return f"{sign}{digits}{fmt.symbol}"
    return f"{sign}{fmt.symbol}{digits}"
