"""slurmjwt doctor's renderers: what the checks found, as text lines for
people. Each returns True when no check failed (exit status 0)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pam_slurmjwt.doctor.check import Check


def text(checks: Iterable[Check], out: Callable[[str], None]) -> bool:
    """Print one line per check through out(), as each finishes."""
    failed = False
    for check in checks:
        out(check.line())
        failed |= check.status == "FAIL"
    return not failed
