"""Emails and invoices print a state's name as WooCommerce shows it, not its stored code."""

from __future__ import annotations

from consumers.invoice_pdf import render_invoice
from consumers.places import country_name, state_name
from consumers.templates import address_lines
from contracts.orders import Address
from tests.unit.test_invoice_pdf import SELLER, text_of, thai_order

BANGKOK = {"first_name": "สมชาย", "city": "Pathum Wan", "state": "TH-10", "country": "TH"}


def test_state_codes_become_woocommerce_names_and_unknown_ones_stay_as_given() -> None:
    assert state_name("TH", "TH-10") == "Bangkok"
    assert state_name("th", "th-50") == "Chiang Mai"
    assert state_name("TH", "Somewhere typed by hand") == "Somewhere typed by hand"
    assert state_name("ZZ", "X1") == "X1"
    assert (country_name("TH"), country_name("gb"), country_name("ZZ")) == (
        "Thailand",
        "United Kingdom (UK)",
        "ZZ",
    )
    assert country_name("CW") == "Curaçao"  # entities in the source decoded


def test_email_address_lines_name_the_state() -> None:
    lines = address_lines(Address(**BANGKOK))
    assert "Bangkok" in lines and "Thailand" in lines and "TH-10" not in lines and "TH" not in lines


def test_invoice_names_the_state_and_country() -> None:
    text = text_of(render_invoice(thai_order(billing=BANGKOK, shipping={}), SELLER))
    assert "Bangkok" in text and "Thailand" in text and "TH-10" not in text
