"""The Docker engine the demo runs on: find a daemon that answers, or install
docker.io and start dockerd by hand (no systemd on the machines this runs on).

Only root on Debian/Ubuntu gets the automatic install and start; anyone else
gets an error that says what to do.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import docker
import docker.errors

from tests.demo.errors import DemoError, Say

DOCKERD_LOG = Path("/var/log/slurmjwt-demo-dockerd.log")
# Written when the demo starts dockerd itself: `down` stops only a dockerd it started.
DOCKERD_PID = Path("/run/slurmjwt-demo-dockerd.pid")
STOP_TIMEOUT = 30.0
# Debian's docker.io; containerd, runc, tini (docker-init) and iptables come with it.
ENGINE_PACKAGES = ("docker.io",)
START_TIMEOUT = 60.0
POLL_INTERVAL = 0.2
CLIENT_TIMEOUT = 600  # seconds one API call may take (image builds stream for minutes)


def client() -> docker.DockerClient:
    """Return a client of a daemon that answers; raise DemoError when none does."""
    try:
        found = docker.from_env(timeout=CLIENT_TIMEOUT)
        found.ping()
    except docker.errors.DockerException as err:
        raise DemoError(f"no Docker daemon answers ({err}); run as root on Debian to have "
                        "the demo install and start one, or start Docker yourself") from None
    return found


def answers() -> bool:
    """True when a Docker daemon answers on the default socket right now."""
    try:
        probe = docker.from_env(timeout=5)
        try:
            return bool(probe.ping())
        finally:
            probe.close()
    except docker.errors.DockerException:
        return False
    except OSError:
        return False


def ensure_engine(say: Say) -> docker.DockerClient:
    """Return a client of a running daemon: if none answers, install docker.io
    (apt, root only) when dockerd is missing, then start dockerd in the
    background, its log in DOCKERD_LOG, and poll until it answers; raise
    DemoError when any of that is impossible or fails."""
    if answers():
        return client()
    if os.geteuid() != 0:
        raise DemoError("no Docker daemon answers and this is not root: start Docker, or run "
                        "the demo as root to have it install and start one")
    if shutil.which("dockerd") is None:
        install_packages(ENGINE_PACKAGES, say)
    start_dockerd(say)
    return client()


def install_packages(packages: tuple[str, ...], say: Say) -> None:
    """apt-get install `packages` (no daemons started: policy-rc.d says no);
    raise DemoError with apt's output when that fails."""
    if shutil.which("apt-get") is None:
        raise DemoError(f"cannot install {' '.join(packages)}: no apt-get here; install "
                        "them yourself")
    say(f"installing {' '.join(packages)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = not policy.exists()
    if made_policy:
        # The package's init script would start dockerd its own way; we start it below.
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        for argv in (["apt-get", "update", "-qq"],
                     ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                      *packages]):
            done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise DemoError(f"{' '.join(argv)} failed (exit {done.returncode}):\n"
                                f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    finally:
        if made_policy:
            policy.unlink()


def start_dockerd(say: Say) -> None:
    """Start dockerd in its own session, output appended to DOCKERD_LOG, and
    poll until it answers; raise DemoError with the log's tail if it exits or
    does not answer within START_TIMEOUT."""
    say(f"starting dockerd (log: {DOCKERD_LOG})")
    with open(DOCKERD_LOG, "ab") as log:
        proc = subprocess.Popen(["dockerd"], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    DOCKERD_PID.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + START_TIMEOUT
    while not answers():
        if proc.poll() is not None:
            raise DemoError(f"dockerd exited with status {proc.returncode}; its log "
                            f"{DOCKERD_LOG} ends with:\n{log_tail()}")
        if time.monotonic() > deadline:
            raise DemoError(f"dockerd did not answer within {START_TIMEOUT:.0f} s; "
                            f"{DOCKERD_LOG} ends with:\n{log_tail()}")
        time.sleep(POLL_INTERVAL)


def log_tail(lines: int = 20) -> str:
    try:
        return "\n".join(DOCKERD_LOG.read_text(errors="replace").splitlines()[-lines:])
    except OSError as err:
        return f"(unreadable: {err})"



def stop_dockerd_if_ours(found: docker.DockerClient, say: Say) -> None:
    """Stop dockerd when the demo started it (DOCKERD_PID) and no container at
    all is left on it; anyone else's daemon, or one still in use, is left alone."""
    try:
        pid = int(DOCKERD_PID.read_text().strip())
    except (OSError, ValueError):
        return
    if found.containers.list(all=True):
        say("dockerd left running: it still has containers")
        return
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        comm = ""
    if comm != "dockerd":
        DOCKERD_PID.unlink(missing_ok=True)  # stale: that process is gone
        return
    found.close()
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL)
    DOCKERD_PID.unlink(missing_ok=True)
    say(f"stopped dockerd (pid {pid}), which the demo had started")


def unavailable() -> str | None:
    """Return why no Docker engine can run here at all (None when one answers,
    or when ensure_engine could install and start one)."""
    if answers():
        return None
    if os.geteuid() != 0:
        return "no Docker daemon answers and not root, so none can be installed or started"
    if shutil.which("dockerd") is None and shutil.which("apt-get") is None:
        return "no Docker daemon, no dockerd and no apt-get to install docker.io"
    return None


def alive(pid: int) -> bool:
    """True while `pid` runs; reaps it when it is our own child (the demo run
    in-process, as the test does) and has exited."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"  # a zombie has exited
