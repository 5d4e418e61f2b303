"""What the demo's Docker objects are called: images, containers, network,
volume, label and lock all start with PREFIX.

SLURMJWT_DEMO_PREFIX (default slurmjwt-demo) sets it, so two checkouts on one
host (parallel work, CI beside a developer) never touch each other's images,
containers or lock.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

PREFIX = os.environ.get("SLURMJWT_DEMO_PREFIX") or "slurmjwt-demo"
LABEL = "io.slurmjwt.demo" if PREFIX == "slurmjwt-demo" else f"io.slurmjwt.{PREFIX}"


@dataclass(frozen=True)
class Names:
    """The names of one release's demo objects (so releases can run side by side)."""

    release: str

    @property
    def prefix(self) -> str:
        return f"{PREFIX}-{self.release}"

    @property
    def network(self) -> str:
        return self.prefix

    @property
    def home(self) -> str:
        return f"{self.prefix}-home"

    def container(self, role: str) -> str:
        return f"{self.prefix}-{role}"
