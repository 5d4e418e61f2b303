"""The helper's state and the one process that decides it: loading config,
slurm.conf and the key into one State, the Supervisor that runs the
workers, reloads, and publishes the id of the key in use, and the
`slurmjwt-helper --reload` command that waits for its verdict.

A reload is one decision for the whole helper: the supervisor loads and
checks the new State once; if that fails, nothing changes. If it is good,
the supervisor forks new workers that inherit that very State (they load
nothing, so none of them can fail where another succeeded), then stops the
old workers (they finish the requests in flight) and only then publishes
the key id and writes its verdict. The alternative, telling the workers to
load the files themselves, cannot be all-or-none: each load can fail on
its own (a name service hiccup while checking the key's owner). Workers
ignore SIGHUP. A worker that dies is replaced from the current State, and
the key id is published again. Workers=1 runs the same way.

helper.py serves requests with a State; this module never imports it (the
work a worker does is handed in), so layers keep pointing down.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from pam_slurmjwt.cache import KEY_ID_CSH, KEY_ID_FILE
from pam_slurmjwt.config import Config, load_config
from pam_slurmjwt.errors import ReloadFailed
from pam_slurmjwt.log import Log
from pam_slurmjwt.metrics import Exporter
from pam_slurmjwt.policy import Policy
from pam_slurmjwt.signing import KeyMinter, Minter, make_minter
from pam_slurmjwt.slurmconf import SlurmConf, parse_slurm_conf

# ----------------------------------------------------------------- state

@dataclass(frozen=True)
class State:
    """Everything a request needs; a reload makes a new one, and new
    workers serve it."""

    cfg: Config
    slurm: SlurmConf
    policy: Policy
    minter: Minter
    backend: str
    alg: str = "HS256"  # scontrol's tokens are HS256 too
    key_mtime: Optional[float] = None  # the key file's (Backend=key): its age


def load_state(config_path: Optional[str]) -> State:
    """Read config, slurm.conf and the key; raise ConfigError when unusable."""
    cfg = load_config(config_path)
    slurm = parse_slurm_conf(cfg.slurm_conf_path())
    minter, backend = make_minter(cfg, slurm)
    alg, mtime = "HS256", None
    if isinstance(minter, KeyMinter):
        alg = minter.signer.alg
        with contextlib.suppress(OSError):
            mtime = os.stat(cfg.jwt_key or slurm.jwt_key_path()).st_mtime
    return State(cfg, slurm, Policy(cfg, slurm.slurm_user), minter, backend, alg, mtime)


# ----------------------------------------------------------------- the key id

def publish_key_id(directory: str, kid: str, log: Log) -> None:
    """Write the key id into `directory` (docs/internals.md, "Key id"):
    `id` for the sh shims, the wrappers and the Python tools, `id.csh` for
    tcsh, each atomically. A failure is logged, never fatal: tokens still
    work, but caches cannot tell that the key changed."""
    try:
        dfd = _open_dir(directory)
    except OSError as err:
        log.error(f'cannot publish the key id in "{directory}": {err.strerror}; caches will '
                  f"not follow a change of key")
        return
    try:
        for name, text in ((KEY_ID_FILE, f"{kid}\n"),
                           (KEY_ID_CSH, f"set _slurmjwt_kid={kid}\n")):
            _write_atomic(dfd, name, text, 0o644)
    except OSError as err:
        log.error(f'cannot publish the key id in "{directory}": {err.strerror}; caches will '
                  f"not follow a change of key")
    finally:
        os.close(dfd)


def _write_atomic(dfd: int, name: str, text: str, mode: int) -> None:
    """Replace `name` in the directory `dfd` with `text`, mode `mode`
    (whatever the umask: systemd's is 0077): temp file, then rename."""
    tmp = f".{name}.{os.getpid()}.{os.urandom(4).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode, dir_fd=dfd)
    try:
        os.write(fd, text.encode("ascii", "replace"))
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)


def _open_dir(path: str) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


# ----------------------------------------------------------------- workers

SIGNALS = {signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
RELOAD_STATUS = "reload-status"  # in the key directory: the last reload's verdict
DRAIN = 10.0  # seconds a stopping worker may take for the requests in flight (helper.serve)
RELOAD_WAIT = 60.0  # seconds `slurmjwt-helper --reload` waits for the verdict


class Supervisor:
    """Workers=N forked processes serve HelperSocket, each its own event
    loop, so a burst uses every core; one more serves RootSocket (logins)
    alone (without a RootSocket, the N serve everything). This parent
    decides: it takes
    signals synchronously (sigwaitinfo, all blocked), reloads (see the
    module's header), restarts a worker that dies, and publishes the key id
    and each reload's verdict."""

    RESTART_BACKOFF = 1.0

    def __init__(self, state: State, log: Log, config_path: Optional[str],
                 work: Callable[[State, str, Exporter], None], key_dir: str,
                 root_worker: bool = False, exporter: Optional[Exporter] = None) -> None:
        self.state = state
        self.log = log
        self.config_path = config_path
        # Serves the sockets of a role ("users", "root", "all") with a State
        # until SIGTERM (helper.serve).
        self.work = work
        self.key_dir = key_dir
        # With a RootSocket, logins get a worker of their own beside the
        # Workers=N that serve HelperSocket (helper.Listeners.only).
        self.root_worker = root_worker
        # Metrics (MetricsListen=): the recorder the workers count with, and
        # the listener a worker of role "metrics" serves.
        self.exporter = exporter or Exporter(key_dir, None)
        self.children: dict[int, tuple[int, str]] = {}  # pid: generation (reload), role
        self.generation = 0
        self.stopping = False

    def roles(self) -> list[str]:
        extra = ["metrics"] if self.exporter.tcp is not None else []
        if not self.root_worker:
            return ["all"] * self.state.cfg.workers + extra
        return ["root"] + ["users"] * self.state.cfg.workers + extra

    def spawn(self, role: str) -> None:
        """Fork a worker serving self.state in `role`; raise OSError when
        fork fails."""
        pid = os.fork()
        if pid == 0:
            # Dispositions first, then unblock: a SIGHUP sent to the whole
            # cgroup must not kill a worker; serve() handles TERM and INT.
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
            code = 0
            try:
                self.work(self.state, role, self.exporter)
            except BaseException as err:  # noqa: BLE001 - report, then leave without cleanup
                self.log.error(f"worker failed: {type(err).__name__}: {err}")
                code = 1
            os._exit(code)
        self.children[pid] = (self.generation, role)

    def run(self) -> int:
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        self.log.set_debug(self.state.cfg.debug)
        self.exporter.configure(self.state.cfg.metrics_listen, self.where(self.state), self.log)
        for role in self.roles():
            self.spawn(role)
        publish_key_id(self.key_dir, self.state.minter.kid, self.log)
        while self.children:
            signo = signal.sigwaitinfo(SIGNALS).si_signo
            if signo == signal.SIGCHLD:
                self.reap()
            elif signo == signal.SIGHUP and not self.stopping:
                self.reload()
            elif signo in (signal.SIGTERM, signal.SIGINT):
                self.stopping = True
                self.signal_workers(list(self.children), signal.SIGTERM)
        return 0

    def signal_workers(self, pids: list[int], signum: int) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def reap(self) -> None:
        """Collect every worker that exited; replace those of the current
        generation (unless stopping) and publish the key id again."""
        died = []
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            generation, role = self.children.pop(pid, (-1, ""))
            if generation == self.generation and not self.stopping:
                self.log.error(f"worker {pid} exited ({status:#x}); starting another")
                died.append(role)
        if died:
            time.sleep(self.RESTART_BACKOFF)  # a crash loop must not spin
            for role in died:
                with contextlib.suppress(OSError):  # retried at the next worker's exit
                    self.spawn(role)
            publish_key_id(self.key_dir, self.state.minter.kid, self.log)

    def reload(self) -> None:
        """SIGHUP: load and check the new State once; all workers switch to
        it, or none does. The verdict is written last."""
        started = time.monotonic_ns()
        try:
            new = load_state(self.config_path)
        except Exception as err:  # noqa: BLE001 - a bad reload must never stop the helper
            self.fail(started, f"reload failed, keeping the previous configuration: {err}")
            return
        old, old_state = self.serving(), self.state
        self.state, self.generation = new, self.generation + 1
        # Before the new workers fork: they inherit the debug switch and the
        # recorder. A listener that cannot follow is logged; tokens go on.
        self.log.set_debug(new.cfg.debug)
        self.exporter.configure(new.cfg.metrics_listen, self.where(new), self.log)
        try:
            for role in self.roles():
                self.spawn(role)
        except OSError as err:  # fork failed: the new ones go, the old ones stay
            self.signal_workers(self.serving(), signal.SIGTERM)
            # The old workers again, under a generation of their own: the
            # failed new ones, reaped later, are of none.
            self.state, self.generation = old_state, self.generation + 1
            self.log.set_debug(old_state.cfg.debug)
            self.exporter.configure(old_state.cfg.metrics_listen, self.where(old_state),
                                    self.log)
            for pid in old:
                self.children[pid] = (self.generation, self.children[pid][1])
            self.fail(started, f"reload failed, keeping the previous configuration: "
                               f"cannot start a worker: {err.strerror}")
            return
        self.signal_workers(old, signal.SIGTERM)
        self.wait_for(old)
        for warning in new.cfg.warnings:
            self.log.warning(warning)
        publish_key_id(self.key_dir, new.minter.kid, self.log)
        self.log.notice(f"reloaded configuration (backend={new.backend}, kid={new.minter.kid})")
        self.verdict(started, "ok", "reloaded")

    @staticmethod
    def where(state: State) -> str:
        return state.cfg.path or "configuration"

    def serving(self) -> list[int]:
        """The workers of the current generation."""
        return [pid for pid, (gen, _role) in self.children.items() if gen == self.generation]

    def wait_for(self, pids: list[int]) -> None:
        """Wait until the old workers have finished their requests in
        flight and exited (SIGKILL after DRAIN and a margin); reap whatever
        else exits meanwhile."""
        deadline = time.monotonic() + DRAIN + 5
        while any(pid in self.children for pid in pids):
            left = deadline - time.monotonic()
            if left <= 0:
                self.signal_workers([pid for pid in pids if pid in self.children],
                                    signal.SIGKILL)
                left = 1.0
            signal.sigtimedwait({signal.SIGCHLD}, left)
            self.reap()

    def fail(self, started: int, message: str) -> None:
        self.log.error(message)
        self.exporter.recorder.reload_failed()
        self.verdict(started, "failed", message)

    def verdict(self, started: int, word: str, message: str) -> None:
        """Write RELOAD_STATUS (mode 0600: SlurmUser's and root's): when the
        reload began (CLOCK_MONOTONIC, ns), ok or failed, and why."""
        try:
            dfd = _open_dir(self.key_dir)
        except OSError as err:
            self.log.error(f'cannot write the reload verdict in "{self.key_dir}": '
                           f"{err.strerror}")
            return
        try:
            _write_atomic(dfd, RELOAD_STATUS, f"{started} {word} {message}\n", 0o600)
        except OSError as err:
            self.log.error(f'cannot write the reload verdict in "{self.key_dir}": '
                           f"{err.strerror}")
        finally:
            os.close(dfd)


def request_reload(pid: int, key_dir: str, wait: float = RELOAD_WAIT) -> None:
    """`slurmjwt-helper --reload PID` (systemd's ExecReload): SIGHUP the
    supervisor, then wait for the verdict of a reload that began after the
    signal; return when it is ok, raise ReloadFailed when it failed, the
    helper is gone, or no verdict came within `wait` seconds."""
    path = os.path.join(key_dir, RELOAD_STATUS)
    sent = time.monotonic_ns()
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as err:
        raise ReloadFailed(f"cannot signal the helper (pid {pid}): {err.strerror}; "
                           f"is it running?") from None
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            with open(path, encoding="ascii", errors="replace") as status:
                began, word, message = status.read(4096).rstrip("\n").split(" ", 2)
            if int(began) >= sent:
                if word == "ok":
                    return
                raise ReloadFailed(message)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            raise ReloadFailed(f"the helper (pid {pid}) has exited; see its log "
                               f"(journalctl -t slurmjwt-helper)") from None
        except PermissionError:
            pass
        time.sleep(0.05)
    raise ReloadFailed(f"no verdict from the helper (pid {pid}) within {wait:g} s; see its "
                       f"log (journalctl -t slurmjwt-helper)")
