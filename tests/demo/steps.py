"""The transcript: what a user of the login node types, run over real ssh as
the demo user (one ssh session per command, SLURM_JWT from the PAM hook), with
each command's trimmed output and the facts the test checks.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

from tests.demo.cluster import CONTROLLER, DEMO_USER, RESTD_PORT
from tests.demo.keys import Keys
from tests.demo.releases import Release

SSH_TIMEOUT = 120.0  # sbatch --wait included
# What a terminal session adds around the text: OSC strings (window titles,
# systemd's shell-integration context since Debian 13), CSI sequences
# (bracketed paste, erase line).
TERMINAL_CONTROLS = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b\[[0-9;?]*[A-Za-z]|\r")
SHOWN_LINES = 10  # of a longer output, this many lines and one more are shown


@dataclass(frozen=True)
class Step:
    """One command as shown, with its exit status and whole output."""

    key: str
    command: str
    status: int
    output: str
    expect_ok: bool = True
    note: str = ""
    keep: str = "head"  # which end of a long output to show: "head" or "tail"
    shown: int = SHOWN_LINES  # lines of a longer output shown (and one more)

    @property
    def as_expected(self) -> bool:
        return (self.status == 0) == self.expect_ok

    def render(self) -> str:
        lines = self.output.rstrip().splitlines()
        if len(lines) > self.shown + 1:
            if self.keep == "tail":
                lines = [lines[0], "  [...]", *lines[-self.shown:]]
            else:
                lines = [*lines[:self.shown], "  [...]", lines[-1]]
        notes = [f"# {self.note}"] if self.note else []
        return "\n".join([*notes, f"$ {self.command}", *lines])


@dataclass(frozen=True)
class Transcript:
    steps: tuple[Step, ...]
    job_id: str

    def __getitem__(self, key: str) -> Step:
        for step in self.steps:
            if step.key == key:
                return step
        raise KeyError(key)

    @property
    def ok(self) -> bool:
        return all(step.as_expected for step in self.steps)

    def render(self) -> str:
        return "\n\n".join(step.render() for step in self.steps)


def ssh_argv(keys: Keys, port: int, command: str | None, tty: bool = False,
             user: str = DEMO_USER) -> list[str]:
    """Return the ssh command line for a login as `user` (the demo user by
    default): running `command`, or (None) the user's login shell; `tty`
    forces a terminal."""
    return ["ssh", "-F", "/dev/null", "-i", str(keys.user_key), "-p", str(port),
            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={keys.known_hosts}",
            *(["-tt"] if tty else []), f"{user}@127.0.0.1",
            *([command] if command is not None else [])]


def run_step(keys: Keys, port: int, key: str, command: str, expect_ok: bool = True,
             note: str = "", keep: str = "head", user: str = DEMO_USER,
             shown: int = SHOWN_LINES) -> Step:
    """Run `command` on the login node over ssh as `user`; return the Step."""
    try:
        done = subprocess.run(ssh_argv(keys, port, command, user=user), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=SSH_TIMEOUT, check=False)
        status, output = done.returncode, done.stdout
    except subprocess.TimeoutExpired as err:
        status, output = 124, f"(no answer within {SSH_TIMEOUT:.0f} s) {err.output or ''}"
    return Step(key, command, status, output, expect_ok, note, keep, shown)


def run_interactive(keys: Keys, port: int, key: str, typed: str) -> Step:
    """Log in as the demo user with a terminal and no command (sshd starts the
    login shell, which reads /etc/profile and profile.d), type `typed` (it
    should end with `exit`), and return the Step; the output has the
    terminal's echo of what was typed, without terminal control sequences."""
    try:
        done = subprocess.run(ssh_argv(keys, port, None, tty=True), input=typed,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=SSH_TIMEOUT, check=False)
        status, output = done.returncode, done.stdout
    except subprocess.TimeoutExpired as err:
        status, output = 124, f"(no answer within {SSH_TIMEOUT:.0f} s) {err.output or ''}"
    return Step(key, "(interactive login shell)", status, TERMINAL_CONTROLS.sub("", output))


def run_transcript(keys: Keys, port: int, rel: Release, systemd: bool) -> Transcript:
    """Run the demo's commands in order; a later command that needs an earlier
    one's result (the job id) still runs, so every failure is shown. The
    login node's systemd units are shown where systemd is its PID 1."""
    steps = []
    if systemd:
        steps += [
            run_step(keys, port, "helper", "systemctl status --no-pager --lines=0 "
                     "slurmjwt-helper.socket slurmjwt-helper-root.socket "
                     "slurmjwt-helper.service",
                     note="the helper: started by systemd on the first connection to one of "
                          "its sockets (users', root's), as SlurmUser, hardened", shown=40),
        ]
    steps += [
        run_step(keys, port, "directory", f"getent passwd {DEMO_USER}; id; "
                 f"grep -c '^{DEMO_USER}:' /etc/passwd || true",
                 note="the demo user comes from the directory (LDAP, through sssd): "
                      "no line in /etc/passwd"),
        run_step(keys, port, "token", "slurmjwt decode",
                 note="the token the PAM hook put into this ssh session (SLURM_JWT)"),
        run_step(keys, port, "cache", "slurmjwt status",
                 note="the token cache, in the session's runtime directory when logind "
                      "made one"),
        run_step(keys, port, "squeue", "squeue"),
        run_step(keys, port, "script", "cat hello.sbatch",
                 note="a batch job with a job step (srun) inside"),
        run_step(keys, port, "sbatch", "sbatch --wait hello.sbatch"),
    ]
    found = re.search(r"Submitted batch job (\d+)", steps[-1].output)
    job = found.group(1) if found else "0"
    # /jobs, not /ping: slurmrestd answers ping even to a forged token.
    url = f"http://{CONTROLLER}:{RESTD_PORT}{rel.restd_jobs}"
    steps += [
        run_step(keys, port, "output", f"cat hello-{job}.out"),
        run_step(keys, port, "state", f"squeue --states=all --jobs={job} --format='%i %j %T'"),
        run_step(keys, port, "accounting",
                 f"sacct --jobs={job} --format=JobID,JobName,User,State; "
                 f"sacctmgr show assoc user={DEMO_USER} format=Cluster,Account,User",
                 note="accounting: slurmdbd takes the same token (sacct, sacctmgr, sreport, "
                      "sshare)"),
        run_step(keys, port, "rest",
                 f"slurmjwt token --header | curl -sS -H @- -w '\\nHTTP %{{http_code}}\\n' "
                 f"{url} | grep -E '\"job_id\"|\"name\": \"hello\"|^HTTP'",
                 note="slurmrestd lists the jobs: the token sent as headers on stdin, never "
                      "on a command line"),
        run_step(keys, port, "no-token", "env -u SLURM_JWT /usr/bin/squeue", expect_ok=False,
                 note="Slurm's own squeue without the token: this host has no munge, so no "
                      "way in"),
        run_step(keys, port, "wrapper", "command -v squeue; SLURM_JWT=expired.old.token "
                                        "squeue --noheader --states=all | head -n 3",
                 note="squeue on PATH is the wrapper: it brings a live token of its own, "
                      "whatever a long-running process inherited"),
        run_step(keys, port, "key-id", "cat /run/slurmjwt/key/id; slurmjwt status | grep key",
                 note="the key the helper signs with; every cached token records it, so a "
                      "change of key is followed at once"),
    ]
    if systemd:
        steps.append(run_step(keys, port, "timer", "systemctl --user list-timers --no-pager "
                              "slurmjwt-refresh.timer",
                              note="the refresh timer in the user's own systemd "
                                   "(systemctl --global enable)"))
    return Transcript(tuple(steps), job)


def http_status(step: Step) -> int:
    """Given the REST step, return the HTTP status curl printed (0 if none)."""
    found = re.search(r"HTTP (\d{3})\s*$", step.output)
    return int(found.group(1)) if found else 0
