"""Entrances without a session (a cron job, a service): what `slurmjwt token`
costs with a warm per-user cache under /run/slurmjwt/users, against
`python3 -c pass` (target: 1.3x at most), and what the wrapper adds with
that cache beside what it adds with a session's cache in XDG_RUNTIME_DIR
(target: under 1 ms, as in a session). As alice, with nothing of a session
(setpriv, env -i), the cases interleaved so that drift hits them all.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from tests.bench.wrap import interleaved
from tests.integration.fixtures.cluster import Cluster
from tests.integration.fixtures.helperd import start_helper
from tests.integration.fixtures.install import Installed
from tests.integration.fixtures.login import CACHE_BASE, cache_base

TOKEN_TARGET = 1.3
WRAP_TARGET_MS = 1.0


def run(installed: Installed, cluster: Cluster, args: argparse.Namespace) -> list[str]:
    runs = max(int(getattr(args, "runs", 40)) * 5, 100)
    work = Path(tempfile.mkdtemp(prefix="slurmjwt-bench-"))
    work.chmod(0o755)
    runtime = work / "runtime"  # a session's XDG_RUNTIME_DIR
    runtime.mkdir(mode=0o700)
    shutil.chown(runtime, "alice", "alice")
    (work / "helper").mkdir(mode=0o755)
    helper = start_helper(installed, cluster.slurm_conf, work / "helper",
                          extra="Export=always\n", verbose=False)
    env = ["env", "-i", "PATH=/usr/bin:/bin", f"SLURM_CONF={cluster.slurm_conf}",
           f"SLURMJWT_CONF={helper.config}"]
    drop = ["setpriv", "--reuid", "alice", "--regid", "alice", "--init-groups"]
    wrapper = str(installed.wrappers / "squeue")
    with cache_base():
        fallback = CACHE_BASE / "none-yet"
        try:
            alice = subprocess.run([*drop, "id", "-u"], capture_output=True, text=True,
                                   check=True).stdout.strip()
            fallback = CACHE_BASE / alice
            shutil.rmtree(fallback, ignore_errors=True)
            fallback.mkdir(mode=0o700)  # as slurmjwt-userdir makes it
            shutil.chown(fallback, "alice", "alice")
            nosession = [*drop, *env]
            session = [*drop, *env, f"XDG_RUNTIME_DIR={runtime}"]
            for argv in (nosession, session):  # warm both caches
                subprocess.run([*argv, installed.cmd("slurmjwt"), "token"], check=True,
                               capture_output=True)
            token = (fallback / "token").read_text().split()[7]
            cases = {
                "python3 -c pass": [*nosession, "/usr/bin/python3", "-c", "pass"],
                "slurmjwt token, no session": [*nosession, installed.cmd("slurmjwt"), "token"],
                "squeue --version, real": [*nosession, f"SLURM_JWT={token}", "/usr/bin/squeue",
                                           "--version"],
                "squeue --version, wrapper, session": [*session, wrapper, "--version"],
                "squeue --version, wrapper, no session": [*nosession, wrapper, "--version"],
            }
            times = interleaved(cases, runs, quiet=True)
        finally:
            helper.stop()
            shutil.rmtree(fallback, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)
    med = {name: statistics.median(values) * 1000 for name, values in times.items()}
    ratio = med["slurmjwt token, no session"] / med["python3 -c pass"]
    real = med["squeue --version, real"]
    rows = [f"\n## Entrances without a session (as alice, {runs} interleaved runs, medians)",
            f"{'command':<40}{'median ms':>10}{'vs base':>10}"]
    rows.append(f"{'python3 -c pass':<40}{med['python3 -c pass']:>10.2f}")
    rows.append(f"{'slurmjwt token, no session (warm)':<40}"
                f"{med['slurmjwt token, no session']:>10.2f}{ratio:>9.2f}x")
    rows.append(f"{'squeue --version, real':<40}{real:>10.2f}")
    for where in ("session", "no session"):
        wrapped = med[f"squeue --version, wrapper, {where}"]
        rows.append(f"{'squeue --version, wrapper, ' + where:<40}{wrapped:>10.2f}"
                    f"{wrapped - real:>+9.2f}ms")
    added = med["squeue --version, wrapper, no session"] - real
    rows.append(f"slurmjwt token is {ratio:.2f}x python3 -c pass "
                f"({'meets' if ratio <= TOKEN_TARGET else 'MISSES'} the {TOKEN_TARGET}x target); "
                f"the wrapper adds {added:.2f} ms with no session "
                f"({'meets' if added < WRAP_TARGET_MS else 'MISSES'} the "
                f"{WRAP_TARGET_MS:.0f} ms target)")
    return rows
