"""AMQP priority of an order's events (0 to MAX_PRIORITY): VIP and express orders go first."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from contracts.messages import MAX_PRIORITY
from fleet.settings import Settings

_FALSE_VALUES = frozenset({"", "0", "no", "false", "off"})


@dataclass(frozen=True)
class PriorityRules:
    """Each matching rule proposes a level; an event gets the highest (``default`` if none).

    * a shipping line whose method title contains one of ``express_keywords`` (any case)
      → ``express``;
    * order meta ``vip_meta_key`` with a true-ish value → ``vip``;
    * ``total`` at or above the threshold for its currency (``high_total_by_currency``,
      else ``high_total``) → ``high_total_level``.
    """

    default: int = 0
    express_keywords: tuple[str, ...] = ("express",)
    express: int = 4
    vip_meta_key: str = "_vip_customer"
    vip: int = 5
    high_total: Decimal = Decimal("500")
    high_total_by_currency: dict[str, Decimal] = field(default_factory=dict)
    high_total_level: int = 3

    def __post_init__(self) -> None:
        for level in (self.default, self.express, self.vip, self.high_total_level):
            if not 0 <= level <= MAX_PRIORITY:
                raise ValueError(f"priorities are 0-{MAX_PRIORITY}, not {level}")

    @classmethod
    def from_settings(cls, settings: Settings) -> PriorityRules:
        """The rules of the ``WOOFLEET_PRIORITY_*`` variables."""
        return cls(
            default=settings.priority_default,
            express_keywords=tuple(settings.priority_express_keywords),
            express=settings.priority_express,
            vip_meta_key=settings.priority_vip_meta_key,
            vip=settings.priority_vip,
            high_total=settings.priority_high_total,
            high_total_by_currency=dict(settings.priority_high_total_by_currency),
            high_total_level=settings.priority_high_total_level,
        )

    def priority_for(self, order: dict[str, Any]) -> int:
        level = self.default
        if self._is_express(order):
            level = max(level, self.express)
        if self._is_vip(order):
            level = max(level, self.vip)
        if self._is_high_total(order):
            level = max(level, self.high_total_level)
        return level

    def _is_express(self, order: dict[str, Any]) -> bool:
        keywords = [k.lower() for k in self.express_keywords if k]
        for line in order.get("shipping_lines") or ():
            title = str(line.get("method_title") or "").lower() if isinstance(line, dict) else ""
            if any(k in title for k in keywords):
                return True
        return False

    def _is_vip(self, order: dict[str, Any]) -> bool:
        for meta in order.get("meta_data") or ():
            if isinstance(meta, dict) and meta.get("key") == self.vip_meta_key:
                return str(meta.get("value")).strip().lower() not in _FALSE_VALUES
        return False

    def _is_high_total(self, order: dict[str, Any]) -> bool:
        currency = str(order.get("currency") or "").upper()
        threshold = self.high_total_by_currency.get(currency, self.high_total)
        try:
            return Decimal(str(order.get("total") or "0")) >= threshold
        except InvalidOperation:
            return False
