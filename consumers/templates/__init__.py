"""The email templates (``email/<kind>.subject.txt``, ``.txt``, ``.html``) and how to send them.

Each kind renders from one context; ``money(amount)`` formats in the order's currency. HTML is
autoescaped, plain text is not. The result is a ``multipart/alternative`` message whose headers
are RFC 2047-encoded when a name or subject is not ASCII.
"""

from __future__ import annotations

import email.policy
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from consumers.money import format_money
from consumers.places import country_name, state_name
from contracts.orders import Address as AddressData
from contracts.orders import OrderData
from fleet.errors import PermanentError

ENV = Environment(
    loader=PackageLoader("consumers.templates", "email"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def render_email(kind: str, **context: Any) -> RenderedEmail:
    """Render the three templates of ``kind`` (e.g. ``order_received``)."""
    order: OrderData | None = context.get("order")
    if order is not None:
        context.setdefault("money", partial(format_money, currency=order.currency))
    subject = ENV.get_template(f"{kind}.subject.txt").render(context)
    return RenderedEmail(
        subject=" ".join(subject.split()),
        text=ENV.get_template(f"{kind}.txt").render(context),
        html=ENV.get_template(f"{kind}.html").render(context),
    )


def address_lines(addr: AddressData) -> list[str]:
    """A postal address as the lines people write on an envelope (no empty lines)."""
    name = f"{addr.first_name} {addr.last_name}".strip()
    city = " ".join(p for p in (addr.postcode, addr.city) if p)
    state = state_name(addr.country, addr.state) if addr.state else ""
    country = country_name(addr.country) if addr.country else ""
    parts = [name, addr.company, addr.address_1, addr.address_2, city, state, country]
    return [p for p in parts if p]


def order_context(order: OrderData, source: str) -> dict[str, Any]:
    """What every order email shows: the shop, the order and its addresses."""
    shop_url = source.rstrip("/")
    return {
        "order": order,
        "shop_url": shop_url,
        "shop_name": urlsplit(shop_url).hostname or shop_url,
        "billing_lines": address_lines(order.billing),
        "shipping_lines": address_lines(order.shipping),
        "admin_url": f"{shop_url}/wp-admin/post.php?post={order.id}&action=edit",
    }


def address(name: str, addr: str) -> Address:
    """A header address; PermanentError when ``addr`` cannot be one (retrying will not fix it)."""
    try:
        return Address(display_name=name.strip(), addr_spec=addr.strip())
    except (ValueError, IndexError) as exc:
        raise PermanentError(
            "the recipient address is not a valid email address; correct it in the order"
        ) from exc


def compose(
    rendered: RenderedEmail,
    *,
    sender: str,
    to: Iterable[Address],
    key: str,
    date: datetime | None = None,
) -> EmailMessage:
    """A text + HTML message with a Message-ID derived from ``key``.

    The same business fact always gets the same Message-ID, so a mail client that somehow gets
    a message twice can fold the copies into one.
    """
    message = EmailMessage(policy=email.policy.SMTP)
    message["Subject"] = rendered.subject
    message["From"] = sender
    message["To"] = tuple(to)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "woofleet.invalid"
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    message["Message-ID"] = f"<{digest}@{domain}>"
    message["Date"] = format_datetime(date or datetime.now(UTC))
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message
