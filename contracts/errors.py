"""The root of woofleet's error tree and the contracts' own error.

They live here because contracts/ is the bottom layer and imports nothing else of ours;
``fleet.errors`` draws the whole tree and re-exports these.
"""

from __future__ import annotations


class WoofleetError(Exception):
    """Root of every error woofleet raises on purpose."""


class ContractError(WoofleetError):
    """A message does not match any contract version its consumer accepts."""
