"""`make bench --only shell`: what the profile.d shim adds to shell start-up
on the warm path (target: under 1 ms and no extra process).

As alice, with a cache written by the real slurmjwt-refresh from the real
helper: `SHELL -c true` against `SHELL -c '. slurmjwt.sh; true'` (tcsh:
`source slurmjwt.csh`), interleaved so drift hits both alike; medians, ratio,
added milliseconds, and the processes each variant starts (strace). First
row, the issue's own measure: `bash -lc true`, a login shell reading the
system's /etc/profile, with a ~/.bash_profile that sources the installed
shim against one that does not.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tests.integration.fixtures.cluster import Cluster
from tests.integration.fixtures.helperd import start_helper
from tests.integration.fixtures.install import Installed, shims

REPO = Path(__file__).resolve().parents[2]
SHELLS = {
    "bash": ["bash", "--noprofile", "--norc", "-c"],
    "dash": ["dash", "-c"],
    "zsh": ["zsh", "-f", "-c"],
    "ksh": ["ksh", "-c"],
    "tcsh": ["tcsh", "-f", "-c"],
}
USER = "alice"

# Runs as alice (so the shim does its work; it skips root) and spawns the
# shells itself: setpriv's own start-up stays out of the figures.
DRIVER = r"""
import json, os, re, statistics, subprocess, sys, time
cfg = json.load(sys.stdin)
env = cfg["env"]
def once(argv):
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1000
def processes(argv):
    out = subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve,clone,clone3,fork,vfork",
                          "-o", "/dev/stderr", *argv], env=env, check=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True).stderr
    return len(re.findall(r"\b(?:clone3?|v?fork)\(", out)), len(re.findall(r"\bexecve\(", out))
result = {}
for name, (plain, shim, show) in cfg["cases"].items():
    exported = subprocess.run(show, env=env, capture_output=True, text=True).stdout.strip()
    for _ in range(10):  # page cache, dynamic loader
        once(plain); once(shim)
    a, b = [], []
    for _ in range(cfg["runs"]):
        a.append(once(plain)); b.append(once(shim))
    result[name] = {"without": statistics.median(a), "with": statistics.median(b),
                    "exported": exported, "procs": [processes(plain), processes(shim)]}
print(json.dumps(result))
"""


def run(installed: Installed, cluster: Cluster, args: argparse.Namespace) -> list[str]:
    runs = max(200, 5 * int(getattr(args, "runs", 40)))
    work = Path(tempfile.mkdtemp(prefix="slurmjwt-bench-"))
    caches = Path(tempfile.mkdtemp(prefix="slurmjwt-benchcache-"))
    caches.chmod(0o1777)
    homes_root = Path(tempfile.mkdtemp(prefix="slurmjwt-benchhome-"))
    homes_root.chmod(0o755)
    helper = start_helper(installed, cluster.slurm_conf, work, extra="Export=always\n",
                          verbose=False)
    try:
        env = {"PATH": f"{installed.bin}:/usr/bin:/bin", "HOME": f"/home/{USER}", "LANG": "C",
               "SLURMJWT_CONF": str(helper.config), "SLURMJWT_KEY_DIR": str(helper.key_dir),
               "SLURMJWT_CACHE_DIR": str(caches / USER)}
        drop = ["setpriv", "--reuid", USER, "--regid", USER, "--init-groups", "--", "env", "-i",
                *(f"{k}={v}" for k, v in env.items())]
        warm = subprocess.run([*drop, installed.cmd("slurmjwt-refresh")], capture_output=True,
                              text=True, check=False)
        if warm.returncode != 0:
            raise RuntimeError(f"slurmjwt-refresh failed: {warm.stderr.strip()}")
        token = (caches / USER / "token").read_text().split()[7]
        cases = {}
        # bash -lc: /etc/profile, then the first of ~/.bash_profile... found.
        homes = {}
        for variant, profile in (("plain", ":\n"), ("shim", f". {shims()[0]}\n")):
            home = homes_root / variant
            home.mkdir(mode=0o755)
            (home / ".bash_profile").write_text(profile)
            (home / ".bash_profile").chmod(0o644)
            homes[variant] = str(home)
        login = ["env", f"HOME={homes['plain']}", "bash", "-lc"]
        login_shim = ["env", f"HOME={homes['shim']}", "bash", "-lc"]
        cases["bash -l"] = ([*login, "true"], [*login_shim, "true"],
                            [*login_shim, "sh -c 'printf %s \"$SLURM_JWT\"'"])
        for name, argv in SHELLS.items():
            if shutil.which(argv[0]) is None:
                continue
            src = f"source {shims()[1]}" if name == "tcsh" else f". {shims()[0]}"
            cases[name] = ([*argv, "true"], [*argv, f"{src}; true"],
                           [*argv, f"{src}; sh -c 'printf %s \"$SLURM_JWT\"'"])
        out = subprocess.run([*drop, "/usr/bin/python3", "-I", "-c", DRIVER],
                             input=json.dumps({"env": env, "cases": cases, "runs": runs}),
                             capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"shell bench driver failed: {out.stderr.strip()}")
        result = json.loads(out.stdout)
    finally:
        helper.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(caches, ignore_errors=True)
        shutil.rmtree(homes_root, ignore_errors=True)
    return _rows(result, token, runs)


def _rows(result: dict[str, dict[str, Any]], token: str, runs: int) -> list[str]:
    rows = [f"\n## shell start-up with the profile.d shim, warm cache (as {USER}, "
            f"{runs} interleaved runs, medians)",
            f"{'shell':<8}{'without ms':>11}{'with ms':>9}{'ratio':>7}{'added ms':>10}"
            f"{'extra forks':>12}{'extra execs':>12}  exported"]
    for name, res in result.items():
        without, with_shim = float(res["without"]), float(res["with"])
        plain, shim = res["procs"]
        forks, execs = int(shim[0]) - int(plain[0]), int(shim[1]) - int(plain[1])
        ok = "yes" if res["exported"] == token else "NO"
        rows.append(f"{name:<8}{without:>11.2f}{with_shim:>9.2f}{with_shim / without:>7.2f}"
                    f"{with_shim - without:>10.2f}{forks:>12d}{execs:>12d}  {ok}")
    return rows


__all__ = ["run"]
