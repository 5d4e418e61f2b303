"""Every process a user starts keeps a live token, not only shells at a
prompt: with 30-second tokens, workloads that outlive three of them (a loop
started by `ssh host CMD`, a Python program using subprocess, a terminal
that inherited an expired token, an idle tmux pane, the processes of web
portal sessions opened through pamela and python-pam) call squeue and sbatch
on the real cluster and never fail (root: sshd, PAM, users).

A Slurm client reads SLURM_JWT once, when it starts; the wrappers put a live
one there for each command. Sessions use a slurm.conf whose munge socket does
not exist: a command that works, worked with a token.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.fixtures.cluster import Cluster
from tests.integration.fixtures.install import Installed
from tests.integration.fixtures.login import (
    SITE_PATH,
    World,
    cache_base,
    login_world,
    module_lines,
    pam_env_line,
    session_env,
    token_claims,
)
from tests.integration.fixtures.users import TestUser

pytestmark = [pytest.mark.root, pytest.mark.slow]
LIFESPAN = 20
LIFETIMES = 3  # the loops run longer than this many token lifespans
STEP = 5  # seconds between a loop's Slurm commands
ROUNDS = LIFESPAN * LIFETIMES // STEP + 2

SHELL_LOOP = f"""
for i in $(seq {ROUNDS}); do
    squeue -h >/dev/null 2>&1 && echo "q$i ok" || echo "q$i FAIL"
    sbatch -Q -o /dev/null --wrap=true >/dev/null 2>&1 && echo "b$i ok" || echo "b$i FAIL"
    sleep {STEP}
done
"""
PYTHON_LOOP = f"""
import subprocess, time
for i in range({ROUNDS}):
    for cmd in (["squeue", "-h"], ["sbatch", "-Q", "-o", "/dev/null", "--wrap=true"]):
        r = subprocess.run(cmd, capture_output=True)
        print(cmd[0], i, "ok" if r.returncode == 0 else "FAIL " + r.stderr.decode()[-200:],
              flush=True)
    time.sleep({STEP})
"""


@pytest.fixture(scope="module")
def world(installed: Installed, cluster: Cluster, test_users: dict[str, TestUser]
          ) -> Iterator[World]:
    """A login node whose helper mints 30-second tokens (refreshed at 15 s)."""
    with cache_base() as base, login_world(
            installed, cluster, ("alice", "bob"),
            helper_extra=f"Lifespan={LIFESPAN}\nRefreshMargin=10\n") as made:
        yield made
        for user in ("alice", "bob"):
            shutil.rmtree(base / str(test_users[user].uid), ignore_errors=True)


def failures(output: str) -> list[str]:
    return [line for line in output.splitlines() if "FAIL" in line]


def ok_lines(output: str) -> int:
    return sum(1 for line in output.splitlines() if line.endswith(" ok"))


# ---- web portals: sessions opened through pamela and python-pam ---------------------

PORTAL = r"""
import json, sys
service, user, lib = sys.argv[1:4]
if lib == "pamela":
    # As JupyterHub's PAMAuthenticator does: authenticate, then open a
    # session (the handle, and with it the PAM environment, is dropped).
    import pamela
    pamela.authenticate(user, "any", service=service)
    pamela.open_session(user, service=service)
    print(json.dumps({}))
else:
    # python-pam keeps the handle: the session's environment is readable.
    import pam
    p = pam.pam()
    assert p.authenticate(user, "any", service=service, call_end=False), p.reason
    assert p.open_session() == 0, p.reason
    env = p.getenvlist()
    print(json.dumps(env))
    p.close_session()
    p.end()
"""


def portal_session(world: World, scratch: Path, lib: str, user: str = "alice") -> dict[str, str]:
    """Open a session for `user` through the shipped module, as a web portal
    would with `lib`; return the PAM environment python-pam sees ({} for
    pamela, which drops it)."""
    service = f"slurmjwt-portal-{secrets.token_hex(4)}"
    path = Path("/etc/pam.d") / service
    path.write_text("\n".join([
        "auth sufficient pam_permit.so",
        "account required pam_permit.so",
        pam_env_line(scratch / f"env-{service}",
                     {**session_env(world.helper, world.jwt_only_conf), "PATH": SITE_PATH}),
        *module_lines(world.installed, world.helper.root_socket),
    ]) + "\n")
    try:
        # A process of its own, as the portal is; libpam loaded by ctypes.
        r = subprocess.run([sys.executable, "-c", PORTAL, service, user, lib],
                           capture_output=True, text=True, timeout=60, check=False)
    finally:
        path.unlink()
    assert r.returncode == 0, r.stderr
    env: dict[str, str] = json.loads(r.stdout)
    return env


@pytest.fixture
def scratch() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="slurmjwt-live-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_python_pam_session_environment_has_the_token_and_the_wrappers(
        world: World, scratch: Path) -> None:
    env = portal_session(world, scratch, "python-pam")
    token_claims(world.cluster, env["SLURM_JWT"], "alice")
    assert env["PATH"].split(":")[0] == str(world.installed.wrappers)


def test_pamela_session_fills_the_cache_the_wrappers_read(
        world: World, scratch: Path, test_users: dict[str, TestUser]) -> None:
    cache = Path("/run/slurmjwt/users") / str(test_users["bob"].uid)
    shutil.rmtree(cache, ignore_errors=True)
    assert portal_session(world, scratch, "pamela", user="bob") == {}
    fields = (cache / "token").read_text().split()
    token_claims(world.cluster, fields[7], "bob")
    # JupyterHub's recipe: the wrappers first on the spawner's PATH. The
    # notebook's squeue takes the cached token: the helper is not asked.
    seen = world.helper.log_text().count("grant (user bob)")
    env = {**session_env(world.helper, world.jwt_only_conf),
           "PATH": f"{world.installed.wrappers}:/usr/bin:/bin", "HOME": "/"}
    r = world.cluster.run(["squeue", "-h"], user="bob", env_extra=env)
    assert r.returncode == 0, r.stderr
    assert world.helper.log_text().count("grant (user bob)") == seen


# ---- three lifetimes -------------------------------------------------------------------


def test_processes_started_long_ago_keep_working_for_three_token_lifetimes(
        world: World, scratch: Path, test_users: dict[str, TestUser]) -> None:
    alice = test_users["alice"]
    tmux = f"tmux -L slurmjwt-{secrets.token_hex(4)}"
    job = Path(alice.home) / "slurmjwt-tmux-job.sh"
    out = Path(alice.home) / "slurmjwt-tmux.out"
    for path in (job, out):
        path.unlink(missing_ok=True)
    job.write_text("#!/bin/sh\ntrue\n")
    os.chown(job, alice.uid, alice.gid)
    expired = world.cluster.mint("alice", lifespan=60, now=time.time() - 3600)
    expired_file = Path(alice.home) / "slurmjwt-expired.jwt"
    expired_file.write_text(expired + "\n")
    os.chown(expired_file, alice.uid, alice.gid)
    expired_file.chmod(0o600)
    started = time.monotonic()
    # A loop started by `ssh host CMD`, and a Python program's subprocess.
    shell_loop = subprocess.Popen(world.sshd.argv("alice", SHELL_LOOP), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    python_loop = subprocess.Popen(world.sshd.argv("alice", f"python3 -c '{PYTHON_LOOP}'"),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, text=True)
    # A portal's session (python-pam), its environment handed to a process
    # that runs on, as a notebook server would.
    portal_env = portal_session(world, scratch, "python-pam")
    notebook = subprocess.Popen(
        ["setpriv", "--reuid=alice", "--regid=alice", "--init-groups", "--", "env", "-i",
         *(f"{k}={v}" for k, v in portal_env.items()), f"HOME={alice.home}",
         sys.executable, "-I", "-c", PYTHON_LOOP],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=alice.home)
    try:
        # An IDE's terminal: a non-login interactive bash that inherited an
        # expired token from a process started long ago.
        ide = world.sshd.ssh("alice", f"SLURM_JWT=$(cat {expired_file}) bash --norc -i -c "
                                      "'squeue -h >/dev/null && echo ide ok || echo ide FAIL'")
        assert "ide ok" in ide.stdout, ide.stdout + ide.stderr
        # A tmux pane, left idle past its session token's expiry.
        started_tmux = world.sshd.ssh(
            "alice", f"{tmux} new-session -d -s work 'bash --noprofile --norc'")
        assert started_tmux.returncode == 0, started_tmux.stderr
        while time.monotonic() - started < LIFESPAN + 5:
            time.sleep(1)
        sent = world.sshd.ssh(
            "alice", f"{tmux} send-keys -t work 'sbatch {job} >{out} 2>&1; echo done >>{out}' "
                     "Enter")
        assert sent.returncode == 0, sent.stderr
        deadline = time.monotonic() + 60
        while "done" not in (out.read_text() if out.exists() else ""):
            assert time.monotonic() < deadline, "the tmux pane never ran sbatch"
            time.sleep(0.2)
        assert re.search(r"^Submitted batch job \d+$", out.read_text(), re.M), out.read_text()
        results = {}
        for name, proc in (("ssh loop", shell_loop), ("python subprocess", python_loop),
                           ("python-pam session", notebook)):
            output, _ = proc.communicate(timeout=ROUNDS * STEP + 120)
            results[name] = output
            assert proc.returncode == 0, (name, output)
            assert failures(output) == [], (name, output)
            assert ok_lines(output) == 2 * ROUNDS, (name, output)
        assert time.monotonic() - started >= LIFETIMES * LIFESPAN
    finally:
        for proc in (shell_loop, python_loop, notebook):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        world.sshd.ssh("alice", f"{tmux} kill-server")
        for path in (job, out, expired_file):
            path.unlink(missing_ok=True)
