"""The Debian releases the demo can build, each with the Slurm it ships and what
that Slurm needs: one row per release, so a compatibility matrix is a loop.

Each row says how to reach that Slurm's slurmrestd, what the site configures
on the Slurm side to keep SLURM_JWT out of jobs (packaging/slurm/README.md),
and the behaviour of that version the tests hold the project to.
"""

from __future__ import annotations

from dataclasses import dataclass

TASKPROLOG = "TaskProlog=/usr/lib/slurmjwt/taskprolog.sh"
CLI_FILTER = "CliFilterPlugins=cli_filter/lua"


@dataclass(frozen=True)
class SlurmSide:
    """What a site running this Slurm configures so that SLURM_JWT never breaks
    srun in a job: lines added to slurm.conf on every host, and Debian packages
    every host needs. With CLI_FILTER among the lines, the entrypoints link
    /etc/slurm/cli_filter.lua to the project's /usr/lib/slurmjwt/cli_filter.lua
    (srun loads the filter too, so the controller needs it as well)."""

    conf: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()

    @property
    def cli_filter(self) -> bool:
        return CLI_FILTER in self.conf

    @property
    def task_prolog(self) -> bool:
        return TASKPROLOG in self.conf


@dataclass(frozen=True)
class Release:
    """One Debian release: codename, the Slurm version it packages, how to
    reach that Slurm's slurmrestd (plugins for `-s`, the newest API's URL path),
    its Slurm side, and what that Slurm does that the tests rely on."""

    codename: str
    slurm: str
    restd_plugins: str
    restd_api: str
    slurm_side: SlurmSide
    # slurmrestd takes `Authorization: Bearer` (23.02+).
    bearer: bool
    # slurmctld refuses to start with a key file that has any "other" bit (23.11+).
    refuses_open_key: bool
    # sbatch itself keeps SLURM_JWT out of the job (26.05+).
    scrubs_jwt: bool

    @property
    def restd_ping(self) -> str:
        return f"{self.restd_api}/ping"

    @property
    def restd_jobs(self) -> str:
        # Unlike ping, listing jobs needs slurmctld to accept the token (511 otherwise).
        return f"{self.restd_api}/jobs"

    @property
    def version(self) -> tuple[int, int]:
        major, minor = self.slurm.split(".")[:2]
        return int(major), int(minor)


RELEASES: dict[str, Release] = {
    r.codename: r
    for r in (
        # 22.05 without slurmdbd: only openapi/v0.0.38 loads (the db* ones need it).
        # The cli_filter must not be used: unsetting there makes sbatch fall back to munge.
        Release("bookworm", "22.05.8", "openapi/v0.0.38", "/slurm/v0.0.38",
                SlurmSide(conf=(TASKPROLOG,)),
                bearer=False, refuses_open_key=False, scrubs_jwt=False),
        # 24.11 serves every data parser (v0.0.40-42) through openapi/slurmctld.
        Release("trixie", "24.11.5", "openapi/slurmctld", "/slurm/v0.0.42",
                SlurmSide(conf=(TASKPROLOG, CLI_FILTER), packages=("lua-posix",)),
                bearer=True, refuses_open_key=True, scrubs_jwt=False),
        # 26.05 refuses srun with JWT and scrubs SLURM_JWT from jobs itself: nothing to add.
        Release("sid", "26.05.5", "openapi/slurmctld", "/slurm/v0.0.44",
                SlurmSide(),
                bearer=True, refuses_open_key=True, scrubs_jwt=True),
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
