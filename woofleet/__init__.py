"""The ``woofleet`` command line: the one place that composes publisher/ and consumers/."""
