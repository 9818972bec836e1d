"""woofleet's benchmarks: each compares a figure with a baseline measured in the same run.

Run one with ``scripts/bench-<name>`` (``--help`` explains its options), or all of them, ending
with one side-by-side table, with ``make bench`` (``python -m benchmarks``). They print figures;
they are not tests. Not part of the installed package.
"""
