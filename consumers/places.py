"""State names as WooCommerce shows them, for the codes it stores in order addresses.

WooCommerce keeps a state as its code (``TH-10``) and prints the name (Bangkok) from its own
list, ``i18n/states.php``; ``consumers/data/states.json`` is derived from that file (its
``source`` says so). A code not in the list, or free text a shop's checkout allowed, is printed
as given.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "states.json"


@cache
def _states() -> dict[str, dict[str, str]]:
    states: dict[str, dict[str, str]] = json.loads(DATA.read_text(encoding="utf-8"))["states"]
    return states


def state_name(country: str, state: str) -> str:
    """The name WooCommerce shows for ``state`` of ``country``, or ``state`` itself."""
    return _states().get(country.upper(), {}).get(state.upper(), state)
