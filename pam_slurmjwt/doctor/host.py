"""What slurmjwt doctor asks of the host beyond files: systemctl, Slurm's
version, whether a path is a socket, a lookup bounded in time. The checks
reach the first two through their Context, so tests can stand in for them."""

from __future__ import annotations

import os
import queue
import re
import stat
import subprocess
import threading
from collections.abc import Callable
from typing import Any, Optional

CLIENT_TIMEOUT = 20
SYSTEMD_RUNNING = "/run/systemd/system"  # exists while systemd is PID 1 (sd_booted)


def is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def slurm_version(scontrol: str = "/usr/bin/scontrol") -> tuple[int, int]:
    try:
        out = subprocess.run([scontrol, "--version"], capture_output=True, text=True,
                             timeout=CLIENT_TIMEOUT).stdout
    except (OSError, subprocess.TimeoutExpired):
        return (0, 0)
    match = re.search(r"(\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def systemctl(*args: str) -> str:
    """Return what `systemctl ARGS` prints (first line, stripped), whatever
    its exit status ("disabled", "inactive" come with status 1)."""
    try:
        done = subprocess.run(["systemctl", *args], capture_output=True, text=True,
                              timeout=CLIENT_TIMEOUT, env={"PATH": "/usr/bin:/bin",
                                                           "SYSTEMD_PAGER": "", "LANG": "C",
                                                           **_user_bus()})
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout.strip().splitlines() or [""])[0]


def _user_bus() -> dict[str, str]:
    # systemctl --user finds the user's manager through these.
    return {k: v for k, v in os.environ.items()
            if k in ("XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS")}


def within(seconds: float, lookup: Callable[..., Any], *args: Any) -> Any:
    """Run a lookup in a daemon thread; return its result, re-raise its
    error, or raise TimeoutError when it takes longer than `seconds` (the
    thread is left to finish: a hung sssd must not hang the doctor)."""
    answer: queue.SimpleQueue[tuple[Any, Optional[BaseException]]] = queue.SimpleQueue()

    def run() -> None:
        try:
            answer.put((lookup(*args), None))
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            answer.put((None, err))

    threading.Thread(target=run, daemon=True).start()
    try:
        result, error = answer.get(timeout=seconds)
    except queue.Empty:
        raise TimeoutError() from None
    if error is not None:
        raise error
    return result
