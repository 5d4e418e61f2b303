"""Logins while one user floods the helper (issue 22 item 14): latency of
requests on RootSocket (what pam_slurmjwt.so sends at every login) with
HelperSocket quiet, and while one user (alice) floods HelperSocket as fast
as the machine lets them, in the same run, rounds alternating so that
drift hits both. Target: logins' p99 at most TARGET_RATIO times the quiet
figure, and no login without a token.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tests.bench.load import build_loadgen, run_load
from tests.integration.fixtures.cluster import Cluster
from tests.integration.fixtures.helperd import start_helper
from tests.integration.fixtures.install import Installed

TARGET_RATIO = 1.2
ROUNDS = 3
LOGIN_CALLERS = 4  # sshd sessions logging in at once
FLOOD_CALLERS = 64  # one user's connections at once, each a loop of connect, ask, close
HEAD_START = 0.5  # seconds the flood runs before logins are measured


def run(installed: Installed, cluster: Cluster, args: argparse.Namespace) -> list[str]:
    seconds = float(args.seconds)
    work = Path(tempfile.mkdtemp(prefix="slurmjwt-bench-"))
    work.chmod(0o755)
    loadgen = build_loadgen()
    loadgen.parent.chmod(0o755)  # alice runs it too
    helper = start_helper(installed, cluster.slurm_conf, work, verbose=False)  # as deployed
    quiet: list[dict[str, float]] = []
    flooded: list[dict[str, float]] = []
    floods: list[str] = []
    try:
        for _ in range(ROUNDS):
            quiet.append(run_load(loadgen, str(helper.root_socket), "alice", LOGIN_CALLERS,
                                  seconds))
            flood = subprocess.Popen(
                ["setpriv", "--reuid", "alice", "--regid", "alice", "--init-groups",
                 str(loadgen), str(helper.socket), "alice", str(FLOOD_CALLERS),
                 str(seconds + 2 * HEAD_START)], stdout=subprocess.PIPE, text=True)
            time.sleep(HEAD_START)
            flooded.append(run_load(loadgen, str(helper.root_socket), "alice", LOGIN_CALLERS,
                                    seconds))
            out, _ = flood.communicate(timeout=seconds + 60)
            n, failed = out.split()[:2]
            floods.append(f"{(int(n) + int(failed)) / (seconds + 2 * HEAD_START):.0f}")
    finally:
        helper.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(loadgen.parent, ignore_errors=True)
    rows = [f"\n## logins (RootSocket, {LOGIN_CALLERS} at once) while alice floods HelperSocket "
            f"({FLOOD_CALLERS} connections), {ROUNDS} rounds of {seconds:.0f} s, alternating",
            f"{'round':<8}{'quiet p50':>10}{'quiet p99':>10}{'flood p50':>10}{'flood p99':>10}"
            f"{'logins failed':>15}{'flood req/s':>13}"]
    for i, (q, f, rate) in enumerate(zip(quiet, flooded, floods), 1):
        rows.append(f"{i:<8}{q['p50']:>10.2f}{q['p99']:>10.2f}{f['p50']:>10.2f}"
                    f"{f['p99']:>10.2f}{int(q['failed'] + f['failed']):>15}{rate:>13}")
    q99 = statistics.median(r["p99"] for r in quiet)
    f99 = statistics.median(r["p99"] for r in flooded)
    failed = sum(int(r["failed"]) for r in quiet + flooded)
    verdict = "OK" if f99 <= TARGET_RATIO * q99 and failed == 0 else "OVER TARGET"
    rows.append(f"median p99: quiet {q99:.2f} ms, flooded {f99:.2f} ms, ratio {f99 / q99:.2f}x "
                f"(target {TARGET_RATIO}x); logins without a token: {failed}; {verdict}")
    return rows
