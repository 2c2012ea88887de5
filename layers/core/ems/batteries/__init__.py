"""Batteries: their limits, their commands and their optimal schedule (`optimizer`, pure, on HiGHS)."""
