"""push-notify: tell the shop's mobile app that an order was paid (Firebase Cloud Messaging).

One FCM message per registered device token (``WOOFLEET_FCM_TOKENS``) and one to the topic
(``WOOFLEET_FCM_TOPIC``) when set. The notification names the order number, total, currency and
item count — no shopper data; ``data`` carries the order id for the app to open it.

Business key ``order:<id>:push``: the ledger makes one push per order. FCM takes no idempotency
key, so every message carries a collapse key (Android ``collapse_key``, APNs
``apns-collapse-id``, web push ``Topic``) derived from it: a push sent again after a crash
replaces the first on the device instead of adding a second. Within a process, a retry skips
the addresses that already got the message.

Failure classes (see :mod:`consumers.adapters.push`): an ``UNREGISTERED`` token is dropped (a
warning says to remove it from ``WOOFLEET_FCM_TOKENS``) and never retried; a transient failure
of any address retries the message for the addresses still owed; a permanent one
(``INVALID_ARGUMENT`` …) dead-letters it with FCM's answer, once no address is left to retry.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from typing import Any, cast

from consumers.adapters.push import PushResult, PushSender, push_from_settings, short
from consumers.runtime.handler import AnyEnvelope, Delivery, Handler, HandlerSpec
from contracts.orders import OrderData
from fleet.errors import ConfigError, HandlerError, PermanentError, TransientError
from fleet.settings import Settings

log = logging.getLogger("consumers.push_notify")

#: What the dev sink addresses when no token or topic is configured.
DEV_TOPIC = "orders"
#: Messages whose delivered addresses are remembered for their retries, at most.
RETRY_MEMORY = 10_000


def business_key(event: AnyEnvelope) -> str:
    """One push per paid order, whatever replays or duplicates bring it again."""
    return f"order:{cast(OrderData, event.data).id}:push"


SPEC = HandlerSpec(business_key=business_key)


def collapse_key(key: str) -> str:
    """A short stable id for the notification (APNs allows 64 bytes; FCM topics and keys less)."""
    return "woofleet-" + hashlib.sha256(key.encode()).hexdigest()[:24]


def notification(order: OrderData, collapse: str) -> dict[str, Any]:
    """The FCM message without its address (``token`` or ``topic`` is added per request)."""
    items = sum(line.quantity for line in order.line_items)
    title = f"Order #{order.number} paid"
    body = f"{order.total} {order.currency} · {items} item{'' if items == 1 else 's'}"
    return {
        "notification": {"title": title, "body": body},
        # FCM data values must be strings.
        "data": {
            "event": "order.paid",
            "order_id": str(order.id),
            "order_number": order.number,
            "total": str(order.total),
            "currency": order.currency,
        },
        "android": {"collapse_key": collapse, "priority": "high"},
        "apns": {"headers": {"apns-collapse-id": collapse}},
        "webpush": {"headers": {"Topic": collapse}},
    }


def address_of(target: str) -> dict[str, str]:
    """``topic:orders`` → ``{"topic": "orders"}``; anything else is a device token."""
    if target.startswith("topic:"):
        return {"topic": target.removeprefix("topic:")}
    return {"token": target}


class PushNotifyHandler:
    def __init__(self, push: PushSender, targets: list[str]) -> None:
        self.push = push
        self.targets = list(targets)
        #: Device tokens FCM reported unregistered: never sent to again by this process.
        self.unregistered: set[str] = set()
        #: Business key → targets that already got it, while the message is being retried
        #: (oldest forgotten first: a message retried elsewhere or dead-lettered never clears).
        self._sent: OrderedDict[str, set[str]] = OrderedDict()

    async def __call__(self, event: AnyEnvelope, delivery: Delivery) -> None:
        order = cast(OrderData, event.data)
        key = delivery.business_key
        done = self._sent.setdefault(key, set())
        while len(self._sent) > RETRY_MEMORY:
            self._sent.popitem(last=False)
        owed = [t for t in self.targets if t not in self.unregistered and t not in done]
        if not owed and not done:
            delivery.nothing_to_do(
                "order %s: every device token is unregistered and no topic is set; nothing "
                "sent: register the app's current tokens in WOOFLEET_FCM_TOKENS",
                order.number,
                level=logging.WARNING,
            )
        message = notification(order, collapse_key(delivery.idempotency_key))
        failures: list[tuple[str, HandlerError]] = []
        for target in owed:
            try:
                result = await self.push.send({**address_of(target), **message})
            except (TransientError, PermanentError) as exc:
                failures.append((target, exc))
                continue
            if result is PushResult.UNREGISTERED:
                self.unregistered.add(target)
                delivery.log.warning(
                    "device token %s is no longer registered with FCM: dropped; "
                    "remove it from WOOFLEET_FCM_TOKENS",
                    short(target),
                )
            else:
                done.add(target)
        transient = [(t, e) for t, e in failures if isinstance(e, TransientError)]
        if transient:
            hints = [e.retry_after for _, e in transient if e.retry_after is not None]
            late, cause = transient[0]
            raise TransientError(
                f"{len(transient)} of {len(owed)} pushes failed, first to {short(late)}: {cause}",
                retry_after=max(hints) if hints else None,
            )
        self._sent.pop(key, None)
        if failures:
            refused, reason = failures[0]
            count = f"{len(failures)} of {len(owed)}"
            raise PermanentError(f"{count} pushes refused, first to {short(refused)}: {reason}")
        delivery.log.info("order %s: pushed to %d address(es)", order.number, len(done))

    async def aclose(self) -> None:
        await self.push.aclose()


def targets_from_settings(settings: Settings) -> list[str]:
    tokens = settings.fcm_tokens
    topic = settings.fcm_topic.strip()
    return tokens + ([f"topic:{topic}"] if topic else [])


def build(settings: Settings) -> Handler:
    targets = targets_from_settings(settings)
    if not targets and settings.fcm_credentials_file is None:
        log.info("push-notify: no tokens or topic set; the dev sink addresses topic %r", DEV_TOPIC)
        targets = [f"topic:{DEV_TOPIC}"]
    if not targets:
        raise ConfigError(
            "push-notify has nowhere to send: set WOOFLEET_FCM_TOKENS (device registration "
            "tokens, comma-separated) or WOOFLEET_FCM_TOPIC"
        )
    return PushNotifyHandler(push_from_settings(settings), targets)
