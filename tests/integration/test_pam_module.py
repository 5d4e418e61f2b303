"""pam_slurmjwt.so run by the real libpam (and by sshd) against a fake helper.

The fake helper is a unix socket server speaking docs/internals.md, version 2,
with one misbehaviour per mode: it stands in for slurmjwt-helper so that the
module's client logic (deadlines, strict parsing, the checks on the token,
fail-open) can be proven on every bad answer. PAM itself is never mocked: a
private service file in /etc/pam.d is run by python3-pam (in a subprocess,
which returns the PAM environment), by pamtester under valgrind, and by sshd.
The cache the module writes as the user is read back with pam_slurmjwt.cache.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pam_slurmjwt.cache import Entry, format_lines, parse_line
from tests.integration.fixtures.login import cache_base
from tests.integration.fixtures.sshd import running_sshd
from tests.integration.fixtures.users import TestUser as User

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "build" / "c" / "pam_slurmjwt.so"
PYTHON = sys.executable
SLACK = 0.5  # seconds allowed beyond timeout= for process and scheduling noise
SSH_SLACK = 2.0  # seconds allowed for a whole ssh login besides the module
KID = "kid-fake_1"
# This build's sshd_path= default, sshd's compiled-in PATH on Debian
# (openssh's debian/rules --with-default-path).
DEBIAN_SSHD_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/games"

# Runs one PAM session in a fresh process and prints what happened as JSON.
# A subprocess, so that the module's fork and its blocking calls happen in a
# process of their own, as they would in sshd, and the fake helper's thread
# in pytest keeps running while the module waits on it.
DRIVER = r"""
import json, sys, time
import PAM
service, user = sys.argv[1:3]
p = PAM.pam()
p.start(service)
p.set_item(PAM.PAM_USER, user)
for kv in sys.argv[3:]:
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


def _part(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def make_token(user: str, exp: int, kid: str = KID) -> str:
    """Return a JWT-shaped token for user (unsigned: the module does not
    verify), different in every call."""
    header = {"alg": "HS256", "kid": kid, "typ": "JWT"}
    claims = {"exp": exp, "iat": exp - 1800, "sun": user, "n": secrets.token_hex(8)}
    sig = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return f"{_part(header)}.{_part(claims)}.{sig}"


# ---- the fake helper ------------------------------------------------------


@dataclass
class FakeHelper:
    """A unix socket server answering each request the way `mode` says; the
    token it grants is for the user named in the request."""

    path: str
    mode: str = "good"
    exp: int = field(default_factory=lambda: int(time.time()) + 1800)
    requests: list[bytes] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    connections: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _held: list[socket.socket] = field(default_factory=list)

    @property
    def token(self) -> str:
        """The last token granted."""
        return self.tokens[-1]

    def ok_line(self, user: str, export: int = 1, sun: str | None = None,
                exp: int | None = None, kid: str = KID) -> bytes:
        token = make_token(sun or user, exp or self.exp, kid)
        self.tokens.append(token)
        return f"SLURMJWT/2 OK {self.exp} {self.exp - 600} {export} {KID} {token}\n".encode()

    def answer(self, user: str) -> bytes | None:
        """Return the bytes to send for the current mode (None: never answer)."""
        mode = self.mode
        if mode in ("good", "noexport"):
            return self.ok_line(user, int(mode == "good"))
        if mode == "otheruser":
            return self.ok_line(user, sun="mallory")
        if mode == "wrongexp":
            return self.ok_line(user, exp=self.exp + 3600)
        if mode == "wrongkid":
            return self.ok_line(user, kid="another-key")
        if mode == "expired":
            self.exp = int(time.time()) - 10
            return self.ok_line(user)
        if mode in ("badchars", "half", "twolines", "v1"):
            line = self.ok_line(user)
            return {"badchars": line.replace(b".", b"$", 1), "half": line[:40],
                    "twolines": line + line,
                    "v1": b"SLURMJWT/1 OK %d 1 %s\n" % (self.exp, self.token.encode())}[mode]
        return {
            "denied": b"SLURMJWT/2 ERR denied system accounts get no token.\n",
            "no-user": b"SLURMJWT/2 ERR no-user no such user.\n",
            "backend": b"SLURMJWT/2 ERR backend scontrol token failed.\n",
            "garbage": b"\x00\xff<html> " + b"x" * 40 + b"\n",
            "oversized": b"SLURMJWT/2 OK 1 1 1 k " + b"a" * 9000 + b"\n",
            "close": b"",
            "hang": None,
            "half-hang": None,
        }[mode]

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
            request = b""
            with contextlib.suppress(OSError):
                request = conn.recv(300)
                self.requests.append(request)
            words = request.split()
            data = self.answer(words[2].decode() if len(words) > 2 else "?")
            if data is None:
                if self.mode == "half-hang":
                    conn.sendall(b"SLURMJWT/2 OK 1700000000 17")
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
    """Capture syslog; needs /dev/log to be free (no syslog daemon here). A
    socket nobody reads, left by a run that was killed, is removed."""
    if os.path.exists("/dev/log"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect("/dev/log")
            except ConnectionRefusedError:
                os.unlink("/dev/log")
            else:
                pytest.skip("/dev/log belongs to a running syslog daemon; cannot capture")
    log = Syslog()
    try:
        yield log
    finally:
        log.close()


# ---- building and running the module --------------------------------------


@pytest.fixture(scope="session")
def module() -> Path:
    """Build build/c/pam_slurmjwt.so with mk/c.mk and return its path."""
    if shutil.which("make") is None or shutil.which("cc") is None:
        pytest.skip("needs make and a C compiler (gcc, libpam0g-dev)")
    subprocess.run(["make", "-s", "-f", "mk/c.mk", "c"], cwd=ROOT, check=True)
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


@pytest.fixture
def runtime(work: Path, test_users: dict[str, User]) -> Path:
    """Return alice's XDG_RUNTIME_DIR for a session: hers, 0700, as logind makes it."""
    path = work / "run-alice"
    path.mkdir(mode=0o700)
    os.chown(path, test_users["alice"].uid, test_users["alice"].gid)
    return path


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


def open_session(args: str, user: str, putenv: tuple[str, ...] = (),
                 wrap: tuple[str, ...] = (), sshd: bool = False) -> Session:
    """Run one PAM session (open and close) with the module given these
    args, in a driver process (run under `wrap`, e.g. strace, if given).
    sshd: as the PAM service "sshd", its stack bind-mounted over
    /etc/pam.d/sshd in a mount namespace that dies with the driver."""
    lines = [f"session optional {MODULE} {args}"]
    with pam_service(lines) as service:
        if sshd:
            wrap = ("unshare", "--mount", "--propagation", "private", "sh", "-c",
                    'mount --bind "$1" /etc/pam.d/sshd && shift && exec "$@"', "sh",
                    f"/etc/pam.d/{service}", *wrap)
            service = "sshd"
        proc = subprocess.run(
            [*wrap, PYTHON, "-c", DRIVER, service, user, *putenv],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", "SLURMJWT_CACHE_DIR": "/tmp/evil", "EVIL": "1"},
        )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.strip().splitlines()
    result = json.loads(out[-1])
    env = dict(kv.split("=", 1) for kv in result["env"])
    noise = "\n".join(out[:-1]) + (proc.stderr if not wrap else "")
    return Session(result["rc"], result["close_rc"], result["elapsed"], env, noise)


# ---- the tests --------------------------------------------------------------

pytestmark = pytest.mark.usefixtures("module")
NO = "nocache wrappers=none"  # the token alone, nothing else the module does


def test_good_answer_puts_slurm_jwt_in_the_pam_environment(
    helper: FakeHelper, test_users: dict[str, User], syslog: Syslog
) -> None:
    syslog.take()
    s = open_session(f"socket={helper.path} {NO}", "alice")
    assert (s.rc, s.close_rc) == (0, 0)
    assert s.env.get("SLURM_JWT") == helper.token
    assert helper.requests == [b"SLURMJWT/2 TOKEN alice -\n"]
    assert s.output == ""  # nothing on the user's terminal
    lines = syslog.take()
    assert len(lines) == 1
    assert (
        f"token fp={fnv1a64(helper.token.encode())} exp={helper.exp} kid={KID} exported "
        f"(user alice)" in lines[0]
    )
    assert lines[0].startswith(f"<{10 * 8 + 6}>")  # LOG_AUTHPRIV | LOG_INFO
    assert helper.token not in "".join(lines)
    assert helper.token[-20:] not in "".join(lines)


def test_export_0_and_noexport_keep_slurm_jwt_out(
    helper: FakeHelper, test_users: dict[str, User], syslog: Syslog
) -> None:
    helper.mode = "noexport"
    s = open_session(f"socket={helper.path} {NO}", "alice")
    assert s.rc == 0 and "SLURM_JWT" not in s.env
    assert "not exported (helper policy) (user alice)" in syslog.take()[0]
    helper.mode = "good"
    s = open_session(f"socket={helper.path} {NO} noexport", "alice")
    assert s.rc == 0 and "SLURM_JWT" not in s.env
    assert "not exported (noexport) (user alice)" in syslog.take()[0]


@pytest.mark.parametrize(
    ("mode", "why"),
    [
        ("garbage", "bad helper response (N bytes): response does not start with SLURMJWT/2"),
        ("v1", "the helper speaks another protocol version; restart slurmjwt-helper"),
        ("badchars", "token has a character outside [A-Za-z0-9_.-]"),
        ("half", "reading from helper: connection closed after 40 bytes"),
        ("oversized", "helper response has no newline within 8192 bytes"),
        ("twolines", "data after the newline"),
        ("close", "no token: sending to helper: |no token: reading from helper: "),
        ("backend", "no token: helper said backend: scontrol token failed."),
        ("expired", "that expired at"),
        ("otheruser", "refusing token fp=|from the helper: the token is for another user"),
        ("wrongexp", "the token's exp is not the one announced"),
        ("wrongkid", "the token's kid is not the one announced"),
    ],
)
def test_bad_answers_open_the_session_without_a_token(
    mode: str, why: str, helper: FakeHelper, test_users: dict[str, User], syslog: Syslog
) -> None:
    helper.mode = mode
    syslog.take()
    s = open_session(f"socket={helper.path} {NO}", "alice")
    assert s.rc == 0 and "SLURM_JWT" not in s.env
    lines = syslog.take()
    if mode == "garbage":
        why = why.replace("N", str(len(helper.answer("alice") or b"")))
    assert len(lines) == 1, lines
    assert all(w in lines[0] for w in why.split("|")) if mode == "otheruser" else \
        any(w in lines[0] for w in why.split("|")), lines[0]
    assert lines[0].endswith("(user alice)"), lines[0]
    assert lines[0].startswith(f"<{10 * 8 + 3}>")  # LOG_AUTHPRIV | LOG_ERR
    for token in helper.tokens:
        assert token not in lines[0] and token.rpartition(".")[2] not in lines[0]


@pytest.mark.parametrize("mode", ["hang", "half-hang"])
def test_hung_helper_costs_at_most_the_timeout(
    mode: str, helper: FakeHelper, test_users: dict[str, User], syslog: Syslog
) -> None:
    helper.mode = mode
    syslog.take()
    s = open_session(f"socket={helper.path} timeout=700 {NO}", "alice")
    assert s.rc == 0 and "SLURM_JWT" not in s.env
    assert 0.65 <= s.elapsed < 0.7 + SLACK, s.elapsed
    lines = syslog.take()
    assert len(lines) == 1 and "reading from helper: timed out" in lines[0], lines


@pytest.mark.parametrize("value", ["0", "60001", "2160000000", "99999999999999999999"])
def test_a_timeout_out_of_range_is_logged_and_the_default_bounds_the_login(
    value: str, helper: FakeHelper, test_users: dict[str, User], syslog: Syslog
) -> None:
    # 1 to 60000 ms, as HelperTimeout's 60 s: 25 days (2160000000) once
    # overflowed the client's poll(). Fail open: one line, the default 2 s.
    helper.mode = "hang"
    syslog.take()
    s = open_session(f"socket={helper.path} timeout={value} {NO}", "alice")
    assert s.rc == 0 and "SLURM_JWT" not in s.env
    assert 1.95 <= s.elapsed < 2 + SLACK, s.elapsed
    lines = syslog.take()
    assert f'ignoring bad argument "timeout={value}"; see pam_slurmjwt(8) (user alice)' \
        in lines[0], lines
    assert "reading from helper: timed out" in lines[1], lines


def test_missing_socket_returns_at_once(
    work: Path, test_users: dict[str, User], syslog: Syslog
) -> None:
    syslog.take()
    s = open_session(f"socket={work}/absent.sock {NO}", "alice")
    assert s.rc == 0 and "SLURM_JWT" not in s.env
    assert s.elapsed < 0.2, s.elapsed  # default timeout is 2 s: it did not wait
    (line,) = syslog.take()
    assert f'cannot connect to helper "{work}/absent.sock": No such file or directory' in line
    # A stale socket (helper died) is refused at once too.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(work / "stale.sock"))
    stale.close()
    s = open_session(f"socket={work}/stale.sock {NO}", "alice")
    assert s.rc == 0 and s.elapsed < 0.2
    assert "Connection refused" in syslog.take()[0]


def test_an_answer_from_a_socket_another_user_set_up_is_refused(
    work: Path, test_users: dict[str, User], syslog: Syslog
) -> None:
    # bob managed to listen where the module asks (a HelperSocket path in a
    # directory he may write): whatever he answers, it is not a helper's.
    squat = Path(tempfile.mkdtemp(prefix="slurmjwt-squat-"))
    squat.chmod(0o777)
    bob = test_users["bob"]
    path = squat / "helper.sock"
    pid = os.fork()
    if pid == 0:
        try:
            os.setgid(bob.gid)
            os.setuid(bob.uid)
            with socket.socket(socket.AF_UNIX) as srv:
                os.umask(0)
                srv.bind(str(path))
                srv.listen(1)
                conn, _ = srv.accept()
                conn.recv(300)
                conn.sendall(f"SLURMJWT/2 OK 9999999999 9999999000 1 {KID} "
                             f"{make_token('alice', 9999999999)}\n".encode())
                conn.close()
        finally:
            os._exit(0)
    try:
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        syslog.take()
        s = open_session(f"socket={path} {NO}", "alice")
        assert s.rc == 0 and "SLURM_JWT" not in s.env
        (line,) = syslog.take()
        assert f"the helper socket {path} is served by uid {bob.uid}, not root" in line
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        shutil.rmtree(squat)


def test_module_alone_in_the_stack_still_opens_the_session(
    work: Path, test_users: dict[str, User]
) -> None:
    # The only session module, helper absent: PAM_IGNORE would fail this.
    s = open_session(f"socket={work}/absent.sock", "alice")
    assert s.rc == 0


def test_users_below_minuid_are_skipped_without_asking(
    helper: FakeHelper, test_users: dict[str, User], syslog: Syslog
) -> None:
    syslog.take()
    s = open_session(f"socket={helper.path} nocache", "sysjwt")
    assert s.rc == 0 and "SLURM_JWT" not in s.env and helper.connections == 0
    assert "PATH" not in s.env  # nothing at all for them
    assert syslog.take() == []  # silent unless debug
    s = open_session(f"socket={helper.path} {NO} minuid=60000 debug", "alice")
    assert s.rc == 0 and helper.connections == 0
    uid = test_users["alice"].uid
    lines = syslog.take()
    assert any(f"skipped: uid {uid} is below minuid=60000 (user alice)" in x for x in lines)
    # With minuid=0 the helper is asked, and its refusal is only a debug line.
    helper.mode = "denied"
    s = open_session(f"socket={helper.path} {NO} minuid=0", "sysjwt")
    assert s.rc == 0 and "SLURM_JWT" not in s.env
    assert helper.requests == [b"SLURMJWT/2 TOKEN sysjwt -\n"]
    assert syslog.take() == []
    helper.mode = "no-user"
    open_session(f"socket={helper.path} {NO} minuid=0 debug", "sysjwt")
    (line,) = syslog.take()
    assert line.startswith(f"<{10 * 8 + 7}>") and "helper said no-user" in line


def test_bad_and_unknown_arguments_are_logged_and_ignored(
    helper: FakeHelper, test_users: dict[str, User], syslog: Syslog
) -> None:
    syslog.take()
    s = open_session(f"socket={helper.path} {NO} frobnicate timeout=abc", "alice")
    assert s.rc == 0 and s.env.get("SLURM_JWT") == helper.token
    lines = syslog.take()
    assert 'ignoring unknown argument "frobnicate" (user alice)' in lines[0]
    assert 'ignoring bad argument "timeout=abc"' in lines[1]
    s = open_session(f"socket=relative.sock {NO}", "alice")
    assert s.rc == 0 and "SLURM_JWT" not in s.env
    assert 'helper socket "relative.sock" is not an absolute path' in syslog.take()[0]


# ---- PATH: the Slurm command wrappers first ----------------------------------


def wrapper_dir(work: Path, mode: int = 0o755) -> Path:
    path = work / "wrappers"
    path.mkdir(exist_ok=True)
    path.chmod(mode)
    return path


def test_wrappers_go_first_on_path(
    helper: FakeHelper, work: Path, test_users: dict[str, User], syslog: Syslog
) -> None:
    wrappers = wrapper_dir(work)
    args = f"socket={helper.path} nocache wrappers={wrappers}"
    # No PATH in the PAM environment of a service other than sshd (su,
    # login, cron...): none is made (the application's own PATH, which it
    # sets later and PAM's would replace, stays).
    syslog.take()
    s = open_session(f"{args} debug", "alice")
    assert "PATH" not in s.env and s.env["SLURM_JWT"] == helper.token
    assert any(f'no PATH in the PAM environment: the application\'s stays, without '
               f'"{wrappers}" (user alice)' in x for x in syslog.take())
    # One that pam_env set: the wrappers go in front of it.
    s = open_session(args, "alice", putenv=("PATH=/opt/site/bin:/usr/bin",))
    assert s.env["PATH"] == f"{wrappers}:/opt/site/bin:/usr/bin"
    # Already there: left as it is.
    s = open_session(args, "alice", putenv=(f"PATH=/usr/bin:{wrappers}",))
    assert s.env["PATH"] == f"/usr/bin:{wrappers}"
    # Even with the helper down: the wrappers will ask it later themselves.
    s = open_session(f"socket={work}/absent.sock nocache wrappers={wrappers}", "alice",
                     putenv=("PATH=/usr/bin",))
    assert s.env["PATH"] == f"{wrappers}:/usr/bin" and "SLURM_JWT" not in s.env
    s = open_session(f"socket={helper.path} nocache wrappers=none", "alice",
                     putenv=("PATH=/usr/bin",))
    assert s.env["PATH"] == "/usr/bin"


def test_sshd_sessions_without_a_pam_path_get_the_wrappers_before_sshds_path(
    helper: FakeHelper, work: Path, test_users: dict[str, User]
) -> None:
    # sshd will set its compiled default (this build's: Debian's here) and
    # then copy the PAM environment over it: the module sets the same with
    # the wrappers in front, so that `ssh host CMD` has them.
    wrappers = wrapper_dir(work)
    args = f"socket={helper.path} nocache wrappers={wrappers}"
    s = open_session(args, "alice", sshd=True)
    assert s.env["PATH"] == f"{wrappers}:{DEBIAN_SSHD_PATH}"
    assert s.env["SLURM_JWT"] == helper.token
    s = open_session(f"{args} sshd_path=/opt/ssh/bin:/usr/bin", "alice", sshd=True)
    assert s.env["PATH"] == f"{wrappers}:/opt/ssh/bin:/usr/bin"
    # A PAM PATH is sshd's anyway: the wrappers go in front of it.
    s = open_session(args, "alice", putenv=("PATH=/opt/site/bin",), sshd=True)
    assert s.env["PATH"] == f"{wrappers}:/opt/site/bin"
    # none: sshd's own stays, without the wrappers.
    s = open_session(f"{args} sshd_path=none", "alice", sshd=True)
    assert "PATH" not in s.env and s.env["SLURM_JWT"] == helper.token
    # root gets sshd's SUPERUSER_PATH, not this one: left alone, even when
    # minuid lets root in.
    s = open_session(f"{args} minuid=0", "root", sshd=True)
    assert "PATH" not in s.env


@pytest.mark.parametrize("change", ["group-writable", "user-owned", "missing", "relative"])
def test_a_wrapper_directory_others_could_change_never_reaches_path(
    change: str, helper: FakeHelper, work: Path, test_users: dict[str, User], syslog: Syslog
) -> None:
    # On everybody's PATH first, a directory someone else could write would
    # run their programs as every user who types squeue.
    wrappers = wrapper_dir(work, 0o775 if change == "group-writable" else 0o755)
    if change == "user-owned":
        os.chown(wrappers, test_users["bob"].uid, 0)
    arg = {"missing": f"{work}/absent", "relative": "wrappers"}.get(change, str(wrappers))
    syslog.take()
    s = open_session(f"socket={helper.path} nocache wrappers={arg}", "alice",
                     putenv=("PATH=/usr/bin",))
    assert s.rc == 0 and s.env["PATH"] == "/usr/bin" and s.env["SLURM_JWT"] == helper.token
    lines = syslog.take()
    assert any(f'wrappers= "{arg}" is not an absolute directory that only root can change'
               in x for x in lines), lines


# ---- the cache, written as the user -----------------------------------------


def test_the_cache_is_written_by_the_user_into_the_runtime_dir(
    helper: FakeHelper, runtime: Path, test_users: dict[str, User], syslog: Syslog
) -> None:
    alice = test_users["alice"]
    syslog.take()
    s = open_session(f"socket={helper.path} wrappers=none", "alice",
                     putenv=(f"XDG_RUNTIME_DIR={runtime}",))
    assert s.rc == 0 and s.env.get("SLURM_JWT") == helper.token
    cache = runtime / "slurmjwt"
    st = cache.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (alice.uid, alice.gid, 0o700)
    for name in ("token", "token.csh", ".clock"):
        st = (cache / name).stat()
        assert (st.st_uid, st.st_mode & 0o7777) == (alice.uid, 0o600), name
    entry = parse_line((cache / "token").read_text())
    assert (entry.token, entry.exp, entry.kid, entry.export) == (helper.token, helper.exp,
                                                                 KID, True)
    assert entry.exp - entry.refresh in (599, 600)
    assert sorted(p.name for p in cache.iterdir()) == [".clock", "token", "token.csh"]
    assert not Path("/tmp/evil").exists()  # the caller's SLURMJWT_CACHE_DIR: never read
    assert len(syslog.take()) == 1  # the success line, nothing about the cache


def test_the_child_is_undumpable_before_it_becomes_the_user(
    helper: FakeHelper, runtime: Path, test_users: dict[str, User]
) -> None:
    # The child is a copy of sshd (host keys in memory) that will belong to
    # the user: PR_SET_DUMPABLE 0 must come before any change of identity,
    # and again after (a credential change resets it to fs.suid_dumpable).
    # Between the two the user could signal it into a core dump: every
    # signal is blocked before the change and stays blocked (it only writes
    # and exits).
    if shutil.which("strace") is None:
        pytest.skip("needs strace")
    trace = runtime.parent / "trace"
    s = open_session(f"socket={helper.path} wrappers=none", "alice",
                     putenv=(f"XDG_RUNTIME_DIR={runtime}",),
                     wrap=("strace", "-f", "-qq", "-o", str(trace), "-e",
                           "trace=prctl,rt_sigprocmask,setgroups,setgid,setuid,mkdir,renameat,"
                           "rename"))
    assert s.rc == 0 and (runtime / "slurmjwt" / "token").exists()
    # "PID call(args)   = 0": the child's calls, spaces folded.
    calls = [line.split(None, 1) for line in trace.read_text().splitlines()
             if " " in line and not line.split(None, 1)[1].startswith(("+++", "---"))]
    pid = next(p for p, c in calls if c.startswith("prctl(PR_SET_DUMPABLE"))
    child = [" ".join(c.split()) for p, c in calls if p == pid and c.startswith(
        ("prctl(PR_SET_DUMPABLE", "rt_sigprocmask(", "setgroups(", "setgid(", "setuid(",
         "mkdir(", "rename"))]
    uid, gid = test_users["alice"].uid, test_users["alice"].gid
    ids = [c for c in child if not c.startswith("rt_sigprocmask(")]
    assert ids[0] == "prctl(PR_SET_DUMPABLE, SUID_DUMP_DISABLE) = 0", ids
    assert ids[1].startswith("setgroups(") and ids[2] == f"setgid({gid}) = 0", ids
    assert ids[3] == f"setuid({uid}) = 0", ids
    assert ids[4] == "setuid(0) = -1 EPERM (Operation not permitted)", ids  # for good
    assert ids[5] == "prctl(PR_SET_DUMPABLE, SUID_DUMP_DISABLE) = 0", ids
    assert [c for c in ids[6:] if c.startswith("rename")], ids  # the writes come after
    # Every signal but the two glibc keeps for itself (SIGKILL and SIGSTOP
    # cannot be) blocked before setgroups, and nothing unblocked after that
    # (the name service may block and restore its own before).
    block = next((i for i, c in enumerate(child)
                  if c.startswith("rt_sigprocmask(SIG_BLOCK, ~[RTMIN RT_1], ")), None)
    assert block is not None and child[block].endswith(" = 0"), child
    assert block < child.index(ids[1]), child
    assert all(c.startswith("rt_sigprocmask(SIG_BLOCK,") for c in child[block:]
               if c.startswith("rt_sigprocmask(")), child


def test_links_in_the_runtime_dir_are_never_followed(
    helper: FakeHelper, runtime: Path, work: Path, test_users: dict[str, User], syslog: Syslog
) -> None:
    target = work / "precious"
    target.mkdir(mode=0o777)
    target.chmod(0o777)
    (runtime / "slurmjwt").symlink_to(target)
    os.chown(runtime / "slurmjwt", test_users["alice"].uid, 0, follow_symlinks=False)
    syslog.take()
    s = open_session(f"socket={helper.path} wrappers=none", "alice",
                     putenv=(f"XDG_RUNTIME_DIR={runtime}",))
    assert s.rc == 0 and s.env.get("SLURM_JWT") == helper.token  # the token still comes
    assert list(target.iterdir()) == []
    lines = syslog.take()
    assert any("token not cached: token cache" in x and "is a symlink or not a directory"
               in x for x in lines), lines


@contextlib.contextmanager
def never_answering_fuse(mountpoint: Path, user: User,
                         allow_other: bool = False) -> Iterator[None]:
    """Mount on `mountpoint` what a user may mount there with fusermount: a
    FUSE file system whose daemon answers INIT and then never answers again,
    so every access to it blocks, and a process killed while it waits cannot
    die until the connection ends. Closing the device ends it. allow_other
    (a user may ask for it where /etc/fuse.conf has user_allow_other) lets
    root in too, to wait like the user."""
    if not os.path.exists("/dev/fuse"):
        pytest.skip("needs /dev/fuse")
    fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    stop = threading.Event()
    requests: list[int] = []

    def serve() -> None:
        import select
        import struct

        while not stop.is_set():
            if not select.select([fd], [], [], 0.05)[0]:
                continue
            try:
                buf = os.read(fd, 1 << 20)
            except OSError as err:
                requests.append(-err.errno)
                return
            _, opcode, unique = struct.unpack_from("<IIQ", buf)
            requests.append(opcode)
            if opcode == 26:  # FUSE_INIT: protocol 7.31, then silence
                out = struct.pack("<IIIIHHIIHHI7I", 7, 31, 0, 0, 0, 0, 4096, 1, 0, 0, 0,
                                  *([0] * 7))
                os.write(fd, struct.pack("<IiQ", 16 + len(out), 0, unique) + out)

    thread = threading.Thread(target=serve, daemon=True)  # read only once mounted
    mounted = False
    try:
        subprocess.run(["mount", "-t", "fuse", "-o",
                        f"fd={fd},rootmode=40000,user_id={user.uid},group_id={user.gid}"
                        + (",allow_other" if allow_other else ""),
                        "slurmjwt-test-hang", str(mountpoint)], check=True, pass_fds=(fd,))
        mounted = True
        thread.start()
        yield
        assert len(requests) > 1, requests  # INIT, then what the child asked and never got
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mountpoint)], check=False)
        stop.set()
        if thread.is_alive():
            thread.join()
        os.close(fd)  # aborts the connection: a child stuck in it dies now


@pytest.mark.parametrize("where", ["cache", "runtime"])
def test_a_directory_that_never_answers_costs_at_most_the_timeout(
    where: str, helper: FakeHelper, runtime: Path, test_users: dict[str, User], syslog: Syslog
) -> None:
    """A user's FUSE mount that never answers, on their cache directory
    ("cache"), or on XDG_RUNTIME_DIR itself and open to root ("runtime",
    which root looks at, whose is it?, before the cache goes there), holds
    the child that writes the cache for ever, even after SIGKILL: the login
    still goes on at the deadline (plus 50 ms to reap a killed child),
    without waiting for it; that look at the runtime directory is the
    child's, never the login's own."""
    mount = runtime
    if where == "cache":
        mount = runtime / "slurmjwt"
        mount.mkdir(mode=0o700)
        os.chown(mount, test_users["alice"].uid, test_users["alice"].gid)
    with (ThreadPoolExecutor(1) as pool,
          never_answering_fuse(mount, test_users["alice"], allow_other=where == "runtime")):
        syslog.take()
        login = pool.submit(open_session, f"socket={helper.path} timeout=700 wrappers=none",
                            "alice", putenv=(f"XDG_RUNTIME_DIR={runtime}",))
        s = login.result(10)  # a login stuck on the mount fails here; the unmount frees it
        assert s.rc == 0 and s.env.get("SLURM_JWT") == helper.token
        assert s.elapsed < 0.7 + 0.05 + SLACK, s.elapsed
        lines = syslog.take()
        assert any("token not cached: writing the cache took longer than the timeout; it "
                   "could not be killed and is left behind" in x for x in lines), lines


def test_a_runtime_dir_of_someone_else_is_not_used(
    helper: FakeHelper, runtime: Path, test_users: dict[str, User], syslog: Syslog
) -> None:
    # XDG_RUNTIME_DIR naming bob's directory: alice's cache must not go there.
    os.chown(runtime, test_users["bob"].uid, test_users["bob"].gid)
    syslog.take()
    s = open_session(f"socket={helper.path} wrappers=none", "alice",
                     putenv=(f"XDG_RUNTIME_DIR={runtime}",))
    assert s.rc == 0 and not (runtime / "slurmjwt").exists()


@pytest.fixture
def fallback(test_users: dict[str, User]) -> Iterator[Path]:
    """Return alice's fallback cache, /run/slurmjwt/users/UID (the parent as
    tmpfiles.d makes it), absent at first and removed afterwards."""
    with cache_base() as base:
        path = base / str(test_users["alice"].uid)
        shutil.rmtree(path, ignore_errors=True)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)


def plant_cache(cache: Path, user: User, sun: str) -> dict[str, bytes]:
    """Leave in `cache`, owned by `user` as the module makes it, a live
    entry of the key in use whose token is for `sun`; return its files."""
    cache.mkdir(mode=0o700)
    os.chown(cache, user.uid, user.gid)
    exp = int(time.time()) + 1800
    with open("/proc/uptime") as fh, open("/proc/sys/kernel/random/boot_id") as bid:
        lines = format_lines(Entry(exp, exp - 600, True, KID, make_token(sun, exp)),
                             time.time(), float(fh.read().split()[0]), bid.read().strip())
    for name, text in zip(("token", "token.csh"), lines):
        (cache / name).write_text(text)
        (cache / name).chmod(0o600)
        os.chown(cache / name, user.uid, user.gid)
    return {p.name: p.read_bytes() for p in cache.iterdir()}


@pytest.mark.parametrize("helper_is", ["refusing", "down"])
@pytest.mark.parametrize("sun", ["previous-owner", "alice"])
def test_a_login_without_a_token_removes_a_fallback_cache_of_another_user(
    helper: FakeHelper, fallback: Path, test_users: dict[str, User], syslog: Syslog,
    helper_is: str, sun: str
) -> None:
    """A uid given to someone else within one boot: the new owner owns the
    fallback directory, so a live token the previous owner left there is
    theirs to read, though no reader uses it. A login that gets no token
    (the helper refuses, or is down) removes it, as the user, within
    timeout=; the user's own entry stays as it is."""
    alice = test_users["alice"]
    before = plant_cache(fallback, alice, sun)
    helper.mode = "denied"
    sock = helper.path if helper_is == "refusing" else helper.path + ".absent"
    syslog.take()
    s = open_session(f"socket={sock} timeout=1000 wrappers=none", "alice")
    assert s.rc == 0 and "SLURM_JWT" not in s.env
    assert s.elapsed < 1.0 + SLACK, s.elapsed
    lines = syslog.take()
    removed = (f"removed a cached token that was not the user's from {fallback} "
               "(user alice)")
    if sun == "alice":
        assert {p.name: p.read_bytes() for p in fallback.iterdir()} == before
        assert not any(removed in x for x in lines), lines
    else:
        assert sorted(p.name for p in fallback.iterdir()) == []
        assert any(removed in x for x in lines), lines
    st = fallback.stat()
    assert (st.st_uid, st.st_mode & 0o7777) == (alice.uid, 0o700)


# ---- memory errors, under valgrind ------------------------------------------


# pamtester keeps SIGPIPE's default action (Python ignores it): "close" also
# proves that a helper hanging up cannot kill the calling process.
@pytest.mark.parametrize(
    "mode", ["good", "garbage", "half", "oversized", "hang", "denied", "close", "otheruser"]
)
def test_no_memory_errors_under_valgrind(
    mode: str, helper: FakeHelper, work: Path, runtime: Path, test_users: dict[str, User]
) -> None:
    if shutil.which("valgrind") is None or shutil.which("pamtester") is None:
        pytest.skip("needs valgrind and pamtester")
    helper.mode = mode
    wrappers = wrapper_dir(work)
    args = f"socket={helper.path} timeout=1000 wrappers={wrappers} debug"
    # pam_env puts XDG_RUNTIME_DIR in the PAM environment, as pam_systemd would.
    conf = work / "pam_env.conf"
    conf.write_text(f"XDG_RUNTIME_DIR DEFAULT={runtime}\n")
    with pam_service([f"session required pam_env.so readenv=0 conffile={conf}",
                      f"session optional {MODULE} {args}"]) as service:
        proc = subprocess.run(
            [
                "valgrind",
                "--error-exitcode=99",
                "--leak-check=full",
                "--errors-for-leak-kinds=definite",
                "--trace-children=no",
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
        assert (runtime / "slurmjwt" / "token").exists()


# ---- through sshd -----------------------------------------------------------


@pytest.fixture
def sshd_stack(helper: FakeHelper) -> list[str]:
    """Return the session lines of a private sshd PAM stack with the module."""
    return [
        "session required pam_unix.so",
        f"session optional {MODULE} socket={helper.path} timeout=700 {NO}",
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
