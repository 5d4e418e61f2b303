"""The demo's keys on the host side: the demo user's ssh key and the login
node's host key, made once per release and kept (like the images) so the
printed ssh command and known_hosts stay valid from one run to the next;
and a fresh Slurm JWT key for every cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.demo import engine
from tests.demo.cluster import Secrets
from tests.demo.errors import DemoError, Say

REPO = Path(__file__).resolve().parents[2]
STATE_ROOT = REPO / "build" / "demo"
JWT_KEY_BYTES = 32  # as `dd if=/dev/random bs=32 count=1` makes it


@dataclass(frozen=True)
class Keys:
    """Paths of one release's host-side key files."""

    directory: Path

    @property
    def user_key(self) -> Path:
        return self.directory / "id_ed25519"

    @property
    def host_key(self) -> Path:
        return self.directory / "ssh_host_ed25519_key"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"


def ensure_keys(release: str, say: Say) -> Keys:
    """Return the release's keys, making those that are missing with ssh-keygen
    (installing openssh-client first if needed); raise DemoError when that fails."""
    if shutil.which("ssh-keygen") is None or shutil.which("ssh") is None:
        engine.install_packages(("openssh-client",), say)
    keys = Keys(STATE_ROOT / release)
    keys.directory.mkdir(parents=True, exist_ok=True)
    keys.directory.chmod(0o700)
    for path, comment in ((keys.user_key, "demo@slurmjwt-demo"),
                          (keys.host_key, f"login.{release}.slurmjwt-demo")):
        if not path.exists():
            done = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                                   "-f", str(path)], capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise DemoError(f"ssh-keygen could not make {path}: {done.stderr.strip()}")
    return keys


def secrets(keys: Keys) -> Secrets:
    """Return what the containers get: a new JWT key, the host key, and the
    demo user's public key as authorized_keys."""
    return Secrets(jwt_key=os.urandom(JWT_KEY_BYTES),
                   host_key=keys.host_key.read_bytes(),
                   authorized_keys=keys.user_key.with_suffix(".pub").read_bytes())


def write_known_hosts(keys: Keys, port: int) -> None:
    """Pin the login node's host key for 127.0.0.1:port (the demo's own ssh
    runs with StrictHostKeyChecking=yes against this file)."""
    public = keys.host_key.with_suffix(".pub").read_text().split()
    keys.known_hosts.write_text(f"[127.0.0.1]:{port} {public[0]} {public[1]}\n")


def add_known_host(keys: Keys, port: int) -> None:
    """Pin the same host key for another node at 127.0.0.1:port too (the sackd
    login node, tests/demo/sackd.py), beside what is pinned already."""
    public = keys.host_key.with_suffix(".pub").read_text().split()
    with keys.known_hosts.open("a") as known:
        known.write(f"[127.0.0.1]:{port} {public[0]} {public[1]}\n")
