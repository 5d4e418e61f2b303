"""The Debian releases the demo can build, each with the Slurm it ships and what
that Slurm needs: one row per release, so a compatibility matrix is a loop.

Only bookworm is exercised today; the other rows say what is known about them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Release:
    """One Debian release: codename, the Slurm version it packages, and how to
    reach that Slurm's slurmrestd (plugins for `-s`, the URL path of ping)."""

    codename: str
    slurm: str
    restd_plugins: str
    restd_ping: str


RELEASES: dict[str, Release] = {
    r.codename: r
    for r in (
        # 22.05 without slurmdbd: only openapi/v0.0.38 loads (the db* ones need it).
        Release("bookworm", "22.05.8", "openapi/v0.0.38", "/slurm/v0.0.38/ping"),
        # Not yet run: 24.11 serves every data parser through openapi/slurmctld.
        Release("trixie", "24.11.5", "openapi/slurmctld", "/slurm/v0.0.42/ping"),
        # Not yet run: 26.05 refuses srun with JWT and scrubs SLURM_JWT itself.
        Release("sid", "26.05.5", "openapi/slurmctld", "/slurm/v0.0.44/ping"),
    )
}
DEFAULT = "bookworm"


def release(codename: str) -> Release:
    """Given a Debian codename, return its Release; raise KeyError naming the
    known ones when there is no row for it."""
    try:
        return RELEASES[codename]
    except KeyError:
        raise KeyError(f"unknown release {codename!r}; known: {', '.join(RELEASES)}") from None
