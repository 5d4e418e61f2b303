"""Which checks slurmjwt doctor runs, in which order, for whom: each check
registers itself here with @check where it is defined, so adding a check
touches one place. Order bands: 1x the configuration files and the name
service, 2x what root alone can read (keys, group policy, the helper's
units), 3x the helper and slurmctld, 4x this node's installation (root),
5x the user's own side."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional, TypeVar

from pam_slurmjwt.doctor.check import Check

ANYONE, ROOT, USER = "anyone", "root", "user"

Method = TypeVar("Method", bound=Callable[[Any], Optional[Check]])


@dataclass(frozen=True)
class Step:
    """A registered check: its method (returns a Check, or None when there
    is nothing to check on this host), its place, and who it runs for."""

    order: int
    function: Callable[[Any], Optional[Check]]
    who: str
    systemd: bool  # only where systemd is PID 1
    needed: bool  # the checks after it need what it reads: a run stops where it fails

    @property
    def name(self) -> str:
        """The check's stable id: its method's name (what --json calls it)."""
        return self.function.__name__


# Filled once, as the check modules are imported; read-only after.
STEPS: list[Step] = []


def check(order: int, who: str = ANYONE, systemd: bool = False,
          needed: bool = False) -> Callable[[Method], Method]:
    """Register the decorated method as a check at `order`, run for `who`
    (ANYONE, ROOT or USER), only under systemd when `systemd`, and ending
    the run when it fails with an error when `needed`."""
    def register(method: Method) -> Method:
        STEPS.append(Step(order, method, who, systemd, needed))
        return method
    return register


def steps(root: bool, systemd: bool) -> list[Step]:
    """Given whether doctor runs as root and under systemd, return the checks
    it runs, in order."""
    return sorted((s for s in STEPS if s.who in (ANYONE, ROOT if root else USER)
                   and (systemd or not s.systemd)), key=lambda s: s.order)
