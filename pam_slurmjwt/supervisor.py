"""The helper's state and who decides it: loading config, slurm.conf and the
key into one State, publishing the id of the key in use, and the Supervisor
that runs Workers=N processes and forwards reloads to them.

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
from pam_slurmjwt.log import Log
from pam_slurmjwt.policy import Policy
from pam_slurmjwt.signing import Minter, make_minter
from pam_slurmjwt.slurmconf import SlurmConf, parse_slurm_conf

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
            tmp = f".{name}.{os.getpid()}.{os.urandom(4).hex()}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o644, dir_fd=dfd)
            try:
                os.write(fd, text.encode("ascii"))
                os.fchmod(fd, 0o644)  # whatever the umask (systemd's is 0077)
            finally:
                os.close(fd)
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except OSError as err:
        log.error(f'cannot publish the key id in "{directory}": {err.strerror}; caches will '
                  f"not follow a change of key")
    finally:
        os.close(dfd)


def _open_dir(path: str) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


# ----------------------------------------------------------------- workers

class Supervisor:
    """Workers=N: N forked processes serve the sockets, each its own event
    loop, so a login burst uses every core; this parent only forwards
    signals and restarts a worker that dies. The workers publish the key id
    when a reload changes the key."""

    RESTART_BACKOFF = 1.0

    def __init__(self, state: State, log: Log, config_path: Optional[str],
                 work: Callable[[State], None], key_dir: str) -> None:
        self.state = state
        self.log = log
        self.config_path = config_path
        self.work = work  # serves the sockets with a State until SIGTERM (helper.serve)
        self.key_dir = key_dir
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
                self.work(self.state)
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
