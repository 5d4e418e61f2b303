"""Unit-test fixtures: the in-process helper."""

from tests.unit.inprocess import running

__all__ = ["running"]
