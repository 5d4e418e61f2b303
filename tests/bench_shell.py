"""Measure what the profile.d shim adds to shell start-up on the warm path.

Runs `SHELL -c true` against `SHELL -c '. slurmjwt.sh; true'` (bash with
--noprofile --norc), interleaved in the same run, with a warm cache in a
temporary SLURMJWT_CACHE_DIR, and prints medians, the ratio and the added
milliseconds. Usage: .venv/bin/python tests/bench_shell.py [-n 300] [shells...]
Run it as an ordinary user (the shim does nothing for root).
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
from pathlib import Path

SHIM_SH = Path(__file__).resolve().parents[1] / "profile.d" / "slurmjwt.sh"
SHIM_CSH = SHIM_SH.with_suffix(".csh")
ARGV = {
    "bash": ["bash", "--noprofile", "--norc", "-c"],
    "dash": ["dash", "-c"],
    "zsh": ["zsh", "-f", "-c"],
    "ksh": ["ksh", "-c"],
    "tcsh": ["tcsh", "-f", "-c"],
}
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdW4iOiJiZW5jaCJ9.c2lnbmF0dXJl"


def warm_cache(cache: Path) -> None:
    """Given an empty directory, write a cache valid for the next 30 minutes."""
    up = int(float(Path("/proc/uptime").read_text().split()[0]))
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    fields = f"slurmjwt1 {boot} {up + 1500} {up + 1795} {int(time.time()) + 1800} 1 {TOKEN}"
    for name, text in (("token", fields + "\n"), ("token.csh", f"set _slurmjwt_c=({fields})\n"),
                       (".clock", "")):
        (cache / name).write_text(text)
        os.chmod(cache / name, 0o600)


def sample(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=300, help="repetitions per variant (default 300)")
    ap.add_argument("shells", nargs="*", default=["bash", "dash", "zsh", "ksh", "tcsh"])
    args = ap.parse_args()
    if os.geteuid() == 0:
        print("bench_shell: run as an ordinary user; the shim skips root", file=sys.stderr)
        return 2
    cache = Path(tempfile.mkdtemp(prefix="slurmjwt-bench-"))
    try:
        warm_cache(cache)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(Path.home()),
               "SLURMJWT_CACHE_DIR": str(cache), "SLURMJWT_REFRESH": "/bin/false"}
        print(f"{'shell':6} {'without ms':>10} {'with ms':>8} {'ratio':>6} {'added ms':>9}")
        for shell in args.shells:
            if shutil.which(ARGV[shell][0]) is None:
                continue
            shim = f"source {SHIM_CSH}; true" if shell == "tcsh" else f". {SHIM_SH}; true"
            plain, with_shim = [*ARGV[shell], "true"], [*ARGV[shell], shim]
            for _ in range(10):  # warm the page cache
                sample(plain, env)
                sample(with_shim, env)
            a, b = [], []
            for _ in range(args.n):  # interleaved: drift hits both alike
                a.append(sample(plain, env))
                b.append(sample(with_shim, env))
            ma, mb = statistics.median(a), statistics.median(b)
            print(f"{shell:6} {ma:10.2f} {mb:8.2f} {mb / ma:6.2f} {mb - ma:9.2f}")
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
