"""Shipping labels through a carrier aggregator's HTTP API, or a dev sink.

One port, :class:`Carrier`, two adapters chosen by :func:`carrier_from_settings`:

* :class:`HttpCarrier` — the common aggregator shape, on the HTTP target
  ``WOOFLEET_SHIPPING_LABEL_URL`` (credentials in the URL, as for every target), each request
  with an ``Idempotency-Key`` derived from the order so a retry buys nothing twice:

  - ``POST /shipments`` ``{address_from, address_to, parcels: [parcel], metadata}`` →
    ``{id, rates: [{id, service_level, provider, amount, currency}]}``;
  - the rate whose ``service_level`` is ``WOOFLEET_SHIPPING_SERVICE_LEVEL`` is chosen (none: a
    PermanentError listing the levels offered);
  - ``POST /transactions`` ``{rate, label_file_type: "PDF", metadata}`` →
    ``{id, status, tracking_number, tracking_url, label_url, messages}``: ``SUCCESS`` is a
    label, ``QUEUED``/``WAITING`` not yet (transient), ``ERROR`` a refusal (permanent);
  - the label PDF is fetched from ``label_url`` without the API's credentials (it is a signed
    link on the carrier's storage, usually another host);
  - ``POST /refunds`` ``{transaction}`` voids a label (``QUEUED``/``SUCCESS``: accepted).

  Shippo's spellings (``object_id``, ``servicelevel.token``, ``tracking_url_provider``) are read
  too. Errors are classified by :class:`~consumers.adapters.http_target.HttpTargetClient`.

* :class:`DevCarrier` — when the URL is unset: a made-up label (tracking ``DEV…``, a one-page
  PDF) and one JSON line per call in ``<var_dir>/shipping/carrier.jsonl``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import httpx

from consumers.adapters.http_target import HttpTarget, HttpTargetClient, safe_url
from fleet.errors import ConfigError, PermanentError, TransientError
from fleet.settings import Settings

log = logging.getLogger("consumers.carrier")

TARGET = "shipping_label"
PENDING = frozenset({"QUEUED", "WAITING", "PENDING"})


@dataclass(frozen=True)
class Label:
    """A bought label: what WooCommerce and the shopper are told."""

    shipment_id: str
    transaction_id: str
    tracking_number: str
    tracking_url: str
    label_url: str
    provider: str
    service_level: str


class Carrier(Protocol):
    name: str

    async def buy_label(
        self, shipment: Mapping[str, Any], *, service_level: str, idempotency_key: str
    ) -> Label:
        """Create the shipment, choose the rate of ``service_level``, buy its label."""
        ...

    async def label_pdf(self, label: Label) -> bytes: ...

    async def void(self, transaction_id: str, *, idempotency_key: str) -> None: ...

    async def aclose(self) -> None: ...


def _id(body: Mapping[str, Any]) -> str:
    return str(body.get("id") or body.get("object_id") or "")


def _level(rate: Mapping[str, Any]) -> str:
    level = rate.get("service_level") or rate.get("servicelevel") or ""
    return str(level.get("token", "") if isinstance(level, dict) else level)


def choose_rate(rates: Any, service_level: str) -> Mapping[str, Any]:
    """The rate of ``service_level`` (the cheapest if several); PermanentError if none."""
    offered = [r for r in rates or () if isinstance(r, dict)]
    matching = [r for r in offered if _level(r) == service_level]
    if not matching:
        levels = ", ".join(sorted({_level(r) for r in offered})) or "none"
        raise PermanentError(
            f"the carrier offers no {service_level!r} rate for this shipment (offered: {levels}); "
            "set WOOFLEET_SHIPPING_SERVICE_LEVEL to one of them"
        )
    return min(matching, key=lambda r: float(r.get("amount") or 0))


class HttpCarrier:
    """:class:`Carrier` over an aggregator's HTTP API."""

    def __init__(self, target: HttpTarget, *, download_timeout: float = 30.0) -> None:
        self.target = target
        self.name = target.name
        self._download = httpx.AsyncClient(timeout=download_timeout, follow_redirects=True)

    async def buy_label(
        self, shipment: Mapping[str, Any], *, service_level: str, idempotency_key: str
    ) -> Label:
        created = await self.target.send(
            "POST", "/shipments", idempotency_key=f"{idempotency_key}:shipment", json=shipment
        )
        body = created.body if isinstance(created.body, dict) else {}
        rate = choose_rate(body.get("rates"), service_level)
        bought = await self.target.send(
            "POST",
            "/transactions",
            idempotency_key=f"{idempotency_key}:transaction",
            json={
                "rate": _id(rate),
                "label_file_type": "PDF",
                "metadata": shipment.get("metadata", ""),
            },
        )
        txn = bought.body if isinstance(bought.body, dict) else {}
        status = str(txn.get("status", "")).upper()
        if status in PENDING:
            raise TransientError(f"{self.name}: the label is still {status}; will ask again")
        if status != "SUCCESS":
            messages = "; ".join(
                str(m.get("text", m)) if isinstance(m, dict) else str(m)
                for m in txn.get("messages") or ()
            )
            raise PermanentError(
                f"{self.name} refused the label ({status or 'no status'}): "
                f"{messages or 'no reason given'} — fix the address or parcel, then replay"
            )
        return Label(
            shipment_id=_id(body),
            transaction_id=_id(txn),
            tracking_number=str(txn.get("tracking_number") or ""),
            tracking_url=str(txn.get("tracking_url") or txn.get("tracking_url_provider") or ""),
            label_url=str(txn.get("label_url") or ""),
            provider=str(rate.get("provider") or ""),
            service_level=service_level,
        )

    async def label_pdf(self, label: Label) -> bytes:
        if not label.label_url:
            raise PermanentError(f"{self.name} gave no label_url for {label.transaction_id}")
        try:
            response = await self._download.get(label.label_url)
        except httpx.TransportError as exc:
            raise TransientError(
                f"label download from {safe_url(label.label_url)} failed ({type(exc).__name__})"
            ) from exc
        if response.status_code >= 500 or response.status_code in (404, 429):
            # A fresh label can take a moment to appear on the carrier's storage.
            raise TransientError(
                f"label download from {safe_url(label.label_url)} answered "
                f"{response.status_code}; will retry"
            )
        if response.status_code >= 300 or not response.content.startswith(b"%PDF"):
            raise PermanentError(
                f"label at {safe_url(label.label_url)} is not a PDF ({response.status_code})"
            )
        return response.content

    async def void(self, transaction_id: str, *, idempotency_key: str) -> None:
        answer = await self.target.send(
            "POST",
            "/refunds",
            idempotency_key=idempotency_key,
            json={"transaction": transaction_id},
        )
        body = answer.body if isinstance(answer.body, dict) else {}
        status = str(body.get("status", "")).upper()
        if status == "ERROR":
            raise PermanentError(
                f"{self.name} refused to void label {transaction_id}: "
                f"{body.get('messages') or 'no reason given'} (a used label cannot be voided)"
            )

    async def aclose(self) -> None:
        await self.target.aclose()
        await self._download.aclose()


#: A one-page PDF with no content: enough to be stored and opened.
DEV_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 288 432]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)


class DevCarrier:
    """Dev sink: made-up labels, every call recorded as a JSON line; nothing leaves the host."""

    name = "shipping_label (dev sink)"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()

    async def _record(self, call: str, body: Any) -> None:
        line = json.dumps(
            {"at": datetime.now(UTC).isoformat(), "call": call, "body": body},
            ensure_ascii=False,
            default=str,
        )
        async with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as file:
                file.write(line + "\n")

    async def buy_label(
        self, shipment: Mapping[str, Any], *, service_level: str, idempotency_key: str
    ) -> Label:
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:10].upper()
        label = Label(
            shipment_id=f"shp_dev_{digest}",
            transaction_id=f"txn_dev_{digest}",
            tracking_number=f"DEV{digest}",
            tracking_url=f"https://tracking.invalid/DEV{digest}",
            label_url="",
            provider="Dev Carrier",
            service_level=service_level,
        )
        await self._record("buy_label", {"shipment": shipment, "label": asdict(label)})
        return label

    async def label_pdf(self, label: Label) -> bytes:
        return DEV_PDF

    async def void(self, transaction_id: str, *, idempotency_key: str) -> None:
        await self._record("void", {"transaction": transaction_id})

    async def aclose(self) -> None:
        return None


def carrier_from_settings(settings: Settings) -> Carrier:
    """The aggregator when ``WOOFLEET_SHIPPING_LABEL_URL`` is set, else the dev sink."""
    url = settings.target_url(TARGET)
    if url:
        if not settings.shipping_from:
            raise ConfigError(
                "WOOFLEET_SHIPPING_FROM is not set: the carrier needs the address parcels leave "
                'from, as JSON (e.g. {"name": "Shop", "street1": "1 Road", "city": "Bangkok", '
                '"zip": "10110", "country": "TH"})'
            )
        client = HttpTargetClient(TARGET, url, timeout=30)
        log.info("shipping-label: carrier API at %s", client.display_url)
        return HttpCarrier(client)
    path = settings.var_dir / "shipping" / "carrier.jsonl"
    log.info("shipping-label: no WOOFLEET_SHIPPING_LABEL_URL; made-up labels, calls in %s", path)
    return DevCarrier(path)
