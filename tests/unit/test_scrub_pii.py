"""Shopper PII in free text (a target's answer echoing its input) never leaves the fleet."""

from __future__ import annotations

import hashlib
import json

import pytest

from fleet.scrub import scrub, scrub_data, shopper
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


# -- what targets really echo: not only one level of JSON ------------------------------------

ECHOED = {
    "first_name": "Anaplanted",
    "last_name": "Plantedsurname",
    "phone": "+1 555 0199",
    "address_1": "42 Plantedstraat",
    "city": "Plantedville",
    "postcode": "PL4 9TD",
    "email": "ana.planted@example.com",
}
SHOPPER_VALUES = ("Anaplanted", "Plantedsurname", "Plantedstraat", "Plantedville", "PL4 9TD")


@pytest.mark.parametrize(
    "echo",
    [
        json.dumps({"error": "invalid payload: " + json.dumps(ECHOED)}),
        "".join(f"<{k}>{v}</{k}>" for k, v in ECHOED.items()),
        json.dumps(ECHOED).replace('"', "&quot;"),
        json.dumps(
            {
                "customer": "Anaplanted Plantedsurname",
                "town": "Plantedville",
                "street": "42 Plantedstraat",
                "recipient": {"contact_name": "Anaplanted Plantedsurname"},
                "zip": "PL4 9TD",
            }
        ),
    ],
    ids=["json-in-a-json-string", "xml", "html-escaped", "other-field-names"],
)
def test_echoes_in_other_shapes_lose_their_pii_by_field_name(echo: str) -> None:
    text = scrub(f"erp-sync POST /orders answered 422: {echo}")
    for value in SHOPPER_VALUES:
        assert value not in text, (value, text)


@pytest.mark.parametrize(
    "text",
    ["call 06 12 34 56 78", "tel 020 7946 0958", "phone: 555-0199", "ring 0612 345 678"],
)
def test_national_phones_with_spaces_are_masked(text: str) -> None:
    assert not any(ch.isdigit() for ch in scrub(text))


def test_public_ipv6_addresses_are_masked_and_loopback_kept() -> None:
    assert scrub("from 2a00:1450:4001:81c::200e") == "from <ip>"
    assert scrub("listening on [::1]:8080") == "listening on [::1]:8080"


def test_the_shopper_in_hand_is_masked_in_any_shape_and_case() -> None:
    # The order being handled says who its shopper is: whatever a target makes of those values
    # (a sentence, upper case, a label) they are masked, with no field name to go by.
    order = {"id": 727, "billing": ECHOED, "shipping": {**ECHOED, "address_2": "Flat 3b"}}
    free_text = (
        "no match for ANAPLANTED PLANTEDSURNAME, Plantedstraat 42, PL4 9TD Plantedville "
        "(flat 3B); order 727"
    )
    with shopper(lambda: order):
        text = scrub(free_text)
    for value in (*SHOPPER_VALUES, "ANAPLANTED", "PLANTEDSURNAME", "flat 3B"):
        assert value not in text, (value, text)
    assert text.endswith("order 727")
    # Only while that shopper is in hand
    assert scrub(free_text) == free_text


def test_the_shopper_in_hand_is_masked_in_sentry_events_and_breadcrumbs() -> None:
    order = {"billing": {"first_name": "Anaplanted", "last_name": "Plantedsurname"}}
    with shopper(lambda: order):
        event = before_send({"message": "label for Anaplanted Plantedsurname refused"}, {})
        crumb = before_breadcrumb({"message": "sending Plantedsurname"}, {})
    assert "Planted" not in json.dumps([event, crumb])


def test_a_shopper_whose_data_cannot_be_read_masks_nothing_more() -> None:
    def unreadable() -> object:
        raise ValueError("not JSON")

    with shopper(unreadable):
        assert scrub("attempt 2 failed") == "attempt 2 failed"


def test_bytes_a_database_error_quotes_as_hex_are_masked() -> None:
    # PostgreSQL's "Failing row contains (...)" shows a bytea column (an outbox body) as hex
    body = json.dumps({"billing": ECHOED}).encode()
    detail = f"DETAIL:  Failing row contains (7, order.paid, \\x{body.hex()}, 2026-12-05)."
    text = scrub(detail)
    assert body.hex()[:16] not in text and text.endswith(", 2026-12-05).")


def test_the_shoppers_hashed_email_and_phone_are_masked_like_the_plain_ones() -> None:
    # A hashed email still names its shopper (anyone holding the address can check it): the CRM
    # keys a guest's contact by it (/contacts/email-<sha256>), analytics sends it as user data.
    email, phone = "Ana.Planted@Example.com", "+1 555 0199"
    hashed_email = hashlib.sha256(email.lower().encode()).hexdigest()
    hashed_phone = hashlib.sha256(b"+15550199").hexdigest()
    order = {"billing": {"email": email, "phone": phone}}
    with shopper(lambda: order):
        text = scrub(f"crm PUT /contacts/email-{hashed_email} answered 409 (phone {hashed_phone})")
    assert hashed_email not in text and hashed_phone not in text, text
    assert text.startswith("crm PUT /contacts/email-")
