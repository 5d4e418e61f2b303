"""One line of slurmjwt doctor's report: a check's verdict, what it found,
and the fix; what the renderers (render.py) print."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    """One line of the report: status OK, WARN, FAIL or SKIP, what, and the fix."""

    status: str
    name: str
    message: str  # the whole sentence, as the text report prints it
    fix: str = ""  # the message's closing advice alone, "" when there is none
    id: str = ""  # the check's stable id (its registered method's name), set by the run

    def __post_init__(self) -> None:
        # The fix is the end of the message, so both renderers say the same.
        assert self.message.endswith(self.fix), (self.message, self.fix)

    def line(self) -> str:
        return f"{self.status:<5}{self.name}: {self.message}"



def advice(status: str, name: str, what: str, fix: str, joint: str = "; ") -> Check:
    """Given what is wrong and how to fix it, return the Check whose message
    says both, joined by `joint`, and whose fix is the advice alone."""
    return Check(status, name, f"{what}{joint}{fix}", fix)
