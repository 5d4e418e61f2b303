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
import ctypes
import os
import pwd
import resource
import signal
import socket
import stat
import struct
import sys
from dataclasses import dataclass
from typing import Optional, Protocol

from pam_slurmjwt import __version__, protocol
from pam_slurmjwt.config import Config, export_wanted, load_config
from pam_slurmjwt.errors import ConfigError, MintFailed, Refused, SlurmJwtError
from pam_slurmjwt.keyfile import load_key
from pam_slurmjwt.log import Log
from pam_slurmjwt.slurmconf import SlurmConf, parse_slurm_conf
from pam_slurmjwt.token import HS256Signer, fingerprint, is_plain_user_name, make_claims

PROG = "slurmjwt-helper"
SD_LISTEN_FDS_START = 3
SCONTROL_TIMEOUT = 10.0
SCONTROL_PARALLEL = 4
WRITE_TIMEOUT = 2.0


# ----------------------------------------------------------------- policy

class Policy:
    """Decides who may have a token for whom, by uid, never by claimed name."""

    def __init__(self, cfg: Config, slurm_user: str) -> None:
        self.cfg = cfg
        self.slurm_user = slurm_user
        try:
            self.slurm_uid: Optional[int] = pwd.getpwnam(slurm_user).pw_uid
        except KeyError:
            self.slurm_uid = None

    def resolve(self, caller_uid: int, requested: str) -> pwd.struct_passwd:
        """Given the caller's uid and the requested name (`-` = caller),
        return the passwd entry to mint for; raise Refused otherwise."""
        if requested == protocol.SELF:
            try:
                entry = pwd.getpwuid(caller_uid)
            except KeyError:
                raise Refused("no-user", f"uid {caller_uid} has no passwd entry") from None
        else:
            entry = self._lookup(requested)
            if caller_uid != 0 and entry.pw_uid != caller_uid:
                raise Refused("denied", f"uid {caller_uid} may only ask for its own token")
        if not is_plain_user_name(entry.pw_name):
            raise Refused("no-user", f"{entry.pw_name!r} is not a plain user name")
        self._check_allowed(entry)
        return entry

    @staticmethod
    def _lookup(name: str) -> pwd.struct_passwd:
        # slurmctld takes a numeric `sun` as a uid ("0" is root): only plain
        # names that resolve to themselves are ever signed.
        if not is_plain_user_name(name):
            raise Refused("no-user", f"{name!r} is not a plain user name")
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise Refused("no-user", f"no such user {name!r}") from None
        if entry.pw_name != name:
            raise Refused("no-user", f"{name!r} resolves to {entry.pw_name!r}; ask for that")
        return entry

    def _check_allowed(self, entry: pwd.struct_passwd) -> None:
        name, uid = entry.pw_name, entry.pw_uid
        allowed = name in self.cfg.allow_privileged
        if uid == 0 and not allowed:
            raise Refused("denied", f"{name} is root; tokens for root are off "
                                    f"(AllowPrivileged)")
        if uid == self.slurm_uid and not allowed:
            raise Refused("denied", f"{name} is SlurmUser; its tokens are off "
                                    f"(AllowPrivileged)")
        if uid < self.cfg.min_uid and not allowed:
            raise Refused("denied", f"{name} is a system account (uid {uid} < "
                                    f"MinUid {self.cfg.min_uid})")
        if name in self.cfg.deny_users:
            raise Refused("denied", f"{name} is in DenyUsers")


# ----------------------------------------------------------------- minting

class Minter(Protocol):
    async def mint(self, user: str, lifespan: int) -> str: ...


class KeyMinter:
    """Signs locally with the key file (Backend=key)."""

    def __init__(self, key: bytes) -> None:
        self.signer = HS256Signer(key)

    async def mint(self, user: str, lifespan: int) -> str:
        return self.signer.sign(make_claims(user, lifespan))


class ScontrolMinter:
    """Asks slurmctld through `scontrol token` (Backend=scontrol), for sites
    that keep the key on the controller only. Runs as SlurmUser."""

    def __init__(self, scontrol: str, slurm_conf: str) -> None:
        self.scontrol = scontrol
        self.env = {k: v for k, v in os.environ.items() if k != "SLURM_JWT"}
        self.env["SLURM_CONF"] = slurm_conf
        self.gate = asyncio.Semaphore(SCONTROL_PARALLEL)

    async def mint(self, user: str, lifespan: int) -> str:
        async with self.gate:
            proc = await asyncio.create_subprocess_exec(
                self.scontrol, "token", f"username={user}", f"lifespan={lifespan}",
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=self.env)
            try:
                out, err = await asyncio.wait_for(proc.communicate(), SCONTROL_TIMEOUT)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
                raise MintFailed("scontrol token timed out") from None
        text = out.decode("ascii", "replace").strip()
        if proc.returncode != 0 or not text.startswith("SLURM_JWT="):
            reason = err.decode("utf-8", "replace").strip().splitlines()
            raise MintFailed(f"scontrol token failed: {reason[-1] if reason else 'no output'}")
        return text[len("SLURM_JWT="):]


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
    key_path = cfg.jwt_key or slurm.jwt_key_path()
    backend = cfg.backend
    if backend == "auto":
        backend = "key" if _key_present(key_path) else "scontrol"
    minter: Minter
    if backend == "key":
        minter = KeyMinter(load_key(key_path, slurm.slurm_user))
    else:
        minter = ScontrolMinter(cfg.scontrol, cfg.slurm_conf_path())
    return State(cfg, slurm, Policy(cfg, slurm.slurm_user), minter, backend)


def _key_present(path: str) -> bool:
    """Backend=auto: a key we cannot even stat (EACCES) is still a key that
    is there; falling back to scontrol would hide the misconfiguration."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return True


# ----------------------------------------------------------------- server

def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """Return (pid, uid, gid) of the peer as the kernel recorded it at connect."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


class Server:
    """The helper's event loop state: connections, limits, current State."""

    def __init__(self, state: State, log: Log, config_path: Optional[str]) -> None:
        self.state = state
        self.log = log
        self.config_path = config_path
        self.active = 0
        self.per_uid: dict[int, int] = {}
        self.stopping: Optional[asyncio.Event] = None

    def _admit(self, uid: int) -> bool:
        cfg = self.state.cfg
        limit = cfg.max_connections if uid == 0 else cfg.max_connections_per_user
        if self.active >= cfg.max_connections or self.per_uid.get(uid, 0) >= limit:
            return False
        self.active += 1
        self.per_uid[uid] = self.per_uid.get(uid, 0) + 1
        return True

    def _release(self, uid: int) -> None:
        self.active -= 1
        left = self.per_uid[uid] - 1
        if left:
            self.per_uid[uid] = left
        else:
            del self.per_uid[uid]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            pid, uid, _gid = peer_credentials(writer.get_extra_info("socket"))
        except OSError:
            writer.close()
            return
        if not self._admit(uid):
            self.log.warning(f"refuse uid={uid} pid={pid} reason=busy")
            await self._send(writer, protocol.format_err("busy", "too many connections; "
                                                                  "try again"))
            return
        try:
            answer = await self._serve(reader, pid, uid)
            await self._send(writer, answer)
        finally:
            self._release(uid)

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        try:
            writer.write(data)
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> protocol.Request:
        try:
            line = await asyncio.wait_for(reader.readuntil(b"\n"),
                                          self.state.cfg.read_timeout)
        except asyncio.LimitOverrunError:
            raise protocol.ProtocolError(
                "too-long", f"request longer than {protocol.MAX_REQUEST} bytes") from None
        except asyncio.IncompleteReadError as err:
            if len(err.partial) >= protocol.MAX_REQUEST:
                raise protocol.ProtocolError("too-long", "request too long") from None
            raise protocol.ProtocolError("bad-request", "request line not terminated") from None
        except asyncio.TimeoutError:
            raise protocol.ProtocolError("timeout", "no complete request line in "
                                                    "time") from None
        return protocol.parse_request(line)

    async def _serve(self, reader: asyncio.StreamReader, pid: int, uid: int) -> bytes:
        who = f"uid={uid} pid={pid}"
        try:
            request = await self._read_request(reader)
        except protocol.ProtocolError as err:
            self.log.warning(f"refuse {who} reason={err.code}: {err}")
            return protocol.format_err(err.code, str(err))
        if request.command == "PING":
            self.log.debug(f"ping {who}")
            return protocol.format_pong(__version__)
        return await self._grant(request, who, uid)

    async def _grant(self, request: protocol.Request, who: str, uid: int) -> bytes:
        state = self.state  # one consistent snapshot even if SIGHUP swaps it
        cfg = state.cfg
        try:
            entry = state.policy.resolve(uid, request.user)
        except Refused as err:
            self.log.notice(f"refuse (user {request.user}) by {who} reason={err.code}: {err}")
            return protocol.format_err(err.code, str(err))
        lifespan = min(request.lifespan or cfg.lifespan, cfg.max_lifespan)
        user = f"(user {entry.pw_name}) uid={entry.pw_uid} by {who}"
        try:
            token = await state.minter.mint(entry.pw_name, lifespan)
            exp = _exp_of(token)
        except MintFailed as err:
            self.log.error(f"refuse {user} reason={err.code}: {err}")
            return protocol.format_err(err.code, str(err))
        except Exception as err:  # noqa: BLE001 - never let one request kill the helper
            self.log.error(f"refuse {user} reason=internal: {type(err).__name__}")
            return protocol.format_err("internal", "internal error; see the helper's log")
        self.log.info(f"grant {user} lifespan={lifespan} exp={exp} backend={state.backend} "
                      f"fp={fingerprint(token)}")
        return protocol.format_ok(protocol.Grant(exp, export_wanted(cfg), token))

    def reload(self) -> None:
        """SIGHUP: re-read everything; keep serving with the old state on error."""
        try:
            new = load_state(self.config_path)
        except SlurmJwtError as err:
            self.log.error(f"reload failed, keeping the previous configuration: {err}")
            return
        self.state = new
        for warning in new.cfg.warnings:
            self.log.warning(warning)
        self.log.notice(f"reloaded configuration (backend={new.backend})")


def _exp_of(token: str) -> int:
    from pam_slurmjwt.token import slurm_claims

    try:
        return slurm_claims(token).exp
    except ValueError as err:
        raise MintFailed(f"the backend returned an unusable token: {err}") from None


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
            os.mkdir(users, 0o1733)
            os.chmod(users, 0o1733)  # noqa: S103 - sticky, like /tmp, but unlistable
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise ConfigError(f'cannot bind "{path}": something else is there; remove it')
        os.unlink(path)  # a stale socket from a previous run
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.bind(path)
    except OSError as err:
        raise ConfigError(f'cannot bind "{path}": {err.strerror}') from None
    os.chmod(path, 0o666)  # noqa: S103 - anyone may ask; SO_PEERCRED says who
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
    """The key is in our memory: no core dumps, no ptrace by same-uid processes."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    pr_set_dumpable = 4
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_dumpable, 0, 0, 0, 0)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
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
    return parser.parse_args(argv)


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
    state = load_state(args.config)  # the key is read only after the drop
    if args.check or sock is None:
        log.info(f"configuration OK (backend={state.backend})")
        return 0
    log.debug(f"debug on; backend={state.backend}")
    server = Server(state, log, args.config)
    asyncio.run(serve(server, sock))
    return 0


async def serve(server: Server, sock: socket.socket) -> None:
    """Serve on sock until SIGTERM or SIGINT; SIGHUP reloads."""
    loop = asyncio.get_running_loop()
    server.stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, server.reload)
    loop.add_signal_handler(signal.SIGTERM, server.stopping.set)
    loop.add_signal_handler(signal.SIGINT, server.stopping.set)
    listener = await asyncio.start_unix_server(server.handle, sock=sock,
                                               limit=protocol.MAX_REQUEST)
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
