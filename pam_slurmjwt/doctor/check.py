"""One line of slurmjwt doctor's report: a check's verdict, what it found,
and the fix; what the renderers (render.py) print."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    """One line of the report: status OK, WARN, FAIL or SKIP, what, and the fix."""

    status: str
    name: str
    message: str

    def line(self) -> str:
        return f"{self.status:<5}{self.name}: {self.message}"

