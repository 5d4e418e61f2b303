"""Benchmarks run by `make bench`: each compares against a baseline measured
in the same run, on the same machine, and reports medians and ratios."""
