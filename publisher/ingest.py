"""A WooCommerce resource state in, its missing events queued (for webhook and reconciler)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError

from contracts import order_data_from_woo, product_data_from_woo
from fleet.errors import ContractError
from publisher.events import order_messages, product_event, product_fingerprint_view
from publisher.lifecycle import (
    DRAFT_STATUSES,
    OrderState,
    Plan,
    fingerprint,
    modified_of,
    plan_order,
    same_fingerprint,
)
from publisher.outgoing import Outgoing
from publisher.priority import PriorityRules
from publisher.store import PublisherStore, ResourceKey

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    """What one delivery (or one polled order) queued."""

    events: tuple[str, ...] = ()
    seqs: tuple[int, ...] = ()
    note: str = ""
    message_ids: tuple[str, ...] = field(default=(), repr=False)


class Unusable(ContractError):
    """A signed delivery woofleet cannot turn into events: it is kept whole, not refused."""


def contract_error(kind: str, resource: dict[str, Any], exc: ValidationError) -> Unusable:
    # pydantic's own message quotes the input, which holds shopper PII: name the field only.
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    return Unusable(
        f"{kind} {resource.get('id', '?')} is not a WooCommerce REST v3 {kind} object "
        f"({exc.error_count()} problems; first at {where}: {first['msg']})"
    )


#: Resource ids are stored as signed 64-bit integers (both state stores).
MAX_ID = 2**63 - 1


def check_id(kind: str, resource_id: int) -> None:
    """WooCommerce ids are positive; one past 64 bits would fail the store's whole batch."""
    if not 0 < resource_id <= MAX_ID:
        raise Unusable(f"{kind} id {resource_id} is not a WooCommerce id (1 to 2^63-1)")


def unusable(kind: str, resource: dict[str, Any], exc: BaseException) -> Unusable:
    """Why a body could not be turned into events, naming the error type only (no PII)."""
    if isinstance(exc, ContractError):
        detail = str(exc)
    elif isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
        detail = f"no {exc.args[0][:60]!r} field"  # a field name, not a value: no PII
    else:
        detail = type(exc).__name__
    return Unusable(f"{kind} {resource.get('id', '?')} cannot be read ({detail})")


class Ingest:
    """Turns order and product states into queued events through the store's transitions."""

    def __init__(self, store: PublisherStore, rules: PriorityRules | None = None) -> None:
        self._store = store
        self._rules = rules or PriorityRules()

    async def order(self, source: str, order: dict[str, Any]) -> IngestResult:
        """Queue every event ``order``'s state implies that was not emitted yet."""
        status = order.get("status")
        if isinstance(status, str) and status in DRAFT_STATUSES:
            return IngestResult(note=f"status {status}: not an order yet")
        try:
            data = order_data_from_woo(order)
            priority = self._rules.priority_for(order)
            check_id("order", data.id)
        except ValidationError as exc:
            raise contract_error("order", order, exc) from None
        except Exception as exc:  # whatever a body holds, it is the body's problem: kept
            raise unusable("order", order, exc) from None
        planned: list[Plan] = []
        messages: list[Outgoing] = []

        def decide(raw: dict[str, Any] | None) -> tuple[dict[str, Any] | None, list[Outgoing]]:
            try:
                plan = plan_order(order, OrderState.from_json(raw))
                planned[:] = [plan]
                messages[:] = order_messages(source, data, plan, priority)
                state = plan.state.to_json() if plan.state else None
                # The store writes it as JSON: a value it cannot hold (a refund id past 64 bits)
                # must fail this delivery here, not the store's whole group commit.
                orjson.dumps(state)
            except Exception as exc:  # pure work on the body: never the store's failure
                raise unusable("order", order, exc) from None
            return state, messages

        seqs = await self._store.transition(ResourceKey(source, "order", data.id), decide)
        plan = planned[0]
        return IngestResult(
            events=tuple(e.event_type for e in plan.events),
            seqs=tuple(seqs),
            note=plan.note,
            message_ids=tuple(m.message_id for m in messages),
        )

    async def product(self, source: str, product: dict[str, Any]) -> IngestResult:
        """Queue ``product.updated`` unless this product state was already announced."""
        try:
            data = product_data_from_woo(product)
            check_id("product", data.id)
            modified = modified_of(product)
            view = product_fingerprint_view(product)
            print_ = fingerprint(view)
        except ValidationError as exc:
            raise contract_error("product", product, exc) from None
        except Exception as exc:
            raise unusable("product", product, exc) from None
        messages: list[Outgoing] = []

        def decide(raw: dict[str, Any] | None) -> tuple[dict[str, Any] | None, list[Outgoing]]:
            seen = str((raw or {}).get("modified", ""))
            if raw and (
                modified < seen
                or (
                    modified == seen
                    and same_fingerprint(str(raw.get("fingerprint", "")), print_, lambda: view)
                )
            ):
                messages.clear()
                return None, []
            try:
                messages[:] = [Outgoing.from_envelope(product_event(source, data, modified))]
            except Exception as exc:
                raise unusable("product", product, exc) from None
            return {"modified": modified, "fingerprint": print_}, messages

        seqs = await self._store.transition(ResourceKey(source, "product", data.id), decide)
        return IngestResult(
            events=tuple(m.routing_key for m in messages),
            seqs=tuple(seqs),
            note="" if messages else "already announced",
            message_ids=tuple(m.message_id for m in messages),
        )
