"""slurmjwt doctor: the Slurm side: slurmctld's clock, and the TaskProlog
and cli_filter that keep SLURM_JWT out of jobs, with each release's reason
(slurmside.py)."""

from __future__ import annotations

import os
import re
import time

from pam_slurmjwt import slurmside
from pam_slurmjwt.doctor.check import Check, advice
from pam_slurmjwt.doctor.context import Context
from pam_slurmjwt.doctor.registry import ROOT, check


class SlurmChecks(Context):
    """slurmctld's clock and what keeps the token out of jobs."""

    @check(33)
    def clock(self) -> Check:
        """Skew to slurmctld, from sdiag's `sdiag output at ... (EPOCH)`."""
        assert self.cfg is not None
        before = time.time()
        out = self._client(["sdiag"], self.token)
        after = time.time()
        match = re.search(r"sdiag output at .*\((\d+)\)", out.stdout)
        if out.returncode != 0 or not match:
            return Check("SKIP", "clock", "cannot ask slurmctld for its time (sdiag failed)")
        skew = int(match.group(1)) - (before + after) / 2
        limit = self.cfg.refresh_margin / 4
        text = f"slurmctld's clock is {skew:+.0f} s from this host's"
        if abs(skew) > limit:
            return advice("FAIL", "clock", f"{text}, more than RefreshMargin/4 ({limit:.0f} s): "
                          "tokens may expire early", "synchronise both with NTP (chrony)")
        return Check("OK", "clock", f"{text} (RefreshMargin {self.cfg.refresh_margin} s)")

    @check(48, ROOT)
    def task_prolog(self) -> Check:
        """Every release: the TaskProlog removes SLURM_JWT from every task,
        whatever reached the job (slurmside.BEHAVIOURS says why per release)."""
        assert self.slurm is not None
        version = self.slurm_version()
        why = f"{slurmside.behaviour(version).prolog_why}{_unproven(version)}"
        prolog = self.slurm.task_prolog
        if not prolog:
            return advice("WARN", "task prolog", f"no TaskProlog: {why}", f"set TaskProlog="
                          f"{slurmside.TASKPROLOG} in slurm.conf (or call it from yours)")
        try:
            with open(prolog) as fh:
                ok = "SLURM_JWT" in fh.read(65536)
        except OSError:
            ok = False
        if not ok:
            return advice("WARN", "task prolog", f"TaskProlog={prolog} does not mention "
                          f"SLURM_JWT: {why}", f"have it print `unset SLURM_JWT` (see "
                          f"{slurmside.TASKPROLOG})")
        return Check("OK", "task prolog", f"TaskProlog={prolog} unsets SLURM_JWT in every task")

    @check(49, ROOT)
    def cli_filter(self) -> Check:
        """Every release: the project's cli_filter keeps SLURM_JWT out of what
        sbatch submits (23.11+) and out of salloc's shell. A filter that unsets
        it without waiting for Slurm to have read it makes sbatch before 23.11
        lose its token."""
        assert self.slurm is not None
        version = self.slurm_version()
        side = slurmside.behaviour(version)
        script = os.path.join(os.path.dirname(self.slurm.path), "cli_filter.lua")
        try:
            with open(script) as fh:
                text = fh.read(65536)
        except OSError:
            text = ""
        unsets, waits = "SLURM_JWT" in text, "auth_jwt.so" in text
        release = f"Slurm {version[0]}.{version[1]:02d}{_unproven(version)}"
        if "cli_filter/lua" not in self.slurm.cli_filter_plugins or not unsets:
            return advice("WARN", "cli filter", f"no cli_filter removes SLURM_JWT ({release}); it "
                          f"{side.filter_does}", f"add CliFilterPlugins=cli_filter/lua to "
                          f"{self.slurm.path} and run ln -s {slurmside.CLI_FILTER} {script} on "
                          "every host that runs sbatch, salloc or srun, compute nodes included "
                          "(lua-posix on submit hosts)", joint=": ")
        if not waits and not side.reads_token_at_start:
            return advice("WARN", "cli filter", f"{script} unsets SLURM_JWT before sbatch has "
                          f"read it ({release}), so sbatch loses its token", f"replace it with "
                          f"{slurmside.CLI_FILTER}, which waits for that")
        return Check("OK", "cli filter", f"{script} {side.filter_does} ({release})")


def _unproven(version: tuple[int, int]) -> str:
    if slurmside.proven(version):
        return ""
    nearest = slurmside.behaviour(version).since
    return (f"; Slurm {version[0]}.{version[1]:02d} is not in the compatibility matrix, this is "
            f"what {nearest[0]}.{nearest[1]:02d} does")
