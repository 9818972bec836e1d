"""Credentials under prefixed keys: api_secret, access_token, apikey are redacted."""

from __future__ import annotations

import pytest

from fleet.logging import redact
from fleet.sentry import before_send

PLANTED = "s3cr3tV4lue9"


@pytest.mark.parametrize(
    "text",
    [
        f"GET https://crm.example/api?api_secret={PLANTED}&x=1",
        f"POST https://www.google-analytics.com/mp/collect?measurement_id=G-1&api_secret={PLANTED}",
        f"GET https://wh.example/stock?apikey={PLANTED}",
        f"client_secret={PLANTED}",
        f"access_token: {PLANTED}",
        f'{{"refresh_token": "{PLANTED}"}}',
        f"X-Api-Key: {PLANTED}",
        f"password={PLANTED}",
    ],
)
def test_prefixed_credential_names_are_redacted(text: str) -> None:
    assert PLANTED not in redact(text)


def test_unrelated_keys_are_kept() -> None:
    assert redact("order_id=42 status=paid") == "order_id=42 status=paid"


def test_sentry_breadcrumb_query_strings_are_scrubbed() -> None:
    event = {
        "breadcrumbs": {
            "values": [
                {
                    "type": "http",
                    "category": "httpx",
                    "data": {
                        "url": "https://crm.example/api",
                        "http.query": f"api_secret={PLANTED}",
                    },
                }
            ]
        }
    }
    assert PLANTED not in repr(before_send(event, {}))
