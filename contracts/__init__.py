"""The message contracts of woofleet: versioned pydantic models, their registry and schemas."""

from contracts.catalog import (
    BATCH_LIMIT,
    PriceUpdate,
    PriceUpdateCommand,
    ProductData,
    ProductEvent,
    ProductImport,
    ProductImportCommand,
    StockSync,
    StockSyncCommand,
    product_data_from_woo,
)
from contracts.envelope import Envelope, event_id_for
from contracts.messages import message_body, message_properties
from contracts.orders import ORDER_EVENT_TYPES, OrderData, OrderEvent, order_data_from_woo
from contracts.registry import EVENT_TYPES, REGISTRY, latest_version, model_for, parse

__all__ = [
    "BATCH_LIMIT",
    "EVENT_TYPES",
    "ORDER_EVENT_TYPES",
    "REGISTRY",
    "Envelope",
    "OrderData",
    "OrderEvent",
    "PriceUpdate",
    "PriceUpdateCommand",
    "ProductData",
    "ProductEvent",
    "ProductImport",
    "ProductImportCommand",
    "StockSync",
    "StockSyncCommand",
    "event_id_for",
    "latest_version",
    "message_body",
    "message_properties",
    "model_for",
    "order_data_from_woo",
    "parse",
    "product_data_from_woo",
]
