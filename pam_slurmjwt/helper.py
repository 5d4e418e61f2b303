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
import resource
import signal
import socket
import stat
import struct
import sys
import time
from dataclasses import dataclass
from typing import Optional

from pam_slurmjwt import __version__, protocol
from pam_slurmjwt.config import Config, export_wanted, load_config
from pam_slurmjwt.errors import ConfigError, MintFailed, Refused, SlurmJwtError
from pam_slurmjwt.log import Log
from pam_slurmjwt.policy import Policy
from pam_slurmjwt.signing import KeyMinter, Minter, make_minter
from pam_slurmjwt.slurmconf import SlurmConf, parse_slurm_conf
from pam_slurmjwt.token import fingerprint

PROG = "slurmjwt-helper"
SD_LISTEN_FDS_START = 3
LINGER = 1.0  # seconds an answered connection waits for the caller to hang up
BUSY_LOG_EVERY = 10.0  # seconds between `busy` log lines for one uid
REFUSAL_LINGER = 0.25  # seconds a refused connection waits for its caller to hang up


# ----------------------------------------------------------------- state

@dataclass(frozen=True)
class State:
    """Everything a request needs; replaced whole on SIGHUP."""

    cfg: Config
    slurm: SlurmConf
    policy: Policy
    minter: Minter
    backend: str


def load_state(config_path: Optional[str]) -> State:
    """Read config, slurm.conf and the key; raise ConfigError when unusable."""
    cfg = load_config(config_path)
    slurm = parse_slurm_conf(cfg.slurm_conf_path())
    minter, backend = make_minter(cfg, slurm)
    return State(cfg, slurm, Policy(cfg, slurm.slurm_user), minter, backend)


# ----------------------------------------------------------------- server

def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """Return (pid, uid, gid) of the peer as the kernel recorded it at connect."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


class Server:
    """The helper's event-loop state: connection limits and the current State.

    Connections are asyncio Protocols, not streams: a request is one short
    line answered inline (the key backend signs in microseconds), so there
    is no task per connection, and a staller costs one timer and a slot.
    """

    def __init__(self, state: State, log: Log, config_path: Optional[str]) -> None:
        self.state = state
        self.log = log
        self.config_path = config_path
        self.active = 0  # connections of non-root callers
        self.per_uid: dict[int, int] = {}
        self.busy_log: dict[int, tuple[float, int]] = {}
        self.stopping: Optional[asyncio.Event] = None

    def admit(self, uid: int) -> bool:
        """Take a slot for uid, or return False. Root (sshd's PAM module) has
        a pool of its own, so no number of users can crowd out logins."""
        cfg = self.state.cfg
        held = self.per_uid.get(uid, 0)
        if uid == 0:
            if held >= cfg.max_connections:
                return False
        elif self.active >= cfg.max_connections or held >= cfg.max_connections_per_user:
            return False
        else:
            self.active += 1
        self.per_uid[uid] = held + 1
        return True

    def release(self, uid: int) -> None:
        if uid != 0:
            self.active -= 1
        left = self.per_uid[uid] - 1
        if left:
            self.per_uid[uid] = left
        else:
            del self.per_uid[uid]

    def log_busy(self, uid: int, pid: int) -> None:
        """One `busy` line per uid per BUSY_LOG_EVERY seconds: a flood must
        not turn into a flood of AUTHPRIV lines."""
        now = time.monotonic()
        last, suppressed = self.busy_log.get(uid, (0.0, 0))
        if now - last < BUSY_LOG_EVERY:
            self.busy_log[uid] = (last, suppressed + 1)
            return
        if len(self.busy_log) > 4096:
            self.busy_log.clear()
        self.busy_log[uid] = (now, 0)
        more = f" ({suppressed} more since the last line)" if suppressed else ""
        self.log.warning(f"refuse uid={uid} pid={pid} reason=busy{more}")

    def connection(self) -> Connection:
        return Connection(self)

    def answer(self, conn: Connection, line: bytes) -> None:
        """Given a complete request line, answer it (inline, or via a task
        for Backend=scontrol)."""
        who = f"uid={conn.uid} pid={conn.pid}"
        try:
            request = protocol.parse_request(line)
        except protocol.ProtocolError as err:
            self.log.warning(f"refuse {who} reason={err.code}: {err}")
            conn.respond(protocol.format_err(err.code, str(err)))
            return
        if request.command == "PING":
            self.log.debug(f"ping {who}")
            conn.respond(protocol.format_pong(__version__))
            return
        state = self.state  # one consistent snapshot even if SIGHUP swaps it
        try:
            entry = state.policy.resolve(conn.uid, request.user)
        except Refused as err:
            self.log.notice(f"refuse (user {request.user}) by {who} reason={err.code}: {err}")
            conn.respond(protocol.format_err(err.code, str(err)))
            return
        lifespan = min(request.lifespan or state.cfg.lifespan, state.cfg.max_lifespan)
        subject = f"(user {entry.pw_name}) uid={entry.pw_uid} by {who}"
        if isinstance(state.minter, KeyMinter):
            try:
                result = state.minter.sign(entry.pw_name, lifespan)
            except MintFailed as err:
                conn.respond(self._failed(subject, err))
                return
            conn.respond(self._granted(state, subject, lifespan, result))
            return
        task = asyncio.get_running_loop().create_task(
            self._mint_async(conn, state, subject, entry.pw_name, lifespan))
        conn.task = task

    async def _mint_async(self, conn: Connection, state: State, subject: str, user: str,
                          lifespan: int) -> None:
        try:
            result = await state.minter.mint(user, lifespan)
        except MintFailed as err:
            conn.respond(self._failed(subject, err))
            return
        except Exception as err:  # noqa: BLE001 - never let one request kill the helper
            self.log.error(f"refuse {subject} reason=internal: {type(err).__name__}")
            conn.respond(protocol.format_err("internal", "internal error; see the helper's log"))
            return
        conn.respond(self._granted(state, subject, lifespan, result))

    def _failed(self, subject: str, err: MintFailed) -> bytes:
        self.log.error(f"refuse {subject} reason={err.code}: {err}")
        return protocol.format_err(err.code, str(err))

    def _granted(self, state: State, subject: str, lifespan: int,
                 result: tuple[str, int]) -> bytes:
        token, exp = result
        self.log.info(f"grant {subject} lifespan={lifespan} exp={exp} backend={state.backend} "
                      f"fp={fingerprint(token)}")
        return protocol.format_ok(protocol.Grant(exp, export_wanted(state.cfg), token))

    def reload(self) -> None:
        """SIGHUP: re-read everything; keep serving with the old state on error."""
        try:
            new = load_state(self.config_path)
        except Exception as err:  # noqa: BLE001 - a bad reload must never stop the helper
            self.log.error(f"reload failed, keeping the previous configuration: {err}")
            return
        self.state = new
        for warning in new.cfg.warnings:
            self.log.warning(warning)
        self.log.notice(f"reloaded configuration (backend={new.backend})")


class Connection(asyncio.Protocol):
    """One caller: identified by SO_PEERCRED at accept, one bounded request
    line within ReadTimeout, one answer, then closed."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.transport: Optional[asyncio.Transport] = None
        self.buf = b""
        self.uid = -1
        self.pid = 0
        self.admitted = False
        self.answered = False
        self.timer: Optional[asyncio.TimerHandle] = None
        self.task: Optional[asyncio.Task[None]] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        try:
            self.pid, self.uid, _gid = peer_credentials(transport.get_extra_info("socket"))
        except OSError:
            transport.abort()
            self.answered = True
            return
        if not self.server.admit(self.uid):
            # A refusal holds no slot and lingers only briefly: a flood costs
            # us an accept, a write and a descriptor for REFUSAL_LINGER.
            self.server.log_busy(self.uid, self.pid)
            _drain(transport)
            self.respond(protocol.format_err("busy", "too many connections; try again"),
                         linger=REFUSAL_LINGER)
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
        self.server.log.warning(f"refuse uid={self.uid} pid={self.pid} reason={code}: "
                                f"{sentence}")
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

def systemd_socket() -> Optional[socket.socket]:
    """Return the listening socket systemd passed us, if any (sd_listen_fds)."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    if int(os.environ.get("LISTEN_FDS", "0")) < 1:
        return None
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    os.set_inheritable(sock.fileno(), False)
    return sock


def bind_socket(path: str) -> socket.socket:
    """Create the socket directory (as root) and bind a fresh socket at path;
    raise ConfigError when the path is taken by something else."""
    directory = os.path.dirname(path)
    if os.geteuid() == 0:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        users = os.path.join(directory, "users")
        if directory == "/run/slurmjwt" and not os.path.lexists(users):
            # Root-owned 0755: pam_slurmjwt.so makes each user's entry, so no
            # user can claim (squat) another's.
            os.mkdir(users, 0o755)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise ConfigError(f'cannot bind "{path}": something else is there; remove it')
        os.unlink(path)  # a stale socket from a previous run
    st = os.stat(directory)
    if st.st_uid not in (0, os.geteuid()) or (st.st_mode & 0o022
                                              and not st.st_mode & stat.S_ISVTX):
        raise ConfigError(f'cannot bind "{path}": its directory "{directory}" may be changed '
                          f"by others; use a directory owned by root, e.g. /run/slurmjwt")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    # Mode 0666 comes from the umask at bind time: no chmod by path that a
    # swapped link could redirect. Anyone may ask; SO_PEERCRED says who.
    old_umask = os.umask(0o111)
    try:
        sock.bind(path)
    except OSError as err:
        raise ConfigError(f'cannot bind "{path}": {err.strerror}') from None
    finally:
        os.umask(old_umask)
    sock.listen(1024)
    return sock


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
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def run(args: argparse.Namespace) -> int:
    log = Log(PROG, use_syslog=True, use_stderr=args.stderr or args.check, debug=args.debug)
    cfg = load_config(args.config)
    for warning in cfg.warnings:
        log.warning(warning)
    slurm = parse_slurm_conf(cfg.slurm_conf_path())
    sock = None
    if not args.check:
        sock = systemd_socket() or bind_socket(args.socket or cfg.helper_socket)
    if os.geteuid() == 0:
        drop_privileges(slurm.slurm_user, log)
    make_undumpable()
    raise_fd_limit(log, cfg)
    state = load_state(args.config)  # the key is read only after the drop
    if args.check or sock is None:
        log.info(f"configuration OK (backend={state.backend})")
        return 0
    log.debug(f"debug on; backend={state.backend}")
    if state.cfg.workers == 1:
        asyncio.run(serve(Server(state, log, args.config), sock))
        return 0
    return Supervisor(state, log, args.config, sock).run()


class Supervisor:
    """Workers=N: N forked processes serve the one socket, each its own event
    loop, so a login burst uses every core; this parent only forwards
    signals and restarts a worker that dies."""

    RESTART_BACKOFF = 1.0

    def __init__(self, state: State, log: Log, config_path: Optional[str],
                 sock: socket.socket) -> None:
        self.state = state
        self.log = log
        self.config_path = config_path
        self.sock = sock
        self.children: set[int] = set()
        self.stopping = False

    def spawn(self) -> None:
        # Signals are blocked across fork: a worker must neither die of a
        # SIGHUP before its loop handles it, nor run the parent's handler.
        signals = {signal.SIGHUP, signal.SIGTERM, signal.SIGINT}
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # serve() installs its own
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
            code = 0
            try:
                asyncio.run(serve(Server(self.state, self.log, self.config_path), self.sock))
            except BaseException as err:  # noqa: BLE001 - report, then leave without cleanup
                self.log.error(f"worker failed: {type(err).__name__}: {err}")
                code = 1
            os._exit(code)
        self.children.add(pid)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)

    def _forward(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGHUP:
            # Reload here too, so a worker started later gets the new state.
            try:
                self.state = load_state(self.config_path)
            except Exception as err:  # noqa: BLE001 - a bad reload must never stop the helper
                self.log.error(f"reload failed in the supervisor: {err}")
        else:
            self.stopping = True
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM if signum != signal.SIGHUP else signum)

    def run(self) -> int:
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._forward)
        for _ in range(self.state.cfg.workers):
            self.spawn()
        while self.children:
            pid, status = os.wait()
            self.children.discard(pid)
            if self.stopping:
                continue
            self.log.error(f"worker {pid} exited ({status:#x}); starting another")
            time.sleep(self.RESTART_BACKOFF)  # a crash loop must not spin
            if not self.stopping:
                self.spawn()
        return 0


async def serve(server: Server, sock: socket.socket) -> None:
    """Serve on sock until SIGTERM or SIGINT; SIGHUP reloads."""
    loop = asyncio.get_running_loop()
    server.stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, server.reload)
    loop.add_signal_handler(signal.SIGTERM, server.stopping.set)
    loop.add_signal_handler(signal.SIGINT, server.stopping.set)
    listener = await loop.create_unix_server(server.connection, sock=sock)
    server.log.notice(f"serving as uid {os.getuid()} (backend={server.state.backend}, "
                      f"version {__version__})")
    async with listener:
        await server.stopping.wait()
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
