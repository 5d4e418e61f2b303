"""What a Slurm command wrapper adds to a command: the wrapper against the
real binary, side by side, as alice, runs interleaved so that drift hits
both. `squeue --version` isolates the wrapper (no slurmctld round trip to
drown it); `squeue -h` against the real slurmctld is the command as users
run it. The warm path is measured (a fresh cache); the cold path (helper
round trip and cache write) is shown too. Target: under 1 ms added, warm.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tests.integration.fixtures.cluster import Cluster
from tests.integration.fixtures.helperd import start_helper, write_config
from tests.integration.fixtures.install import Installed

TARGET_MS = 1.0


def interleaved(cases: dict[str, list[str]], runs: int, quiet: bool = False
                ) -> dict[str, list[float]]:
    """Run each case `runs` times, in turn, the order reversed every other
    round so that drift hits all; return the seconds each took. A case
    that fails (or, with quiet, says anything on stderr) stops it all."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(runs):
        for name in (list(cases) if i % 2 == 0 else list(reversed(cases))):
            start = time.perf_counter()
            out = subprocess.run(cases[name], capture_output=True)
            times[name].append(time.perf_counter() - start)
            if out.returncode != 0 or (quiet and out.stderr):
                raise RuntimeError(f"{name} failed: {out.stderr.decode()}")
    return times


def run(installed: Installed, cluster: Cluster, args: argparse.Namespace) -> list[str]:
    runs = max(int(getattr(args, "runs", 40)) * 5, 100)
    work = Path(tempfile.mkdtemp(prefix="slurmjwt-bench-"))
    work.chmod(0o755)
    cache = work / "cache"
    cache.mkdir(mode=0o700)
    shutil.chown(cache, "alice", "alice")
    (work / "helper").mkdir(mode=0o755)
    helper = start_helper(installed, cluster.slurm_conf, work / "helper",
                          extra="Export=always\n", verbose=False)
    env = ["env", "-i", "PATH=/usr/bin:/bin", f"SLURM_CONF={cluster.slurm_conf}",
           f"SLURMJWT_CONF={helper.config}", f"SLURMJWT_CACHE_DIR={cache}"]
    drop = ["setpriv", "--reuid", "alice", "--regid", "alice", "--init-groups", *env]
    wrapper = str(installed.wrappers / "squeue")
    # Clusters= set: the check reads argv and slurm.conf's ClusterName.
    clusters_conf = work / "clusters.conf"
    write_config(clusters_conf, helper.config.read_text() + f"Clusters={cluster.name}\n")
    checked = [*drop, f"SLURMJWT_CONF={clusters_conf}"]
    try:
        token = subprocess.run([*drop, installed.cmd("slurmjwt"), "token"], capture_output=True,
                               text=True, check=True).stdout.strip()
        real_env = [*drop, f"SLURM_JWT={token}"]
        cases = {
            "squeue --version, real": [*real_env, "/usr/bin/squeue", "--version"],
            "squeue --version, wrapper": [*drop, wrapper, "--version"],
            "squeue --version, Clusters=": [*checked, wrapper, "--version"],
            "squeue -h, real": [*real_env, "/usr/bin/squeue", "-h"],
            "squeue -h, wrapper": [*drop, wrapper, "-h"],
        }
        times = interleaved(cases, runs)
        cold = []
        for _ in range(min(runs, 50)):
            (cache / "token").unlink(missing_ok=True)
            start = time.perf_counter()
            subprocess.run([*drop, wrapper, "--version"], capture_output=True, check=True)
            cold.append(time.perf_counter() - start)
    finally:
        helper.stop()
        shutil.rmtree(work, ignore_errors=True)
    med = {name: statistics.median(values) * 1000 for name, values in times.items()}
    rows = [f"\n## Slurm command wrapper (as alice, {runs} interleaved runs, medians)",
            f"{'command':<30}{'median ms':>10}{'added ms':>10}"]
    for what in ("squeue --version", "squeue -h"):
        real, wrapped = med[f"{what}, real"], med[f"{what}, wrapper"]
        rows.append(f"{what + ', real':<30}{real:>10.2f}")
        rows.append(f"{what + ', wrapper':<30}{wrapped:>10.2f}{wrapped - real:>+10.2f}")
    with_check = med["squeue --version, Clusters="]
    rows.append(f"{'squeue --version, Clusters=':<30}{with_check:>10.2f}"
                f"{with_check - med['squeue --version, real']:>+10.2f}  (the cluster check: "
                f"{with_check - med['squeue --version, wrapper']:+.2f} ms)")
    cold_ms = statistics.median(cold) * 1000
    rows.append(f"{'squeue --version, cold cache':<30}{cold_ms:>10.2f}"
                f"{cold_ms - med['squeue --version, real']:>+10.2f}  (helper round trip, "
                "cache write)")
    added = med["squeue --version, wrapper"] - med["squeue --version, real"]
    rows.append(f"the wrapper adds {added:.2f} ms warm "
                f"({'meets' if added < TARGET_MS else 'MISSES'} the {TARGET_MS:.0f} ms target)")
    return rows
