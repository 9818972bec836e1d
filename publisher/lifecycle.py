"""Which order events a WooCommerce order state implies, given what was already emitted (pure).

WooCommerce renders a webhook body when it sends it and coalesces quick changes, so a delivery
shows the order's *current* state only. Per order we remember the lifecycle steps already
emitted and emit, in order, every step the new state implies that was not emitted yet:

* ``order.created``   once, on the first non-draft state seen;
* ``order.paid``      once, when the status is processing, or completed (or refunded) with
  ``date_paid`` set, or a status a plugin registered (``shipped``...) with ``date_paid`` set;
* ``order.completed`` once, when the status is completed;
* ``order.refunded``  once per refund id in ``refunds[]`` (oldest first);
* ``order.cancelled`` / ``order.failed`` each time the order *enters* that status;
* ``order.updated``   when none of the above fired but a relevant field changed (see
  :data:`RELEVANT_ORDER_FIELDS`); never for ``date_modified`` alone, nor for meta keys that
  start with ``_`` (hidden bookkeeping: WooCommerce's own and woofleet's writes), nor for a
  status change woofleet made itself (:func:`own_status_change`).

Echoes of woofleet's own writes: a note never shows in the order body; meta under ``_woofleet_``
keys is hidden; a status change carries the marker :data:`~fleet.woo_writeback.STATUS_META`
(new status, the status it replaced, who wrote it). Such a change still yields the milestone it
implies (on-hold → processing by payment-capture is the order's first ``order.paid``;
processing → completed on delivery its ``order.completed``), each once as always, but never an
``order.updated`` as if a person had changed the order.

A delivery older than one already handled (``date_modified_gmt`` went backwards: WooCommerce
does not deliver in order) may still add a milestone or a refund it shows, but never an update
or a status entry, and never moves the remembered state back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from contracts.orders import CORE_ORDER_STATUSES
from fleet.woo_writeback import STATUS_META

#: Statuses WooCommerce uses before an order really exists; nothing is emitted for them.
DRAFT_STATUSES = frozenset({"checkout-draft", "auto-draft", "draft", "new"})
#: Statuses of an order that was paid if it carries a payment date (cash on delivery can be
#: completed unpaid; a refunded order was paid first).
PAID_STATUSES = frozenset({"processing", "completed", "refunded"})
#: Any status not here was registered by a plugin (order status and shipment tracking plugins
#: add ``shipped`` and the like) and is carried as it is.
CORE_STATUSES = CORE_ORDER_STATUSES | DRAFT_STATUSES
#: Statuses whose every entry is an event (an order can be cancelled, reopened, cancelled again).
ENTERED_STATUSES = ("cancelled", "failed")

#: Top-level order fields whose change is "relevant" (an ``order.updated``), besides the
#: line-level lists normalised in :func:`relevant_view`.
RELEVANT_ORDER_FIELDS = (
    "status",
    "currency",
    "customer_id",
    "customer_note",
    "billing",
    "shipping",
    "payment_method",
    "transaction_id",
    "discount_total",
    "shipping_total",
    "cart_tax",
    "total_tax",
    "total",
)
RELEVANT_LINE_FIELDS = (
    "product_id",
    "variation_id",
    "sku",
    "quantity",
    "subtotal",
    "total",
    "total_tax",
)


@dataclass(frozen=True)
class OrderState:
    """What was emitted for one order so far; stored as JSON in the state store."""

    steps: frozenset[str] = frozenset()
    refunds: frozenset[int] = frozenset()
    status: str = ""
    fingerprint: str = ""
    modified: str = ""
    #: The last woofleet status marker honoured (see :func:`own_status_change`): a marker is
    #: honoured once, so a person repeating the same change later is announced.
    echo: str = ""

    def to_json(self) -> dict[str, Any]:
        saved: dict[str, Any] = {
            "steps": sorted(self.steps),
            "refunds": sorted(self.refunds),
            "status": self.status,
            "fingerprint": self.fingerprint,
            "modified": self.modified,
        }
        if self.echo:
            saved["echo"] = self.echo
        return saved

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> OrderState | None:
        if not raw:
            return None
        return cls(
            steps=frozenset(raw.get("steps", ())),
            refunds=frozenset(int(r) for r in raw.get("refunds", ())),
            status=str(raw.get("status", "")),
            fingerprint=str(raw.get("fingerprint", "")),
            modified=str(raw.get("modified", "")),
            echo=str(raw.get("echo", "")),
        )


@dataclass(frozen=True)
class PlannedEvent:
    event_type: str
    refund_id: int | None = None


@dataclass(frozen=True)
class Plan:
    """The events to emit, in order, and the state to remember afterwards."""

    events: tuple[PlannedEvent, ...]
    state: OrderState | None
    modified: str
    fingerprint: str
    note: str = field(default="")


def normalised_gmt(value: Any) -> str:
    """``2017-03-22T19:28:08`` (WooCommerce's zone-less UTC) as a comparable ISO string."""
    if not value:
        return ""
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed.replace(tzinfo=None).isoformat(timespec="seconds")


def modified_of(resource: dict[str, Any]) -> str:
    return normalised_gmt(resource.get("date_modified_gmt") or resource.get("date_created_gmt"))


def _legacy_value(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except RecursionError:  # never stored by the legacy scheme: any stable text will do
        return canonical(value).decode()


def _public_meta(items: Any) -> list[tuple[str, str]]:
    return sorted(
        (str(m.get("key", "")), _legacy_value(m.get("value")))
        for m in items or ()
        if isinstance(m, dict) and not str(m.get("key", "")).startswith("_")
    )


SHIPPING_LINE_FIELDS = ("method_id", "method_title", "total", "total_tax")
FEE_LINE_FIELDS = ("name", "total", "total_tax")
COUPON_LINE_FIELDS = ("code", "discount", "discount_tax")


def _public_meta_values(items: Any) -> list[list[Any]]:
    public = [
        [str(m.get("key", "")), m.get("value")]
        for m in items or ()
        if isinstance(m, dict) and not str(m.get("key", "")).startswith("_")
    ]
    if len(public) > 1:  # in a stable order whatever order WooCommerce lists them in
        public.sort(key=lambda kv: (kv[0], canonical(kv[1])))
    return public


def relevant_values(order: dict[str, Any]) -> list[Any]:
    """What :func:`relevant_view` holds, as nested lists (positions instead of names): the
    current fingerprint's input, several times cheaper to build than the view."""

    def lines(name: str, fields: tuple[str, ...]) -> list[list[Any]]:
        return [
            [line.get(f) for f in fields]
            for line in order.get(name) or ()
            if isinstance(line, dict)
        ]

    return [
        [order.get(name) for name in RELEVANT_ORDER_FIELDS],
        [
            [*(li.get(f) for f in RELEVANT_LINE_FIELDS), _public_meta_values(li.get("meta_data"))]
            for li in order.get("line_items") or ()
            if isinstance(li, dict)
        ],
        lines("shipping_lines", SHIPPING_LINE_FIELDS),
        lines("fee_lines", FEE_LINE_FIELDS),
        lines("coupon_lines", COUPON_LINE_FIELDS),
        _public_meta_values(order.get("meta_data")),
    ]


def relevant_view(order: dict[str, Any]) -> dict[str, Any]:
    """The part of an order whose change is worth an ``order.updated`` (the legacy
    fingerprint's input; see :func:`relevant_values`)."""
    view: dict[str, Any] = {name: order.get(name) for name in RELEVANT_ORDER_FIELDS}
    view["line_items"] = [
        {**{f: li.get(f) for f in RELEVANT_LINE_FIELDS}, "meta": _public_meta(li.get("meta_data"))}
        for li in order.get("line_items") or ()
        if isinstance(li, dict)
    ]
    view["shipping_lines"] = [
        {f: sl.get(f) for f in SHIPPING_LINE_FIELDS}
        for sl in order.get("shipping_lines") or ()
        if isinstance(sl, dict)
    ]
    view["fee_lines"] = [
        {f: fl.get(f) for f in FEE_LINE_FIELDS}
        for fl in order.get("fee_lines") or ()
        if isinstance(fl, dict)
    ]
    view["coupon_lines"] = [
        {f: c.get(f) for f in COUPON_LINE_FIELDS}
        for c in order.get("coupon_lines") or ()
        if isinstance(c, dict)
    ]
    view["meta"] = _public_meta(order.get("meta_data"))
    return view


#: Marks fingerprints of the current scheme; states saved before it hold legacy ones.
FINGERPRINT_SCHEME = "2:"


_SORTED = orjson.OPT_SORT_KEYS


def canonical(value: Any) -> bytes:
    """``value`` as canonical JSON (sorted keys), whatever a body holds."""
    try:
        return orjson.dumps(value, option=_SORTED, default=str)
    except TypeError:  # an integer past 64 bits, or nesting past orjson's 255 levels
        pass
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str).encode()
    except (RecursionError, TypeError, ValueError):  # nested deeper than the stack allows
        return _canonical_iterative(value)


class _Token(str):
    """Text already encoded, on :func:`_canonical_iterative`'s stack."""


def _canonical_iterative(value: Any) -> bytes:
    """Exactly what the standard library's ``json.dumps(value, sort_keys=True,
    ensure_ascii=False)`` writes, with an explicit stack instead of recursion: a plugin's meta
    value nested a thousand levels deep is still an order, and its digest does not depend on
    how deep the stack happened to be when it was taken."""
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Token):
            out.append(item)
        elif isinstance(item, dict):
            out.append("{")
            stack.append(_Token("}"))
            keys = sorted(item)
            for index in range(len(keys) - 1, -1, -1):
                key = keys[index]
                stack.extend((item[key], _Token(_scalar(key) + ": ")))
                if index:
                    stack.append(_Token(", "))
        elif isinstance(item, list | tuple):
            out.append("[")
            stack.append(_Token("]"))
            for index in range(len(item) - 1, -1, -1):
                stack.append(item[index])
                if index:
                    stack.append(_Token(", "))
        else:
            out.append(_scalar(item))
    return "".join(out).encode()


def _scalar(item: Any) -> str:
    return json.dumps(item, ensure_ascii=False, default=str)


def fingerprint(view: Any) -> str:
    """A digest of ``view`` that changes when anything in it changes (canonical JSON, sha256)."""
    return FINGERPRINT_SCHEME + hashlib.sha256(canonical(view)).hexdigest()


def legacy_fingerprint(view: dict[str, Any]) -> str:
    canonical = json.dumps(view, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def same_fingerprint(stored: str, current: str, view: Callable[[], dict[str, Any]]) -> bool:
    """Whether a stored fingerprint matches ``current``; a legacy one is compared in its own
    scheme, so upgrading does not make every known resource look changed."""
    if stored.startswith(FINGERPRINT_SCHEME):
        return stored == current
    return stored == legacy_fingerprint(view())


def is_paid(order: dict[str, Any]) -> bool:
    """Entered processing (payment received), or completed with a payment date; a refunded
    order with a payment date was paid before it was refunded. A status a plugin registered
    says nothing about payment by itself: its payment date does."""
    status = str(order.get("status") or "")
    paid_date = bool(order.get("date_paid_gmt") or order.get("date_paid"))
    unknown = status not in CORE_STATUSES
    return status == "processing" or ((status in PAID_STATUSES or unknown) and paid_date)


def refund_ids(order: dict[str, Any]) -> list[int]:
    return sorted({int(r["id"]) for r in order.get("refunds") or () if isinstance(r, dict)})


def status_marker(order: dict[str, Any]) -> dict[str, Any] | None:
    """The marker of woofleet's last status write to ``order`` (None if it has none)."""
    for meta in order.get("meta_data") or ():
        if isinstance(meta, dict) and meta.get("key") == STATUS_META:
            mark = meta.get("value")
            return mark if isinstance(mark, dict) else None
    return None


def marker_id(mark: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(mark, option=_SORTED, default=str)).hexdigest()[:16]


def own_status_change(order: dict[str, Any], previous: OrderState | None) -> str:
    """Who in woofleet moved the order from the remembered status to this one ("" if nobody):
    the status write carries its marker in the same request, so both arrive together; a
    marker already honoured once is stale (a person made the same change again)."""
    status = str(order.get("status") or "")
    if previous is None or not previous.status or previous.status == status:
        return ""
    mark = status_marker(order)
    if (
        mark is not None
        and mark.get("status") == status
        and mark.get("from") == previous.status
        and marker_id(mark) != previous.echo
    ):
        return str(mark.get("by") or "woofleet")
    return ""


def plan_order(order: dict[str, Any], previous: OrderState | None) -> Plan:
    """The events a delivery of ``order`` implies after ``previous`` (None: never seen)."""
    status = str(order.get("status") or "")
    modified = modified_of(order)
    print_ = fingerprint(relevant_values(order))
    if status in DRAFT_STATUSES:
        return Plan((), previous, modified, print_, note=f"status {status}: not an order yet")
    before = previous or OrderState()
    stale = previous is not None and modified < previous.modified
    steps, refunds = set(before.steps), set(before.refunds)
    events: list[PlannedEvent] = []
    note = ""
    echo = before.echo

    def step(name: str, implied: bool) -> None:
        if implied and name not in steps:
            steps.add(name)
            events.append(PlannedEvent(f"order.{name}"))

    step("created", True)
    step("paid", is_paid(order))
    step("completed", status == "completed")
    for refund_id in refund_ids(order):
        if refund_id not in refunds:
            refunds.add(refund_id)
            events.append(PlannedEvent("order.refunded", refund_id))
    if not stale:
        if status in ENTERED_STATUSES and before.status != status:
            events.append(PlannedEvent(f"order.{status}"))
        # A status woofleet wrote is compared as if unchanged: only a person's edits count.
        by = own_status_change(order, previous)
        seen = {**order, "status": before.status} if by else order
        seen_print = fingerprint(relevant_values(seen)) if by else print_
        if (
            not events
            and previous is not None
            and not same_fingerprint(previous.fingerprint, seen_print, lambda: relevant_view(seen))
        ):
            events.append(PlannedEvent("order.updated"))
        elif by and not events:
            note = f"woofleet's own status change ({by})"
        if by:
            echo = marker_id(status_marker(order) or {})
    if stale:
        note = "older than the last delivery handled"
        state = OrderState(frozenset(steps), frozenset(refunds), *_kept(before), echo=echo)
    else:
        note = note or ("" if events else "nothing relevant changed")
        state = OrderState(
            frozenset(steps), frozenset(refunds), status, print_, modified, echo=echo
        )
    # Nothing to write when the state did not change.
    return Plan(tuple(events), None if state == previous else state, modified, print_, note=note)


def _kept(before: OrderState) -> tuple[str, str, str]:
    return before.status, before.fingerprint, before.modified
