"""Shopper PII in free text (a target's answer echoing its input) never leaves the fleet."""

from __future__ import annotations

import json

import pytest

from fleet.scrub import scrub, scrub_data
from fleet.sentry import before_breadcrumb, before_send

PII = {
    "email": "ana.planted@example.com",
    "first_name": "Ana",
    "last_name": "Plantedsurname",
    "phone": "+1 555 0199",
    "address_1": "42 Plantedstraat",
    "postcode": "PL4 9TD",
    "customer_ip_address": "81.2.69.160",
}


@pytest.mark.parametrize(
    "echo",
    [
        json.dumps(PII),
        repr(PII),
        "&".join(f"{k}={v.replace(' ', '+')}" for k, v in PII.items()),
        json.dumps({"to": {"name": "Ana Plantedsurname", "street1": "42 Plantedstraat"}}),
    ],
    ids=["json", "python", "form", "nested-carrier"],
)
def test_an_echoed_answer_loses_every_pii_value(echo: str) -> None:
    text = scrub(f"crm POST /contacts answered 400: {echo}")
    for value in (*PII.values(), "Plantedsurname", "Plantedstraat"):
        assert value not in text, (value, text)


@pytest.mark.parametrize(
    "text",
    [
        "call +1 555 0199",
        "tel. +45 33-12-34-56",
        "mobile 0612345678",
        "at (555) 555-5555",
        "from 81.2.69.160",
    ],
)
def test_phones_and_public_addresses_in_free_text_are_masked(text: str) -> None:
    assert not any(ch.isdigit() for ch in scrub(text).split(" ", 1)[1].replace("<", ""))


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-05 03:45:21 INFO consuming woo.stock (prefetch 4, timeout 30s) ref=3254268",
        "health and metrics on http://127.0.0.1:9100 (/healthz /readyz /metrics)",
        "message de5ad4ff-e84a-45c0-8935-7cf98c5c35db (order.paid) dead-lettered",
        "attempt 2 failed; retrying in 4s via woo.stock.retry.4s",
    ],
)
def test_what_an_operator_needs_is_kept(text: str) -> None:
    assert scrub(text) == text


def test_sentry_events_and_breadcrumbs_lose_pii_and_keep_their_own_metadata() -> None:
    event = {
        "logentry": {"message": "crm answered 400: %s", "params": [json.dumps(PII)]},
        "contexts": {"os": {"name": "Linux"}, "dead_letter": {"reason": json.dumps(PII)}},
        "extra": {"billing": PII},
        "request": {"data": PII, "cookies": "session=abc", "query_string": "phone=1"},
    }
    scrubbed = json.dumps(before_send(event, {}))
    crumb = json.dumps(before_breadcrumb({"message": f"sent {json.dumps(PII)}"}, {}))
    for value in PII.values():
        assert value not in scrubbed and value not in crumb
    assert '"name": "Linux"' in scrubbed


def test_structured_pii_keys_are_replaced_whole() -> None:
    assert scrub_data({"billing": {"phone": 5550199, "city": "Lyon"}}) == {
        "billing": {"phone": "***", "city": "Lyon"}
    }
