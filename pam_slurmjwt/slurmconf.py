"""Reading the few slurm.conf settings this project depends on: SlurmUser,
AuthType, AuthInfo, AuthAltTypes, AuthAltParameters (jwt_key=, jwks=, ...),
StateSaveLocation, TaskProlog, CliFilterPlugins, ClusterName and where
accounting goes (AccountingStorageType, AccountingStorageHost,
AccountingStoragePort), following Include lines as slurmctld does; and from
them whether Slurm's commands here have another way in than JWT (munged's or
sackd's socket).
"""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Mapping
from typing import NamedTuple, Optional

from pam_slurmjwt.config import read_pairs
from pam_slurmjwt.errors import ConfigError

MAX_INCLUDE_DEPTH = 8
MAX_BYTES = 4 << 20


# Where Slurm's clients look (src/common/read_config.c, src/common/sack_api.c,
# src/plugins/auth/munge in 23.11-25.11): the configless copy that slurmd or
# sackd keeps, munged's default socket, and the sack sockets of sackd (or
# slurmd) and of a slurmctld or slurmdbd on the same host, tried in this order
# after SLURM_SACK_SOCKET and, from 25.05, the per-cluster sackd's socket.
DEFAULT_SLURM_CONF = "/etc/slurm/slurm.conf"
CONFIGLESS_SLURM_CONF = "/run/slurm/conf/slurm.conf"
MUNGE_SOCKET = "/run/munge/munge.socket.2"
CLUSTER_SACK_SOCKET = "/run/slurm-{}/sack.socket"
SACK_SOCKETS = ("/run/slurm/sack.socket", "/run/slurmctld/sack.socket",
                "/run/slurmdbd/sack.socket")


# A NamedTuple, not a dataclass: slurmjwt-refresh reads slurm.conf for Export=auto,
# and the dataclasses module would cost it more than the reading.
class SlurmConf(NamedTuple):
    """What this project needs from slurm.conf; defaults are Slurm's own."""

    path: str
    slurm_user: str = "root"
    auth_type: str = "auth/munge"
    auth_info: str = ""
    cluster_name: str = ""
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

    def munge_socket(self) -> str:
        """Return munged's socket as auth/munge finds it: AuthInfo's socket=, or a
        whole AuthInfo without `=` (the old form), else munged's default."""
        if self.auth_info and "=" not in self.auth_info:
            return self.auth_info
        for item in self.auth_info.split(","):
            key, _, value = item.partition("=")
            if key.strip().lower() == "socket" and value.strip():
                return value.strip()
        return MUNGE_SOCKET

    def jwt_key_path(self) -> str:
        """Return the key slurmctld uses: jwt_key=, else StateSaveLocation/jwt_hs256.key."""
        return self.alt_parameter("jwt_key") or os.path.join(
            self.state_save_location, "jwt_hs256.key")


def _read(path: str) -> str:
    # SLURM_CONF may name any file: a FIFO is not waited on, nor a device read.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        with open(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise ConfigError(f'cannot read slurm.conf "{path}": not a regular file')
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
            # word; none of the keys read here ever shares a line. A quoted
            # value (ClusterName="a") is taken without its quotes, as Slurm
            # takes it, and as the C wrapper does.
            if value.startswith('"'):
                settings[lowered] = value[1:].partition('"')[0]
            else:
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
    if settings.get("authinfo"):
        kwargs["auth_info"] = settings["authinfo"]
    if settings.get("clustername"):
        kwargs["cluster_name"] = settings["clustername"]
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


class OtherAuth(NamedTuple):
    """How Slurm's own commands authenticate on this host without JWT: `auth`
    is slurm.conf's AuthType (None when no slurm.conf could be read), `socket`
    the socket found for it (None: JWT is the only way in), `tried` the sockets
    looked at, in order."""

    auth: Optional[str]
    socket: Optional[str]
    tried: tuple[str, ...]

    @property
    def works(self) -> bool:
        return self.socket is not None


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def sack_sockets(cluster_name: str, environ: Mapping[str, str],
                 root: str = "") -> tuple[str, ...]:
    """Given slurm.conf's ClusterName, return the sockets where an auth/slurm
    client looks for sackd, in its order: SLURM_SACK_SOCKET alone when set
    (25.05+), else the cluster's own sackd (25.05+: a sackd with a systemd
    RuntimeDirectory=slurm-NAME), then the fixed ones. `root` prefixes the
    fixed paths, for tests."""
    if environ.get("SLURM_SACK_SOCKET"):
        return (environ["SLURM_SACK_SOCKET"],)
    cluster = (root + CLUSTER_SACK_SOCKET.format(cluster_name.lower()),) if cluster_name else ()
    return cluster + tuple(root + path for path in SACK_SOCKETS)


def auth_sockets(munge_socket: Optional[str], slurm_conf: Optional[str],
                 environ: Mapping[str, str],
                 root: str = "") -> tuple[Optional[str], tuple[str, ...]]:
    """Given slurmjwt.conf's MungeSocket and SlurmConf (None: unset), return the
    AuthType of the slurm.conf Slurm's commands here read ($SLURM_CONF, else
    SlurmConf, else /etc/slurm/slurm.conf, else the configless copy in
    /run/slurm/conf; None when none can be read) and the sockets through
    which that type works without JWT, in the order the commands try them:
    auth/munge munged's (MungeSocket, else AuthInfo's socket=, else the
    default), auth/slurm sack_sockets(), any other type none. Without a
    slurm.conf, munged's and sackd's sockets all count. `root` prefixes the
    fixed default paths, for tests."""
    # $SLURM_CONF first: it is what the command about to run reads.
    path = environ.get("SLURM_CONF") or slurm_conf
    if not path:
        path = root + DEFAULT_SLURM_CONF
        if not os.path.exists(path):
            path = root + CONFIGLESS_SLURM_CONF
    try:
        conf: Optional[SlurmConf] = parse_slurm_conf(path)
    except ConfigError:
        conf = None
    munge = munge_socket or (conf.munge_socket() if conf else MUNGE_SOCKET)
    if munge == MUNGE_SOCKET and not munge_socket:
        munge = root + munge
    if conf is None:
        return None, (munge, *sack_sockets("", environ, root))
    if conf.auth_type == "auth/munge":
        return conf.auth_type, (munge,)
    if conf.auth_type == "auth/slurm":
        return conf.auth_type, sack_sockets(conf.cluster_name, environ, root)
    return conf.auth_type, ()


def other_auth(auth: Optional[str], sockets: tuple[str, ...]) -> OtherAuth:
    """Given auth_sockets()'s answer, return how Slurm's commands here
    authenticate without JWT: the first of those sockets that is a socket now.
    Sockets are only looked at, never connected to (munged logs every
    connection that sends nothing), so a socket a killed sackd left behind
    counts: sackd never removes its own (systemd's RuntimeDirectory= does)."""
    found = next((sock for sock in sockets if _is_socket(sock)), None)
    return OtherAuth(auth, found, sockets)
