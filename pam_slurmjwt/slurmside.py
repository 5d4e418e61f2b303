"""The Slurm side, per release: why each Slurm release needs the TaskProlog
and the cli_filter to keep SLURM_JWT out of jobs, and what slurmctld stores
with a job once both are in place. One row per change in Slurm's behaviour;
slurmjwt doctor reads it, the README's table says the same.
"""

from __future__ import annotations

from dataclasses import dataclass

TASKPROLOG = "/usr/lib/slurmjwt/taskprolog.sh"
CLI_FILTER = "/usr/lib/slurmjwt/cli_filter.lua"
# The releases the compatibility matrix runs (tests/demo/releases.py).
PROVEN = ((22, 5), (23, 11), (24, 5), (24, 11), (25, 5), (25, 11), (26, 5))


@dataclass(frozen=True)
class Behaviour:
    """What Slurm releases from `since` on do with SLURM_JWT: why a job needs
    the TaskProlog, what the cli_filter achieves, and what is stored with a
    job submitted with the whole environment once both are configured."""

    since: tuple[int, int]
    prolog_why: str
    filter_does: str
    stored: str
    # The token is read when sbatch starts, so the filter may remove it from
    # sbatch before the job is built (a filter that does not wait for that is
    # harmful before this).
    reads_token_at_start: bool


BEHAVIOURS = (
    Behaviour((22, 5),
              prolog_why="sbatch copies SLURM_JWT into every job, and srun in a job then fails "
                         "(slurmd takes no JWT)",
              filter_does="keeps SLURM_JWT out of salloc's shell; sbatch reads its token only "
                          "when it submits, so the job is still stored with it",
              stored="the submitter's token, valid until it expires (Lifespan)",
              reads_token_at_start=False),
    Behaviour((23, 11),
              prolog_why="sbatch copies SLURM_JWT into every job, and srun in a job then fails "
                         "(slurmd takes no JWT)",
              filter_does="keeps SLURM_JWT out of stored jobs and salloc's shell",
              stored="no token",
              reads_token_at_start=True),
    Behaviour((26, 5),
              prolog_why="sbatch --export=ALL (also SBATCH_EXPORT=ALL, --export=ALL,VAR=x) "
                         "still copies SLURM_JWT into the job, and srun there refuses to start "
                         "(auth/jwt is not supported for use with srun)",
              filter_does="keeps SLURM_JWT out of stored jobs and salloc's shell",
              stored="no token",
              reads_token_at_start=True),
)


def behaviour(version: tuple[int, int]) -> Behaviour:
    """Given Slurm's (major, minor), return the row of the newest release at or
    before it (the oldest row for anything older)."""
    found = BEHAVIOURS[0]
    for row in BEHAVIOURS:
        if version >= row.since:
            found = row
    return found


def proven(version: tuple[int, int]) -> bool:
    """True when the compatibility matrix runs this Slurm release."""
    return version in PROVEN
