"""What pam_slurmjwt.so costs an ssh login: `ssh alice@127.0.0.1 true` through
two sshds started together, one whose session stack has the shipped snippet
and one without it, in pairs whose order alternates. The ratio of medians is
given for each order (plain first, hook first) and overall, so that what the
order does cancels out. Target: at most 1.03 both ways.

The hooked sessions get a private XDG_RUNTIME_DIR (pam_env), so the cache the
module writes goes there: the bench never leaves its throwaway helper's
tokens in a real user's cache. Its helper exports whatever this host runs
(Export=always): where munge works too, the hook still does its whole work.
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
from tests.integration.fixtures.login import LoginSshd, login_sshd, module_lines, pam_env_line

# What Debian's common-session would run anyway; both stacks have it.
BASE_STACK = ("session required pam_unix.so",)
WARMUP = 3
TARGET = 1.03


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
    work.chmod(0o755)
    runtime = work / "run-alice"
    runtime.mkdir(mode=0o700)
    shutil.chown(runtime, "alice", "alice")
    (work / "helper").mkdir(mode=0o755)
    # As deployed: syslog only, no debug lines.
    helper = start_helper(installed, cluster.slurm_conf, work / "helper",
                          extra="Export=always\n", verbose=False)
    # times[order][stack]: order "plain-first" or "hook-first".
    times: dict[str, dict[str, list[float]]] = {
        order: {"without": [], "with": []} for order in ("plain-first", "hook-first")}
    try:
        env = pam_env_line(work / "pam_env.conf", {"XDG_RUNTIME_DIR": str(runtime)})
        with login_sshd([*BASE_STACK, env], ["alice"]) as plain, \
                login_sshd([*BASE_STACK, env, *module_lines(installed, helper.root_socket)],
                           ["alice"]) as hooked:
            token = hooked.ssh("alice", "printenv SLURM_JWT").stdout.strip()
            if token.count(".") != 2 or plain.ssh("alice", "printenv SLURM_JWT").stdout:
                raise RuntimeError("the hooked sshd gives no token, or the plain one does")
            if not (runtime / "slurmjwt" / "token").exists():
                raise RuntimeError("the hooked sshd wrote no cache")
            sshds = {"without": plain, "with": hooked}
            for i in range(WARMUP + runs):
                order = ("without", "with") if i % 2 == 0 else ("with", "without")
                key = "plain-first" if i % 2 == 0 else "hook-first"
                for name in order:
                    elapsed = _login(sshds[name])
                    if i >= WARMUP:
                        times[key][name].append(elapsed)
    finally:
        helper.stop()
        shutil.rmtree(work, ignore_errors=True)
    rows = [f"\n## ssh login, `ssh alice@127.0.0.1 true` ({runs} pairs, order alternating)",
            f"{'PAM session stack':<34}{'order':<13}{'median ms':>10}{'p90 ms':>9}"
            f"{'x plain':>9}"]
    ratios = {}
    for key in ("plain-first", "hook-first", "both"):
        series = times[key] if key != "both" else {
            n: times["plain-first"][n] + times["hook-first"][n] for n in ("without", "with")}
        base = statistics.median(series["without"])
        for name, label in (("without", "pam_unix"), ("with", "pam_unix + pam_slurmjwt.so")):
            values = sorted(series[name])
            med = statistics.median(values)
            rows.append(f"{label:<34}{key:<13}{med * 1000:>10.1f}"
                        f"{percentile(values, 90) * 1000:>9.1f}{med / base:>8.3f}x")
        ratios[key] = statistics.median(series["with"]) / base
    verdict = "meets" if max(ratios["plain-first"], ratios["hook-first"]) <= TARGET else "MISSES"
    rows.append(f"ratio of medians: plain first {ratios['plain-first']:.3f}, hook first "
                f"{ratios['hook-first']:.3f}, all {ratios['both']:.3f} ({verdict} the "
                f"{TARGET} target both ways)")
    return rows
