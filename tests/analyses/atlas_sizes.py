"""Sizes small enough for an atlas run on a tiny model in the tests."""

SMALL = dict(n_arithmetic=8, n_facts=8, n_shots=1, n_boot=100, reporting_draws=2, reporting_n=(0, 2, 4), cv=3)
