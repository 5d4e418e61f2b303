"""slurmjwt.conf: every option in one table, and the parser for the file.

The file uses slurm.conf syntax (`Key=Value`, keys case-insensitive, `#`
comments). Every key is optional; the man page and README reference are
generated from OPTIONS, so this table is the single source of truth.
"""

from __future__ import annotations

import os
import stat

from pam_slurmjwt.errors import ConfigError

TYPE_CHECKING = False  # typing itself is not imported at run time (above)
if TYPE_CHECKING:
    from pam_slurmjwt.slurmconf import OtherAuth

# No dataclasses or typing at run time: slurmjwt-refresh imports this module
# on every refresh, and each of those imports costs more than our own work.

DEFAULT_PATH = "/etc/slurm/slurmjwt.conf"
MAX_CONFIG_BYTES = 1 << 20


class Option:
    """One configuration key: name as written in the file, kind ("seconds",
    "int", "path", "list", "choice", "bool"), default, one line of help."""

    __slots__ = ("attr", "choices", "default", "default_text", "help", "kind", "maximum",
                 "minimum", "name")

    def __init__(self, name: str, kind: str, default: object, help: str,
                 choices: tuple[str, ...] = (), minimum: int = 0, maximum: int | None = None,
                 default_text: str = "") -> None:
        self.name = name
        self.kind = kind
        self.default = default
        self.help = help
        self.choices = choices
        self.minimum = minimum
        self.maximum = maximum
        self.attr = _snake(name)
        # How the manual shows a default that depends on other options.
        self.default_text = default_text


def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


OPTIONS: tuple[Option, ...] = (
    Option("JwtKey", "path", None,
           "Signing key file: a PEM RSA private key signs RS256 (kid: the RFC 7638 thumbprint "
           "of its public key, which slurmctld's JWKS must hold); any other file is an HS256 "
           "key, used byte for byte. Default: AuthAltParameters=jwt_key= from slurm.conf, "
           "else StateSaveLocation/jwt_hs256.key."),
    Option("SlurmConf", "path", None,
           "slurm.conf to read. Default: $SLURM_CONF, else /etc/slurm/slurm.conf."),
    Option("Backend", "choice", "auto",
           "How tokens are made: key (sign with JwtKey), scontrol (run `scontrol token` "
           "as SlurmUser), auto (key if the key file exists, else scontrol).",
           choices=("auto", "key", "scontrol")),
    Option("Lifespan", "seconds", 1800, "Lifespan of a token, in seconds.", minimum=10),
    Option("MaxLifespan", "seconds", None,
           "Longest lifespan a caller may ask for; longer requests are capped. Kept short: "
           "before Slurm 26.05 a token can be stored with every job it submits.",
           minimum=10, default_text="twice Lifespan"),
    Option("MaxLifespanFor", "caps", (),
           "Longer caps for some: comma-separated NAME:SECONDS (a user) or @GROUP:SECONDS "
           "(members of a group, supplementary included), e.g. `portal:86400,@workflows:"
           "43200`; matched by uid and gid, the longest cap that applies wins.", minimum=10),
    Option("RefreshMargin", "seconds", 600,
           "Refresh a cached token when it has less than this left. Must exceed any "
           "clock skew between this host and slurmctld.", minimum=1),
    Option("IdentityClaims", "bool", False,
           "Put the user's uid, gid and ids (gecos, home, shell, group ids) from this host's "
           "NSS into every token, for Slurm >= 26.05 with AuthAltParameters="
           "use_jwt_client_ids: slurmctld then needs no user lookup of its own. Backend=key "
           "only."),
    Option("Export", "choice", "auto",
           "Put SLURM_JWT in the environment: always, never, or auto (only where Slurm's "
           "commands have no other way in: slurm.conf's AuthType is auth/munge and "
           "MungeSocket is not a socket, or auth/slurm and no sackd socket is there; "
           "docs/internals.md, \"Export\").",
           choices=("auto", "always", "never")),
    Option("HelperSocket", "path", "/run/slurmjwt/helper.sock",
           "Unix socket of slurmjwt-helper that anyone may use (mode 0666). Its key id is "
           "published in the directory key/ beside it."),
    Option("RootSocket", "path", "/run/slurmjwt/root.sock",
           "Unix socket of slurmjwt-helper for root only (mode 0600): pam_slurmjwt's, with "
           "an accept queue of its own so that no user can delay logins."),
    Option("HelperTimeout", "seconds", 3,
           "How long clients wait for the helper before giving up, 1 to 60.", minimum=1,
           maximum=60),
    Option("ReadTimeout", "seconds", 2,
           "How long the helper waits for a client's request line, 1 to 60.", minimum=1,
           maximum=60),
    Option("Workers", "int", 2,
           "Helper processes serving HelperSocket; more use more cores during bursts. "
           "RootSocket (logins) has one more process of its own.",
           minimum=1),
    Option("MaxConnections", "int", 256,
           "Connections each helper process serves at once; more are refused with `busy`.",
           minimum=1),
    Option("MaxConnectionsPerUser", "int", 8,
           "Connections one non-root uid may hold at once in each helper process.", minimum=1),
    Option("MaxRequestsPerUser", "int", 240,
           "Requests one non-root uid may make to each helper process per minute, at once or "
           "spread out; more are refused with `busy`. Root is not limited.", minimum=1),
    Option("MinUid", "int", 1000,
           "Users with a smaller uid (system accounts) get no token."),
    Option("DenyUsers", "list", ("nobody",),
           "Comma-separated user names that never get a token (checked by uid too)."),
    Option("AllowPrivileged", "list", (),
           "Comma-separated names of root, SlurmUser or system accounts that may get a "
           "token anyway. Empty by default: a token for root is root on the cluster."),
    Option("AllowGroups", "list", (),
           "Comma-separated group names; when set, only their members get a token. "
           "Membership is by gid through the name service, primary and supplementary "
           "groups alike (as a session gets them); a group it does not know admits nobody "
           "until it does (asked again every 5 s)."),
    Option("DenyGroups", "list", (),
           "Comma-separated group names whose members never get a token, whatever "
           "AllowGroups says; checked by gid like AllowGroups. While one names a group the "
           "name service does not know (a typo, or sssd's negative cache), nobody gets a "
           "token (`internal`)."),
    Option("LookupTimeout", "seconds", 2,
           "How long the helper waits for the name service (sssd, LDAP) to look up a user "
           "or their groups, 1 to 60; a slower lookup is refused as `internal` (try again).",
           minimum=1, maximum=60),
    Option("MungeSocket", "path", None,
           "munged's socket; with Export=auto and AuthType=auth/munge its presence means "
           "munge works here.",
           default_text="slurm.conf's AuthInfo=socket=, else /run/munge/munge.socket.2"),
    Option("Scontrol", "path", "/usr/bin/scontrol", "scontrol used by Backend=scontrol."),
    Option("SlurmBinDir", "path", "/usr/bin",
           "Where Slurm's client commands are: the wrappers in /usr/lib/slurmjwt/bin run "
           "SlurmBinDir/NAME, and `slurmjwt wrappers --update` lists them from there."),
    Option("Clusters", "list", (),
           "Comma-separated names of the clusters whose slurmctld takes this node's tokens "
           "(its key in each one's JWKS). When set, a Slurm command about to send a token to "
           "another cluster (named by -M/--clusters, SLURM_CLUSTERS, SBATCH_CLUSTERS or "
           "SALLOC_CLUSTERS, or the ClusterName of "
           "its slurm.conf) stops before Slurm runs, saying so in one line (exit 1); "
           "sacct, sacctmgr, sreport (slurmdbd's alone) and -M all are not checked. Unset: "
           "no check. `slurmjwt doctor` asks each listed cluster.", maximum=4095),
    Option("MetricsListen", "address", None,
           "ADDRESS:PORT (numeric; `[::1]:9101` for IPv6) where the helper serves its "
           "Prometheus metrics over HTTP, without authentication; unset, the helper keeps "
           "no metrics. An address that does not parse or bind is logged in one line, and "
           "the helper serves tokens without metrics."),
    Option("Debug", "bool", False, "Log debug lines (read again at each reload)."),
)

# Topics for the man page and README reference; every option in exactly one.
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Tokens", ("Lifespan", "MaxLifespan", "MaxLifespanFor", "RefreshMargin", "Export",
                "IdentityClaims")),
    ("Signing", ("Backend", "JwtKey", "SlurmConf", "Scontrol")),
    ("Who may have a token", ("MinUid", "DenyUsers", "AllowPrivileged", "AllowGroups",
                              "DenyGroups")),
    ("The helper", ("HelperSocket", "RootSocket", "HelperTimeout", "ReadTimeout", "Workers",
                    "MaxConnections", "MaxConnectionsPerUser", "MaxRequestsPerUser",
                    "LookupTimeout", "MungeSocket", "MetricsListen", "Debug")),
    ("Slurm commands", ("SlurmBinDir", "Clusters")),
)

BY_KEY = {opt.name.lower(): opt for opt in OPTIONS}


class Config:
    """Parsed settings: one attribute per option, named in snake case
    (RefreshMargin -> refresh_margin), plus `path` and `warnings`."""

    jwt_key: str | None
    slurm_conf: str | None
    backend: str
    lifespan: int
    max_lifespan: int
    max_lifespan_for: tuple[tuple[str, int], ...]
    refresh_margin: int
    export: str
    identity_claims: bool
    helper_socket: str
    root_socket: str
    helper_timeout: int
    read_timeout: int
    workers: int
    max_connections: int
    max_connections_per_user: int
    max_requests_per_user: int
    min_uid: int
    deny_users: tuple[str, ...]
    allow_privileged: tuple[str, ...]
    allow_groups: tuple[str, ...]
    deny_groups: tuple[str, ...]
    lookup_timeout: int
    munge_socket: str | None
    scontrol: str
    slurm_bin_dir: str
    clusters: tuple[str, ...]
    metrics_listen: str | None
    debug: bool

    def __init__(self, path: str | None = None, warnings: tuple[str, ...] = (),
                 **values: object) -> None:
        for opt in OPTIONS:
            setattr(self, opt.attr, values.pop(opt.attr, opt.default))
        if values:
            raise TypeError(f"unknown options {sorted(values)}")
        if self.max_lifespan is None:
            self.max_lifespan = 2 * self.lifespan
        self.path = path
        self.warnings = warnings
        # slurm.conf's part of the Export=auto rule, read once per Config
        # (the helper reads its Config again at each reload).
        self.auth_sockets: tuple[str | None, tuple[str, ...]] | None = None

    def slurm_conf_path(self) -> str:
        return self.slurm_conf or os.environ.get("SLURM_CONF") or "/etc/slurm/slurm.conf"


def read_pairs(text: str) -> list[tuple[int, str, str]]:
    """Given slurm.conf-style text, return (line number, key, value) for each
    `Key=Value` line; comments and blank lines are skipped, keys keep case."""
    pairs = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep and " " in key:
            # "Include /path" style lines: keyword, space, argument.
            key, _, value = key.partition(" ")
            sep = "="
        pairs.append((number, key, value.strip() if sep else ""))
    return pairs


def _convert(opt: Option, raw: str, where: str) -> object:
    value = raw.strip().strip('"')
    if opt.kind in ("seconds", "int"):
        if not (value.isascii() and value.isdigit()) or len(value) > 9:
            raise ConfigError(f"{where}: {opt.name}={raw!s} is not a whole number")
        number = int(value)
        if number < opt.minimum:
            raise ConfigError(f"{where}: {opt.name}={number} is below the minimum {opt.minimum}")
        if opt.maximum is not None and number > opt.maximum:
            raise ConfigError(f"{where}: {opt.name}={number} is above the maximum {opt.maximum}")
        return number
    if opt.kind == "list":
        items = tuple(v.strip() for v in value.split(",") if v.strip())
        # A list the C wrapper reads too has its buffer's bound (bytes, joined by ",").
        if opt.maximum is not None and len(",".join(items).encode()) > opt.maximum:
            raise ConfigError(f"{where}: {opt.name}= is longer than {opt.maximum} bytes")
        return items
    if opt.kind == "caps":
        return _caps(opt, value, where)
    if opt.kind == "choice":
        if value.lower() not in opt.choices:
            raise ConfigError(
                f"{where}: {opt.name}={value} is not one of {', '.join(opt.choices)}")
        return value.lower()
    if opt.kind == "bool":
        if value.lower() in ("yes", "true", "1", "on"):
            return True
        if value.lower() in ("no", "false", "0", "off"):
            return False
        raise ConfigError(f"{where}: {opt.name}={value} is not yes or no")
    if opt.kind == "address":
        return value or None  # checked by the helper, which serves tokens whatever it is
    if not value.startswith("/"):
        raise ConfigError(f"{where}: {opt.name}={value} must be an absolute path")
    return value


def _caps(opt: Option, value: str, where: str) -> tuple[tuple[str, int], ...]:
    caps = []
    for item in (v.strip() for v in value.split(",") if v.strip()):
        name, sep, seconds = item.rpartition(":")
        if (not sep or not name.lstrip("@") or not seconds.isascii() or not seconds.isdigit()
                or len(seconds) > 9):
            raise ConfigError(f"{where}: {opt.name}: {item!r} is not NAME:SECONDS or "
                              f"@GROUP:SECONDS")
        if int(seconds) < opt.minimum:
            raise ConfigError(f"{where}: {opt.name}: {item} is below the minimum "
                              f"{opt.minimum}")
        caps.append((name, int(seconds)))
    return tuple(caps)


def parse_config(text: str, path: str = DEFAULT_PATH) -> Config:
    """Given the text of a slurmjwt.conf, return a Config; raise ConfigError
    when a known key has a bad value. Unknown keys become warnings."""
    values: dict[str, object] = {}
    warnings = []
    for number, key, raw in read_pairs(text):
        where = f"{path}:{number}"
        opt = BY_KEY.get(key.lower())
        if opt is None:
            warnings.append(f"{where}: unknown key {key!r} ignored")
            continue
        values[opt.attr] = _convert(opt, raw, where)
    cfg = Config(path, tuple(warnings), **values)
    check_consistency(cfg)
    return cfg


def check_consistency(cfg: Config) -> None:
    """Raise ConfigError when options contradict each other."""
    where = cfg.path or "configuration"
    if cfg.refresh_margin >= cfg.lifespan:
        raise ConfigError(
            f"{where}: RefreshMargin={cfg.refresh_margin} must be smaller than "
            f"Lifespan={cfg.lifespan}, or every token would need refreshing at once")
    if cfg.lifespan > cfg.max_lifespan:
        raise ConfigError(
            f"{where}: Lifespan={cfg.lifespan} exceeds MaxLifespan={cfg.max_lifespan}")


def read_admin_file(path: str, what: str, max_bytes: int = MAX_CONFIG_BYTES) -> str | None:
    """Given the path of a file only admins may write, return its text, or
    None if it does not exist; raise ConfigError when it is not a regular
    file, has an unexpected owner or is writable by group or others."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno == 40:  # ELOOP: the path is a symlink
            raise ConfigError(f'cannot use {what} "{path}": it is a symlink; '
                              f"replace it with the real file") from None
        raise ConfigError(f'cannot read {what} "{path}": {err.strerror}') from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f'cannot use {what} "{path}": not a regular file')
        if st.st_uid != 0:
            raise ConfigError(f'cannot use {what} "{path}": owned by uid {st.st_uid}, '
                              f'not root; run chown root: "{path}"')
        if st.st_mode & 0o022:
            raise ConfigError(
                f'cannot use {what} "{path}": mode {stat.S_IMODE(st.st_mode):04o} lets '
                f'others change it; run chmod go-w "{path}"')
        data = os.read(fd, max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise ConfigError(f'cannot use {what} "{path}": larger than {max_bytes} bytes')
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f'cannot use {what} "{path}": not UTF-8 text') from None


def load_config(path: str | None = None) -> Config:
    """Given a path (default: $SLURMJWT_CONF, else /etc/slurm/slurmjwt.conf),
    return its Config; a missing file gives the defaults."""
    path = path or os.environ.get("SLURMJWT_CONF") or DEFAULT_PATH
    text = read_admin_file(path, "configuration")
    if text is None:
        return Config()
    return parse_config(text, path)


def refresh_at(cfg: Config, iat: int, exp: int) -> int:
    """Given a token's iat and exp, return the epoch second from which a
    cache should get a new one: RefreshMargin before exp, or halfway for a
    token that lives less than twice the margin (docs/internals.md)."""
    return exp - min(cfg.refresh_margin, max(exp - iat, 0) // 2)


def other_auth(cfg: Config) -> OtherAuth:
    """Given the configuration, return how Slurm's commands on this host
    authenticate without JWT (slurmconf.other_auth): slurm.conf is read once
    per Config, the sockets are looked at on every call."""
    # Imported here: slurmconf reads slurm.conf with this module's parser.
    from pam_slurmjwt import slurmconf

    if cfg.auth_sockets is None:
        cfg.auth_sockets = slurmconf.auth_sockets(cfg.munge_socket, cfg.slurm_conf, os.environ)
    return slurmconf.other_auth(*cfg.auth_sockets)


def export_wanted(cfg: Config) -> bool:
    """Return the Export policy's answer for this host: always, never, or
    (auto) only where Slurm's commands have no other way in than JWT."""
    if cfg.export == "always":
        return True
    if cfg.export == "never":
        return False
    return not other_auth(cfg).works
