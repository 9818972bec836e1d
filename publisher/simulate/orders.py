"""Realistic WooCommerce orders and the deliveries their life produces.

Each order gets a *story*: the sequence of states WooCommerce would deliver for it, including
what real stores produce: a created+updated pair with identical bodies, coalesced status jumps
(one delivery straight to ``completed``), refunds, cancellations, failed payments, and the echo
of a consumer's own ``_``-meta write.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

SHOP = "https://shop.example"

CUSTOMERS = (
    ("John", "Doe", "969 Market", "San Francisco", "CA", "94103", "US"),
    ("Søren", "Kierkegaard", "Nørregade 10", "København", "", "1165", "DK"),
    ("José", "Muñoz", "Calle de Alcalá 48", "Madrid", "M", "28014", "ES"),
    ("สมชาย", "ใจดี", "99/1 ถนนสุขุมวิท", "กรุงเทพมหานคร", "TH-10", "10110", "TH"),
    ("Zoë", "Brontë-Ölçer", "Straße des 17. Juni 135", "Berlin", "BE", "10623", "DE"),
    ("花子", "山田", "千代田区千代田1-1", "東京都", "JP13", "100-8111", "JP"),
    ("Amélie", "Poulain", "15 rue des Trois Frères", "Paris", "", "75018", "FR"),
)
CURRENCIES = {
    "US": "USD",
    "DK": "DKK",
    "ES": "EUR",
    "TH": "THB",
    "DE": "EUR",
    "JP": "JPY",
    "FR": "EUR",
}
PRODUCTS = (
    (93, 0, "Woo Single #1", "WOO-1", "3.00"),
    (22, 23, "Ship Your Idea - Black, L", "SYI-BL-L", "20.00"),
    (22, 24, "Ship Your Idea - Green, M", "SYI-GR-M", "20.00"),
    (10, 0, "Bench T-Shirt", "BENCH-TSHIRT", "19.99"),
    (41, 42, "Hoodie - Blue, XL", "HOOD-BL-XL", "45.00"),
    (57, 0, "ชาไทย Thai tea 500g", "TEA-TH-500", "8.50"),
    (61, 0, "Café en grains «Sélection»", "CAFE-SEL", "12.90"),
)
SHIPPING = (
    ("flat_rate", "Flat Rate", "10.00"),
    ("free_shipping", "Free shipping", "0.00"),
    ("flat_rate", "Express Delivery (next day)", "25.00"),
    ("local_pickup", "Local pickup", "0.00"),
)
COUPONS = (("summer10", "0.10"), ("welcome5", "0.05"))


@dataclass(frozen=True)
class Step:
    """One delivery of a story: the topic and the order as WooCommerce renders it then."""

    topic: str
    order: dict[str, Any]


def _gmt(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01'))}"


def make_order(rng: random.Random, order_id: int, created: datetime) -> dict[str, Any]:
    """A pending order as ``GET /wp-json/wc/v3/orders/{id}`` returns it."""
    first, last, street, city, state, postcode, country = rng.choice(CUSTOMERS)
    currency = CURRENCIES[country]
    items, subtotal, item_id = [], Decimal("0"), order_id * 10
    for product_id, variation_id, name, sku, price in rng.sample(PRODUCTS, rng.randint(1, 4)):
        quantity = rng.randint(1, 3)
        line_total = Decimal(price) * quantity
        subtotal += line_total
        item_id += 1
        items.append(
            {
                "id": item_id,
                "name": name,
                "product_id": product_id,
                "variation_id": variation_id,
                "quantity": quantity,
                "tax_class": "",
                "subtotal": _money(line_total),
                "subtotal_tax": "0.00",
                "total": _money(line_total),
                "total_tax": "0.00",
                "taxes": [],
                "meta_data": [],
                "sku": sku,
                "global_unique_id": "",
                "price": float(price),
                "image": {"id": "", "src": ""},
                "parent_name": name.split(" - ")[0] if variation_id else None,
            }
        )
    method_id, method_title, shipping_total = rng.choice(SHIPPING)
    coupons, discount = [], Decimal("0")
    if rng.random() < 0.3:
        code, rate = rng.choice(COUPONS)
        discount = (subtotal * Decimal(rate)).quantize(Decimal("0.01"))
        coupons.append(
            {
                "id": item_id + 3,
                "code": code,
                "discount": _money(discount),
                "discount_tax": "0.00",
                "meta_data": [],
            }
        )
    total = subtotal - discount + Decimal(shipping_total)
    meta: list[dict[str, Any]] = []
    if rng.random() < 0.15:
        meta.append({"id": order_id * 7, "key": "_vip_customer", "value": "yes"})
    email = f"customer{order_id}@example.com"
    created_gmt = _gmt(created)
    address = {
        "first_name": first,
        "last_name": last,
        "company": "",
        "address_1": street,
        "address_2": "",
        "city": city,
        "state": state,
        "postcode": postcode,
        "country": country,
    }
    return {
        "id": order_id,
        "parent_id": 0,
        "status": "pending",
        "currency": currency,
        "version": "11.0.1",
        "prices_include_tax": False,
        "date_created": created_gmt,
        "date_modified": created_gmt,
        "discount_total": _money(discount),
        "discount_tax": "0.00",
        "shipping_total": shipping_total,
        "shipping_tax": "0.00",
        "cart_tax": "0.00",
        "total": _money(total),
        "total_tax": "0.00",
        "customer_id": 0 if rng.random() < 0.5 else 1000 + order_id % 97,
        "order_key": f"wc_order_{rng.getrandbits(48):012x}",
        "billing": {**address, "email": email, "phone": f"+1 555 {order_id % 10000:04d}"},
        "shipping": {**address, "phone": ""},
        "payment_method": "stripe",
        "payment_method_title": "Credit card (Stripe)",
        "transaction_id": "",
        "customer_ip_address": "",
        "customer_user_agent": "",
        "created_via": "checkout",
        "customer_note": rng.choice(["", "", "Bitte klingeln / please ring twice", "ฝากไว้ที่ป้อมยาม"]),
        "date_completed": None,
        "date_paid": None,
        "cart_hash": "",
        "number": str(order_id),
        "meta_data": meta,
        "line_items": items,
        "tax_lines": [],
        "shipping_lines": [
            {
                "id": item_id + 1,
                "method_title": method_title,
                "method_id": method_id,
                "instance_id": "1",
                "total": shipping_total,
                "total_tax": "0.00",
                "taxes": [],
                "tax_status": "taxable",
                "meta_data": [],
            }
        ],
        "fee_lines": [],
        "coupon_lines": coupons,
        "refunds": [],
        "payment_url": f"{SHOP}/checkout/order-pay/{order_id}/?pay_for_order=true",
        "is_editable": True,
        "needs_payment": True,
        "needs_processing": True,
        "date_created_gmt": created_gmt,
        "date_modified_gmt": created_gmt,
        "date_completed_gmt": None,
        "date_paid_gmt": None,
        "currency_symbol": {"USD": "$", "EUR": "€", "THB": "฿", "JPY": "¥", "DKK": "kr."}[currency],
        "_links": {
            "self": [{"href": f"{SHOP}/wp-json/wc/v3/orders/{order_id}"}],
            "collection": [{"href": f"{SHOP}/wp-json/wc/v3/orders"}],
        },
    }


class OrderLife:
    """Moves one order through states, stamping ``date_modified`` like WooCommerce does."""

    def __init__(self, order: dict[str, Any], clock: datetime) -> None:
        self.order = order
        self.clock = clock

    def _touch(self, seconds: int) -> datetime:
        self.clock += timedelta(seconds=seconds)
        stamp = _gmt(self.clock)
        self.order["date_modified"] = self.order["date_modified_gmt"] = stamp
        return self.clock

    def snapshot(self) -> dict[str, Any]:
        return copy.deepcopy(self.order)

    def pay(self, status: str = "processing") -> None:
        stamp = _gmt(self._touch(2))
        self.order.update(
            status=status,
            date_paid=stamp,
            date_paid_gmt=stamp,
            transaction_id=f"ch_{self.order['id']:08d}",
            needs_payment=False,
            is_editable=False,
        )
        for item in self.order["line_items"]:
            item["meta_data"] = [
                {"id": item["id"] * 3, "key": "_reduced_stock", "value": str(item["quantity"])}
            ]

    def complete(self) -> None:
        stamp = _gmt(self._touch(3600))
        self.order.update(status="completed", date_completed=stamp, date_completed_gmt=stamp)

    def set_status(self, status: str) -> None:
        self._touch(60)
        self.order["status"] = status

    def refund(self, amount: Decimal, reason: str) -> None:
        self._touch(86400)
        refund_id = self.order["id"] * 100 + len(self.order["refunds"]) + 1
        self.order["refunds"].insert(
            0, {"id": refund_id, "reason": reason, "total": f"-{_money(amount)}"}
        )
        refunded = sum(-Decimal(r["total"]) for r in self.order["refunds"])
        if refunded >= Decimal(self.order["total"]):
            self.order["status"] = "refunded"

    def woofleet_meta_echo(self) -> None:
        """A consumer wrote ``_erp_sync_id``: WooCommerce fires order.updated for it."""
        self._touch(5)
        self.order["meta_data"].append(
            {"id": self.order["id"] * 11, "key": "_erp_sync_id", "value": f"ERP-{self.order['id']}"}
        )

    def change_address(self) -> None:
        self._touch(300)
        self.order["shipping"]["address_2"] = "Apt. 4 / ห้อง 4"


def story(rng: random.Random, order_id: int, start: datetime) -> list[Step]:
    """The deliveries one order produces, in the order WooCommerce sends them."""
    life = OrderLife(make_order(rng, order_id, start), start)
    kind = rng.choices(
        ["paid_completed", "coalesced", "refunds", "cancelled", "failed", "address", "pending"],
        weights=[30, 20, 12, 10, 8, 10, 10],
    )[0]
    steps: list[Step] = []
    if kind == "pending":
        return [Step("order.created", life.snapshot())]
    if kind == "cancelled":
        steps.append(Step("order.created", life.snapshot()))
        life.set_status("cancelled")
        steps.append(Step("order.updated", life.snapshot()))
        return steps
    if kind == "failed":
        life.set_status("failed")
        return [Step("order.created", life.snapshot())]
    if kind == "coalesced":
        # on-hold -> processing -> completed before the queue ran: one delivery, completed.
        life.pay()
        life.complete()
        return [Step("order.updated", life.snapshot())]
    life.pay()
    paid = life.snapshot()
    # One POST with set_paid fires order.created and order.updated with identical bodies.
    steps += [Step("order.created", paid), Step("order.updated", paid)]
    life.woofleet_meta_echo()
    steps.append(Step("order.updated", life.snapshot()))
    if kind == "address":
        life.change_address()
        steps.append(Step("order.updated", life.snapshot()))
    life.complete()
    steps.append(Step("order.updated", life.snapshot()))
    if kind == "refunds":
        total = Decimal(life.order["total"])
        partial = (total / 3).quantize(Decimal("0.01"))
        life.refund(partial, "damaged item")
        steps.append(Step("order.updated", life.snapshot()))
        life.refund(total - partial, "customer returned the rest")
        steps.append(Step("order.updated", life.snapshot()))
    return steps
