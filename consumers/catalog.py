"""Catalog: apply bulk price, stock and import commands through WooCommerce's batch API.

Prices and stock are ``update`` items (a missing sale price clears it; stock turns
``manage_stock`` on), imports are ``create`` items; products go to ``POST /products/batch``,
variations to ``POST /products/{id}/variations/batch``. A command holds at most 100 items (its
contract says so), so each group is one call. ``product.updated`` is only logged.

The batch is not atomic: each answer item is the product or an ``error``. Items failing with a
5xx-class error are sent again on their own, up to ``item_retries`` times. The rest — refused
items (unknown id, duplicated SKU) and items still failing — are listed in one PermanentError:
the command goes to ``woo.catalog.dlq`` with that list in ``woofleet-error``, the other items
stay applied. Replaying is safe for prices and stock (absolute values); a replayed import
reports the products it already created as duplicated SKUs. A whole call that keeps failing
(the REST client already retries 429/5xx) raises TransientError; the catalog queue allows one
attempt, so that command is dead-lettered whole and can be replayed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Protocol, cast

from consumers.adapters.http_target import JsonlTargetSink
from consumers.runtime.handler import AnyEnvelope, Delivery, Handler, HandlerSpec
from contracts.catalog import (
    PriceChange,
    PriceUpdate,
    ProductData,
    ProductDraft,
    ProductImport,
    StockLevel,
    StockSync,
)
from fleet.errors import PermanentError
from fleet.settings import Settings

log = logging.getLogger("consumers.catalog")

SPEC = HandlerSpec()


class WooBatchApi(Protocol):
    """What the catalog needs of WooCommerce: a JSON POST to a path under ``/wp-json/wc/v3``."""

    async def post(self, path: str, payload: Any) -> Any: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class Item:
    label: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Batch:
    path: str
    action: str  # "create" or "update"
    items: tuple[Item, ...]


def _update_item(row: PriceChange | StockLevel) -> tuple[str, Item]:
    if isinstance(row, PriceChange):
        sale = "" if row.sale_price is None else str(row.sale_price)
        fields: dict[str, Any] = {"regular_price": str(row.regular_price), "sale_price": sale}
    else:
        fields = {"manage_stock": True, "stock_quantity": row.stock_quantity}
    if row.variation_id:
        label = f"product {row.product_id} variation {row.variation_id}"
        item = Item(label, {"id": row.variation_id, **fields})
        return f"products/{row.product_id}/variations/batch", item
    return "products/batch", Item(f"product {row.product_id}", {"id": row.product_id, **fields})


def _create_item(draft: ProductDraft) -> Item:
    payload = draft.model_dump(mode="json", include={"sku", "name", "type", "description"})
    payload["regular_price"] = str(draft.regular_price)
    if draft.stock_quantity is not None:
        payload |= {"manage_stock": True, "stock_quantity": draft.stock_quantity}
    return Item(f"sku {draft.sku}", payload)


def plan(event: AnyEnvelope) -> list[Batch]:
    """The batch calls a command turns into: products, and variations per parent product."""
    data = cast(PriceUpdate | StockSync | ProductImport, event.data)
    if isinstance(data, ProductImport):
        return [Batch("products/batch", "create", tuple(map(_create_item, data.items)))]
    groups: dict[str, list[Item]] = {}
    for row in data.items:
        path, item = _update_item(row)
        groups.setdefault(path, []).append(item)
    return [Batch(path, "update", tuple(items)) for path, items in groups.items()]


def _is_transient(error: dict[str, Any]) -> bool:
    status = (error.get("data") or {}).get("status")
    return isinstance(status, int) and (status >= 500 or status == 429)


def _describe(item: Item, error: dict[str, Any]) -> str:
    return f"{item.label} ({error.get('code', 'error')}: {error.get('message', '')})"


class CatalogHandler:
    def __init__(
        self, woo: WooBatchApi, *, item_retries: int = 2, retry_delay: float = 0.5
    ) -> None:
        self.woo = woo
        self.item_retries = item_retries
        self.retry_delay = retry_delay

    async def __call__(self, event: AnyEnvelope, delivery: Delivery) -> None:
        if event.event_type == "product.updated":
            product = cast(ProductData, event.data)
            delivery.nothing_to_do(
                "product %d updated in the shop (sku %s, stock %s); nothing to do",
                product.id,
                product.sku or "-",
                product.stock_quantity if product.manage_stock else "not managed",
            )
            return
        if event.event_type == "catalog.product_import" and any(
            d.categories for d in cast(ProductImport, event.data).items
        ):
            delivery.log.warning("categories are named, WooCommerce needs ids: not applied")
        applied, failed = 0, list[str]()
        for batch in plan(event):
            ok, errors = await self._apply(batch, delivery)
            applied, failed = applied + ok, failed + errors
        total = applied + len(failed)
        if failed:
            raise PermanentError(
                f"{event.event_type}: {len(failed)} of {total} items failed, the other {applied} "
                f"were applied; failed: {'; '.join(failed)}. Fix those items and replay this "
                "message (re-applying the rest is harmless for prices and stock)."
            )
        delivery.log.info("%s: all %d items applied", event.event_type, total)

    async def _apply(self, batch: Batch, delivery: Delivery) -> tuple[int, list[str]]:
        pending, failed, applied = list(batch.items), list[str](), 0
        for attempt in range(self.item_retries + 1):
            if attempt:
                await asyncio.sleep(self.retry_delay * 2 ** (attempt - 1))
                delivery.log.info("retrying %d items that failed transiently", len(pending))
            answer = await self.woo.post(
                batch.path, {batch.action: [item.payload for item in pending]}
            )
            results = (answer or {}).get(batch.action) or []
            retry: list[Item] = []
            for index, item in enumerate(pending):
                result = results[index] if index < len(results) else {"error": {}}
                error = result.get("error") if isinstance(result, dict) else {}
                if error is None:
                    applied += 1
                elif _is_transient(error) and attempt < self.item_retries:
                    retry.append(item)
                else:
                    failed.append(_describe(item, error or {"code": "no_answer"}))
            if not retry:
                break
            pending = retry
        return applied, failed

    async def aclose(self) -> None:
        await self.woo.aclose()


class JsonlWooSink:
    """Dev sink for the catalog: records each batch call and answers every item as applied."""

    def __init__(self, sink: JsonlTargetSink) -> None:
        self.sink = sink

    async def post(self, path: str, payload: Any) -> Any:
        await self.sink.send("POST", f"/wp-json/wc/v3/{path}", idempotency_key="", json=payload)
        return {action: list(items) for action, items in payload.items()}

    async def aclose(self) -> None:
        return None


def build(settings: Settings) -> Handler:
    if settings.woo_url:
        from fleet.woo_rest import WooRest

        log.info("catalog: WooCommerce REST at %s", settings.woo_url)
        return CatalogHandler(WooRest.from_settings(settings, timeout=120))
    path = settings.var_dir / "targets" / "catalog.jsonl"
    log.info("catalog: no WOOFLEET_WOO_URL set; recording batch calls to %s (dev sink)", path)
    return CatalogHandler(JsonlWooSink(JsonlTargetSink("catalog", path)))
