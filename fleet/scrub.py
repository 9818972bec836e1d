"""The one scrubbing layer: what may never leave the fleet in a log line, a dead-letter header, an
error message or a Sentry event.

* **Secrets**, by key and by value: URL passwords, bearer/basic credentials, any key that names
  a credential (``api_secret``, ``client_secret``, ``access_token``, ``apikey``, ``X-Api-Key``,
  ``password``...), and the value of every configured secret wherever it appears.
* **The shopper in hand**, by value: while a delivery is handled (:func:`shopper`), its order's
  names, address, phone, email and IP, in whatever shape a target echoes them.
* **Shopper PII** in any free text: email addresses, phone numbers, public IPv4 and IPv6
  addresses, bytes a database error quotes as hex, and the values of fields that hold names,
  phones and addresses (``first_name``, ``address_1``, ``postcode``, ``street1``...) in JSON,
  JSON inside a JSON string, HTML-escaped JSON, XML or form text.

:func:`scrub` cleans a string; :func:`scrub_data` every string inside a JSON-like structure.
Log formatting (fleet/logging.py), failure headers, targets' answers and Sentry's
``before_send`` use them.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any

#: Fields whose values are a shopper's name, phone, address or IP, in WooCommerce's and the
#: targets' spellings. Matched as whole keys, quoted (JSON, JSON inside a JSON string, HTML) or
#: not (form text, key=value), and as XML elements.
_PII_KEYS = (
    r"(?:first|last|full|customer|contact|company|billing|shipping|recipient|display|to)_?name"
    r"|name|surname|given_?name|family_?name|company|customer|recipient|addressee|attention"
    r"|phone(?:_?number)?|mobile(?:_?phone)?|tel|telephone|fax"
    r"|address(?:_?[12]|_?line_?[12])?|street(?:_?(?:name|address|line))?(?:_?[12])?|line[12]"
    r"|house_?number|post_?code|postal_?code|zip(?:_?code)?|city|town|locality"
    r"|ip|ip_?address|customer_ip_address|remote_addr|user_agent|customer_user_agent"
)
#: A quote as targets echo it: plain, escaped inside a JSON string (once or twice), or HTML.
_QUOTE = r"(?:\\{0,3}[\"']|&quot;|&\#34;|&\#39;)"

#: (pattern, replacement, words one of which the lower-cased text must hold for the pattern to
#: match at all: a substring test is a hundred times cheaper than a regex pass, and most log
#: lines hold none of them).
_REDACTIONS: tuple[tuple[re.Pattern[str], str, tuple[str, ...]], ...] = (
    (
        re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):[^@/\s]+@", re.I),
        r"\g<scheme>\g<user>:***@",
        ("://",),
    ),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "<email>", ("@",)),
    (
        re.compile(r"(?i)\b(authorization[\"']?\s*[:=]\s*)(?:(?:bearer|basic|token)\s+)?\S+"),
        r"\1***",
        ("authorization",),
    ),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1***", ("bearer",)),
    (
        # Any key that *contains* a credential word: api_secret, client_secret, access_token,
        # apikey, X-Api-Key (a word boundary before "secret" let the prefixed names through).
        re.compile(
            r"(?i)(?<![\w-])([\w-]*(?:secret|password|passwd|token|api[_-]?key)[\w-]*)"
            r"([\"']?\s*[:=]\s*[\"']?)[^\s,;&\"']+"
        ),
        r"\1\2***",
        ("secret", "passw", "token", "key"),
    ),
    (
        # "first_name": "Ana", 'city': 'Lyon', address_1=969+Market, \"phone\": \"...\"
        # (JSON, a JSON string holding JSON, Python, HTML or form text). A value cut short (no
        # closing quote) is masked to the end; an object or list is left to its own keys.
        re.compile(
            rf"(?i)(?<![\w-])((?P<kq>{_QUOTE})?(?:{_PII_KEYS})(?P=kq)?\s*[:=]\s*)"
            rf"(?:(?P<q>{_QUOTE}).*?(?P=q)|{_QUOTE}[^\"'&\n]*$|(?![{{\[]|{_QUOTE})[^\s,;&}}\]<]+)"
        ),
        r"\1<pii>",
        (":", "="),
    ),
    (
        # <last_name>Plantedsurname</last_name>, <city type="x">Lyon</city>
        re.compile(rf"(?i)<((?:{_PII_KEYS}))(\s[^<>]*)?>[^<]*</\1\s*>"),
        r"<\1><pii></\1>",
        ("</",),
    ),
    (
        # Bytes as PostgreSQL quotes them in an error ("Failing row contains (..., \x7b22...)"):
        # an outbox body, the whole order, one hex step away from plain text.
        re.compile(r"\\x[0-9A-Fa-f]{16,}"),
        r"\\x<bytes>",
        ("\\x",),
    ),
    (
        # Phones: international (+1 555 0199), national (0612345678, 06 12 34 56 78,
        # 020 7946 0958, (555) 555-5555) and local (555-0199).
        re.compile(
            r"(?<![\w+.:/-])(?:\+\d[\d\s().-]{5,}\d|0\d{8,10}|0\d{1,4}(?:[ .-]\d{2,4}){2,4}"
            r"|\(\d{2,4}\)\s?\d{3,4}[\s.-]?\d{3,4}|\d{3}-\d{4})(?![\w:-])"
        ),
        "<phone>",
        ("",),
    ),
)

_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])")
#: Candidates only (two colons at least); ipaddress decides.
_IPV6 = re.compile(r"(?<![\w:])(?=[0-9A-Fa-f]*:[0-9A-Fa-f]*:)[0-9A-Fa-f:]{2,39}(?![\w:])")


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


#: Fields of an order (WooCommerce's, woofleet's contract) naming its shopper: their values are
#: masked wherever they appear while that order is in hand (see :func:`shopper`).
_SHOPPER_KEY = re.compile(
    r"(?i)^(?:first_name|last_name|company|address_[12]|city|postcode|email|phone"
    r"|customer_ip_address|customer_user_agent|customer_note)$"
)
_WHOLE_ONLY = frozenset({"customer_note", "customer_user_agent"})
#: Shorter values (a two-letter name, a house number) would mask ordinary words and figures.
_MIN_SHOPPER_LENGTH = 3


class _Shopper:
    """The values to mask for the order in hand, read from it on first use only: most
    deliveries never log anything that needs them."""

    __slots__ = ("_pattern", "_read", "_source")

    def __init__(self, source: Callable[[], Any]) -> None:
        self._source = source
        self._read = False
        self._pattern: re.Pattern[str] | None = None

    def pattern(self) -> re.Pattern[str] | None:
        if not self._read:
            self._read = True
            try:
                data = self._source()
            except Exception:  # an unreadable body has no shopper to find
                data = None
            self._pattern = _values_pattern(shopper_values(data))
        return self._pattern


_IN_HAND: ContextVar[_Shopper | None] = ContextVar("woofleet_shopper_in_hand", default=None)


@contextlib.contextmanager
def shopper(source: Callable[[], Any]) -> Iterator[None]:
    """While the block runs (in this task and the tasks it starts), :func:`scrub` also masks
    the shopper values of the JSON-like data ``source()`` returns (an order, a webhook body):
    whatever a target makes of them in an echoed answer (a sentence, upper case, XML), with no
    field name to go by. ``source`` is called at the first scrub that needs it, if ever."""
    token = _IN_HAND.set(_Shopper(source))
    try:
        yield
    finally:
        _IN_HAND.reset(token)


def shopper_values(data: Any) -> set[str]:
    """The values under shopper fields (names, address, phone, email, IP) anywhere in ``data``,
    with each longer word of them on its own (a target may reorder an address)."""
    found: set[str] = set()
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if isinstance(value, dict | list):
                    stack.append(value)
                elif isinstance(key, str) and _SHOPPER_KEY.match(key) and value:
                    text = str(value).strip()
                    # a note or a browser's name is masked whole, not word by word (its
                    # words are everyone's: "please", "order", "Mozilla")
                    found.update((text,) if key in _WHOLE_ONLY else _forms(text))
                    found.update(_hashed(key.lower(), text))
        elif isinstance(item, list):
            stack.extend(item)
    return {v for v in found if len(v) >= _MIN_SHOPPER_LENGTH}


def _forms(value: str) -> set[str]:
    forms = {value, *(w for w in re.findall(r"[^\W\d_][\w'.-]{3,}", value))}
    escaped = json.dumps(value)[1:-1]  # as a JSON answer with ASCII escapes spells it
    if escaped != value:
        forms.add(escaped)
    return forms


def _hashed(key: str, value: str) -> list[str]:
    """SHA-256 of an email or phone as systems key people by it (a CRM's contact id, analytics'
    user data): normalised the usual way (lower case; the phone's digits with and without +)."""
    if key == "email":
        normalised = [value.lower()]
    elif key == "phone":
        digits = re.sub(r"\D", "", value)
        normalised = [f"+{digits}", digits] if len(digits) >= 6 else []
    else:
        return []
    return [hashlib.sha256(v.encode()).hexdigest() for v in normalised]


def _values_pattern(values: set[str]) -> re.Pattern[str] | None:
    if not values:
        return None
    alternatives = []
    for value in sorted(values, key=len, reverse=True):
        digits = re.sub(r"\D", "", value)
        if len(digits) >= 6 and not re.search(r"[^\d\s().+-]", value):
            # a phone number, however the target spaces it
            alternatives.append(r"\+?" + r"[\s().-]*".join(digits))
        else:
            alternatives.append(r"\s+".join(re.escape(part) for part in value.split()))
    return re.compile(rf"(?i)(?<!\w)(?:{'|'.join(alternatives)})(?!\w)")


def scrub(text: str, *, in_hand: bool = True) -> str:
    """``text`` without secrets or shopper PII, for a log, a header, an error or Sentry.

    ``in_hand=False`` skips the values of the shopper in hand (:func:`shopper`): for lines
    woofleet writes itself on the happy path, which echo nothing a target said.
    """
    # longest first, so a secret containing another is masked whole
    for value in sorted(_SECRET_VALUES, key=len, reverse=True):
        text = text.replace(value, "***")
    if in_hand and (current := _IN_HAND.get()) is not None:
        pattern = current.pattern()
        if pattern is not None:
            text = pattern.sub("<pii>", text)
    lowered = text.lower()
    for pattern, replacement, needles in _REDACTIONS:
        if any(needle in lowered for needle in needles):
            text = pattern.sub(replacement, text)
    if "::" in text or text.count(":") >= 7:  # an IPv6 address has one or the other
        text = _IPV6.sub(_public_ip, text)
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
