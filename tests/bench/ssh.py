"""What pam_slurmjwt.so costs an ssh login: `ssh alice@127.0.0.1 true` through
two sshds started together, one whose session stack has the shipped snippet
and one without it, runs interleaved (alternating which goes first) so that
drift hits both. Target: median ratio <= 1.05.

The hand-off's slurmjwt-refresh runs after the login has returned; the bench
waits for it between runs (untimed) so its CPU does not land on the next login.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from tests.bench.load import percentile
from tests.integration.fixtures.cluster import Cluster
from tests.integration.fixtures.helperd import start_helper
from tests.integration.fixtures.install import Installed
from tests.integration.fixtures.login import (
    LoginSshd,
    cache_base,
    login_sshd,
    module_lines,
    wait_refresh_done,
)

# What Debian's common-session would run anyway; both stacks have it.
BASE_STACK = ("session required pam_unix.so",)
WARMUP = 3


def _login(sshd: LoginSshd) -> float:
    start = time.perf_counter()
    result = sshd.ssh("alice", "true")
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"ssh login failed: {result.stderr.strip()}")
    return elapsed


def run(installed: Installed, cluster: Cluster, args: argparse.Namespace) -> list[str]:
    runs = int(getattr(args, "runs", 30))
    work = Path(tempfile.mkdtemp(prefix="slurmjwt-bench-"))
    # As deployed: syslog only, no debug lines.
    helper = start_helper(installed, cluster.slurm_conf, work, verbose=False)
    times: dict[str, list[float]] = {"without": [], "with": []}
    try:
        with cache_base(), \
                login_sshd(BASE_STACK, ["alice"]) as plain, \
                login_sshd([*BASE_STACK, *module_lines(installed, helper.socket)],
                           ["alice"]) as hooked:
            token = hooked.ssh("alice", "printenv SLURM_JWT").stdout.strip()
            if token.count(".") != 2 or plain.ssh("alice", "printenv SLURM_JWT").stdout:
                raise RuntimeError("the hooked sshd gives no token, or the plain one does")
            sshds = {"without": plain, "with": hooked}
            for i in range(WARMUP + runs):
                order = ("without", "with") if i % 2 == 0 else ("with", "without")
                for name in order:
                    elapsed = _login(sshds[name])
                    wait_refresh_done(installed)
                    if i >= WARMUP:
                        times[name].append(elapsed)
    finally:
        helper.stop()
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(times["without"])
    rows = [f"\n## ssh login, `ssh alice@127.0.0.1 true` ({runs} runs each, interleaved)",
            f"{'PAM session stack':<34}{'median ms':>10}{'p90 ms':>9}{'x plain':>9}"]
    for name, label in (("without", "pam_unix"), ("with", "pam_unix + pam_slurmjwt.so")):
        values = sorted(times[name])
        med = statistics.median(values)
        rows.append(f"{label:<34}{med * 1000:>10.1f}{percentile(values, 90) * 1000:>9.1f}"
                    f"{med / base:>8.3f}x")
    verdict = "meets" if statistics.median(times["with"]) / base <= 1.05 else "MISSES"
    rows.append(f"ratio of medians {statistics.median(times['with']) / base:.3f} "
                f"({verdict} the 1.05 target)")
    return rows

