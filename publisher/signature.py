"""WooCommerce webhook signatures: ``base64(HMAC-SHA256(raw body, secret))``.

WooCommerce signs with ``wp_specialchars_decode($secret, ENT_QUOTES)``: a secret saved as
``a&amp;b`` signs with ``a&b``. Both spellings of each configured secret are accepted, so the
operator can paste the secret exactly as it was typed into WooCommerce.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Iterable

#: What ``wp_specialchars_decode(..., ENT_QUOTES)`` turns back into characters (and no more).
_WP_SPECIALCHARS = (
    (b"&lt;", b"<"),
    (b"&gt;", b">"),
    (b"&quot;", b'"'),
    (b"&#039;", b"'"),
    (b"&#x27;", b"'"),
    (b"&#39;", b"'"),
    (b"&amp;", b"&"),  # last, so "&amp;lt;" becomes "&lt;" as PHP does
)


def wp_specialchars_decode(secret: bytes) -> bytes:
    for entity, char in _WP_SPECIALCHARS:
        secret = secret.replace(entity, char)
    return secret


def sign(body: bytes, secret: bytes) -> str:
    """The ``X-WC-Webhook-Signature`` WooCommerce sends for ``body`` with ``secret``."""
    digest = hmac.digest(wp_specialchars_decode(secret), body, "sha256")
    return base64.b64encode(digest).decode("ascii")


def signing_keys(secrets: Iterable[bytes]) -> list[bytes]:
    """Every key a configured secret may sign with: as decoded by WooCommerce, and as given."""
    keys: list[bytes] = []
    for secret in secrets:
        for key in (wp_specialchars_decode(secret), secret):
            if key and key not in keys:
                keys.append(key)
    return keys


def verify(body: bytes, signature: str | None, keys: Iterable[bytes]) -> bool:
    """True when ``signature`` matches ``body`` under one of ``keys`` (constant time each)."""
    if not signature:
        return False
    try:
        given = base64.b64decode(signature.strip(), validate=True)
    except ValueError:
        return False
    matched = False
    for key in keys:
        # hmac.digest is the one-shot C path: a fraction of hmac.new()'s cost per delivery.
        expected = hmac.digest(key, body, "sha256")
        # Every key is tried, so the time taken does not tell which one matched.
        matched |= hmac.compare_digest(expected, given)
    return matched
