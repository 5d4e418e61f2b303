"""The cost of metrics (issue 21, "Speed"): the helper's throughput at 64
callers with MetricsListen= set and unset, HS256 and RS256 (2048 bits), in
the same run: both helpers run side by side, and rounds alternate between
them so that drift hits both. Target: metrics cost at most TARGET_COST of
the throughput.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

from tests.bench.__main__ import rsa_key
from tests.bench.load import build_loadgen, run_load
from tests.integration.fixtures.cluster import Cluster
from tests.integration.fixtures.helperd import start_helper
from tests.integration.fixtures.install import Installed
from tests.integration.test_tokenfile import free_port

TARGET_COST = 0.03
ROUNDS = 3
CALLERS = 64


def run(installed: Installed, cluster: Cluster, args: argparse.Namespace) -> list[str]:
    seconds = float(args.seconds)
    work = Path(tempfile.mkdtemp(prefix="slurmjwt-bench-"))
    work.chmod(0o755)
    loadgen = build_loadgen()
    rows = [f"\n## metrics on and off ({CALLERS} callers, {ROUNDS} rounds of "
            f"{seconds:.0f} s each, alternating; medians)",
            f"{'key':<14}{'off tokens/s':>14}{'on tokens/s':>13}{'cost':>8}"
            f"{'off p99 ms':>12}{'on p99 ms':>11}{'failed':>8}"]
    try:
        for name, key in (("HS256", cluster.key_path), ("RS256 2048", rsa_key(work, 2048))):
            helpers = {}
            for mode, extra in (("off", ""), ("on", f"MetricsListen=127.0.0.1:{free_port()}\n")):
                hdir = work / f"{name.replace(' ', '-')}-{mode}"
                hdir.mkdir()
                # As deployed: syslog only, no debug lines.
                helpers[mode] = start_helper(installed, cluster.slurm_conf, hdir,
                                             extra=f"MaxConnections=512\nJwtKey={key}\n{extra}",
                                             verbose=False)
            res: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
            try:
                for _ in range(ROUNDS):
                    for mode in ("off", "on"):
                        res[mode].append(run_load(loadgen, str(helpers[mode].socket), "alice",
                                                  CALLERS, seconds))
            finally:
                for helper in helpers.values():
                    helper.stop()
            off = statistics.median(r["rate"] for r in res["off"])
            on = statistics.median(r["rate"] for r in res["on"])
            failed = sum(int(r["failed"]) for rounds in res.values() for r in rounds)
            rows.append(f"{name:<14}{off:>14.0f}{on:>13.0f}{(off - on) / off:>8.1%}"
                        f"{statistics.median(r['p99'] for r in res['off']):>12.2f}"
                        f"{statistics.median(r['p99'] for r in res['on']):>11.2f}{failed:>8}")
        rows.append(f"target: cost at most {TARGET_COST:.0%}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows
