"""Load generator for the helper: loadgen.c, built on first use, runs C
concurrent callers in threads; each connects, sends one request, reads one
answer, closes, for a fixed time. C, so that the client costs the machine
as little as the real caller (pam_slurmjwt.so) does."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("loadgen.c")


def build_loadgen() -> Path:
    out = Path(tempfile.mkdtemp(prefix="slurmjwt-loadgen-")) / "loadgen"
    subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread", "-o", str(out),
                    str(SOURCE)], check=True)
    return out


def run_load(loadgen: Path, path: str, user: str, concurrency: int,
             seconds: float) -> dict[str, float]:
    """Return tokens/s, p50 and p99 latency (ms), requests and failures."""
    out = subprocess.run([str(loadgen), path, user, str(concurrency), str(seconds)],
                         capture_output=True, text=True, check=True, timeout=seconds + 60)
    n, failed, rate, p50, p99 = out.stdout.split()
    return {"n": int(n), "failed": int(failed), "rate": float(rate), "p50": float(p50),
            "p99": float(p99)}


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(pct / 100 * (len(sorted_values) - 1)))
    return sorted_values[index]
