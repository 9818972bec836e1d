"""The one scrubbing layer: what may never leave the fleet in a log line, a dead-letter header, an
error message or a Sentry event.

* **Secrets**, by key and by value: URL passwords, bearer/basic credentials, any key that names
  a credential (``api_secret``, ``client_secret``, ``access_token``, ``apikey``, ``X-Api-Key``,
  ``password``...), and the value of every configured secret wherever it appears.
* **Shopper PII** in free text, such as a target's answer that echoes what it was sent: email
  addresses and phone numbers anywhere, public IP addresses, and the values of fields that hold
  names, phones and addresses (``first_name``, ``address_1``, ``postcode``, ``street1``...) in
  JSON or form text.

:func:`scrub` cleans a string; :func:`scrub_data` every string inside a JSON-like structure.
Log formatting (fleet/logging.py), failure headers and Sentry's ``before_send`` use them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

#: Fields whose values are a shopper's name, phone, address or IP, in WooCommerce's and the
#: targets' spellings. Matched as whole keys, quoted (JSON) or not (form text, key=value).
_PII_KEYS = (
    r"(?:first|last|full|customer|contact|company|billing|shipping|recipient)_?name|name"
    r"|surname|given_?name|family_?name|company|phone(?:_?number)?|mobile|tel"
    r"|address(?:_?[12]|_?line_?[12])?|street[12]?|street_?address|line[12]"
    r"|post_?code|postal_?code|zip(?:_?code)?|city"
    r"|ip|ip_?address|customer_ip_address|remote_addr|user_agent|customer_user_agent"
)

_REDACTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):[^@/\s]+@", re.I),
        r"\g<scheme>\g<user>:***@",
    ),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "<email>"),
    (
        re.compile(r"(?i)\b(authorization[\"']?\s*[:=]\s*)(?:(?:bearer|basic|token)\s+)?\S+"),
        r"\1***",
    ),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***"),
    (
        # Any key that *contains* a credential word: api_secret, client_secret, access_token,
        # apikey, X-Api-Key (a word boundary before "secret" let the prefixed names through).
        re.compile(
            r"(?i)(?<![\w-])([\w-]*(?:secret|password|passwd|token|api[_-]?key)[\w-]*)"
            r"([\"']?\s*[:=]\s*[\"']?)[^\s,;&\"']+"
        ),
        r"\1\2***",
    ),
    (
        # "first_name": "Ana", 'city': 'Lyon', address_1=969+Market (JSON, Python or form text)
        re.compile(
            rf"(?i)(?<![\w-])([\"']?(?:{_PII_KEYS})[\"']?\s*[:=]\s*)"
            r"(?:\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|[^\s,;&}\]]+)"
        ),
        r'\1"<pii>"',
    ),
    (
        # Phones: international (+1 555 0199), national (0612345678, (555) 555-5555).
        re.compile(
            r"(?<![\w+.:/-])(?:\+\d[\d\s().-]{5,}\d|0\d{8,10}|\(\d{2,4}\)\s?\d{3,4}[\s.-]?\d{3,4})"
            r"(?![\w:])"
        ),
        "<phone>",
    ),
)

_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])")


def _public_ip(match: re.Match[str]) -> str:
    # Loopback and private addresses are the fleet's own (logs name them); public ones may be
    # a shopper's.
    try:
        address = ipaddress.ip_address(match.group(0))
    except ValueError:
        return match.group(0)
    return "<ip>" if address.is_global else match.group(0)


#: Values of the configured secrets, masked wherever they appear (an echoed answer, a URL).
_SECRET_VALUES: set[str] = set()
#: Shorter values would mask ordinary words; real credentials are longer.
_MIN_SECRET_LENGTH = 6


def remember_secret_values(values: Iterable[str]) -> None:
    """Mask these values in every later :func:`scrub` call, whatever key carries them."""
    _SECRET_VALUES.update(v for v in values if len(v) >= _MIN_SECRET_LENGTH)


def forget_secret_values() -> None:
    """Drop the remembered values (tests; a process keeps its secrets for its lifetime)."""
    _SECRET_VALUES.clear()


def scrub(text: str) -> str:
    """``text`` without secrets or shopper PII, for a log, a header, an error or Sentry."""
    # longest first, so a secret containing another is masked whole
    for value in sorted(_SECRET_VALUES, key=len, reverse=True):
        text = text.replace(value, "***")
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return _IPV4.sub(_public_ip, text)


def scrub_data(value: Any) -> Any:
    """Every string in a JSON-like structure scrubbed, and the values of credential and PII
    keys replaced whole (their key says what they are, whatever their shape)."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _masked(k, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_data(v) for v in value]
    return value


#: Keys of structured data (Sentry's own included) whose values are replaced whole. Narrower
#: than _PII_KEYS: Sentry's contexts carry ``name`` (the OS, the runtime) and ``city`` of no one.
_SENSITIVE_KEY = re.compile(
    r"(?i)^(?:[\w-]*(?:secret|password|passwd|token|api[_-]?key|authorization|cookie)[\w-]*"
    r"|(?:first|last|full|customer|contact|billing|shipping|recipient)_?name|surname"
    r"|phone(?:_?number)?|address(?:_?[12])?|street[12]?|post_?code|postal_?code|zip(?:_?code)?"
    r"|ip_?address|customer_ip_address|remote_addr|customer_user_agent|e-?mail|email_?address)$"
)


def _masked(key: Any, value: Any) -> Any:
    if isinstance(key, str) and _SENSITIVE_KEY.match(key) and value not in (None, "", [], {}):
        return "***"
    return scrub_data(value)
