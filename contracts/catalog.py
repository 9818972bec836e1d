"""Product events and catalog bulk commands (``product.*``, ``catalog.*``), version 1."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from contracts.envelope import Envelope
from contracts.types import Money, UtcDatetime

#: WooCommerce's product.created and product.updated topics both become product.updated.
PRODUCT_EVENT_TYPES = ("product.updated",)
CATALOG_COMMAND_TYPES = ("catalog.price_update", "catalog.stock_sync", "catalog.product_import")

#: WooCommerce's batch endpoints take at most 100 items a call.
BATCH_LIMIT = 100


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class ProductData(_Frozen):
    """A product as WooCommerce's REST v3 product object describes it (the fields we use)."""

    id: int
    name: str
    type: str = "simple"
    status: str = "publish"
    sku: str = ""
    price: Money | None = None
    regular_price: Money | None = None
    sale_price: Money | None = None
    manage_stock: bool = False
    stock_quantity: int | None = None
    stock_status: str = "instock"
    date_modified_gmt: UtcDatetime


class PriceChange(_Frozen):
    product_id: int
    variation_id: int = 0
    regular_price: Money
    sale_price: Money | None = None


class StockLevel(_Frozen):
    product_id: int
    variation_id: int = 0
    stock_quantity: int


class ProductDraft(_Frozen):
    sku: str = Field(min_length=1)
    name: str = Field(min_length=1)
    type: str = "simple"
    regular_price: Money
    description: str = ""
    stock_quantity: int | None = None
    categories: tuple[str, ...] = ()


class PriceUpdate(_Frozen):
    items: tuple[PriceChange, ...] = Field(min_length=1, max_length=BATCH_LIMIT)


class StockSync(_Frozen):
    items: tuple[StockLevel, ...] = Field(min_length=1, max_length=BATCH_LIMIT)


class ProductImport(_Frozen):
    items: tuple[ProductDraft, ...] = Field(min_length=1, max_length=BATCH_LIMIT)


class ProductEvent(Envelope[ProductData]):
    EVENT_TYPES: ClassVar[tuple[str, ...]] = PRODUCT_EVENT_TYPES
    SCHEMA_VERSION: ClassVar[int] = 1


class PriceUpdateCommand(Envelope[PriceUpdate]):
    EVENT_TYPES: ClassVar[tuple[str, ...]] = ("catalog.price_update",)
    SCHEMA_VERSION: ClassVar[int] = 1


class StockSyncCommand(Envelope[StockSync]):
    EVENT_TYPES: ClassVar[tuple[str, ...]] = ("catalog.stock_sync",)
    SCHEMA_VERSION: ClassVar[int] = 1


class ProductImportCommand(Envelope[ProductImport]):
    EVENT_TYPES: ClassVar[tuple[str, ...]] = ("catalog.product_import",)
    SCHEMA_VERSION: ClassVar[int] = 1


def product_data_from_woo(product: dict[str, Any]) -> ProductData:
    """Normalise a WooCommerce REST v3 product object into :class:`ProductData`."""
    return ProductData(
        id=product["id"],
        name=product.get("name") or "",
        type=product.get("type") or "simple",
        status=product.get("status") or "publish",
        sku=product.get("sku") or "",
        price=product.get("price") or None,
        regular_price=product.get("regular_price") or None,
        sale_price=product.get("sale_price") or None,
        manage_stock=bool(product.get("manage_stock")),
        stock_quantity=product.get("stock_quantity"),
        stock_status=product.get("stock_status") or "instock",
        date_modified_gmt=product.get("date_modified_gmt") or product["date_created_gmt"],
    )
