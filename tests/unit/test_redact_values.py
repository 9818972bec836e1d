"""Every configured secret's value is masked wherever it appears, whatever its key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from fleet.logging import forget_secret_values, redact, remember_secret_values
from fleet.settings import Settings


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    yield
    forget_secret_values()


def test_a_configured_secret_is_masked_in_free_text() -> None:
    settings = Settings(woo_secret=SecretStr("cs_planted0123456789"))
    remember_secret_values(settings.secret_values())
    echoed = "upstream said: bad signature for cs_planted0123456789 (check it)"
    assert "cs_planted0123456789" not in redact(echoed)


def test_short_values_are_not_treated_as_secrets() -> None:
    # a one-letter "secret" would mask every such letter in every line
    remember_secret_values(["ab"])
    assert redact("tab cab") == "tab cab"


def test_settings_lists_the_values_of_its_secret_fields() -> None:
    settings = Settings(webhook_secret=SecretStr("whsec-planted-42"))
    assert "whsec-planted-42" in settings.secret_values()


def test_a_url_secret_contributes_its_password_and_rotations_each_value() -> None:
    settings = Settings(
        amqp_url=SecretStr("amqp://app:pw-planted-77@rabbit:5672/"),
        webhook_secret=SecretStr("new-secret-1,old-secret-2"),
    )
    values = settings.secret_values()
    assert "pw-planted-77" in values
    assert "amqp://app:pw-planted-77@rabbit:5672/" not in values
    assert {"new-secret-1", "old-secret-2"} <= set(values)


def test_a_target_urls_credentials_are_secrets_whatever_their_names() -> None:
    # Target URLs carry their keys: a password, query parameters of any name (Google's "key",
    # a "sig"), a token as a path segment. An HTTP breadcrumb or an echoed answer shows them.
    settings = Settings(
        targets={
            "analytics": "https://ga.example/mp/collect?measurement_id=G-1&key=PlantedKey0123",
            "crm": "https://app:PlantedPass99@crm.example/hooks/T0PLANTED/B1abcdefghijklmnop2345",
            "warehouse": "https://wh.example/api/v2?sig=PlantedSig4567&region=eu-west",
        }
    )
    remember_secret_values(settings.secret_values())
    text = redact(
        "GET https://ga.example/mp/collect?key=PlantedKey0123 answered 403; "
        "POST https://crm.example/hooks/T0PLANTED/B1abcdefghijklmnop2345 (PlantedPass99); "
        "echo: signature PlantedSig4567 refused in eu-west for /api/v2 and G-1"
    )
    for planted in ("PlantedKey0123", "PlantedPass99", "B1abcdefghijklmnop2345", "PlantedSig4567"):
        assert planted not in text, text
    # what says which target and where stays readable
    for kept in ("ga.example/mp/collect", "crm.example/hooks", "eu-west", "/api/v2", "G-1"):
        assert kept in text, text
