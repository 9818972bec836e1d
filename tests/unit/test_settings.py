"""Settings from the environment: the public variable names and their formats."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from fleet.settings import Settings
from publisher.priority import PriorityRules


def test_each_woofleet_target_url_is_a_target(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WOOFLEET_ERP_SYNC_URL", " https://erp.example/api ")
    monkeypatch.setenv("WOOFLEET_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    settings = Settings()
    assert settings.target_url("erp-sync") == "https://erp.example/api"
    # A WOOFLEET_*_URL that names a field is that field, not a target.
    assert "amqp" not in settings.targets


def test_targets_given_explicitly_are_kept() -> None:
    assert Settings(targets={"crm": "https://crm.example"}).target_url("crm") == (
        "https://crm.example"
    )


def test_comma_separated_variables_are_typed_lists_and_mappings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WOOFLEET_PAYMENT_CAPTURE_METHODS", "stripe, stripe_cc,,")
    monkeypatch.setenv("WOOFLEET_FCM_TOKENS", "tok-a,tok-b")
    monkeypatch.setenv("WOOFLEET_PRIORITY_EXPRESS_KEYWORDS", "express,  next day")
    monkeypatch.setenv("WOOFLEET_PRIORITY_HIGH_TOTAL_BY_CURRENCY", "thb=15000, JPY=75000")
    settings = Settings()
    assert settings.payment_capture_methods == ["stripe", "stripe_cc"]
    assert settings.fcm_tokens == ["tok-a", "tok-b"]
    rules = PriorityRules.from_settings(settings)
    assert rules.express_keywords == ("express", "next day")
    assert rules.high_total_by_currency == {"THB": Decimal("15000"), "JPY": Decimal("75000")}


def test_a_currency_threshold_without_an_amount_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WOOFLEET_PRIORITY_HIGH_TOTAL_BY_CURRENCY", "THB")
    with pytest.raises(ValidationError, match="KEY=value"):
        Settings()


def test_a_priority_above_the_queues_maximum_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WOOFLEET_PRIORITY_VIP", "6")
    with pytest.raises(ValidationError, match="priority_vip"):
        Settings()
