"""`make bench`: the helper (HS256, and RS256 with 2048- and 3072-bit keys)
against `scontrol token`, refresh against bare Python start-up, shell
start-up with and without the shim, and (where the PAM module is built)
ssh logins with and without the hook, and logins while a user floods the
helper, the cost of metrics (MetricsListen= on and off), and the entrances
without a session (`slurmjwt token` and the wrapper with a /run cache). Root
only: it starts a real slurmctld, helper and sshd.

Usage: python -m tests.bench [--seconds N]
       [--only helper,refresh,shell,wrap,ssh,flood,metrics,entrance]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
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
SCONTROL_CALLERS = 64
RSA_BITS = (2048, 3072)
SIGN_RUNS = 2000


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


def bench_scontrol_parallel(cluster: Cluster, callers: int, seconds: float) -> dict[str, float]:
    """`scontrol token` run by `callers` threads at once for `seconds`, as a
    login burst without the helper would run it."""
    env = {k: v for k, v in cluster.env.items() if k != "SLURM_JWT"}
    until = time.monotonic() + seconds
    lat: list[float] = []
    failed = [0]
    lock = threading.Lock()

    def caller() -> None:
        while time.monotonic() < until:
            start = time.perf_counter()
            out = subprocess.run(["scontrol", "token", "username=alice", "lifespan=60"],
                                 env=env, capture_output=True, text=True)
            took = time.perf_counter() - start
            with lock:
                if out.stdout.startswith("SLURM_JWT="):
                    lat.append(took)
                else:
                    failed[0] += 1

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lat.sort()
    return {"rate": len(lat) / seconds, "p50": percentile(lat, 50) * 1000,
            "p99": percentile(lat, 99) * 1000, "n": len(lat), "failed": failed[0]}


def rsa_key(work: Path, bits: int) -> Path:
    """A new RSA key of `bits` for the helper, as `slurmjwt keygen` writes it."""
    from pam_slurmjwt.keyfile import write_new_key
    from pam_slurmjwt.signing import new_private_key

    path = work / f"rsa{bits}.pem"
    write_new_key(str(path), new_private_key(bits), "slurm")
    return path


def signing_cost(work: Path) -> list[str]:
    """CPU time per token of each signer, in process: what a token costs the
    helper before any socket or scheduling."""
    from pam_slurmjwt.signing import HS256Signer, load_signer
    from pam_slurmjwt.token import make_claims

    signers = [("HS256", HS256Signer(os.urandom(32), "bench"))]
    signers += [(f"RS256, RSA {bits}", load_signer(str(work / f"rsa{bits}.pem"), "slurm"))
                for bits in RSA_BITS]
    claims = make_claims("alice", 60)
    rows = [f"{'signer':<22}{'us/token (median of 5)':>24}"]
    for name, signer in signers:
        runs = []
        for _ in range(5):
            start = time.process_time()
            for _ in range(SIGN_RUNS):
                signer.sign(claims)
            runs.append((time.process_time() - start) / SIGN_RUNS)
        rows.append(f"{name:<22}{statistics.median(runs) * 1e6:>24.0f}")
    return rows


def bench_helper(installed: Installed, cluster: Cluster, seconds: float) -> list[str]:
    """HS256 and RS256 helpers and `scontrol token`, against the same
    slurmctld in the same run."""
    work = Path(tempfile.mkdtemp(prefix="slurmjwt-bench-"))
    work.chmod(0o755)
    rows = [f"{'caller(s)':<26}{'tokens/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'requests':>10}{'failed':>8}{'x scontrol':>12}"]
    try:
        for bits in RSA_BITS:
            rsa_key(work, bits)
        base = bench_scontrol(cluster)
        rows.append(_row("scontrol token, 1", base, None))
        burst = bench_scontrol_parallel(cluster, SCONTROL_CALLERS, seconds)
        rows.append(_row(f"scontrol token, {SCONTROL_CALLERS}", burst,
                         burst["rate"] / base["rate"]))
        loadgen = build_loadgen()
        keys = [("HS256", cluster.key_path)]
        keys += [(f"RS256 {bits}", work / f"rsa{bits}.pem") for bits in RSA_BITS]
        at_64 = {}
        for name, key in keys:
            more, at_64[name] = _helper_rows(installed, cluster, work, loadgen, name, key,
                                             seconds, base)
            rows += more
        rows += ["", f"at {SCONTROL_CALLERS} callers, against scontrol token at "
                     f"{SCONTROL_CALLERS} ({burst['rate']:.0f} tokens/s):"]
        rows += [f"  helper {name}: {res['rate'] / burst['rate']:.1f}x, p99 {res['p99']:.1f} ms"
                 for name, res in at_64.items()]
        rows += ["", *signing_cost(work), "", f"load average {os.getloadavg()[0]:.1f}"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def _helper_rows(installed: Installed, cluster: Cluster, work: Path, loadgen: Path, name: str,
                 key: Path, seconds: float,
                 base: dict[str, float]) -> tuple[list[str], dict[str, float]]:
    """One helper signing with `key`, loaded at each level; return its rows
    and its result at the last (highest) level."""
    helper_dir = work / name.replace(" ", "-")
    helper_dir.mkdir()
    # As deployed: syslog only, no debug lines.
    helper = start_helper(installed, cluster.slurm_conf, helper_dir,
                          extra=f"MaxConnections=512\nJwtKey={key}\n", verbose=False)
    rows = []
    try:
        for level in LEVELS:
            res = run_load(loadgen, str(helper.socket), "alice", level, seconds)
            rows.append(_row(f"helper {name}, {level}", res, res["rate"] / base["rate"]))
    finally:
        helper.stop()
    return rows, res


def _row(name: str, res: dict[str, float], ratio: float | None) -> str:
    ratio_text = f"{ratio:>11.1f}x" if ratio is not None else f"{'1.0x':>12}"
    return (f"{name:<26}{res['rate']:>10.0f}{res['p50']:>9.2f}{res['p99']:>9.2f}"
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
    parser.add_argument("--only",
                        default="helper,refresh,shell,wrap,ssh,flood,metrics,entrance")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("make bench: needs root (it starts slurmctld, the helper and sshd)",
              file=sys.stderr)
        return 2
    only = set(args.only.split(","))
    for name in ("alice", "bob", "carol"):
        ensure_user(name)
    print(f"# make bench on {os.uname().nodename}, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d %H:%M')}, load average {os.getloadavg()[0]:.1f}")
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
            for extra in ("shell", "wrap", "ssh", "flood", "metrics", "entrance"):
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
