"""slurmjwt-helper: the small privileged daemon that holds the signing key.

It binds its socket as root (or takes one from systemd), drops to SlurmUser
for good, then reads the key and serves. Callers are identified by the
kernel (SO_PEERCRED) only: uid 0 may ask for any permitted user, everyone
else for themselves. Every grant and refusal is one AUTHPRIV syslog line
with a token fingerprint, never the token.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import pwd
import queue
import resource
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional, TypeVar

from pam_slurmjwt import __version__, metrics, protocol
from pam_slurmjwt.config import Config, export_wanted, load_config, refresh_at
from pam_slurmjwt.errors import ConfigError, MintFailed, Refused, SlurmJwtError
from pam_slurmjwt.limits import LOG_WINDOW, Audit, Rate, Slots
from pam_slurmjwt.log import Log, journal_socket
from pam_slurmjwt.signing import KeyMinter
from pam_slurmjwt.slurmconf import parse_slurm_conf
from pam_slurmjwt.supervisor import DRAIN, State, Supervisor, load_state, request_reload
from pam_slurmjwt.token import Claims, fingerprint

PROG = "slurmjwt-helper"
SD_LISTEN_FDS_START = 3
LINGER = 1.0  # seconds an answered connection waits for the caller to hang up
REFUSAL_LINGER = 0.25  # seconds a refused connection waits for its caller to hang up
LOOKUP_THREADS = 4  # users' name service lookups running at once, per helper process
ROOT_LOOKUP_THREADS = 2  # root's (logins'), on threads and a queue of their own
STUCK_AFTER = 0.05  # seconds a lookup runs before another thread may start beside it
USERS_NICE = 10  # niceness of the workers that serve HelperSocket beside a RootSocket worker
MAX_ABANDONED = 8  # threads per pool left waiting on a lookup past its deadline, at most

_T = TypeVar("_T")


# ----------------------------------------------------------------- state

@dataclass(frozen=True)
class Decision:
    """What a lookup thread worked out for a TOKEN request: for whom, for how
    long, and with the key backend the claims to sign (IdentityClaims' ids
    looked up too). The loop signs them: CPU only, and a hop back to the
    thread would cost more than RS256 signing itself."""

    entry: pwd.struct_passwd
    lifespan: int
    claims: Optional[Claims] = None


def work_out(state: State, uid: int, user: str, lifespan: int) -> Decision:
    """In a lookup thread, off the event loop: every name service lookup of a
    request (the user, the groups, the cap, IdentityClaims' groups); raise
    Refused as the policy does."""
    entry, lifespan = state.policy.decide(uid, user, lifespan)
    if not isinstance(state.minter, KeyMinter):
        return Decision(entry, lifespan)  # scontrol: minted by a task in the loop
    return Decision(entry, lifespan, state.minter.claims_for(entry, lifespan))


# ----------------------------------------------------------------- server

def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """Return (pid, uid, gid) of the peer as the kernel recorded it at connect."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, protocol.PEERCRED.size)
    pid, uid, gid = protocol.PEERCRED.unpack(raw)
    return pid, uid, gid


class Server:
    """The helper's event-loop state: the current State, per-uid limits and
    the throttled audit log.

    Connections are asyncio Protocols, not streams: a request is one short
    line, its lookups done by a thread (Lookups) and its token signed in the
    loop (the key backend signs in microseconds), so there is no task per
    connection, and a staller costs one timer and a slot.
    """

    def __init__(self, state: State, log: Log, recorder: Optional[metrics.Off] = None) -> None:
        self.state = state
        self.log = log
        self.metrics = recorder or metrics.Off()
        self.slots = Slots(state.cfg.max_connections, state.cfg.max_connections_per_user)
        self.rate = Rate(state.cfg.max_requests_per_user)
        self.audit = Audit()
        self.stopping: Optional[asyncio.Event] = None
        # Created per worker, after the fork: threads do not survive one.
        self.lookups = Lookups(LOOKUP_THREADS)
        # Logins never queue behind users' lookups that hang.
        self.root_lookups = Lookups(ROOT_LOOKUP_THREADS)

    def connection(self) -> Connection:
        return Connection(self, root_socket=False)

    def root_connection(self) -> Connection:
        return Connection(self, root_socket=True)

    def admit(self, conn: Connection) -> Optional[tuple[str, str]]:
        """Take a slot for the caller; return None, or the (code, sentence)
        to refuse it with. The root socket serves uid 0 only."""
        if conn.root_socket and conn.uid != 0:
            return "denied", "this socket serves root only"
        if not self.slots.admit(conn.uid):
            return "busy", "too many connections; try again"
        if not self.rate.allow(conn.uid):
            self.slots.release(conn.uid)
            self.metrics.rate_limited()
            return "busy", (f"too many requests from uid {conn.uid}; try again in "
                            f"{self.rate.wait(conn.uid)} s")
        return None

    def release(self, uid: int) -> None:
        self.slots.release(uid)

    def note(self, uid: int, kind: str, write: Callable[..., None], text: str,
             fields: Optional[dict[str, object]] = None) -> None:
        """Log one per-request line with `write` (a Log method), throttled per
        uid (limits.Audit): a user who loops connect/send/close must not
        flood the audit log. Every refusal is counted in the metrics, and so
        is every line the throttle drops; the journal gets `fields` and the
        result (the refusal's code, or grant)."""
        if kind not in ("grant", "ping"):
            self.metrics.refused(kind)
        entry = {"USER_ID": uid, "RESULT": kind, **(fields or {})}
        if not self.audit.line(uid, kind, lambda line: write(line, entry), text):
            self.metrics.audit_dropped()

    def flush_audit(self) -> None:
        for line in self.audit.flush():
            self.log.warning(line)

    def answer(self, conn: Connection, line: bytes) -> None:
        """Given a complete request line, answer it: PING and malformed lines
        at once, TOKEN once the policy's name service lookups are done."""
        who = f"uid={conn.uid} pid={conn.pid}"
        try:
            request = protocol.parse_request(line)
        except protocol.ProtocolError as err:
            self.note(conn.uid, err.code, self.log.warning,
                      f"refuse {who} reason={err.code}: {err}")
            conn.respond(protocol.format_err(err.code, str(err)))
            return
        conn.kind = "ping" if request.command == "PING" else "token"
        if request.command == "PING":
            if self.log.debug_enabled:
                self.note(conn.uid, "ping", self.log.debug, f"ping {who}")
            conn.respond(protocol.format_pong(__version__))
            return
        state = self.state
        # The policy's lookups run in a thread: sssd may block for minutes,
        # and the event loop must keep serving everyone else. Root's (logins)
        # run in threads of their own: a user whose lookups hang cannot keep
        # every thread busy and make logins wait.
        lookups = self.root_lookups if conn.uid == 0 else self.lookups
        asked = time.monotonic()

        def decided(decision: Optional[Decision], error: Optional[BaseException]) -> None:
            # A policy's no is the name service answering; `internal` (a
            # failure or LookupTimeout) and a bug are not.
            failed = error is not None and not (isinstance(error, Refused)
                                                and error.code != "internal")
            self.metrics.looked_up(time.monotonic() - asked, failed)
            self._decided(conn, state, request, decision, error)

        conn.task = lookups.submit(
            work_out, (state, conn.uid, request.user, request.lifespan or state.cfg.lifespan),
            state.cfg.lookup_timeout, decided)

    def _decided(self, conn: Connection, state: State, request: protocol.Request,
                 decision: Optional[Decision], error: Optional[BaseException]) -> None:
        """Given what the thread worked out (or the error it raised), refuse,
        answer with the token it signed, or mint with scontrol in a task."""
        who = f"uid={conn.uid} pid={conn.pid}"
        if isinstance(error, Refused):
            # A name service failure is the site's problem to see; a policy
            # answer is routine.
            self.note(conn.uid, error.code,
                      self.log.error if error.code == "internal" else self.log.notice,
                      f"refuse (user {request.user}) by {who} reason={error.code}: {error}")
            conn.respond(protocol.format_err(error.code, str(error)))
            return
        if error is not None or decision is None:  # a bug: never let it kill the helper
            self.note(conn.uid, "internal", self.log.error,
                      f"refuse (user {request.user}) by {who} reason=internal: "
                      f"{type(error).__name__}")
            conn.respond(protocol.format_err("internal", "internal error; see the helper's log"))
            return
        entry, lifespan = decision.entry, decision.lifespan
        subject = f"(user {entry.pw_name}) uid={entry.pw_uid} by {who}"
        if decision.claims is not None and isinstance(state.minter, KeyMinter):
            try:
                signed = state.minter.sign_claims(decision.claims)
            except MintFailed as err:
                conn.respond(self._failed(conn.uid, subject, err))
                return
            conn.respond(self._granted(conn.uid, entry.pw_uid, state, subject, lifespan, signed))
        else:
            conn.task = asyncio.get_running_loop().create_task(
                self._mint_async(conn, state, subject, entry, lifespan))

    async def _mint_async(self, conn: Connection, state: State, subject: str,
                          entry: pwd.struct_passwd, lifespan: int) -> None:
        try:
            result = await state.minter.mint(entry, lifespan, root=conn.uid == 0)
        except MintFailed as err:
            conn.respond(self._failed(conn.uid, subject, err))
            return
        except Exception as err:  # noqa: BLE001 - never let one request kill the helper
            self.note(conn.uid, "internal", self.log.error,
                      f"refuse {subject} reason=internal: {type(err).__name__}")
            conn.respond(protocol.format_err("internal", "internal error; see the helper's log"))
            return
        conn.respond(self._granted(conn.uid, entry.pw_uid, state, subject, lifespan, result))

    def _failed(self, uid: int, subject: str, err: MintFailed) -> bytes:
        self.note(uid, err.code, self.log.error, f"refuse {subject} reason={err.code}: {err}")
        return protocol.format_err(err.code, str(err))

    def _granted(self, uid: int, target: int, state: State, subject: str, lifespan: int,
                 result: tuple[str, int]) -> bytes:
        token, exp = result
        fp = fingerprint(token)
        # Counted here, whether or not the throttle writes its line.
        self.metrics.granted(state.alg, uid)
        self.note(uid, "grant", self.log.info,
                  f"grant {subject} lifespan={lifespan} exp={exp} backend={state.backend} "
                  f"kid={state.minter.kid} fp={fp}",
                  {"USER_ID": target, "TOKEN_FP": fp, "KID": state.minter.kid})
        grant = protocol.Grant(exp, refresh_at(state.cfg, exp - lifespan, exp),
                               export_wanted(state.cfg), state.minter.kid, token)
        return protocol.format_ok(grant)


class Pending:
    """One lookup in flight: its continuation, and whether it is finished
    (answered, expired, or cancelled because the caller hung up)."""

    __slots__ = ("args", "finished", "fn", "loop", "then", "timer")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...],
                 then: Callable[[Any, Optional[BaseException]], None]) -> None:
        self.fn = fn
        self.args = args
        self.then = then
        self.loop = asyncio.get_running_loop()
        self.finished = False
        self.timer: Optional[asyncio.TimerHandle] = None

    def done(self) -> bool:
        return self.finished

    def cancel(self) -> None:
        self.finish(None, None, call=False)

    def finish(self, result: Any, error: Optional[BaseException], call: bool = True) -> None:
        """In the event loop: run the continuation once, whatever comes first."""
        if self.finished:
            return
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
        if call:
            self.then(result, error)


class Lookups:
    """Daemon threads that run blocking name service lookups for the event
    loop. One thread serves while lookups are quick (a thread hop costs
    tens of microseconds; more threads only fight over the GIL); another
    starts, up to `threads`, when none is free and one has been at its
    lookup for longer than STUCK_AFTER (sssd hung). A lookup not done
    within its timeout is answered Refused("internal") at once; requests
    queued behind are skipped once finished, and daemon threads never keep
    a stopping helper alive.

    A thread whose lookup has outlived its timeout (or its caller) is
    abandoned: it no longer counts against `threads`, and a new thread
    takes its place for the requests queued behind, so a few requests that
    hang cannot leave the next ones without a thread. A glibc call cannot
    be interrupted, so an abandoned thread stays until the directory
    answers, then leaves; at most MAX_ABANDONED of them per pool, beyond
    which requests wait for a thread as before (each is answered at its
    deadline)."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.started = 0  # threads running, abandoned ones included
        self.lock = threading.Lock()
        self.idle = 0
        # thread ident: when its lookup began, and the request it serves
        self.busy: dict[int, tuple[float, Pending]] = {}
        self.queue: queue.SimpleQueue[Pending] = queue.SimpleQueue()

    def submit(self, fn: Callable[..., _T], args: tuple[Any, ...], timeout: float,
               then: Callable[[Optional[_T], Optional[BaseException]], None]) -> Pending:
        """Run fn(*args) in a thread; then, in the event loop, call
        then(result, None) or then(None, error), or after `timeout` seconds
        then(None, Refused("internal")). Return the Pending (cancel() when
        the caller has gone)."""
        pending = Pending(fn, args, then)
        expired = Refused("internal", f"the name service did not answer within {timeout:g} s "
                                      f"(sssd?); try again")
        pending.timer = pending.loop.call_later(timeout, self._expire, pending, expired)
        self.queue.put(pending)
        self._grow()
        return pending

    def _expire(self, pending: Pending, expired: Refused) -> None:
        """In the event loop, at a request's deadline: answer it; if a
        thread was stuck on it, that thread is now abandoned, and a new one
        serves whatever waits in the queue."""
        pending.finish(None, expired)
        if not self.queue.empty():
            self._grow()

    def _grow(self) -> None:
        with self.lock:
            if self.started and (self.idle or not self._stuck()):
                return
            self.started += 1
        threading.Thread(target=self._work, name="nss", daemon=True).start()

    def _stuck(self) -> bool:
        """With the lock held: may another thread start? Yes when one has
        been at its lookup longer than STUCK_AFTER and the pool, abandoned
        threads not counted, is below `threads`, within the hard cap."""
        abandoned = sum(1 for _since, pending in self.busy.values() if pending.finished)
        if (self.started - abandoned >= self.threads
                or self.started >= self.threads + MAX_ABANDONED):
            return False
        now = time.monotonic()
        return any(now - since > STUCK_AFTER for since, _pending in self.busy.values())

    def _work(self) -> None:
        me = threading.get_ident()
        while True:
            with self.lock:
                self.idle += 1
            pending = self.queue.get()
            with self.lock:
                self.idle -= 1
                self.busy[me] = (time.monotonic(), pending)
            if not pending.finished:  # else expired or hung up while queued: skip
                try:
                    outcome: tuple[Any, Optional[BaseException]] = (pending.fn(*pending.args),
                                                                    None)
                except BaseException as err:  # noqa: BLE001 - handed to the continuation
                    outcome = (None, err)
                with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                    pending.loop.call_soon_threadsafe(pending.finish, *outcome)
            with self.lock:
                del self.busy[me]
                if self.started > self.threads:  # a replacement's work is done: shrink back
                    self.started -= 1
                    return


class Connection(asyncio.Protocol):
    """One caller: identified by SO_PEERCRED at accept, one bounded request
    line within ReadTimeout, one answer, then closed."""

    def __init__(self, server: Server, root_socket: bool) -> None:
        self.server = server
        self.root_socket = root_socket
        self.transport: Optional[asyncio.Transport] = None
        self.buf = b""
        self.uid = -1
        self.pid = 0
        self.admitted = False
        self.answered = False
        self.started = time.monotonic()
        self.kind = "invalid"  # until a request parses: token or ping
        self.timer: Optional[asyncio.TimerHandle] = None
        # The work on its request in flight (lookups, then scontrol), if any:
        # cancelled when the caller hangs up.
        self.task: Optional[Pending | asyncio.Task[None]] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        try:
            self.pid, self.uid, _gid = peer_credentials(transport.get_extra_info("socket"))
        except OSError:
            transport.abort()
            self.answered = True
            return
        refusal = self.server.admit(self)
        if refusal is not None:
            # A refusal holds no slot and lingers only briefly: a flood costs
            # us an accept, a write and a descriptor for REFUSAL_LINGER.
            code, sentence = refusal
            self.server.note(self.uid, code, self.server.log.warning,
                             f"refuse uid={self.uid} pid={self.pid} reason={code}: {sentence}")
            _drain(transport)
            self.respond(protocol.format_err(code, sentence), linger=REFUSAL_LINGER)
            return
        self.admitted = True
        timeout = self.server.state.cfg.read_timeout
        self.timer = asyncio.get_running_loop().call_later(timeout, self._timed_out)

    def data_received(self, data: bytes) -> None:
        if self.answered or self.task is not None:
            return  # read and dropped: unread data would turn our close into a reset
        self.buf += data
        newline = self.buf.find(b"\n")
        if 0 <= newline < protocol.MAX_REQUEST:
            self._stop_timer()
            self.server.answer(self, self.buf[:newline + 1])
        elif len(self.buf) >= protocol.MAX_REQUEST:
            self._refuse("too-long", f"request longer than {protocol.MAX_REQUEST} bytes")

    def eof_received(self) -> bool:
        if self.answered:
            self._close()  # the caller has read our answer and hung up
        elif self.task is None:
            self._refuse("bad-request", "request line not terminated")
        else:
            # The caller hung up while we were minting (docs/internals.md:
            # clients never half-close): stop the work, free the slot.
            self.task.cancel()
            self._close()
        return True  # keep the transport open for the answer; respond() closes it

    def _timed_out(self) -> None:
        self.timer = None
        if not self.answered and self.task is None:
            self._refuse("timeout", "no complete request line in time")

    def _refuse(self, code: str, sentence: str) -> None:
        self.server.note(self.uid, code, self.server.log.warning,
                         f"refuse uid={self.uid} pid={self.pid} reason={code}: {sentence}")
        self.respond(protocol.format_err(code, sentence))

    def respond(self, data: bytes, linger: float = 0.0) -> None:
        """Send the one answer and half-close. Closing at once would reset
        the connection if the caller's bytes are still unread (a `busy`
        answer before its request arrived), losing our answer; so we linger
        until the caller hangs up, at most `linger` (default LINGER)
        seconds. The kernel buffer takes 1 KiB at once: a caller that never
        reads cannot hold us."""
        if self.answered or self.transport is None:
            return
        self.answered = True
        self._stop_timer()
        self.server.metrics.answered(self.kind, time.monotonic() - self.started)
        if self.transport.is_closing():
            return
        self.transport.write(data)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.timer = asyncio.get_running_loop().call_later(linger or LINGER, self._close)

    def _close(self) -> None:
        self._stop_timer()
        if self.transport is not None:
            self.transport.close()

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._stop_timer()
        self.answered = True
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.admitted:
            self.admitted = False
            self.server.release(self.uid)


def _drain(transport: asyncio.Transport) -> None:
    """Read and drop what the caller already sent, without waiting, so that
    closing right after a refusal does not reset the connection and lose
    the answer (unread data turns a close into a reset)."""
    try:
        fd = transport.get_extra_info("socket").fileno()
        for _ in range(4):
            if not os.read(fd, protocol.MAX_REQUEST):
                break
    except OSError:
        pass  # nothing there (EAGAIN) or already gone


# ----------------------------------------------------------------- process set-up

@dataclass(frozen=True)
class Listeners:
    """The helper's listening sockets: `users` (HelperSocket, anyone) and
    `root` (RootSocket, root only; None when systemd passed none)."""

    users: Optional[socket.socket]
    root: Optional[socket.socket]

    def users_path(self) -> str:
        name = self.users.getsockname() if self.users is not None else ""
        return name if isinstance(name, str) else ""

    def only(self, role: str) -> Listeners:
        """In a worker: the sockets its role serves ("root": RootSocket only,
        "users": HelperSocket only, "all": both), the others closed here.
        Logins have a process of their own: however hard users flood
        HelperSocket, that process is idle when a login comes, and the
        kernel runs it at once."""
        keep = Listeners(self.users if role in ("users", "all") else None,
                         self.root if role in ("root", "all") else None)
        for sock in (self.users, self.root):
            if sock is not None and sock not in (keep.users, keep.root):
                sock.close()
        return keep


def systemd_sockets() -> Optional[Listeners]:
    """Return the listening sockets systemd passed us, if any (sd_listen_fds),
    told apart by FileDescriptorName= ("root" for the root socket)."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    count = int(os.environ.get("LISTEN_FDS", "0"))
    names = os.environ.get("LISTEN_FDNAMES", "").split(":")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if count < 1:
        return None
    users, root = None, None
    for index in range(count):
        sock = socket.socket(fileno=SD_LISTEN_FDS_START + index)
        os.set_inheritable(sock.fileno(), False)
        if index < len(names) and names[index] == "root":
            root = sock
        else:
            users = users or sock
    if users is None:
        raise ConfigError("systemd passed only the root socket; enable "
                          "slurmjwt-helper.socket too")
    return Listeners(users, root)


def bind_sockets(cfg: Config, users_path: Optional[str]) -> Listeners:
    """Bind HelperSocket (mode 0666: anyone may ask) and RootSocket (0600:
    root only), creating the directories as root; raise ConfigError when a
    path is taken by something else or its directory is not root's alone."""
    users = bind_socket(users_path or cfg.helper_socket, 0o666)
    return Listeners(users, bind_socket(cfg.root_socket, 0o600))


def bind_socket(path: str, mode: int) -> socket.socket:
    """Create the socket directory (as root) and bind a fresh socket at
    path with `mode`; raise ConfigError when the path is taken by something
    else or the directory may be changed by others."""
    directory = os.path.dirname(path)
    if os.geteuid() == 0:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        if directory == "/run/slurmjwt":
            make_fallback_base(os.path.join(directory, "users"))
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise ConfigError(f'cannot bind "{path}": something else is there; remove it')
        os.unlink(path)  # a stale socket from a previous run
    st = os.stat(directory)
    # Sticky or not: a directory others may write is one where they could
    # have put the socket path in place first.
    if st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
        raise ConfigError(f'cannot bind "{path}": its directory "{directory}" may be changed '
                          f"by others; use a directory owned by root, e.g. /run/slurmjwt")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    # The mode comes from the umask at bind time: no chmod by path that a
    # swapped link could redirect. SO_PEERCRED says who asked.
    old_umask = os.umask(0o777 & ~mode)
    try:
        sock.bind(path)
    except OSError as err:
        raise ConfigError(f'cannot bind "{path}": {err.strerror}') from None
    finally:
        os.umask(old_umask)
    sock.listen(1024)
    return sock


def make_fallback_base(path: str) -> None:
    """As root: the cache fallback's parent, root's and 0711 (users may reach
    their own entry, nobody may list the others); pam_slurmjwt.so makes each
    user's entry, so no user can claim (squat) another's."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o711)
    fd = _open_dir(path)
    try:
        if os.fstat(fd).st_uid == 0:
            os.fchmod(fd, 0o711)
    finally:
        os.close(fd)


def make_key_dir(path: str, owner: str) -> None:
    """As root, before the drop: the directory where the helper, as
    SlurmUser, publishes its key id (0755, SlurmUser's); raise ConfigError
    when something else is there."""
    try:
        entry = pwd.getpwnam(owner)
    except KeyError:
        raise ConfigError(f"SlurmUser {owner!r} does not exist") from None
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o755)
    try:
        fd = _open_dir(path)
    except OSError:
        raise ConfigError(f'cannot use "{path}" for the key id: not a directory; '
                          f"remove it") from None
    try:
        if os.fstat(fd).st_uid not in (0, entry.pw_uid):
            raise ConfigError(f'cannot use "{path}" for the key id: owned by uid '
                              f"{os.fstat(fd).st_uid}, not root or {owner}; remove it")
        os.fchown(fd, entry.pw_uid, entry.pw_gid)
        os.fchmod(fd, 0o755)
    finally:
        os.close(fd)


def _open_dir(path: str) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def drop_privileges(user: str, log: Log) -> None:
    """As root, become `user` for good; raise ConfigError if that fails."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"SlurmUser {user!r} does not exist") from None
    if entry.pw_uid == 0:
        log.warning("SlurmUser is root: the helper keeps running as root")
        return
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise ConfigError("could still regain root after dropping privileges; refusing to run")


def make_undumpable() -> None:
    """The key is in our memory: no core dumps, no ptrace by same-uid
    processes; raise ConfigError if the kernel will not have it."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    pr_set_dumpable = 4
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_dumpable, 0, 0, 0, 0) != 0:
        raise ConfigError(f"cannot make the helper non-dumpable: "
                          f"{os.strerror(ctypes.get_errno())}; refusing to hold the key")


def raise_fd_limit(log: Log, cfg: Config) -> None:
    """Use every descriptor we may: a flood must hit MaxConnections, not EMFILE."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    need = 2 * cfg.max_connections + 64
    if hard < need:
        log.warning(f"only {hard} file descriptors for MaxConnections={cfg.max_connections}; "
                    f"raise LimitNOFILE or lower MaxConnections")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Mint Slurm JWTs for local users over a unix socket.")
    parser.add_argument("-c", "--config", help="slurmjwt.conf to use "
                        "(default /etc/slurm/slurmjwt.conf)")
    parser.add_argument("-s", "--socket", help="socket path (overrides HelperSocket)")
    parser.add_argument("--stderr", action="store_true",
                        help="also log to stderr (syslog is always used)")
    parser.add_argument("-d", "--debug", action="store_true", help="log debug lines")
    parser.add_argument("--check", action="store_true",
                        help="check configuration and key, then exit")
    parser.add_argument("--reload", type=int, metavar="PID",
                        help="make the helper with this process id reload, and exit 0 only "
                             "when it did (systemd's ExecReload)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def run(args: argparse.Namespace) -> int:
    if args.reload is not None:
        try:
            socket_path = args.socket or load_config(args.config).helper_socket
        except ConfigError:
            # The helper will refuse the same file and say why in its verdict,
            # which is beside the default socket unless the file moved it.
            socket_path = Config().helper_socket
        request_reload(args.reload, protocol.key_dir(socket_path))
        return 0
    log = Log(PROG, use_syslog=True, use_stderr=args.stderr or args.check, debug=args.debug,
              journal=journal_socket())
    cfg = load_config(args.config)
    for warning in cfg.warnings:
        log.warning(warning)
    slurm = parse_slurm_conf(cfg.slurm_conf_path())
    listeners = None
    keys = None
    if not args.check:
        listeners = systemd_sockets() or bind_sockets(cfg, args.socket)
        keys = protocol.key_dir(listeners.users_path() or args.socket or cfg.helper_socket)
        if os.geteuid() == 0:
            make_key_dir(keys, slurm.slurm_user)
    if os.geteuid() == 0:
        drop_privileges(slurm.slurm_user, log)
    make_undumpable()
    raise_fd_limit(log, cfg)
    state = load_state(args.config)  # the key is read only after the drop
    if args.check or listeners is None or keys is None:
        log.info(f"configuration OK (backend={state.backend}, kid={state.minter.kid})")
        return 0
    log.set_debug(state.cfg.debug)
    log.debug(f"debug on; backend={state.backend}")
    try:
        counters: Optional[str] = metrics.prepare(keys)
    except OSError as err:
        log.error(f'cannot keep metrics in "{keys}/{metrics.DIR_NAME}": {err.strerror}')
        counters = None

    def work(state: State, role: str, exporter: metrics.Exporter) -> None:
        mine = listeners.only(role)
        if role == "metrics":
            metrics.serve(metrics.registry(state.minter.kid, state.alg, state.key_mtime),
                          exporter.tcp, exporter.local)
            return
        for sock in (exporter.tcp, exporter.local):
            if sock is not None:
                sock.close()
        if role == "users":
            # Under a flood, the CPU goes to logins (the RootSocket worker,
            # sshd) first: the flood costs the flooder.
            os.nice(USERS_NICE)
        asyncio.run(serve(Server(state, log, exporter.recorder), mine))

    return Supervisor(state, log, args.config, work, keys,
                      root_worker=listeners.root is not None,
                      exporter=metrics.Exporter(keys, counters)).run()


async def serve(server: Server, listeners: Listeners) -> None:
    """Serve until SIGTERM or SIGINT (a reload is the supervisor's: it
    replaces the workers), then finish the requests in flight, for at most
    DRAIN seconds. Each socket has its own accept queue: users crowding
    HelperSocket never delay RootSocket."""
    loop = asyncio.get_running_loop()
    server.stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, server.stopping.set)
    loop.add_signal_handler(signal.SIGINT, server.stopping.set)
    servers = []
    if listeners.users is not None:
        servers.append(await loop.create_unix_server(server.connection, sock=listeners.users))
    if listeners.root is not None:
        servers.append(await loop.create_unix_server(server.root_connection,
                                                     sock=listeners.root))

    def flush() -> None:
        server.flush_audit()
        loop.call_later(LOG_WINDOW, flush)

    loop.call_later(LOG_WINDOW, flush)

    def count() -> None:
        server.metrics.flush()
        loop.call_later(metrics.FLUSH, count)

    loop.call_later(metrics.FLUSH, count)
    server.log.notice(f"serving as uid {os.getuid()} (backend={server.state.backend}, "
                      f"kid={server.state.minter.kid}, version {__version__})")
    await server.stopping.wait()
    deadline = loop.time() + DRAIN
    # Stop accepting first, and close the servers only once every connection
    # already accepted has its transport: asyncio makes it in a task of its
    # own a few turns of the loop later, and drops the connection (a reset,
    # the caller's request lost) when its server has closed by then.
    for sock in (listeners.users, listeners.root):
        if sock is not None:
            loop.remove_reader(sock.fileno())
    current = asyncio.current_task()
    pending = [task for task in asyncio.all_tasks() if task is not current]
    if pending:
        await asyncio.wait(pending, timeout=DRAIN)
    for listener in servers:
        listener.close()
    while server.slots.held and loop.time() < deadline:
        await asyncio.sleep(0.01)
    server.flush_audit()
    server.metrics.flush()
    server.log.notice("stopping")


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except SlurmJwtError as err:
        Log(PROG, use_syslog=True, use_stderr=True).error(str(err))
        return err.exit_code
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
