"""`make bench`: the helper against `scontrol token`, refresh against bare
Python start-up, shell start-up with and without the shim, and (where the
PAM module is built) ssh logins with and without the hook. Root only: it
starts a real slurmctld, helper and sshd.

Usage: python -m tests.bench [--seconds N] [--only helper,refresh,shell,wrap,ssh]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.bench.load import build_loadgen, percentile, run_load
from tests.integration.fixtures.cluster import Cluster, running_cluster
from tests.integration.fixtures.helperd import start_helper
from tests.integration.fixtures.install import Installed, install_tree
from tests.integration.fixtures.users import ensure_user

LEVELS = (1, 16, 64)
SCONTROL_RUNS = 30


def timed_runs(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return sorted(out)


def bench_scontrol(cluster: Cluster) -> dict[str, float]:
    env = {k: v for k, v in cluster.env.items() if k != "SLURM_JWT"}

    def one() -> None:
        out = subprocess.run(["scontrol", "token", "username=alice", "lifespan=60"],
                             env=env, capture_output=True, text=True)
        if not out.stdout.startswith("SLURM_JWT="):
            raise RuntimeError(f"scontrol token failed: {out.stderr.strip()}")

    lat = timed_runs(one, SCONTROL_RUNS)
    return {"rate": len(lat) / sum(lat), "p50": percentile(lat, 50) * 1000,
            "p99": percentile(lat, 99) * 1000, "n": len(lat), "failed": 0}


def bench_helper(installed: Installed, cluster: Cluster, seconds: float) -> list[str]:
    work = Path(tempfile.mkdtemp(prefix="slurmjwt-bench-"))
    # As deployed: syslog only, no debug lines.
    helper = start_helper(installed, cluster.slurm_conf, work,
                          extra="MaxConnections=512\n", verbose=False)
    try:
        base = bench_scontrol(cluster)
        rows = [f"{'caller(s)':<22}{'tokens/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
                f"{'requests':>10}{'failed':>8}{'x scontrol':>12}",
                _row("scontrol token, 1", base, None)]
        loadgen = build_loadgen()
        for level in LEVELS:
            res = run_load(loadgen, str(helper.socket), "alice", level, seconds)
            rows.append(_row(f"helper, {level}", res, res["rate"] / base["rate"]))
    finally:
        helper.stop()
        shutil.rmtree(work, ignore_errors=True)
    return rows


def _row(name: str, res: dict[str, float], ratio: float | None) -> str:
    ratio_text = f"{ratio:>11.1f}x" if ratio is not None else f"{'1.0x':>12}"
    return (f"{name:<22}{res['rate']:>10.0f}{res['p50']:>9.2f}{res['p99']:>9.2f}"
            f"{int(res['n']):>10}{int(res['failed']):>8}{ratio_text}")


def bench_refresh(installed: Installed, cluster: Cluster, runs: int) -> list[str]:
    """slurmjwt-refresh end to end (helper round trip and cache write), as
    alice, against `python3 -c pass`, interleaved so drift hits both."""
    work = Path(tempfile.mkdtemp(prefix="slurmjwt-bench-"))
    helper = start_helper(installed, cluster.slurm_conf, work)
    cache = Path(tempfile.mkdtemp(prefix="slurmjwt-benchcache-"))
    shutil.chown(cache, "alice", "alice")
    env = ["env", "-i", "PATH=/usr/bin:/bin", f"SLURMJWT_CONF={helper.config}",
           f"SLURMJWT_CACHE_DIR={cache}/c"]
    drop = ["setpriv", "--reuid", "alice", "--regid", "alice", "--init-groups"]
    cases = {
        "python3 -c pass": [*drop, *env, "/usr/bin/python3", "-c", "pass"],
        "slurmjwt-refresh": [*drop, *env, installed.cmd("slurmjwt-refresh")],
        "slurmjwt-refresh --if-needed (warm)": [*drop, *env, installed.cmd("slurmjwt-refresh"),
                                                "--if-needed"],
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    try:
        for _ in range(runs):
            for name, argv in cases.items():
                start = time.perf_counter()
                out = subprocess.run(argv, capture_output=True)
                times[name].append(time.perf_counter() - start)
                if out.returncode != 0:
                    raise RuntimeError(f"{name} failed: {out.stderr.decode()}")
    finally:
        helper.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
    base = statistics.median(times["python3 -c pass"])
    rows = [f"{'command (as alice, via setpriv)':<40}{'median ms':>10}{'x python':>10}"]
    for name, values in times.items():
        med = statistics.median(values)
        rows.append(f"{name:<40}{med * 1000:>10.1f}{med / base:>9.2f}x")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--seconds", type=float, default=5.0, help="per load level")
    parser.add_argument("--runs", type=int, default=40, help="runs per start-up case")
    parser.add_argument("--only", default="helper,refresh,shell,wrap,ssh")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("make bench: needs root (it starts slurmctld, the helper and sshd)",
              file=sys.stderr)
        return 2
    only = set(args.only.split(","))
    for name in ("alice", "bob", "carol"):
        ensure_user(name)
    print(f"# make bench on {os.uname().nodename}, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    root = Path(tempfile.mkdtemp(prefix="slurmjwt-inst-"))
    try:
        installed = install_tree(root)
        with running_cluster() as cluster:
            if "helper" in only:
                print(f"\n## helper vs scontrol token ({args.seconds:.0f} s per level)")
                print("\n".join(bench_helper(installed, cluster, args.seconds)))
            if "refresh" in only:
                print(f"\n## slurmjwt-refresh start-up ({args.runs} runs, medians)")
                print("\n".join(bench_refresh(installed, cluster, args.runs)))
            for extra in ("shell", "wrap", "ssh"):
                if extra in only:
                    _run_extra(extra, installed, cluster, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def _run_extra(name: str, installed: Installed, cluster: Cluster,
               args: argparse.Namespace) -> None:
    """Shell and ssh benchmarks live beside the shims and the PAM module."""
    try:
        module = __import__(f"tests.bench.{name}", fromlist=["run"])
    except ImportError:
        print(f"\n## {name}: not available yet")
        return
    print("\n".join(module.run(installed, cluster, args)))


if __name__ == "__main__":
    sys.exit(main())
