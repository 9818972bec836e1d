"""Country and state names as WooCommerce shows them, for the codes it stores in addresses.

WooCommerce keeps a country and a state as codes (``TH``, ``TH-10``) and prints names (Thailand,
Bangkok) from its own lists, ``i18n/countries.php`` and ``i18n/states.php``;
``consumers/data/places.json`` is derived from them (its ``source`` says so). A code not in the
lists, or free text a shop's checkout allowed, is printed as given.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data" / "places.json"


@cache
def _data() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DATA.read_text(encoding="utf-8"))
    return data


def country_name(country: str) -> str:
    """The name WooCommerce shows for ``country`` (``TH``: Thailand), or ``country`` itself."""
    names: dict[str, str] = _data()["countries"]
    return names.get(country.upper(), country)


def state_name(country: str, state: str) -> str:
    """The name WooCommerce shows for ``state`` of ``country``, or ``state`` itself."""
    states: dict[str, dict[str, str]] = _data()["states"]
    return states.get(country.upper(), {}).get(state.upper(), state)
