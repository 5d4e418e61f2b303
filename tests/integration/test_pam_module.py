"""pam_slurmjwt.so run by the real libpam (and by sshd) against a fake helper.

The fake helper is a unix socket server speaking docs/internals.md, version 1,
with one misbehaviour per mode: it stands in for slurmjwt-helper so that the
module's client logic (deadlines, strict parsing, fail-open) can be proven
before the real helper exists. PAM itself is never mocked: a private service
file in /etc/pam.d is run by python3-pam (in a subprocess, which returns the
PAM environment), by pamtester under valgrind, and by sshd.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.fixtures.sshd import running_sshd
from tests.integration.fixtures.users import TestUser as User

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "pam" / "pam_slurmjwt.so"
PYTHON = sys.executable
SLACK = 0.5  # seconds allowed beyond timeout= for process and scheduling noise
SSH_SLACK = 2.0  # seconds allowed for a whole ssh login besides the module

# Runs one PAM session in a fresh process and prints what happened as JSON.
# A subprocess, so that the module's fork and its blocking calls happen in a
# process of their own, as they would in sshd, and the fake helper's thread
# in pytest keeps running while the module waits on it.
DRIVER = r"""
import json, os, sys, time
import PAM
service, user, canary = sys.argv[1:4]
# An inheritable descriptor, as sshd may hold: it must not reach the user.
fd = os.open(canary, os.O_RDONLY)
os.set_inheritable(fd, True)
p = PAM.pam()
p.start(service)
p.set_item(PAM.PAM_USER, user)
for kv in sys.argv[4:]:
    p.putenv(kv)
t0 = time.monotonic()
try:
    p.open_session()
    rc = 0
except PAM.error as e:
    rc = e.args[1]
elapsed = time.monotonic() - t0
env = p.getenvlist()
try:
    p.close_session()
    close_rc = 0
except PAM.error as e:
    close_rc = e.args[1]
print(json.dumps({"rc": rc, "close_rc": close_rc, "elapsed": elapsed, "env": env}))
"""


def fnv1a64(data: bytes) -> str:
    """Given a token, return its fingerprint as the module (and the helper) log it."""
    from pam_slurmjwt.token import fingerprint

    return fingerprint(data.decode())


def make_token() -> str:
    """Return a fresh JWT-shaped token, different in every test."""
    part = base64.urlsafe_b64encode(secrets.token_bytes(48)).rstrip(b"=").decode()
    return f"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.{part}.{part[:43]}"


# ---- the fake helper ------------------------------------------------------


@dataclass
class FakeHelper:
    """A unix socket server answering each request the way `mode` says."""

    path: str
    mode: str = "good"
    token: str = field(default_factory=make_token)
    exp: int = field(default_factory=lambda: int(time.time()) + 1800)
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _held: list[socket.socket] = field(default_factory=list)

    def ok_line(self, export: int = 1) -> bytes:
        return f"SLURMJWT/1 OK {self.exp} {export} {self.token}\n".encode()

    def answer(self) -> bytes | None:
        """Return the bytes to send for the current mode (None: never answer)."""
        return {
            "good": self.ok_line(1),
            "noexport": self.ok_line(0),
            "denied": b"SLURMJWT/1 ERR denied system accounts get no token.\n",
            "no-user": b"SLURMJWT/1 ERR no-user no such user.\n",
            "backend": b"SLURMJWT/1 ERR backend scontrol token failed.\n",
            "garbage": b"\x00\xff<html> " + self.token.encode() + b"\n",
            "badchars": self.ok_line(1).replace(b".", b"$", 1),
            "expired": f"SLURMJWT/1 OK {int(time.time()) - 10} 1 {self.token}\n".encode(),
            "half": self.ok_line(1)[:40],
            "oversized": b"SLURMJWT/1 OK 1 1 " + b"a" * 2000 + b"\n",
            "twolines": self.ok_line(1) + self.ok_line(1),
            "close": b"",
            "hang": None,
            "half-hang": None,
        }[self.mode]

    def serve(self) -> None:
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(self.path)
        os.chmod(self.path, 0o666)
        srv.listen(16)
        srv.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = srv.accept()
            except socket.timeout:
                continue
            self.connections += 1
            if self.mode == "close":
                conn.close()
                continue
            conn.settimeout(2)
            with contextlib.suppress(OSError):
                self.requests.append(conn.recv(300))
            data = self.answer()
            if data is None:
                if self.mode == "half-hang":
                    conn.sendall(self.ok_line(1)[:40])
                self._held.append(conn)  # keep it open, say nothing more
                continue
            with contextlib.suppress(OSError):
                conn.sendall(data)
            conn.close()
        srv.close()

    @contextlib.contextmanager
    def running(self) -> Iterator[FakeHelper]:
        thread = threading.Thread(target=self.serve, daemon=True)
        thread.start()
        deadline = time.monotonic() + 5
        while not os.path.exists(self.path) and time.monotonic() < deadline:
            time.sleep(0.01)
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(5)
            for conn in self._held:
                conn.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


# ---- syslog capture -------------------------------------------------------


class Syslog:
    """Collects datagrams sent to /dev/log by any process, in a thread."""

    def __init__(self, path: str = "/dev/log") -> None:
        self.path = path
        self.lines: list[str] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        os.chmod(path, 0o666)
        self.sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(8192)
            except socket.timeout:
                continue
            self.lines.append(data.decode(errors="replace"))

    def sync(self) -> None:
        """Wait until every datagram sent before this call has been read."""
        marker = f"sync-{secrets.token_hex(8)}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(marker.encode(), self.path)
        deadline = time.monotonic() + 5
        while marker not in self.lines and time.monotonic() < deadline:
            time.sleep(0.005)
        self.lines.remove(marker)

    def take(self) -> list[str]:
        """Return the module's lines logged since the last take()."""
        self.sync()
        lines, self.lines[:] = list(self.lines), []
        return [line for line in lines if "pam_slurmjwt(" in line]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        os.unlink(self.path)


@pytest.fixture(scope="module")
def syslog() -> Iterator[Syslog]:
    """Capture syslog; needs /dev/log to be free (no syslog daemon here)."""
    if os.path.exists("/dev/log"):
        pytest.skip("/dev/log belongs to a running syslog daemon; cannot capture")
    log = Syslog()
    try:
        yield log
    finally:
        log.close()


# ---- building and running the module --------------------------------------


@pytest.fixture(scope="session")
def module() -> Path:
    """Build pam/pam_slurmjwt.so with mk/pam.mk and return its path."""
    if shutil.which("make") is None or shutil.which("cc") is None:
        pytest.skip("needs make and a C compiler (gcc, libpam0g-dev)")
    subprocess.run(["make", "-s", "-f", "mk/pam.mk", "pam"], cwd=ROOT, check=True)
    return MODULE


@pytest.fixture
def work() -> Iterator[Path]:
    """Return a root-owned 0755 scratch directory, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="slurmjwt-pam-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def helper(work: Path) -> Iterator[FakeHelper]:
    """Return a running fake helper in mode "good"; tests may change .mode."""
    with FakeHelper(str(work / "helper.sock")).running() as fake:
        yield fake


@contextlib.contextmanager
def pam_service(lines: list[str]) -> Iterator[str]:
    """Write a private /etc/pam.d service with these lines; return its name."""
    name = f"slurmjwt-test-{secrets.token_hex(4)}"
    path = Path("/etc/pam.d") / name
    path.write_text("\n".join(lines) + "\n")
    try:
        yield name
    finally:
        path.unlink()


@dataclass
class Session:
    rc: int
    close_rc: int
    elapsed: float
    env: dict[str, str]
    output: str


def open_session(args: str, user: str, work: Path, putenv: tuple[str, ...] = ()) -> Session:
    """Run one PAM session (open and close) with the module given these args."""
    canary = work / "leak-canary"
    canary.touch()
    lines = [f"session optional {MODULE} {args}"]
    with pam_service(lines) as service:
        proc = subprocess.run(
            [PYTHON, "-c", DRIVER, service, user, str(canary), *putenv],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", "SLURMJWT_SOCKET": "/nonexistent", "EVIL": "1"},
        )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.strip().splitlines()
    result = json.loads(out[-1])
    env = dict(kv.split("=", 1) for kv in result["env"])
    noise = "\n".join(out[:-1]) + proc.stderr
    return Session(result["rc"], result["close_rc"], result["elapsed"], env, noise)


# ---- the tests --------------------------------------------------------------

pytestmark = pytest.mark.usefixtures("module")


def test_good_answer_puts_slurm_jwt_in_the_pam_environment(
    helper: FakeHelper, work: Path, test_users: dict[str, User], syslog: Syslog
) -> None:
    syslog.take()
    s = open_session(f"socket={helper.path} refresh=none", "alice", work)
    assert (s.rc, s.close_rc) == (0, 0)
    assert s.env.get("SLURM_JWT") == helper.token
    assert helper.requests == [b"SLURMJWT/1 TOKEN alice -\n"]
    assert s.output == ""  # nothing on the user's terminal
    lines = syslog.take()
    assert len(lines) == 1
    assert (
        f"token fp={fnv1a64(helper.token.encode())} exp={helper.exp} exported (user alice)"
        in (lines[0])
    )
    assert lines[0].startswith(f"<{10 * 8 + 6}>")  # LOG_AUTHPRIV | LOG_INFO
    assert helper.token not in "".join(lines)
    assert helper.token[-20:] not in "".join(lines)


def test_export_0_and_noexport_keep_slurm_jwt_out(
    helper: FakeHelper, work: Path, test_users: dict[str, User], syslog: Syslog
) -> None:
    helper.mode = "noexport"
    s = open_session(f"socket={helper.path} refresh=none", "alice", work)
    assert s.rc == 0 and "SLURM_JWT" not in s.env
    assert "not exported (helper policy) (user alice)" in syslog.take()[0]
    helper.mode = "good"
    s = open_session(f"socket={helper.path} refresh=none noexport", "alice", work)
    assert s.rc == 0 and "SLURM_JWT" not in s.env
    assert "not exported (noexport) (user alice)" in syslog.take()[0]


@pytest.mark.parametrize(
    ("mode", "why"),
    [
        ("garbage", "bad helper response (N bytes): response does not start with SLURMJWT/1"),
        ("badchars", "token has a character outside [A-Za-z0-9_.-]"),
        ("half", "reading from helper: connection closed after 40 bytes"),
        ("oversized", "helper response has no newline within 1024 bytes"),
        ("twolines", "data after the newline"),
        ("close", "no token: sending to helper: |no token: reading from helper: "),
        ("backend", "no token: helper said backend: scontrol token failed."),
        ("expired", "that expired at"),
    ],
)
def test_bad_answers_open_the_session_without_a_token(
    mode: str,
    why: str,
    helper: FakeHelper,
    work: Path,
    test_users: dict[str, User],
    syslog: Syslog,
) -> None:
    helper.mode = mode
    syslog.take()
    s = open_session(f"socket={helper.path} refresh=none", "alice", work)
    assert s.rc == 0 and "SLURM_JWT" not in s.env
    lines = syslog.take()
    if mode == "garbage":
        why = why.replace("N", str(len(helper.answer() or b"")))
    assert len(lines) == 1, lines
    assert any(w in lines[0] for w in why.split("|")), lines[0]
    assert lines[0].endswith("(user alice)"), lines[0]
    assert lines[0].startswith(f"<{10 * 8 + 3}>")  # LOG_AUTHPRIV | LOG_ERR
    assert helper.token not in lines[0]


@pytest.mark.parametrize("mode", ["hang", "half-hang"])
def test_hung_helper_costs_at_most_the_timeout(
    mode: str, helper: FakeHelper, work: Path, test_users: dict[str, User], syslog: Syslog
) -> None:
    helper.mode = mode
    syslog.take()
    s = open_session(f"socket={helper.path} timeout=700 refresh=none", "alice", work)
    assert s.rc == 0 and "SLURM_JWT" not in s.env
    assert 0.65 <= s.elapsed < 0.7 + SLACK, s.elapsed
    lines = syslog.take()
    assert len(lines) == 1 and "reading from helper: timed out" in lines[0], lines


def test_missing_socket_returns_at_once(
    work: Path, test_users: dict[str, User], syslog: Syslog
) -> None:
    syslog.take()
    s = open_session(f"socket={work}/absent.sock", "alice", work)
    assert s.rc == 0 and "SLURM_JWT" not in s.env
    assert s.elapsed < 0.2, s.elapsed  # default timeout is 2 s: it did not wait
    (line,) = syslog.take()
    assert f'cannot connect to helper "{work}/absent.sock": No such file or directory' in line
    # A stale socket (helper died) is refused at once too.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(work / "stale.sock"))
    stale.close()
    s = open_session(f"socket={work}/stale.sock", "alice", work)
    assert s.rc == 0 and s.elapsed < 0.2
    assert "Connection refused" in syslog.take()[0]


def test_module_alone_in_the_stack_still_opens_the_session(
    work: Path, test_users: dict[str, User]
) -> None:
    # The only session module, helper absent: PAM_IGNORE would fail this.
    s = open_session(f"socket={work}/absent.sock", "alice", work)
    assert s.rc == 0


def test_users_below_minuid_are_skipped_without_asking(
    helper: FakeHelper, work: Path, test_users: dict[str, User], syslog: Syslog
) -> None:
    syslog.take()
    s = open_session(f"socket={helper.path} refresh=none", "sysjwt", work)
    assert s.rc == 0 and "SLURM_JWT" not in s.env and helper.connections == 0
    assert syslog.take() == []  # silent unless debug
    s = open_session(f"socket={helper.path} refresh=none minuid=60000 debug", "alice", work)
    assert s.rc == 0 and helper.connections == 0
    uid = test_users["alice"].uid
    lines = syslog.take()
    assert any(f"skipped: uid {uid} is below minuid=60000 (user alice)" in x for x in lines)
    # With minuid=0 the helper is asked, and its refusal is only a debug line.
    helper.mode = "denied"
    s = open_session(f"socket={helper.path} refresh=none minuid=0", "sysjwt", work)
    assert s.rc == 0 and "SLURM_JWT" not in s.env
    assert helper.requests == [b"SLURMJWT/1 TOKEN sysjwt -\n"]
    assert syslog.take() == []
    helper.mode = "no-user"
    open_session(f"socket={helper.path} refresh=none minuid=0 debug", "sysjwt", work)
    (line,) = syslog.take()
    assert line.startswith(f"<{10 * 8 + 7}>") and "helper said no-user" in line


def test_bad_and_unknown_arguments_are_logged_and_ignored(
    helper: FakeHelper, work: Path, test_users: dict[str, User], syslog: Syslog
) -> None:
    syslog.take()
    s = open_session(f"socket={helper.path} refresh=none frobnicate timeout=abc", "alice", work)
    assert s.rc == 0 and s.env.get("SLURM_JWT") == helper.token
    lines = syslog.take()
    assert 'ignoring unknown argument "frobnicate" (user alice)' in lines[0]
    assert 'ignoring bad argument "timeout=abc"' in lines[1]
    s = open_session("socket=relative.sock refresh=none", "alice", work)
    assert s.rc == 0 and "SLURM_JWT" not in s.env
    assert 'socket= "relative.sock" is not an absolute path' in syslog.take()[0]


# ---- the cache hand-off ----------------------------------------------------

REFRESH_SCRIPT = """#!/bin/sh
# Test double for slurmjwt-refresh: records who ran it, how, and its stdin.
out=@OUT@
ls -l /proc/$$/fd > "$out/fds"
echo NOISE-ON-STDOUT
echo NOISE-ON-STDERR >&2
cat > "$out/stdin"
{
  echo "uid=$(id -u)"
  echo "nice=$(cut -d' ' -f19 /proc/$$/stat)"
  echo "gid=$(id -g)"
  echo "groups=$(id -G)"
  for a in "$0" "$@"; do echo "arg=$a"; done
  env | sed 's/^/env=/'
} > "$out/record.tmp"
mv "$out/record.tmp" "$out/record"
"""


@pytest.fixture
def refresh(work: Path, test_users: dict[str, User]) -> tuple[Path, Path]:
    """Return (script, outdir): a root-owned 0755 recorder and where it writes."""
    out = work / "out"
    out.mkdir()
    os.chown(out, test_users["alice"].uid, test_users["alice"].gid)
    bindir = work / "bin"
    bindir.mkdir(mode=0o755)
    script = bindir / "slurmjwt-refresh"
    script.write_text(REFRESH_SCRIPT.replace("@OUT@", str(out)))
    script.chmod(0o755)
    return script, out


def wait_for(path: Path, seconds: float = 10) -> bool:
    """Poll for a file; return whether it appeared before the deadline."""
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_refresh_runs_as_the_user_with_the_token_on_stdin_only(
    helper: FakeHelper,
    work: Path,
    refresh: tuple[Path, Path],
    test_users: dict[str, User],
    syslog: Syslog,
) -> None:
    script, out = refresh
    alice = test_users["alice"]
    syslog.take()
    s = open_session(
        f"socket={helper.path} refresh={script}",
        "alice",
        work,
        putenv=("XDG_RUNTIME_DIR=/run/user/1001",),
    )
    assert s.rc == 0 and s.env.get("SLURM_JWT") == helper.token
    assert wait_for(out / "record")
    record = (out / "record").read_text().splitlines()
    assert f"uid={alice.uid}" in record and f"gid={alice.gid}" in record
    assert "nice=10" in record  # background work: the login keeps the CPU
    assert "groups=" + " ".join(str(g) for g in os.getgrouplist("alice", alice.gid)) in record
    assert [x for x in record if x.startswith("arg=")] == [f"arg={script}", "arg=--store-stdin"]
    assert helper.token not in "\n".join(x for x in record if x.startswith("arg="))
    env = dict(x[4:].split("=", 1) for x in record if x.startswith("env="))
    assert env.pop("PWD", None) in (None, "/", alice.home, str(ROOT))
    assert env == {
        "PATH": "/usr/bin:/bin",
        "HOME": alice.home,
        "USER": "alice",
        "LOGNAME": "alice",
        "XDG_RUNTIME_DIR": "/run/user/1001",
    }
    assert (out / "stdin").read_bytes() == helper.ok_line(1)
    fds = (out / "fds").read_text()
    assert "leak-canary" not in fds and "socket:" not in fds
    assert "0 -> pipe:" in fds and "1 -> /dev/null" in fds and "2 -> /dev/null" in fds
    assert "NOISE" not in s.output
    assert len(syslog.take()) == 1  # the success line, nothing about the hand-off


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ("group-writable", "group or others may write it; run chmod go-w"),
        ("user-owned", "it is not owned by root; run chown root"),
        ("dir-writable", "its directory is not root-owned and writable by root only"),
        ("relative", "is not an absolute path"),
        ("missing", "cannot stat"),
        ("not-executable", "no cache hand-off: cannot exec"),
    ],
)
def test_unsafe_refresh_program_is_refused(
    change: str,
    why: str,
    helper: FakeHelper,
    work: Path,
    refresh: tuple[Path, Path],
    test_users: dict[str, User],
    syslog: Syslog,
) -> None:
    script, out = refresh
    arg = str(script)
    if change == "group-writable":
        script.chmod(0o775)
    elif change == "user-owned":
        os.chown(script, test_users["alice"].uid, 0)
    elif change == "dir-writable":
        script.parent.chmod(0o777)
    elif change == "not-executable":
        script.chmod(0o744)  # acceptable to the checks, but alice cannot run it
        why += f' "{script}": Permission denied'
    elif change == "relative":
        arg = "bin/slurmjwt-refresh"
    else:
        arg = str(script) + ".absent"
    syslog.take()
    s = open_session(f"socket={helper.path} refresh={arg}", "alice", work)
    # The token still reaches the session; only the hand-off is refused.
    assert s.rc == 0 and s.env.get("SLURM_JWT") == helper.token
    lines = syslog.take()
    assert any(why in x and x.endswith("(user alice)") for x in lines), lines
    # The module waits for the exec before returning, so a run would be
    # under way by now; give a wrongly started script ample time to record.
    assert not wait_for(out / "record", seconds=1)


# ---- memory errors, under valgrind ------------------------------------------


# pamtester keeps SIGPIPE's default action (Python ignores it): "close" also
# proves that a helper hanging up cannot kill the calling process.
@pytest.mark.parametrize(
    "mode", ["good", "garbage", "half", "oversized", "hang", "denied", "close"]
)
def test_no_memory_errors_under_valgrind(
    mode: str,
    helper: FakeHelper,
    work: Path,
    refresh: tuple[Path, Path],
    test_users: dict[str, User],
) -> None:
    if shutil.which("valgrind") is None or shutil.which("pamtester") is None:
        pytest.skip("needs valgrind and pamtester")
    helper.mode = mode
    script, out = refresh
    args = f"socket={helper.path} timeout=1000 refresh={script} debug"
    with pam_service([f"session optional {MODULE} {args}"]) as service:
        proc = subprocess.run(
            [
                "valgrind",
                "--error-exitcode=99",
                "--leak-check=full",
                "--errors-for-leak-kinds=definite",
                "--child-silent-after-fork=yes",
                "pamtester",
                service,
                "alice",
                "open_session",
                "close_session",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr
    assert "ERROR SUMMARY: 0 errors" in proc.stderr
    if mode == "good":
        assert wait_for(out / "record")


# ---- through sshd -----------------------------------------------------------


@pytest.fixture
def sshd_stack(helper: FakeHelper) -> list[str]:
    """Return the session lines of a private sshd PAM stack with the module."""
    return [
        "session required pam_unix.so",
        f"session optional {MODULE} socket={helper.path} timeout=700 refresh=none",
    ]


def test_ssh_command_gets_the_token(
    helper: FakeHelper, sshd_stack: list[str], test_users: dict[str, User]
) -> None:
    with running_sshd(sshd_stack, test_users.values()) as sshd:
        result = sshd.ssh("alice", "printenv SLURM_JWT")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == helper.token
        helper.mode = "noexport"
        result = sshd.ssh("bob", "printenv SLURM_JWT || echo unset")
        assert (result.returncode, result.stdout.strip()) == (0, "unset")


@pytest.mark.parametrize("mode", ["hang", "absent"])
def test_ssh_login_succeeds_in_bounded_time_without_a_helper(
    mode: str, helper: FakeHelper, sshd_stack: list[str], test_users: dict[str, User]
) -> None:
    helper.mode = mode if mode != "absent" else "good"
    if mode == "absent":
        sshd_stack[-1] = sshd_stack[-1].replace(helper.path, helper.path + ".absent")
    with running_sshd(sshd_stack, test_users.values()) as sshd:
        t0 = time.monotonic()
        result = sshd.ssh("alice", "printenv SLURM_JWT || echo unset")
        elapsed = time.monotonic() - t0
    assert (result.returncode, result.stdout.strip()) == (0, "unset"), result.stderr
    # A login alone takes about 0.25 s here; the helper may add timeout= once.
    assert elapsed < 0.7 + SSH_SLACK, elapsed
