"""Publisher-only settings (``WOOFLEET_`` prefix, read once next to fleet's Settings)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from publisher.priority import PriorityRules

MIB = 1024 * 1024


class IngressSettings(BaseSettings):
    """Limits of the webhook, priority rules and the reconciler's window."""

    model_config = SettingsConfigDict(env_prefix="WOOFLEET_", extra="ignore")

    #: Largest webhook body accepted (413 above it); WooCommerce orders are a few KiB.
    webhook_max_body_bytes: int = Field(MIB, gt=0)
    #: How long a delivery waits for the broker's confirms before answering from the outbox.
    #: 0 (default): answer as soon as the events are committed to the outbox (in order, relayed
    #: from there; on SQLite fsync'd within a second, see publisher.store_sqlite); a delivery
    #: is then never slower than that commit.
    webhook_confirm_wait_seconds: float = Field(0.0, ge=0)
    #: The address WooCommerce delivers to (e.g. https://hooks.shop.example/webhooks/woocommerce),
    #: for the webhook health check; empty: any address ending in /webhooks/woocommerce.
    webhook_endpoint: str = ""
    #: Longest pause between the relay's attempts to reach an absent broker.
    outbox_retry_max_seconds: float = Field(10.0, gt=0)

    priority_default: int = Field(0, ge=0, le=5)
    #: Comma-separated words; a shipping method title containing one makes the order express.
    priority_express_keywords: str = "express"
    priority_express: int = Field(4, ge=0, le=5)
    priority_vip_meta_key: str = "_vip_customer"
    priority_vip: int = Field(5, ge=0, le=5)
    priority_high_total: Decimal = Decimal("500")
    #: Per-currency thresholds, e.g. ``THB=15000,JPY=75000``; others use priority_high_total.
    priority_high_total_by_currency: str = ""
    priority_high_total_level: int = Field(3, ge=0, le=5)

    #: The reconciler asks for orders modified after (cursor - overlap): same-second changes
    #: and late commits are not lost; what was already handled emits nothing.
    reconcile_overlap_seconds: float = Field(120.0, ge=0)

    def priority_rules(self) -> PriorityRules:
        by_currency: dict[str, Decimal] = {}
        for item in self.priority_high_total_by_currency.split(","):
            if item.strip():
                currency, _, amount = item.partition("=")
                by_currency[currency.strip().upper()] = Decimal(amount.strip())
        return PriorityRules(
            default=self.priority_default,
            express_keywords=tuple(
                k.strip() for k in self.priority_express_keywords.split(",") if k.strip()
            ),
            express=self.priority_express,
            vip_meta_key=self.priority_vip_meta_key,
            vip=self.priority_vip,
            high_total=self.priority_high_total,
            high_total_by_currency=by_currency,
            high_total_level=self.priority_high_total_level,
        )
