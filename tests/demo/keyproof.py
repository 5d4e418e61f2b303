"""Whether the helper and slurmctld start with a JWT key of a given mode, tried
inside a running demo cluster on copies of its key, so the compatibility
matrix can prove the project is never laxer than the Slurm it runs with.

Each probe works in PROOF_DIR of its container and leaves nothing running.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from docker.models.containers import Container

from tests.demo.cluster import JWT_KEY, SLURM_CONF, exec_out
from tests.demo.errors import DemoError

PROOF_DIR = "/tmp/keyproof"
PROOF_PORT = 6917  # the demo's own slurmctld has 6817
START_TIMEOUT = 60.0
POLL_INTERVAL = 0.25


@dataclass(frozen=True)
class Outcome:
    """What a daemon did with the key: started (True) or refused (False), its
    exit status when it refused, and what it said (output and log)."""

    started: bool
    status: int | None
    said: str


def copy_key(container: Container, mode: int) -> str:
    """Copy the cluster's key into a fresh PROOF_DIR (0755, root's), owned by
    SlurmUser with `mode`; return its path."""
    key = f"{PROOF_DIR}/jwt.key"
    code, out = exec_out(container, ["sh", "-euc", f"""
        rm -rf {PROOF_DIR}
        install -d -m 0755 {PROOF_DIR}
        cp {JWT_KEY} {key}
        chown slurm:slurm {key}
        chmod {mode:04o} {key}"""])
    if code != 0:
        raise DemoError(f"{container.name}: cannot copy the key into {PROOF_DIR}: {out}")
    return key


def helper(login: Container, mode: int) -> Outcome:
    """Start slurmjwt-helper on the login node as a site would (as root; it binds
    its socket, drops to SlurmUser, then reads the key), with a slurmjwt.conf
    naming a copy of the key with `mode`. A helper that starts is stopped."""
    key = copy_key(login, mode)
    conf = f"{PROOF_DIR}/slurmjwt.conf"
    # The helper binds only in a directory owned by root.
    sock = f"{PROOF_DIR}/helper.sock"
    code, out = exec_out(login, ["sh", "-euc", f"""
        printf 'JwtKey={key}\\nBackend=key\\nHelperSocket={sock}\\n' > {conf}
        chmod 0644 {conf}"""])
    if code != 0:
        raise DemoError(f"{login.name}: cannot write {conf}: {out}")
    return run_until_up(login, ["slurmjwt-helper", "--stderr", "--config", conf],
                        ["slurmjwt", "--config", conf, "ping"], log=None)


def slurmctld(controller: Container, mode: int) -> Outcome:
    """Start a second slurmctld on the controller, on port PROOF_PORT with its
    own state, pid and log files under PROOF_DIR, no real node and no
    accounting (so the demo's own slurmctld, slurmd and slurmdbd are not
    disturbed), whose jwt_key is a copy
    of the key with `mode`. A slurmctld that starts is stopped."""
    key = copy_key(controller, mode)
    conf = f"{PROOF_DIR}/slurm.conf"
    # auth/munge whatever the cluster runs: under auth/slurm this slurmctld
    # would look for slurm.key beside its slurm.conf and take over the real
    # slurmctld's sack socket (munged runs on every demo controller).
    code, out = exec_out(controller, ["sh", "-euc", f"""
        install -d -o slurm -g slurm -m 0700 {PROOF_DIR}/state
        sed -e 's|^AuthAltParameters=.*|AuthAltParameters=jwt_key={key}|' \\
            -e 's|^AuthType=.*|AuthType=auth/munge|' -e 's|^CredType=.*|CredType=cred/munge|' \\
            -e 's|^StateSaveLocation=.*|StateSaveLocation={PROOF_DIR}/state|' \\
            -e 's|^SlurmctldPidFile=.*|SlurmctldPidFile={PROOF_DIR}/slurmctld.pid|' \\
            -e 's|^SlurmctldLogFile=.*|SlurmctldLogFile={PROOF_DIR}/slurmctld.log|' \\
            -e 's|^NodeName=.*|NodeName=ghost CPUs=1 State=FUTURE|' \\
            -e 's|^AccountingStorageType=.*|AccountingStorageType=accounting_storage/none|' \\
            -e '/^TaskProlog=/d' -e '/^CliFilterPlugins=/d' {SLURM_CONF} > {conf}
        echo SlurmctldPort={PROOF_PORT} >> {conf}
        chmod 0644 {conf}"""])
    if code != 0:
        raise DemoError(f"{controller.name}: cannot write {conf}: {out}")
    return run_until_up(controller, ["env", f"SLURM_CONF={conf}", "slurmctld", "-D", "-i"],
                        ["env", f"SLURM_CONF={conf}", "scontrol", "ping"],
                        log=f"{PROOF_DIR}/slurmctld.log", up_text="is UP")


def run_until_up(container: Container, argv: list[str], probe: list[str], log: str | None,
                 up_text: str = "") -> Outcome:
    """Start argv in the background in the container (as root), then poll until
    it has exited (refused) or `probe` succeeds with `up_text` in its output
    (started, then killed and waited for); raise DemoError when neither
    happens within START_TIMEOUT."""
    rc_file, out_file, pid_file = (f"{PROOF_DIR}/{name}" for name in ("rc", "out", "pid"))
    quoted = " ".join(f"'{arg}'" for arg in argv)
    container.exec_run(["sh", "-c", f"{quoted} > {out_file} 2>&1 & echo $! > {pid_file}; "
                        f"wait $!; echo $? > {rc_file}"], detach=True)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        code, rc = exec_out(container, ["cat", rc_file])
        if code == 0 and rc.strip():
            return Outcome(False, int(rc.strip()), said(container, out_file, log))
        code, out = exec_out(container, probe)
        if code == 0 and up_text in out:
            stop(container, pid_file, rc_file)
            return Outcome(True, None, said(container, out_file, log))
        if time.monotonic() > deadline:
            stop(container, pid_file, rc_file)
            raise DemoError(f"{container.name}: {argv[-1]} neither started nor exited within "
                            f"{START_TIMEOUT:.0f} s:\n{said(container, out_file, log)}")
        time.sleep(POLL_INTERVAL)


def stop(container: Container, pid_file: str, rc_file: str) -> None:
    """SIGTERM the process started by run_until_up and poll until its shell
    wrote the exit status."""
    exec_out(container, ["sh", "-c", f"kill $(cat {pid_file})"])
    deadline = time.monotonic() + START_TIMEOUT
    while exec_out(container, ["test", "-s", rc_file])[0] != 0:
        if time.monotonic() > deadline:
            exec_out(container, ["sh", "-c", f"kill -9 $(cat {pid_file})"])
            raise DemoError(f"{container.name}: the process in {pid_file} did not stop")
        time.sleep(POLL_INTERVAL)


def said(container: Container, out_file: str, log: str | None) -> str:
    """Return the process's output, and its log file's contents when it has one."""
    text = exec_out(container, ["cat", out_file])[1]
    if log:
        text += exec_out(container, ["sh", "-c", f"cat {log} 2>/dev/null || true"])[1]
    return text
