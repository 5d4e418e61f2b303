"""slurmjwt doctor's renderers: what the checks found, as text lines for
people or one JSON document for machines (Ansible, Salt, monitoring; its
schema is in docs/internals.md). Each returns True when no check failed,
which is exit status 0 either way."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from pam_slurmjwt.doctor.check import Check

JSON_FORMAT = 1  # raised when a field changes meaning or goes; new fields keep it


def text(checks: Iterable[Check], out: Callable[[str], None]) -> bool:
    """Print one line per check through out(), as each finishes."""
    failed = False
    for check in checks:
        out(check.line())
        failed |= check.status == "FAIL"
    return not failed


def json_report(checks: Iterable[Check], out: Callable[[str], None]) -> bool:
    """Print one JSON object through out() once every check has run:
    {"format": 1, "ok": BOOL, "checks": [{"check", "name", "status",
    "message", "fix"}, ...]} in the text report's order."""
    found = [{"check": c.id, "name": c.name, "status": c.status.lower(),
              "message": c.message, "fix": c.fix or None} for c in checks]
    ok = all(c["status"] != "fail" for c in found)
    out(json.dumps({"format": JSON_FORMAT, "ok": ok, "checks": found}, indent=2))
    return ok
