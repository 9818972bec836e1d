"""``POST /webhooks/carrier``: the carrier's signed tracking updates, written back to the order.

The carrier aggregator (the one ``shipping-label`` buys labels from) posts a tracking update
whenever a parcel moves, signed with ``WOOFLEET_CARRIER_WEBHOOK_SECRET``:
``X-Carrier-Signature: <hex HMAC-SHA256 of the raw body>`` (``sha256=`` or ``hmac-sha256-hex=``
before the digest is accepted too). The body, in the aggregator's common shape::

    {"event": "track_updated",
     "data": {"tracking_number": "EF000000001TH", "metadata": "order:727",
              "tracking_status": {"status": "TRANSIT", "status_date": "…", "status_details": "…"}}}

``metadata`` is what shipping-label set on the shipment, so the order is known without a lookup.

Answers: 401 bad or missing signature (nothing written); 400 not such a body; 200 recorded or
ignored (a status woofleet does not act on, an update for a parcel it did not ship); 503 when
WooCommerce could not be written (the carrier retries later). Recorded: ``TRANSIT`` and
``DELIVERED`` as the hidden meta ``_woofleet_shipping_status`` and a private note, each once
however often the carrier repeats it; on ``DELIVERED`` the order moves processing → completed
(unless ``WOOFLEET_SHIPPING_COMPLETE_ON_DELIVERY=false``), which WooCommerce then delivers to
the ingress: ``order.completed``, exactly once, through the normal lifecycle.
"""

from __future__ import annotations

import hmac
import logging
import re
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter
from starlette.requests import Request
from starlette.responses import Response

from fleet.errors import HandlerError, TransientError
from fleet.settings import Settings
from fleet.woo_writeback import WooWriteBack, writeback_from_settings

log = logging.getLogger(__name__)

CARRIER_PATH = "/webhooks/carrier"
SIGNATURE_HEADER = "x-carrier-signature"
#: A tracking update is small; anything bigger is not one.
MAX_BODY = 64 * 1024
STATUS_META = "_woofleet_shipping_status"
#: Carrier statuses recorded on the order, and how the note puts them.
RECORDED = {"TRANSIT": "is in transit", "DELIVERED": "was delivered"}
_ORDER = re.compile(r"order:(\d+)")


def carrier_signature(body: bytes, secret: bytes) -> str:
    """What the carrier sends in ``X-Carrier-Signature`` for ``body``."""
    return hmac.new(secret, body, "sha256").hexdigest()


def signature_ok(body: bytes, header: str | None, secret: bytes) -> bool:
    if not secret or not header:
        return False
    given = header.strip().split("=", 1)[-1].strip().lower()
    return hmac.compare_digest(carrier_signature(body, secret), given)


def _json(status: int, payload: dict[str, Any]) -> Response:
    return Response(orjson.dumps(payload), status, media_type="application/json")


class CarrierWebhook:
    """The endpoint and the write-back it uses (opened on first use, closed with the app)."""

    def __init__(self, settings: Settings, registry: CollectorRegistry) -> None:
        self.settings = settings
        self._secret = settings.carrier_webhook_secret.get_secret_value().encode()
        self._writeback: WooWriteBack | None = None
        self.updates = Counter(
            "woofleet_carrier_updates",
            "Carrier tracking updates by carrier status and outcome (recorded, ignored, "
            "unsigned, malformed, failed)",
            ["status", "outcome"],
            registry=registry,
        )

    @property
    def writeback(self) -> WooWriteBack:
        if self._writeback is None:
            self._writeback = writeback_from_settings(self.settings)
        return self._writeback

    async def aclose(self) -> None:
        if self._writeback is not None:
            await self._writeback.aclose()
            self._writeback = None

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY:
            return _json(413, {"error": "body too large"})
        if not signature_ok(body, request.headers.get(SIGNATURE_HEADER), self._secret):
            self.updates.labels("", "unsigned").inc()
            log.warning(
                "carrier webhook: refused an update whose signature does not match (401); check "
                "WOOFLEET_CARRIER_WEBHOOK_SECRET against the carrier's webhook secret"
            )
            return _json(401, {"error": "signature does not match"})
        update = parse(body)
        if update is None:
            self.updates.labels("", "malformed").inc()
            log.warning("carrier webhook: signed body is not a tracking update (400)")
            return _json(400, {"error": "not a tracking update"})
        order_id, tracking, status, when = update
        if order_id is None or status not in RECORDED:
            self.updates.labels(status, "ignored").inc()
            return _json(200, {"ignored": status})
        try:
            await self.record(order_id, tracking, status, when)
        except HandlerError as exc:
            self.updates.labels(status, "failed").inc()
            log.error("carrier webhook: order %s %s not recorded: %s", order_id, status, exc)
            code = 503 if isinstance(exc, TransientError) else 422
            return _json(code, {"error": "could not record the update in WooCommerce"})
        self.updates.labels(status, "recorded").inc()
        return _json(200, {"recorded": status})

    async def record(self, order_id: int, tracking: str, status: str, when: str) -> None:
        writeback = self.writeback
        await writeback.set_meta(
            order_id,
            {STATUS_META: {"status": status.lower(), "at": when, "tracking_number": tracking}},
        )
        await writeback.add_note(
            order_id,
            f"Parcel {tracking} {RECORDED[status]}{f' ({when})' if when else ''}.",
            marker=f"carrier:{tracking}:{status}",
        )
        if status == "DELIVERED" and self.settings.shipping_complete_on_delivery:
            change = await writeback.set_status(
                order_id, "completed", by="carrier", only_from={"processing"}
            )
            if change.changed:
                log.info("carrier webhook: order %s delivered: processing -> completed", order_id)


def parse(body: bytes) -> tuple[int | None, str, str, str] | None:
    """(order id or None, tracking number, carrier status, status date) of an update."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        return None
    status = data.get("tracking_status")
    if not isinstance(status, dict) or not isinstance(status.get("status"), str):
        return None
    match = _ORDER.fullmatch(str(data.get("metadata") or ""))
    return (
        int(match.group(1)) if match else None,
        str(data.get("tracking_number") or ""),
        status["status"].upper(),
        str(status.get("status_date") or ""),
    )
