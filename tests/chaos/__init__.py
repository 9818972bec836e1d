"""Chaos runs of the whole fleet on real processes and a real broker (``scripts/chaos``)."""
