"""Bodies encoded and signed the way WooCommerce does it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from publisher.signature import sign

USER_AGENT = "WooCommerce/11.0.1 Hookshot (WordPress/7.1)"


def wp_json_encode(payload: Any) -> bytes:
    """Like ``trim(wp_json_encode($payload))``: compact, ``\\/`` and ``\\uXXXX`` escapes."""
    text = json.dumps(payload, ensure_ascii=True, separators=(",", ":"))
    return text.replace("/", "\\/").encode("ascii")


@dataclass(frozen=True)
class Delivery:
    """One webhook POST as WooCommerce would send it."""

    topic: str
    body: bytes
    headers: dict[str, str]


def delivery(
    topic: str,
    payload: dict[str, Any],
    secret: bytes,
    *,
    source: str = "https://shop.example/",
    webhook_id: int = 1,
    delivery_id: str = "0" * 32,
) -> Delivery:
    body = wp_json_encode(payload)
    resource, _, event = topic.partition(".")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-WC-Webhook-Source": source,
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Resource": resource,
        "X-WC-Webhook-Event": event,
        "X-WC-Webhook-Signature": sign(body, secret),
        "X-WC-Webhook-ID": str(webhook_id),
        "X-WC-Webhook-Delivery-ID": delivery_id,
    }
    return Delivery(topic, body, headers)


def ping(webhook_id: int = 1) -> Delivery:
    """The unsigned, form-encoded ping WooCommerce sends when a webhook is created."""
    headers = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": USER_AGENT}
    return Delivery("", f"webhook_id={webhook_id}".encode(), headers)
