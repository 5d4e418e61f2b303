"""An in-process helper Server on its own event-loop thread, for unit tests
of the helper and of its clients (refresh, cli)."""

from __future__ import annotations

import asyncio
import os
import pwd
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pam_slurmjwt import nss, protocol
from pam_slurmjwt.config import parse_config
from pam_slurmjwt.helper import Server
from pam_slurmjwt.log import Log
from pam_slurmjwt.policy import NameService, Policy
from pam_slurmjwt.signing import HS256Signer, KeyMinter
from pam_slurmjwt.slurmconf import SlurmConf
from pam_slurmjwt.supervisor import State, publish_key_id

KEY = b"unit-test-key-0123456789abcdef!!"
KID = "unit-test-kid"  # an HS256 key's id names its file (docs/internals.md); here, none
ME = pwd.getpwuid(os.getuid()).pw_name


class Running:
    """A Server on its own event loop thread, bound to a socket in a temp dir."""

    def __init__(self, tmp: Path, conf: str, names: NameService = nss) -> None:
        self.path = str(tmp / "helper.sock")
        self.key_dir = protocol.key_dir(self.path)  # tmp/key, where the key id is published
        os.makedirs(self.key_dir, exist_ok=True)
        # Export=auto looks for munged's socket: one in tmp (absent), never
        # the host's, so no test depends on a munged running here.
        cfg = parse_config(f"MungeSocket={tmp}/munge.socket.2\n{conf}", "/c")
        state = State(cfg, SlurmConf("/slurm.conf", slurm_user="nobody"),
                      Policy(cfg, "nobody", names), KeyMinter(HS256Signer(KEY, KID)), "key")
        log = Log("test", use_syslog=False, use_stderr=False)
        publish_key_id(self.key_dir, state.minter.kid, log)
        self.server = Server(state, log)
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server.stopping = asyncio.Event()

        async def main() -> None:
            listener = await asyncio.get_running_loop().create_unix_server(
                self.server.connection, path=self.path)
            self.ready.set()
            async with listener:
                assert self.server.stopping is not None
                await self.server.stopping.wait()

        self.loop.run_until_complete(main())

    def stop(self) -> None:
        assert self.server.stopping is not None
        self.loop.call_soon_threadsafe(self.server.stopping.set)
        self.thread.join(10)


@pytest.fixture
def running(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Running]:
    """A helper that grants the test's own user (whatever uid runs the tests)."""
    conf = getattr(request, "param", "")
    server = Running(tmp_path, f"MinUid=0\nAllowPrivileged={ME}\nReadTimeout=3\n{conf}")
    try:
        yield server
    finally:
        server.stop()


def exchange(path: str, data: bytes, timeout: float = 10, half_close: bool = False) -> bytes:
    """Send raw bytes to the socket at `path`; return all it answers, read to
    its end (the helper half-closes after answering)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        try:
            sock.sendall(data)
        except BrokenPipeError:
            pass  # refused (busy) before we finished sending: read the answer anyway
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(4096):
            out += chunk
        return out
