"""Order events (``order.*``), version 1: normalised from the WooCommerce REST v3 order object."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from contracts.envelope import Envelope
from contracts.types import Money, UtcDatetime

ORDER_EVENT_TYPES = (
    "order.created",
    "order.paid",
    "order.completed",
    "order.cancelled",
    "order.refunded",
    "order.failed",
    "order.updated",
)

#: The statuses WooCommerce itself defines. Plugins register more (``shipped``,
#: ``awaiting-shipment``...): :attr:`OrderData.status` carries any of them as it is.
CORE_ORDER_STATUSES = frozenset(
    {
        "pending",
        "processing",
        "on-hold",
        "completed",
        "cancelled",
        "refunded",
        "failed",
        "checkout-draft",
        "auto-draft",
        "draft",
        "trash",
    }
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Address(_Frozen):
    first_name: str = ""
    last_name: str = ""
    company: str = ""
    address_1: str = ""
    address_2: str = ""
    city: str = ""
    state: str = ""
    postcode: str = ""
    country: str = ""
    email: str = ""
    phone: str = ""


class Customer(_Frozen):
    id: int = Field(description="WooCommerce customer id; 0 for a guest")
    email: str
    first_name: str
    last_name: str


class LineItem(_Frozen):
    id: int = Field(description="Order item id (not the product id)")
    product_id: int
    variation_id: int = 0
    sku: str = ""
    name: str
    quantity: int
    unit_price: Money
    subtotal: Money
    total: Money
    total_tax: Money
    meta: dict[str, str] = Field(default_factory=dict)


class ShippingLine(_Frozen):
    id: int
    method_id: str
    method_title: str
    total: Money
    total_tax: Money


class CouponLine(_Frozen):
    code: str
    discount: Money
    discount_tax: Money


class FeeLine(_Frozen):
    name: str
    total: Money
    total_tax: Money


class Refund(_Frozen):
    id: int
    reason: str = ""
    amount: Money = Field(description="Positive amount refunded")


class OrderData(_Frozen):
    """The order as every consumer sees it."""

    id: int
    number: str
    order_key: str
    status: str = Field(
        description="The WooCommerce status slug as the store sent it: one of WooCommerce's "
        "(pending, processing, on-hold, completed, cancelled, refunded, failed, ...) or one a "
        "plugin registered (e.g. shipped)"
    )
    currency: str = Field(min_length=3, max_length=3)
    prices_include_tax: bool = False
    customer: Customer
    billing: Address
    shipping: Address
    line_items: tuple[LineItem, ...]
    shipping_lines: tuple[ShippingLine, ...] = ()
    coupons: tuple[CouponLine, ...] = ()
    fees: tuple[FeeLine, ...] = ()
    refunds: tuple[Refund, ...] = ()
    discount_total: Money
    shipping_total: Money
    total_tax: Money
    total: Money
    payment_method: str = ""
    payment_method_title: str = ""
    transaction_id: str = ""
    customer_note: str = ""
    created_via: str = ""
    date_created_gmt: UtcDatetime
    date_modified_gmt: UtcDatetime
    date_paid_gmt: UtcDatetime | None = None
    date_completed_gmt: UtcDatetime | None = None
    meta: dict[str, str] = Field(
        default_factory=dict, description="Order meta with scalar values, by key"
    )
    refund: Refund | None = Field(
        None, description="order.refunded only: the refund this event announces"
    )

    @property
    def refunded_total(self) -> Decimal:
        return sum((r.amount for r in self.refunds), Decimal("0"))


class OrderEvent(Envelope[OrderData]):
    """Envelope of every ``order.*`` event, schema version 1."""

    EVENT_TYPES: ClassVar[tuple[str, ...]] = ORDER_EVENT_TYPES
    SCHEMA_VERSION: ClassVar[int] = 1


def _scalar_meta(items: Any) -> dict[str, str]:
    meta: dict[str, str] = {}
    for item in items or ():
        if isinstance(item, dict) and isinstance(item.get("value"), str | int | float | bool):
            meta[str(item.get("key", ""))] = str(item["value"])
    return meta


_ADDRESS_FIELDS = frozenset(Address.model_fields)


def _money(value: Any) -> Any:
    return "0" if value in (None, "") else value


def _address(value: Any) -> dict[str, Any]:
    return {k: v or "" for k, v in (value or {}).items() if k in _ADDRESS_FIELDS}


def order_data_from_woo(order: dict[str, Any], *, refund_id: int | None = None) -> OrderData:
    """Normalise a WooCommerce REST v3 order object (a webhook body) into :class:`OrderData`.

    Raises pydantic's ``ValidationError`` when the object is not an order.
    """
    # One plain dict validated in one call: pydantic checks the nested models in its core,
    # several times faster than building each nested model on its own (the webhook's hot path).
    billing = order.get("billing") or {}
    refunds = [
        {
            "id": r["id"],
            "reason": r.get("reason") or r.get("refund") or "",
            "amount": abs(Decimal(str(r.get("total") or "0"))),
        }
        for r in order.get("refunds") or ()
    ]
    refund = next((r for r in refunds if r["id"] == refund_id), None) if refund_id else None
    return OrderData.model_validate(
        {
            "id": order["id"],
            "number": str(order.get("number") or order["id"]),
            "order_key": order.get("order_key") or "",
            "status": order["status"],
            "currency": order["currency"],
            "prices_include_tax": bool(order.get("prices_include_tax")),
            "customer": {
                "id": order.get("customer_id") or 0,
                "email": billing.get("email") or "",
                "first_name": billing.get("first_name") or "",
                "last_name": billing.get("last_name") or "",
            },
            "billing": _address(billing),
            "shipping": _address(order.get("shipping")),
            "line_items": [
                {
                    "id": li["id"],
                    "product_id": li.get("product_id") or 0,
                    "variation_id": li.get("variation_id") or 0,
                    "sku": li.get("sku") or "",
                    "name": li.get("name") or "",
                    "quantity": li["quantity"],
                    "unit_price": _money(li.get("price")),
                    "subtotal": _money(li.get("subtotal")),
                    "total": _money(li.get("total")),
                    "total_tax": _money(li.get("total_tax")),
                    "meta": _scalar_meta(li.get("meta_data")),
                }
                for li in order.get("line_items") or ()
            ],
            "shipping_lines": [
                {
                    "id": sl["id"],
                    "method_id": sl.get("method_id") or "",
                    "method_title": sl.get("method_title") or "",
                    "total": _money(sl.get("total")),
                    "total_tax": _money(sl.get("total_tax")),
                }
                for sl in order.get("shipping_lines") or ()
            ],
            "coupons": [
                {
                    "code": c.get("code") or "",
                    "discount": _money(c.get("discount")),
                    "discount_tax": _money(c.get("discount_tax")),
                }
                for c in order.get("coupon_lines") or ()
            ],
            "fees": [
                {
                    "name": f.get("name") or "",
                    "total": _money(f.get("total")),
                    "total_tax": _money(f.get("total_tax")),
                }
                for f in order.get("fee_lines") or ()
            ],
            "refunds": refunds,
            "discount_total": _money(order.get("discount_total")),
            "shipping_total": _money(order.get("shipping_total")),
            "total_tax": _money(order.get("total_tax")),
            "total": _money(order.get("total")),
            "payment_method": order.get("payment_method") or "",
            "payment_method_title": order.get("payment_method_title") or "",
            "transaction_id": order.get("transaction_id") or "",
            "customer_note": order.get("customer_note") or "",
            "created_via": order.get("created_via") or "",
            "date_created_gmt": order["date_created_gmt"],
            "date_modified_gmt": order.get("date_modified_gmt") or order["date_created_gmt"],
            "date_paid_gmt": order.get("date_paid_gmt") or None,
            "date_completed_gmt": order.get("date_completed_gmt") or None,
            "meta": _scalar_meta(order.get("meta_data")),
            "refund": refund,
        }
    )
