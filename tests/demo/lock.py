"""One demo run at a time on a host. Two runs (say `make test` in two
checkouts) share the cluster names and the dockerd the demo starts: one's
`down` would remove the other's containers mid-test, or stop dockerd under
its image build. `run.up` takes this lock and `run.down` gives it back; a
process that exits drops it anyway (flock).
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from tests.demo.errors import DemoError, Say
from tests.demo.names import PREFIX

LOCK_PATH = Path(f"/run/lock/{PREFIX}.lock")
WAIT_TIMEOUT = 3600.0  # a whole cold matrix run of another checkout, with room
POLL_INTERVAL = 1.0

# The lock's file descriptor and how many up() calls of this process hold it
# (a test module may bring up one release while another is still up).
_held: dict[str, int] = {}


def acquire(say: Say, path: Path = LOCK_PATH) -> None:
    """Hold the host-wide demo lock (again, when this process holds it
    already); poll until another process gives it up; raise DemoError after
    WAIT_TIMEOUT."""
    if _held:
        _held["count"] += 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + WAIT_TIMEOUT
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if not told:
                say(f"another demo run holds {path}; waiting for it to finish")
                told = True
            if time.monotonic() > deadline:
                os.close(fd)
                raise DemoError(f"another demo run has held {path} for {WAIT_TIMEOUT:.0f} s; "
                                "see `docker ps -a`") from None
            time.sleep(POLL_INTERVAL)
    _held.update(fd=fd, count=1)


def release(everything: bool = False) -> None:
    """Give back one hold of the lock (all of them with `everything`); the
    last one unlocks. Nothing happens when this process holds none."""
    if not _held:
        return
    _held["count"] = 0 if everything else _held["count"] - 1
    if _held["count"] <= 0:
        os.close(_held["fd"])  # closing the descriptor drops the flock
        _held.clear()
