"""The real slurmjwt-helper against a real slurmctld (root: users, setuid, daemons).

Tokens come from the installed helper, are fetched by the installed
slurmjwt-refresh running as the user, and are judged by slurmctld and
slurmrestd themselves.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import jwt
import pytest

from tests.integration.fixtures.cluster import Cluster
from tests.integration.fixtures.helperd import HelperProcess, start_helper
from tests.integration.fixtures.install import Installed
from tests.integration.fixtures.users import TestUser


def as_user(user: str, argv: list[str], env: dict[str, str],
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run argv as user with exactly env (plus PATH)."""
    full = {"PATH": "/usr/bin:/bin", **env}
    return subprocess.run(["setpriv", "--reuid", user, "--regid", user, "--init-groups",
                           "env", "-i", *[f"{k}={v}" for k, v in full.items()], *argv],
                          capture_output=True, text=True, input=stdin, timeout=60)


def user_env(helper: HelperProcess, cache_root: Path, user: str) -> dict[str, str]:
    return {**helper.env, "SLURMJWT_CACHE_DIR": str(cache_root / user)}


def fetch(installed: Installed, helper: HelperProcess, cache_root: Path, user: str) -> str:
    """As user, run slurmjwt-refresh then slurmjwt token; return the token."""
    env = user_env(helper, cache_root, user)
    out = as_user(user, [installed.cmd("slurmjwt-refresh")], env)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""  # refresh is silent unless --print-env
    out = as_user(user, [installed.cmd("slurmjwt"), "token"], env)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def start_rogue_helper(installed: Installed, cluster: Cluster) -> tuple[HelperProcess, Path]:
    """A helper signing with a key of its own, not slurmctld's; return it
    and its directory (the caller stops it and removes the directory)."""
    work = Path(tempfile.mkdtemp(prefix="slurmjwt-other-"))
    work.chmod(0o755)
    other = work / "other.key"
    other.write_bytes(os.urandom(32))
    shutil.chown(other, "slurm", "slurm")
    other.chmod(0o600)
    return start_helper(installed, cluster.slurm_conf, work, extra=f"JwtKey={other}\n"), work


def test_helper_token_is_accepted_by_squeue_sbatch_and_slurmrestd(
        installed: Installed, helper: HelperProcess, cluster: Cluster,
        test_users: dict[str, TestUser], cache_root: Path) -> None:
    token = fetch(installed, helper, cache_root, "alice")
    claims = jwt.decode(token, cluster.key_path.read_bytes(), algorithms=["HS256"])
    assert claims["sun"] == "alice" and claims["exp"] - claims["iat"] == 1800

    squeue = cluster.run(["squeue", "--noheader"], user="alice", env_extra={"SLURM_JWT": token})
    assert squeue.returncode == 0, squeue.stderr
    cluster.batch_and_rest_take("alice", token)


def test_token_from_a_helper_with_another_key_is_refused_by_slurmctld(
        installed: Installed, cluster: Cluster, test_users: dict[str, TestUser],
        cache_root: Path) -> None:
    rogue, work = start_rogue_helper(installed, cluster)
    try:
        token = fetch(installed, rogue, cache_root, "alice")
        assert "backend=key" in rogue.log_text()
    finally:
        rogue.stop()
        shutil.rmtree(work, ignore_errors=True)
    out = cluster.run(["squeue"], user="alice", env_extra={"SLURM_JWT": token})
    assert out.returncode != 0
    assert "jwt_decode failure" in cluster.slurmctld_log.read_text()


def test_expired_helper_token_is_refused_by_slurmctld(
        installed: Installed, cluster: Cluster, test_users: dict[str, TestUser]) -> None:
    work = Path(tempfile.mkdtemp(prefix="slurmjwt-short-"))
    short = start_helper(installed, cluster.slurm_conf, work,
                         extra="Lifespan=10\nRefreshMargin=5\n")
    try:
        line = short.ask(b"SLURMJWT/2 TOKEN alice -\n")
    finally:
        short.stop()
        shutil.rmtree(work, ignore_errors=True)
    token = line.split()[-1].decode()
    assert cluster.run(["squeue"], user="alice",
                       env_extra={"SLURM_JWT": token}).returncode == 0
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    while time.time() <= exp + 1:  # wait for expiry by polling the clock, not a fixed sleep
        time.sleep(0.2)
    out = cluster.run(["squeue"], user="alice", env_extra={"SLURM_JWT": token})
    assert out.returncode != 0
    assert "token expired" in cluster.slurmctld_log.read_text()


def test_bob_cannot_get_alices_token_and_nobody_gets_root_or_slurm(
        helper: HelperProcess, test_users: dict[str, TestUser]) -> None:
    bob = test_users["bob"].uid
    assert helper.ask(b"SLURMJWT/2 TOKEN alice -\n", as_uid=bob) == (
        b"SLURMJWT/2 ERR denied uid %d may only ask for its own token\n" % bob)
    assert helper.ask(b"SLURMJWT/2 TOKEN root -\n", as_uid=bob).startswith(
        b"SLURMJWT/2 ERR denied ")
    for name in (b"root", b"slurm", b"0", b"64030", b"sysjwt", b"daemon"):
        answer = helper.ask(b"SLURMJWT/2 TOKEN %s -\n" % name)  # as root, who may ask for others
        assert answer.startswith(b"SLURMJWT/2 ERR "), (name, answer)
        assert b" OK " not in answer
    # and the helper itself, as root asking for itself:
    assert helper.ask(b"SLURMJWT/2 TOKEN - -\n").startswith(b"SLURMJWT/2 ERR denied root is root")
    log = helper.log_text()
    assert f"refuse (user alice) by uid={bob}" in log


def test_grants_are_logged_with_a_fingerprint_never_the_token(
        helper: HelperProcess, test_users: dict[str, TestUser]) -> None:
    from pam_slurmjwt.token import fingerprint

    token = helper.ask(b"SLURMJWT/2 TOKEN carol 60\n").split()[-1].decode()
    log = helper.log_text()
    assert f"fp={fingerprint(token)}" in log
    assert token not in log and token.split(".")[2] not in log
    line = next(li for li in log.splitlines() if fingerprint(token) in li)
    assert f"grant (user carol) uid={test_users['carol'].uid} by uid=0 pid=" in line
    assert "lifespan=60 exp=" in line


def test_helper_runs_as_slurm_user_and_is_not_dumpable(helper: HelperProcess) -> None:
    status = Path(f"/proc/{helper.proc.pid}/status").read_text()
    uids = next(li for li in status.splitlines() if li.startswith("Uid:")).split()[1:]
    slurm_uid = int(subprocess.run(["id", "-u", "slurm"], capture_output=True,
                                   text=True).stdout)
    assert {int(u) for u in uids} == {slurm_uid}  # real, effective, saved, fs: no way back
    # A non-dumpable process's /proc files belong to root, not to its own uid,
    # so neither slurm's other processes nor a core dump can read the key.
    assert os.stat(f"/proc/{helper.proc.pid}/environ").st_uid == 0
    assert Path(f"/proc/{helper.proc.pid}/limits").read_text().split("Max core file size")[1]\
        .split()[0] == "0"


@pytest.mark.parametrize(("mode", "owner", "message"), [
    (0o640, "slurm", 'mode 0640 allows group or others; run chmod 0600 "{key}"'),
    (0o604, "slurm", 'mode 0604 allows group or others; run chmod 0600 "{key}"'),
    (0o600, "alice", 'owned by alice, not root or SlurmUser slurm; run chown slurm: "{key}"'),
])
def test_insecure_key_makes_the_helper_refuse_to_start(
        installed: Installed, cluster: Cluster, test_users: dict[str, TestUser],
        mode: int, owner: str, message: str) -> None:
    tmp_path = Path(tempfile.mkdtemp(prefix="slurmjwt-badkey-"))  # SlurmUser must reach it
    tmp_path.chmod(0o755)
    key = tmp_path / "jwt.key"
    key.write_bytes(os.urandom(32))
    shutil.chown(key, owner, owner)
    key.chmod(mode)
    conf = tmp_path / "slurmjwt.conf"
    conf.write_text(f"SlurmConf={cluster.slurm_conf}\nHelperSocket={tmp_path}/h.sock\n"
                    f"JwtKey={key}\n")
    out = subprocess.run([installed.cmd("slurmjwt-helper"), "-c", str(conf)],
                         capture_output=True, text=True, timeout=30)
    shutil.rmtree(tmp_path)
    assert not (tmp_path / "h.sock").exists()
    assert out.returncode == 3
    assert out.stderr == f'slurmjwt-helper: cannot use key "{key}": ' + \
        message.format(key=key) + "\n"


def test_stalled_malformed_and_oversized_callers_do_not_stop_others(
        helper: HelperProcess, test_users: dict[str, TestUser]) -> None:
    import socket

    stalled = []
    try:
        for i in range(30):
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(str(helper.socket))
            if i % 3 == 1:
                sock.sendall(b"SLURMJWT/2 TOKEN ali")  # a slow-loris half line
            stalled.append(sock)
        assert helper.ask(b"x" * 70000).startswith(b"SLURMJWT/2 ERR too-long")
        assert helper.ask(b"\x00\xff garbage\n").startswith(b"SLURMJWT/2 ERR bad-request")
        assert helper.ask(b"GET / HTTP/1.0\n").startswith(b"SLURMJWT/2 ERR bad-version")
        start = time.monotonic()
        answers = []

        def one(_: int) -> None:
            answers.append(helper.ask(b"SLURMJWT/2 TOKEN alice 60\n"))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # ReadTimeout is 2 s: all served sooner means none waited behind a staller.
        assert time.monotonic() - start < 1.5
        assert len(answers) == 20 and all(a.startswith(b"SLURMJWT/2 OK ") for a in answers)
    finally:
        for sock in stalled:
            sock.close()


def test_sighup_reloads_config_without_dropping_requests(
        installed: Installed, cluster: Cluster, test_users: dict[str, TestUser]) -> None:
    work = Path(tempfile.mkdtemp(prefix="slurmjwt-hup-"))
    proc = start_helper(installed, cluster.slurm_conf, work, extra="Lifespan=900\n")
    failures: list[bytes] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            answer = proc.ask(b"SLURMJWT/2 TOKEN alice -\n")
            if not answer.startswith(b"SLURMJWT/2 OK "):
                failures.append(answer)

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        proc.config.write_text(proc.config.read_text().replace("Lifespan=900", "Lifespan=700"))
        proc.reload()
        deadline = time.monotonic() + 10
        lifespan = 0
        while time.monotonic() < deadline and lifespan != 700:
            token = proc.ask(b"SLURMJWT/2 TOKEN alice -\n").split()[-1]
            claims = jwt.decode(token, options={"verify_signature": False})
            lifespan = claims["exp"] - claims["iat"]
        assert lifespan == 700
        # New workers serve first; the supervisor says so once the old ones
        # have finished their requests and gone.
        while "reloaded configuration" not in proc.log_text():
            assert time.monotonic() < deadline, proc.log_text()
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join()
        proc.stop()
        shutil.rmtree(work, ignore_errors=True)
    assert failures == []


def test_scontrol_backend_tokens_work_too(
        installed: Installed, cluster: Cluster, test_users: dict[str, TestUser]) -> None:
    work = Path(tempfile.mkdtemp(prefix="slurmjwt-sc-"))
    proc = start_helper(installed, cluster.slurm_conf, work, extra="Backend=scontrol\n")
    try:
        line = proc.ask(b"SLURMJWT/2 TOKEN bob 600\n", timeout=30)
        assert line.startswith(b"SLURMJWT/2 OK "), line
        assert "backend=scontrol" in proc.log_text()
    finally:
        proc.stop()
        shutil.rmtree(work, ignore_errors=True)
    token = line.split()[-1].decode()
    claims = jwt.decode(token, cluster.key_path.read_bytes(), algorithms=["HS256"])
    assert claims["sun"] == "bob"
    assert cluster.run(["squeue"], user="bob", env_extra={"SLURM_JWT": token}).returncode == 0


def test_admin_mint_is_accepted_and_refuses_root(
        installed: Installed, helper: HelperProcess, cluster: Cluster,
        test_users: dict[str, TestUser]) -> None:
    env = {**os.environ, **helper.env}
    out = subprocess.run([installed.cmd("slurmjwt"), "mint", "username=carol", "lifespan=120"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("SLURM_JWT=") and out.stdout.count("\n") == 1
    token = out.stdout.strip().split("=", 1)[1]
    assert cluster.run(["squeue"], user="carol", env_extra={"SLURM_JWT": token}).returncode == 0
    out = subprocess.run([installed.cmd("slurmjwt"), "mint", "username=root"],
                         capture_output=True, text=True, env=env)
    assert (out.returncode, out.stdout) == (5, "")
    assert out.stderr == ("slurmjwt: refused: root is root; tokens for root are off "
                          "(AllowPrivileged)\n")
    # An ordinary user cannot read the key, so cannot mint at all.
    out = as_user("alice", [installed.cmd("slurmjwt"), "mint"], helper.env)
    assert out.returncode == 3 and "cannot read key" in out.stderr


def test_decode_shows_claims_without_the_signature(
        installed: Installed, helper: HelperProcess, test_users: dict[str, TestUser]) -> None:
    token = helper.ask(b"SLURMJWT/2 TOKEN alice 300\n").split()[-1].decode()
    out = subprocess.run([installed.cmd("slurmjwt"), "decode", "-"], input=token,
                         capture_output=True, text=True)
    assert out.returncode == 0
    assert "user:        alice" in out.stdout and "left)" in out.stdout
    assert token not in out.stdout and token.split(".")[2] not in out.stdout


def test_one_user_flooding_cannot_take_the_slots_of_others(
        installed: Installed, cluster: Cluster, test_users: dict[str, TestUser]) -> None:
    work = Path(tempfile.mkdtemp(prefix="slurmjwt-flood-"))
    proc = start_helper(installed, cluster.slurm_conf, work,
                        extra="Workers=1\nMaxConnectionsPerUser=3\nReadTimeout=10\n")
    bob = test_users["bob"].uid
    try:
        # SO_PEERCRED records who connected: bob's flood runs as bob, holding
        # its three connections open without sending anything.
        flood = subprocess.Popen(
            ["setpriv", "--reuid", "bob", "--regid", "bob", "--init-groups",
             "/usr/bin/python3", "-c",
             "import socket,sys,time\n"
             "s=[socket.socket(socket.AF_UNIX) for _ in range(3)]\n"
             "[x.connect(sys.argv[1]) for x in s]\n"
             "print('held', flush=True)\n"
             "sys.stdin.read()\n", str(proc.socket)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert flood.stdout is not None and flood.stdout.readline() == "held\n"
        deadline = time.monotonic() + 5
        answer = b""
        while time.monotonic() < deadline:  # the helper accepts asynchronously
            answer = proc.ask(b"SLURMJWT/2 TOKEN - -\n", as_uid=bob)
            if answer.startswith(b"SLURMJWT/2 ERR busy "):
                break
        assert answer.startswith(b"SLURMJWT/2 ERR busy "), answer
        alice = test_users["alice"].uid
        assert proc.ask(b"SLURMJWT/2 TOKEN - -\n", as_uid=alice).startswith(b"SLURMJWT/2 OK ")
        assert proc.ask(b"SLURMJWT/2 TOKEN carol -\n").startswith(b"SLURMJWT/2 OK ")
        assert f"refuse uid={bob} " in proc.log_text() and "reason=busy" in proc.log_text()
        assert flood.stdin is not None
        flood.stdin.close()
        flood.wait(10)
    finally:
        proc.stop()
        shutil.rmtree(work, ignore_errors=True)


def test_doctor_proves_the_chain_and_catches_a_wrong_key(
        installed: Installed, helper: HelperProcess, cluster: Cluster,
        test_users: dict[str, TestUser]) -> None:
    env = {**os.environ, **helper.env, "SLURM_CONF": str(cluster.slurm_conf)}
    env.pop("SLURM_JWT", None)
    out = subprocess.run([installed.cmd("slurmjwt"), "doctor", "--user", "alice"], env=env,
                         capture_output=True, text=True, timeout=120)
    lines = out.stdout.splitlines()
    for name in ("config", "slurm.conf", "auth/jwt", "key", "helper", "slurmctld accepts",
                 "key id", "clock", "export"):
        assert any(line.startswith("OK") and f" {name}: " in line for line in lines), \
            (name, out.stdout)
    # As root without --user: root gets no token, so doctor proves the key
    # with a user it picks (it once said all OK without proving anything).
    picked = subprocess.run([installed.cmd("slurmjwt"), "doctor"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert re.search(r"^OK   slurmctld accepts: a token for \S+ from the helper works",
                     picked.stdout, re.M), picked.stdout
    # As alice: the checks that concern her, and nothing about the key.
    user = as_user("alice", [installed.cmd("slurmjwt"), "doctor"],
                   {**helper.env, "SLURM_CONF": str(cluster.slurm_conf),
                    "SLURMJWT_CACHE_DIR": "/nonexistent/cache"})
    assert "OK   slurmctld accepts: a token for alice" in user.stdout
    assert " key: " not in user.stdout

    rogue, work = start_rogue_helper(installed, cluster)
    try:
        out = subprocess.run([installed.cmd("slurmjwt"), "doctor", "--user", "alice"],
                             env={**env, **rogue.env}, capture_output=True, text=True,
                             timeout=120)
        anyone = subprocess.run([installed.cmd("slurmjwt"), "doctor"],
                                env={**env, **rogue.env}, capture_output=True, text=True,
                                timeout=120)
    finally:
        rogue.stop()
        shutil.rmtree(work, ignore_errors=True)
    assert out.returncode == 1
    assert "FAIL slurmctld accepts: squeue with a fresh helper token failed" in out.stdout
    assert anyone.returncode == 1, anyone.stdout
    assert "FAIL slurmctld accepts: squeue with a fresh helper token failed for" in anyone.stdout


def test_doctor_json_says_what_the_text_says_against_a_real_helper(
        installed: Installed, helper: HelperProcess, cluster: Cluster,
        test_users: dict[str, TestUser]) -> None:
    """slurmjwt doctor --json on the same node, as root and as alice: the text
    report's verdicts, check for check, and its exit status."""
    import json

    env = {**os.environ, **helper.env, "SLURM_CONF": str(cluster.slurm_conf)}
    env.pop("SLURM_JWT", None)
    runs = []
    for extra in ([], ["--json"]):
        runs.append(subprocess.run([installed.cmd("slurmjwt"), "doctor", "--user", "alice",
                                    *extra], env=env, capture_output=True, text=True,
                                   timeout=120))
    for extra in ([], ["--json"]):
        runs.append(as_user("alice", [installed.cmd("slurmjwt"), "doctor", *extra],
                            {**helper.env, "SLURM_CONF": str(cluster.slurm_conf),
                             "SLURMJWT_CACHE_DIR": "/nonexistent/cache"}))
    for text, as_json in (runs[:2], runs[2:]):
        report = json.loads(as_json.stdout)
        assert (as_json.returncode, report["ok"]) == (text.returncode, text.returncode == 0)
        verdicts = [(line[:5].strip(), line[5:].split(": ", 1)[0])
                    for line in text.stdout.splitlines()]
        assert verdicts == [(c["status"].upper(), c["name"]) for c in report["checks"]]
        checks = {c["check"]: c for c in report["checks"]}
        assert checks["accepted"]["status"] == "ok", as_json.stdout
        assert checks["helper"]["status"] == "ok" and checks["helper"]["fix"] is None
        for check in report["checks"]:
            assert "eyJ" not in check["message"]  # never a token


def test_scontrol_backend_kills_scontrol_when_the_caller_hangs_up(
        installed: Installed, cluster: Cluster, test_users: dict[str, TestUser]) -> None:
    work = Path(tempfile.mkdtemp(prefix="slurmjwt-hang-"))
    work.chmod(0o755)
    (work / "pids").mkdir()
    shutil.chown(work / "pids", "slurm", "slurm")  # the helper runs scontrol as slurm
    pidfile = work / "pids" / "scontrol.pid"
    fake = work / "scontrol"
    fake.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 60\n")
    fake.chmod(0o755)
    proc = start_helper(installed, cluster.slurm_conf, work,
                        extra=f"Backend=scontrol\nScontrol={fake}\nWorkers=1\n")
    try:
        import socket

        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(proc.socket))
            sock.sendall(b"SLURMJWT/2 TOKEN alice -\n")
            deadline = time.monotonic() + 10
            while not pidfile.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert pidfile.exists(), proc.log_text()
        # The caller is gone: the helper must kill its scontrol, not wait 10 s.
        pid = int(pidfile.read_text())
        deadline = time.monotonic() + 5
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{pid}").exists() or \
            Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    finally:
        proc.stop()
        shutil.rmtree(work, ignore_errors=True)


def test_helper_serves_a_socket_passed_by_systemd_socket_activation(
        installed: Installed, cluster: Cluster, test_users: dict[str, TestUser]) -> None:
    import socket

    work = Path(tempfile.mkdtemp(prefix="slurmjwt-sd-"))
    work.chmod(0o755)
    sock_path = work / "activated.sock"
    conf = work / "slurmjwt.conf"
    conf.write_text(f"SlurmConf={cluster.slurm_conf}\nHelperSocket={work}/unused.sock\n")
    # systemd-socket-activate binds, waits for the first caller, then execs
    # the helper with LISTEN_FDS=1 and LISTEN_PID set, as systemd does.
    proc = subprocess.Popen(["systemd-socket-activate", "-l", str(sock_path),
                             installed.cmd("slurmjwt-helper"), "-c", str(conf), "--stderr"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not sock_path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(20)
            sock.connect(str(sock_path))
            sock.sendall(b"SLURMJWT/2 TOKEN alice 60\n")
            answer = sock.makefile("rb").readline()
        assert answer.startswith(b"SLURMJWT/2 OK "), answer
        assert not (work / "unused.sock").exists()  # it used the passed socket
        import pwd

        status = Path(f"/proc/{proc.pid}/status").read_text()
        uids = next(li for li in status.splitlines() if li.startswith("Uid:")).split()[1:]
        assert {int(u) for u in uids} == {pwd.getpwnam("slurm").pw_uid}  # dropped root
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


# ---- a local attacker: floods, fast callers, the root socket, odd uids -----------------

FLOODER = r"""
import socket, sys
path, n = sys.argv[1], int(sys.argv[2])
answers = {}
for _ in range(n):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall(b"SLURMJWT/2 TOKEN - -\n")
    word = s.recv(8192).split(b" ")[1:3]
    key = b" ".join(word).decode()
    answers[key] = answers.get(key, 0) + 1
    s.close()
print(answers)
"""


def flood(user: str, path: Path, n: int) -> str:
    """As user, connect/send/close n times in a row; return the answers seen."""
    out = subprocess.run(["setpriv", "--reuid", user, "--regid", user, "--init-groups",
                          "/usr/bin/python3", "-I", "-c", FLOODER, str(path), str(n)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_a_request_flood_cannot_flood_the_audit_log(
        installed: Installed, cluster: Cluster, test_users: dict[str, TestUser]) -> None:
    work = Path(tempfile.mkdtemp(prefix="slurmjwt-logflood-"))
    proc = start_helper(installed, cluster.slurm_conf, work, extra="Workers=1\n")
    bob = test_users["bob"].uid
    try:
        answers = flood("bob", proc.socket, 2000)
        assert "OK" in answers and "busy" in answers, answers  # granted, then rate-limited
        lines = [x for x in proc.log_text().splitlines() if f"uid={bob} " in x]
        assert len(lines) == 5, lines  # a burst per uid per 10 s, not a line per request
        # The rest is counted and said in one line once the window is over.
        deadline = time.monotonic() + 30  # the window, then the next 10 s flush
        while not re.search(rf"uid={bob}: 1995 more requests not logged in \d+ s "
                            r"\(busy=\d+ grant=\d+\)", proc.log_text()):
            assert time.monotonic() < deadline, proc.log_text()[-2000:]
            time.sleep(0.1)
        # Root's lines (one per login) are never held back.
        assert proc.ask(b"SLURMJWT/2 TOKEN carol -\n").startswith(b"SLURMJWT/2 OK ")
        assert "grant (user carol)" in proc.log_text().splitlines()[-1]
    finally:
        proc.stop()
        shutil.rmtree(work, ignore_errors=True)


def test_a_fast_caller_is_held_to_its_request_rate(
        installed: Installed, cluster: Cluster, test_users: dict[str, TestUser]) -> None:
    work = Path(tempfile.mkdtemp(prefix="slurmjwt-rate-"))
    proc = start_helper(installed, cluster.slurm_conf, work,
                        extra="Workers=1\nMaxRequestsPerUser=20\n", verbose=False)
    bob = test_users["bob"].uid
    try:
        answers = flood("bob", proc.socket, 40)
        # 20 at once, then one every 3 s: the flood took less than 3 s.
        assert answers.startswith("{'OK ") and "'OK " in answers, answers
        granted = int(re.search(r"'OK \d+': (\d+)", answers).group(1))  # type: ignore[union-attr]
        assert granted in (20, 21), answers
        answer = proc.ask(b"SLURMJWT/2 TOKEN - -\n", as_uid=bob)
        assert re.fullmatch(rb"SLURMJWT/2 ERR busy too many requests from uid %d; try again "
                            rb"in \d+ s\n" % bob, answer), answer
        # Others are not held back by bob's rate.
        alice = test_users["alice"].uid
        assert proc.ask(b"SLURMJWT/2 TOKEN - -\n", as_uid=alice).startswith(b"SLURMJWT/2 OK ")
        assert all(proc.ask(b"SLURMJWT/2 TOKEN carol -\n").startswith(b"SLURMJWT/2 OK ")
                   for _ in range(50))  # root: no rate at all
    finally:
        proc.stop()
        shutil.rmtree(work, ignore_errors=True)


def test_the_root_socket_serves_root_alone(helper: HelperProcess,
                                          test_users: dict[str, TestUser]) -> None:
    st = os.stat(helper.root_socket)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)
    bob = test_users["bob"].uid
    with pytest.raises(PermissionError):
        _ask_path(helper.root_socket, b"SLURMJWT/2 TOKEN - -\n", bob)
    assert _ask_path(helper.root_socket, b"SLURMJWT/2 TOKEN carol -\n").startswith(
        b"SLURMJWT/2 OK ")
    # Were its mode ever loosened, the helper itself still serves root only.
    os.chmod(helper.root_socket, 0o666)
    try:
        assert _ask_path(helper.root_socket, b"SLURMJWT/2 TOKEN - -\n", bob) == (
            b"SLURMJWT/2 ERR denied this socket serves root only\n")
    finally:
        os.chmod(helper.root_socket, 0o600)


ASK = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("EACCES")
    raise SystemExit
s.sendall(sys.argv[2].encode() + b"\n")
sys.stdout.buffer.write(s.recv(8192))
"""


def _ask_path(path: Path, line: bytes, as_uid: int | None = None) -> bytes:
    """Ask at path (as as_uid, else root) in a process of its own; raise
    PermissionError when connect() was refused."""
    argv = ["/usr/bin/python3", "-I", "-c", ASK, str(path), line.decode().rstrip("\n")]
    if as_uid is not None:
        argv = ["setpriv", f"--reuid={as_uid}", f"--regid={as_uid}", "--clear-groups", *argv]
    out = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    if out.stdout == b"EACCES\n":
        raise PermissionError(path)
    return out.stdout


def listening_paths(pid: int) -> set[str]:
    """The paths of the listening unix sockets process pid holds."""
    listening = {}
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) == 8 and int(fields[3], 16) & 0x10000:  # __SO_ACCEPTCON
            listening[fields[6]] = fields[7]
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            link = os.readlink(fd)
            if link.startswith("socket:["):
                held.add(link[len("socket:["):-1])
    return {listening[inode] for inode in held if inode in listening}


def niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_logins_have_a_worker_of_their_own_that_a_flood_cannot_slow(
        installed: Installed, cluster: Cluster, test_users: dict[str, TestUser]) -> None:
    """RootSocket (logins) is served by a worker that serves nothing else and
    runs before HelperSocket's workers (nice 0 against 10): a user flooding
    HelperSocket costs the flooder and its peers, and every login during
    the flood gets its token. `make bench` measures the latency."""
    work = Path(tempfile.mkdtemp(prefix="slurmjwt-flood-"))
    proc = start_helper(installed, cluster.slurm_conf, work, verbose=False)
    try:
        workers = [int(pid) for pid in subprocess.run(
            ["pgrep", "-P", str(proc.proc.pid)], capture_output=True, text=True).stdout.split()]
        serving = {pid: listening_paths(pid) for pid in workers}
        logins = [pid for pid, paths in serving.items() if paths == {str(proc.root_socket)}]
        users = [pid for pid, paths in serving.items() if paths == {str(proc.socket)}]
        assert (len(logins), len(users), len(workers)) == (1, 2, 3), serving
        assert [niceness(pid) for pid in logins + users] == [0, 10, 10]
        flooders = [threading.Thread(target=flood, args=("bob", proc.socket, 400))
                    for _ in range(4)]
        for thread in flooders:
            thread.start()
        answers = [_ask_path(proc.root_socket, b"SLURMJWT/2 TOKEN carol 60\n")
                   for _ in range(20)]
        for thread in flooders:
            thread.join()
        assert all(answer.startswith(b"SLURMJWT/2 OK ") for answer in answers), answers
    finally:
        proc.stop()
        shutil.rmtree(work, ignore_errors=True)


def test_a_socket_directory_others_may_write_is_refused_even_if_sticky(
        installed: Installed, cluster: Cluster) -> None:
    work = Path(tempfile.mkdtemp(prefix="slurmjwt-sticky-"))
    work.chmod(0o1777)
    conf = work / "slurmjwt.conf"
    conf.write_text(f"SlurmConf={cluster.slurm_conf}\nHelperSocket={work}/h.sock\n"
                    f"RootSocket={work}/r.sock\n")
    try:
        out = subprocess.run([installed.cmd("slurmjwt-helper"), "-c", str(conf)],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 3
        assert out.stderr == (f'slurmjwt-helper: cannot bind "{work}/h.sock": its directory '
                              f'"{work}" may be changed by others; use a directory owned by '
                              f"root, e.g. /run/slurmjwt\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_callers_with_uids_above_2_31_are_answered_for_their_uid(helper: HelperProcess) -> None:
    # SO_PEERCRED's uid is unsigned: 3000000000 is a uid, not -1294967296.
    assert helper.ask(b"SLURMJWT/2 TOKEN - -\n", as_uid=3_000_000_000) == (
        b"SLURMJWT/2 ERR internal cannot look up uid 3000000000 right now; try again\n")


def test_the_key_id_is_published_for_every_user_to_read(helper: HelperProcess) -> None:
    slurm = pwd.getpwnam("slurm")
    st = os.lstat(helper.key_dir)
    assert stat.S_ISDIR(st.st_mode) and st.st_uid == slurm.pw_uid
    assert stat.S_IMODE(st.st_mode) == 0o755
    for name in ("id", "id.csh"):
        st = os.lstat(helper.key_dir / name)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644
    kid = helper.key_id()
    assert (helper.key_dir / "id.csh").read_text() == f"set _slurmjwt_kid={kid}\n"
    answer = helper.ask(b"SLURMJWT/2 TOKEN carol -\n").split()
    assert answer[5].decode() == kid
    token = answer[6].decode()
    assert jwt.get_unverified_header(token)["kid"] == kid


def test_lifespans_are_capped_short_unless_an_admin_names_the_user_or_group(
        installed: Installed, cluster: Cluster, test_users: dict[str, TestUser]) -> None:
    work = Path(tempfile.mkdtemp(prefix="slurmjwt-caps-"))
    group = grp.getgrgid(test_users["bob"].gid).gr_name
    proc = start_helper(installed, cluster.slurm_conf, work,
                        extra=f"MaxLifespanFor=alice:7200,@{group}:5400\n", verbose=False)
    try:
        def life(user: str) -> int:
            token = proc.ask(f"SLURMJWT/2 TOKEN {user} 99999\n".encode()).split()[-1]
            claims = jwt.decode(token, options={"verify_signature": False})
            return int(claims["exp"]) - int(claims["iat"])

        assert (life("carol"), life("alice"), life("bob")) == (3600, 7200, 5400)
        # As the users themselves, too.
        token = proc.ask(b"SLURMJWT/2 TOKEN - 99999\n", as_uid=test_users["carol"].uid)
        claims = jwt.decode(token.split()[-1], options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == 3600
    finally:
        proc.stop()
        shutil.rmtree(work, ignore_errors=True)


def test_refresh_run_as_root_never_writes_where_a_user_points_it(
        installed: Installed, cluster: Cluster, test_users: dict[str, TestUser]) -> None:
    work = Path(tempfile.mkdtemp(prefix="slurmjwt-rootenv-"))
    work.chmod(0o755)
    alice = test_users["alice"]
    (work / "h").mkdir(mode=0o755)
    proc = start_helper(installed, cluster.slurm_conf, work / "h",
                        extra="MinUid=0\nAllowPrivileged=root\n", verbose=False)
    victim = work / "victim"
    victim.write_text("root's file\n")
    lure = work / "lure"  # alice's, with her link where the token would go
    lure.mkdir(mode=0o700)
    (lure / "token").symlink_to(victim)
    for path in (lure, lure / "token"):
        os.chown(path, alice.uid, alice.gid, follow_symlinks=False)
    runtime = work / "runtime"  # and a runtime dir of hers
    runtime.mkdir(mode=0o700)
    os.chown(runtime, alice.uid, alice.gid)
    fallback = Path("/run/slurmjwt/users/0")
    try:
        out = subprocess.run([installed.cmd("slurmjwt-refresh")], capture_output=True, text=True,
                             timeout=30, env={"PATH": "/usr/bin:/bin",
                                              "SLURMJWT_CONF": str(proc.config),
                                              "SLURMJWT_CACHE_DIR": str(lure),
                                              "XDG_RUNTIME_DIR": str(runtime)})
        assert victim.read_text() == "root's file\n"
        assert sorted(p.name for p in lure.iterdir()) == ["token"] and not list(runtime.iterdir())
        # Root's cache is root's own: the fallback, never a user's directory.
        assert out.returncode in (0, 6), out.stderr
        if out.returncode == 0:
            assert os.lstat(fallback / "token").st_uid == 0
    finally:
        proc.stop()
        shutil.rmtree(fallback, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
