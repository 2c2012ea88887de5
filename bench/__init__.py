"""Benchmarks: each module measures one thing and writes its section of bench/RESULTS.md.

`python -m bench` runs them all; `python -m bench cold_start` runs one. Nothing here is asserted on
in tests: the figures are for people, and every one of them comes from a command anyone can rerun.
"""
