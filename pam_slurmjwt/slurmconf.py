"""Reading the few slurm.conf settings this project depends on: SlurmUser,
AuthType, AuthAltTypes, AuthAltParameters (jwt_key=, jwks=, ...), StateSaveLocation,
TaskProlog, CliFilterPlugins and where accounting goes (AccountingStorageType,
AccountingStorageHost, AccountingStoragePort), following Include lines as
slurmctld does.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Optional

from pam_slurmjwt.config import read_pairs
from pam_slurmjwt.errors import ConfigError

MAX_INCLUDE_DEPTH = 8
MAX_BYTES = 4 << 20


@dataclass(frozen=True)
class SlurmConf:
    """What this project needs from slurm.conf; defaults are Slurm's own."""

    path: str
    slurm_user: str = "root"
    auth_type: str = "auth/munge"
    auth_alt_types: tuple[str, ...] = ()
    auth_alt_parameters: tuple[tuple[str, str], ...] = ()
    state_save_location: str = "/var/spool"
    task_prolog: Optional[str] = None
    cli_filter_plugins: tuple[str, ...] = ()
    accounting_storage_type: str = "accounting_storage/none"
    accounting_storage_host: Optional[str] = None
    accounting_storage_port: Optional[str] = None

    def alt_parameter(self, name: str) -> Optional[str]:
        for key, value in self.auth_alt_parameters:
            if key == name:
                return value
        return None

    def has_alt_parameter(self, name: str) -> bool:
        """True when AuthAltParameters names `name`, with or without a value."""
        return any(key == name for key, _value in self.auth_alt_parameters)

    @property
    def slurmdbd(self) -> bool:
        """True when accounting goes through slurmdbd (sacct, sacctmgr, sreport
        and the job records reach it, and it must take tokens too)."""
        return self.accounting_storage_type == "accounting_storage/slurmdbd"

    @property
    def jwt_enabled(self) -> bool:
        return "auth/jwt" in self.auth_alt_types

    def jwt_key_path(self) -> str:
        """Return the key slurmctld uses: jwt_key=, else StateSaveLocation/jwt_hs256.key."""
        return self.alt_parameter("jwt_key") or os.path.join(
            self.state_save_location, "jwt_hs256.key")


def _read(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as err:
        raise ConfigError(f'cannot read slurm.conf "{path}": {err.strerror}; '
                          f"set SlurmConf= in slurmjwt.conf or SLURM_CONF") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(f'cannot read slurm.conf "{path}": larger than {MAX_BYTES} bytes')
    return data.decode("utf-8", "replace")


def _collect(path: str, settings: dict[str, str], depth: int) -> None:
    if depth > MAX_INCLUDE_DEPTH:
        raise ConfigError(f'slurm.conf "{path}": Include nested more than '
                          f"{MAX_INCLUDE_DEPTH} deep")
    base = os.path.dirname(path)
    for _number, key, value in read_pairs(_read(path)):
        lowered = key.lower()
        if lowered == "include":
            pattern = value.strip('"')
            if not pattern.startswith("/"):
                pattern = os.path.join(base, pattern)
            for included in sorted(glob.glob(pattern)):
                _collect(included, settings, depth + 1)
        else:
            # Multi-pair lines (NodeName=... CPUs=...) keep only their first
            # word; none of the keys read here ever shares a line.
            settings[lowered] = value.split()[0] if value.split() else ""


def parse_slurm_conf(path: str) -> SlurmConf:
    """Given the path of slurm.conf, return the settings this project uses;
    raise ConfigError when it cannot be read."""
    settings: dict[str, str] = {}
    _collect(path, settings, 0)
    params = []
    for item in settings.get("authaltparameters", "").split(","):
        key, _, value = item.strip().partition("=")
        if key:
            params.append((key.strip().lower(), value.strip()))
    alt_types = tuple(t.strip().lower() for t in settings.get("authalttypes", "").split(",")
                      if t.strip())
    kwargs = {}
    if settings.get("slurmuser"):
        kwargs["slurm_user"] = settings["slurmuser"]
    if settings.get("authtype"):
        kwargs["auth_type"] = settings["authtype"].lower()
    if settings.get("statesavelocation"):
        kwargs["state_save_location"] = settings["statesavelocation"]
    if settings.get("taskprolog"):
        kwargs["task_prolog"] = settings["taskprolog"]
    if settings.get("accountingstoragetype"):
        kwargs["accounting_storage_type"] = settings["accountingstoragetype"].lower()
    for key in ("host", "port"):
        if settings.get(f"accountingstorage{key}"):
            kwargs[f"accounting_storage_{key}"] = settings[f"accountingstorage{key}"]
    plugins = tuple(p.strip().lower() for p in settings.get("clifilterplugins", "").split(",")
                    if p.strip())
    return SlurmConf(path=path, auth_alt_types=alt_types, auth_alt_parameters=tuple(params),
                     cli_filter_plugins=plugins, **kwargs)
