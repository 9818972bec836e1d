"""Write-back to WooCommerce: order notes, status changes and order meta, each idempotent.

One port, :class:`WooWriteBack`, shared by the consumers (payment-capture, shipping-label) and
the webhook process (carrier tracking updates); it lives in ``fleet`` because both sides use it.
Two adapters, chosen by :func:`writeback_from_settings`:

* :class:`RestWriteBack` — the REST v3 API through :class:`~fleet.woo_rest.WooRest`;
* :class:`FileWriteBack` — the dev sink when ``WOOFLEET_WOO_URL`` is unset: one JSON line per
  write in ``<var_dir>/woocommerce/writes.jsonl``, with the same idempotency rules.

WooCommerce takes no idempotency key, so every write checks for its own marker first:

* a note ends with ``woofleet ref <hash>`` (a hash of the caller's marker); the order's notes
  are listed and a note carrying the same ref is not added again (a retried ``POST`` after a
  timeout would otherwise add a duplicate);
* a status change carries, in the same ``PUT``, the hidden meta :data:`STATUS_META`
  (``{"status", "from", "by", "at"}``): the ingress reads it to recognise the change as woofleet's
  own (see :func:`publisher.lifecycle.plan_order`); a status already reached is not written,
  and a status a person moved elsewhere meanwhile is left alone;
* meta is written only when a value differs. Keys starting with ``_`` are hidden in the admin
  and ignored by the ingress, so a meta write never announces anything.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from fleet.settings import Settings
from fleet.woo_rest import WooRest

log = logging.getLogger("fleet.woo_writeback")

#: The hidden order meta a woofleet status change carries (read by the ingress).
STATUS_META = "_woofleet_status"
REF_PREFIX = "woofleet ref "


def note_ref(marker: str) -> str:
    """The short reference a note carries for ``marker`` (stable, nothing secret in it)."""
    return REF_PREFIX + hashlib.sha256(marker.encode()).hexdigest()[:12]


def with_ref(text: str, marker: str) -> str:
    return f"{text.rstrip()}\n\n{note_ref(marker)}"


@dataclass(frozen=True)
class StatusChange:
    """What :meth:`WooWriteBack.set_status` did: ``changed`` False when nothing was written."""

    changed: bool
    #: The order's status after the call (the target, or what a person set instead).
    status: str
    previous: str = ""


class WooWriteBack(Protocol):
    """The write-back port; every method is safe to call again with the same arguments."""

    description: str

    async def order_status(self, order_id: int) -> str:
        """The order's status now ("" when the adapter cannot know)."""
        ...

    async def add_note(
        self, order_id: int, text: str, *, marker: str, customer: bool = False
    ) -> bool:
        """Add a private (or customer) note unless one with ``marker`` exists; True if added."""
        ...

    async def set_status(
        self, order_id: int, status: str, *, by: str, only_from: Collection[str]
    ) -> StatusChange:
        """Move the order to ``status`` if it is in ``only_from`` now (already there: no write)."""
        ...

    async def set_meta(self, order_id: int, meta: Mapping[str, Any]) -> bool:
        """Write the meta keys whose value differs; True if anything was written."""
        ...

    async def add_to_list(
        self, order_id: int, key: str, item: Mapping[str, Any], *, identity: str
    ) -> bool:
        """Append ``item`` to the list in meta ``key`` unless an item with the same
        ``identity`` field is there (other plugins' items are kept); True if written."""
        ...

    async def aclose(self) -> None: ...


def appended(current: Any, item: Mapping[str, Any], identity: str) -> list[Any] | None:
    """The list with ``item`` added, or None when an item of the same identity is there."""
    items = list(current) if isinstance(current, list) else []
    if any(isinstance(i, dict) and i.get(identity) == item.get(identity) for i in items):
        return None
    return [*items, dict(item)]


def status_meta(status: str, previous: str, by: str) -> dict[str, Any]:
    """The marker a status write carries; ``at`` makes each write's marker its own."""
    at = datetime.now(UTC).isoformat(timespec="milliseconds")
    return {"key": STATUS_META, "value": {"status": status, "from": previous, "by": by, "at": at}}


def _meta_of(order: Mapping[str, Any]) -> dict[str, Any]:
    return {
        str(m.get("key")): m.get("value")
        for m in order.get("meta_data") or ()
        if isinstance(m, dict)
    }


def _differs(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in wanted.items() if current.get(k) != v}


class RestWriteBack:
    """:class:`WooWriteBack` over WooCommerce REST v3."""

    def __init__(self, rest: WooRest) -> None:
        self.rest = rest
        self.description = f"WooCommerce REST at {rest.store_url}"

    async def order_status(self, order_id: int) -> str:
        order = await self.rest.get(f"orders/{order_id}")
        return str(order.get("status", ""))

    async def add_note(
        self, order_id: int, text: str, *, marker: str, customer: bool = False
    ) -> bool:
        ref = note_ref(marker)
        notes = await self.rest.get(f"orders/{order_id}/notes", type="any")
        if any(ref in str(n.get("note", "")) for n in notes if isinstance(n, dict)):
            log.debug("order %s: note %s is there already", order_id, ref)
            return False
        await self.rest.post(
            f"orders/{order_id}/notes",
            {"note": with_ref(text, marker), "customer_note": customer, "added_by_user": False},
        )
        return True

    async def set_status(
        self, order_id: int, status: str, *, by: str, only_from: Collection[str]
    ) -> StatusChange:
        order = await self.rest.get(f"orders/{order_id}")
        current = str(order.get("status", ""))
        if current == status:
            return StatusChange(False, current)
        if current not in only_from:
            log.info(
                "order %s is %s now, not %s: leaving the status as a person set it",
                order_id,
                current,
                " or ".join(sorted(only_from)),
            )
            return StatusChange(False, current)
        await self.rest.put(
            f"orders/{order_id}",
            {"status": status, "meta_data": [status_meta(status, current, by)]},
        )
        return StatusChange(True, status, current)

    async def set_meta(self, order_id: int, meta: Mapping[str, Any]) -> bool:
        order = await self.rest.get(f"orders/{order_id}")
        changed = _differs(_meta_of(order), meta)
        if not changed:
            return False
        await self.rest.put(
            f"orders/{order_id}",
            {"meta_data": [{"key": k, "value": v} for k, v in changed.items()]},
        )
        return True

    async def add_to_list(
        self, order_id: int, key: str, item: Mapping[str, Any], *, identity: str
    ) -> bool:
        order = await self.rest.get(f"orders/{order_id}")
        items = appended(_meta_of(order).get(key), item, identity)
        if items is None:
            return False
        await self.rest.put(f"orders/{order_id}", {"meta_data": [{"key": key, "value": items}]})
        return True

    async def aclose(self) -> None:
        await self.rest.aclose()


@dataclass
class _DevOrder:
    status: str = ""
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


class FileWriteBack:
    """Dev sink: records each write as a JSON line; remembers notes, status and meta per order
    (in memory, for the idempotency rules). An order it never saw has whatever status the
    caller expects it to leave."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"dev sink {path}"
        self._orders: dict[int, _DevOrder] = {}
        self._lock = asyncio.Lock()

    async def order_status(self, order_id: int) -> str:
        order = self._orders.get(order_id)
        return order.status if order is not None else ""

    async def _record(self, order_id: int, write: str, body: Any) -> None:
        line = json.dumps(
            {"at": datetime.now(UTC).isoformat(), "order": order_id, "write": write, "body": body},
            ensure_ascii=False,
            default=str,
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as file:
            file.write(line + "\n")

    async def add_note(
        self, order_id: int, text: str, *, marker: str, customer: bool = False
    ) -> bool:
        async with self._lock:
            order = self._orders.setdefault(order_id, _DevOrder())
            ref = note_ref(marker)
            if any(ref in n for n in order.notes):
                return False
            note = with_ref(text, marker)
            order.notes.append(note)
            await self._record(order_id, "note", {"note": note, "customer_note": customer})
            return True

    async def set_status(
        self, order_id: int, status: str, *, by: str, only_from: Collection[str]
    ) -> StatusChange:
        async with self._lock:
            order = self._orders.setdefault(order_id, _DevOrder())
            current = order.status or next(iter(sorted(only_from)), "")
            if current == status or current not in only_from:
                return StatusChange(False, current)
            order.status = status
            body = {"status": status, "meta_data": [status_meta(status, current, by)]}
            await self._record(order_id, "status", body)
            return StatusChange(True, status, current)

    async def set_meta(self, order_id: int, meta: Mapping[str, Any]) -> bool:
        async with self._lock:
            order = self._orders.setdefault(order_id, _DevOrder())
            changed = _differs(order.meta, meta)
            if not changed:
                return False
            order.meta.update(changed)
            await self._record(order_id, "meta", changed)
            return True

    async def add_to_list(
        self, order_id: int, key: str, item: Mapping[str, Any], *, identity: str
    ) -> bool:
        async with self._lock:
            order = self._orders.setdefault(order_id, _DevOrder())
            items = appended(order.meta.get(key), item, identity)
            if items is None:
                return False
            order.meta[key] = items
            await self._record(order_id, "meta", {key: items})
            return True

    async def aclose(self) -> None:
        return None


def writeback_from_settings(settings: Settings) -> WooWriteBack:
    """REST when ``WOOFLEET_WOO_URL`` is set, else the dev sink under ``var/``; logs which."""
    if settings.woo_url:
        rest = WooRest.from_settings(settings, timeout=20, attempts=3)
        log.info("write-back: WooCommerce REST at %s", rest.store_url)
        return RestWriteBack(rest)
    path = settings.var_dir / "woocommerce" / "writes.jsonl"
    log.info("write-back: no WOOFLEET_WOO_URL set; recording writes to %s (dev sink)", path)
    return FileWriteBack(path)
