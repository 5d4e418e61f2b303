"""How tokens are made: the minters behind the helper's Backend= setting.

KeyMinter signs locally with the key file; ScontrolMinter asks slurmctld
through `scontrol token`. make_minter() picks one from the configuration.
The key is read only here, and only after the helper dropped to SlurmUser.
"""

from __future__ import annotations

import asyncio
import os
from typing import Protocol

from pam_slurmjwt.config import Config
from pam_slurmjwt.errors import MintFailed
from pam_slurmjwt.keyfile import load_key
from pam_slurmjwt.slurmconf import SlurmConf
from pam_slurmjwt.token import HS256Signer, make_claims, slurm_claims

SCONTROL_TIMEOUT = 10.0
SCONTROL_PARALLEL = 4


class Minter(Protocol):
    """Makes a token for a user; returns (token, exp) or raises MintFailed.
    `kid` names the key its tokens are signed with (docs/internals.md)."""

    kid: str

    async def mint(self, user: str, lifespan: int, root: bool = False) -> tuple[str, int]: ...


class KeyMinter:
    """Signs locally with the key file (Backend=key). Signing takes
    microseconds, so the server calls sign() inline, without a task."""

    def __init__(self, key: bytes) -> None:
        self.signer = HS256Signer(key)
        self.kid = self.signer.kid

    def sign(self, user: str, lifespan: int) -> tuple[str, int]:
        claims = make_claims(user, lifespan)
        return self.signer.sign(claims), claims.exp

    async def mint(self, user: str, lifespan: int, root: bool = False) -> tuple[str, int]:
        return self.sign(user, lifespan)


class ScontrolMinter:
    """Asks slurmctld through `scontrol token` (Backend=scontrol), for sites
    that keep the key on the controller only. Runs as SlurmUser. Its key is
    slurmctld's, unknown here: its tokens carry no kid, and its id is "-"."""

    kid = "-"

    def __init__(self, scontrol: str, slurm_conf: str) -> None:
        self.scontrol = scontrol
        self.env = {k: v for k, v in os.environ.items() if k != "SLURM_JWT"}
        self.env["SLURM_CONF"] = slurm_conf
        # Root (logins) has slots of its own: users' requests cannot fill them.
        self.gates = {False: asyncio.Semaphore(SCONTROL_PARALLEL),
                      True: asyncio.Semaphore(SCONTROL_PARALLEL)}

    async def mint(self, user: str, lifespan: int, root: bool = False) -> tuple[str, int]:
        async with self.gates[root]:
            proc = await asyncio.create_subprocess_exec(
                self.scontrol, "token", f"username={user}", f"lifespan={lifespan}",
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=self.env)
            try:
                out, err = await asyncio.wait_for(proc.communicate(), SCONTROL_TIMEOUT)
            except asyncio.TimeoutError:
                raise MintFailed("scontrol token timed out") from None
            finally:
                # Timed out, or the caller hung up (the task is cancelled):
                # free the slot at once, so a burst does not queue behind it.
                if proc.returncode is None:
                    proc.kill()
                    await asyncio.shield(proc.wait())
        text = out.decode("ascii", "replace").strip()
        if proc.returncode != 0 or not text.startswith("SLURM_JWT="):
            reason = err.decode("utf-8", "replace").strip().splitlines()
            raise MintFailed(f"scontrol token failed: {reason[-1] if reason else 'no output'}")
        token = text[len("SLURM_JWT="):]
        return token, exp_of(token)




def exp_of(token: str) -> int:
    """Given a token a backend returned, return its exp; raise MintFailed."""
    try:
        return slurm_claims(token).exp
    except ValueError as err:
        raise MintFailed(f"the backend returned an unusable token: {err}") from None


def make_minter(cfg: Config, slurm: SlurmConf) -> tuple[Minter, str]:
    """Return the minter the configuration asks for and the backend's name
    ("key" or "scontrol"); raise ConfigError (KeyFileError) when the key is
    missing or unsafe."""
    key_path = cfg.jwt_key or slurm.jwt_key_path()
    backend = cfg.backend
    if backend == "auto":
        backend = "key" if key_present(key_path) else "scontrol"
    if backend == "key":
        return KeyMinter(load_key(key_path, slurm.slurm_user)), backend
    return ScontrolMinter(cfg.scontrol, cfg.slurm_conf_path()), backend


def key_present(path: str) -> bool:
    """Backend=auto: a key we cannot even stat (EACCES) is still a key that
    is there; falling back to scontrol would hide the misconfiguration."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return True
