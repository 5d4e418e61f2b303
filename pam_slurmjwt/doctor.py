"""slurmjwt doctor: check the whole chain on a login node and say, for each
link, OK or what is wrong and the exact fix. Root gets every check; a user
gets those that concern them. Nothing here prints or logs a token.
"""

from __future__ import annotations

import ctypes
import glob
import os
import pwd
import queue
import re
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Optional

from pam_slurmjwt import nss, protocol, slurmside, wrappers
from pam_slurmjwt.cache import FALLBACK_BASE, Cache, read_key_id
from pam_slurmjwt.config import Config, export_wanted, load_config
from pam_slurmjwt.errors import NameServiceError, SlurmJwtError
from pam_slurmjwt.slurmconf import SlurmConf, parse_slurm_conf
from pam_slurmjwt.token import inspect

PAM_DIRS = ("/usr/lib64/security", "/lib64/security", "/usr/lib/*/security",
            "/lib/*/security", "/usr/lib/security", "/lib/security")
SSHD_PAM = "/etc/pam.d/sshd"
PROFILE = "/etc/profile.d/slurmjwt.sh"
# Where shells read system-wide start-up files that profile.d does not cover:
# zsh on Debian reads neither profile.d nor /etc/profile (login: zprofile);
# non-login interactive bash and zsh (IDE terminals) read only their rc.
SHELL_RCS = {"zprofile": "/etc/zsh/zprofile", "bashrc": "/etc/bash.bashrc",
             "zshrc": "/etc/zsh/zshrc"}
NSSWITCH = "/etc/nsswitch.conf"
SYSTEMD_RUNNING = "/run/systemd/system"  # exists while systemd is PID 1 (sd_booted)
SOCKET_UNITS = ("slurmjwt-helper.socket", "slurmjwt-helper-root.socket")
TIMER_UNIT = "slurmjwt-refresh.timer"
CLIENT_TIMEOUT = 20
CANDIDATES = 5  # users doctor tries, as root without --user, to prove the key
INCLUDE_DEPTH = 8  # PAM's own limit on nested includes is similar
# Looked up when doctor has no user to look up: nobody has this name, so
# every passwd source is asked, and one that fails shows.
PROBE_NAME = "slurmjwt-doctor-probe"


@dataclass(frozen=True)
class Check:
    """One line of the report: status OK, WARN, FAIL or SKIP, what, and the fix."""

    status: str
    name: str
    message: str

    def line(self) -> str:
        return f"{self.status:<5}{self.name}: {self.message}"


class Doctor:
    """Runs the checks in order; later ones use what earlier ones found."""

    def __init__(self, config_path: str | None, user: str | None,
                 sshd_pam: str = SSHD_PAM, profile: str = PROFILE,
                 wrapper_dir: str = wrappers.WRAPPER_DIR,
                 wrap_program: str = wrappers.WRAP_PROGRAM,
                 shell_rcs: dict[str, str] | None = None,
                 systemd: bool | None = None, nsswitch: str = NSSWITCH) -> None:
        self.config_path = config_path
        self.root = os.geteuid() == 0
        # As root without --user: a user is picked to prove the key (accepted).
        self.user = user or ("" if self.root else pwd.getpwuid(os.getuid()).pw_name)
        self.sshd_pam = sshd_pam
        self.profile = profile
        self.wrapper_dir = wrapper_dir
        self.wrap_program = wrap_program
        self.shell_rcs = SHELL_RCS if shell_rcs is None else shell_rcs
        self.kid: str | None = None  # the key id of the helper's tokens
        self.nsswitch = nsswitch
        # systemd as PID 1: the helper's socket units, pam_systemd and the
        # users' timer are checked too.
        self.systemd = os.path.isdir(SYSTEMD_RUNNING) if systemd is None else systemd
        self.cfg: Config | None = None
        self.slurm: SlurmConf | None = None
        self.helper_ok = False
        self.version: tuple[int, int] | None = None
        # The helper's token from `accepted`: lets `clock` ask slurmctld on a
        # host where JWT is the only way in (no munge).
        self.token: str | None = None
        # This node's key, from `key` (root): its path and, for RSA, its kid.
        self.key_path: str | None = None

    def run(self) -> Iterator[Check]:
        steps: list[Callable[[], Optional[Check]]] = [
            self.config, self.slurm_conf, self.jwt_enabled, self.name_service]
        if self.root:
            steps += [self.token_creation, self.key, self.group_policy]
            if self.systemd:
                steps += [self.helper_unit]
        steps += [self.helper, self.accepted, self.key_id, self.clock, self.export]
        if self.root:
            steps += [self.root_socket, self.pam_module, self.pam_stack, self.profile_d,
                      self.shells, self.wrappers, self.fallback]
            if self.systemd:
                steps += [self.user_timer]
            steps += [self.task_prolog, self.cli_filter]
        else:
            steps += [self.cache, self.path]
            if self.systemd:
                steps += [self.own_timer]
        for step in steps:
            try:
                check = step()
            except SlurmJwtError as err:
                check = Check("FAIL", step.__name__.replace("_", " "), str(err))
            if check is not None:  # None: nothing to check on this host
                yield check

    # -- configuration

    def config(self) -> Check:
        self.cfg = load_config(self.config_path)
        where = self.cfg.path or "no slurmjwt.conf (defaults)"
        if self.cfg.warnings:
            return Check("WARN", "config", f"{where}; " + "; ".join(self.cfg.warnings))
        return Check("OK", "config", where)

    def slurm_conf(self) -> Check:
        assert self.cfg is not None
        self.slurm = parse_slurm_conf(self.cfg.slurm_conf_path())
        return Check("OK", "slurm.conf", f"{self.slurm.path} (SlurmUser={self.slurm.slurm_user})")

    def jwt_enabled(self) -> Check:
        assert self.slurm is not None
        if self.slurm.jwt_enabled:
            return Check("OK", "auth/jwt", f"AuthAltTypes={','.join(self.slurm.auth_alt_types)}")
        return Check("FAIL", "auth/jwt", f"AuthAltTypes in {self.slurm.path} lacks auth/jwt; add "
                     "AuthAltTypes=auth/jwt (and AuthAltParameters=jwt_key=PATH) on every host, "
                     "then restart slurmctld")

    def name_service(self) -> Check:
        """The user, looked up as the helper looks users up (nss.py), within
        LookupTimeout: sssd down or hung is named, with the fix."""
        assert self.cfg is not None
        sources = _nss_sources(self.nsswitch, "passwd")
        where = f"passwd: {' '.join(sources) or 'files'} in {self.nsswitch}"
        fix = _name_service_fix(sources, self.nsswitch)
        timeout = self.cfg.lookup_timeout
        name = self.user or PROBE_NAME
        started = time.monotonic()
        try:
            entry = _within(timeout, nss.user_by_name, name)
        except NameServiceError as err:
            return Check("FAIL", "name service", f"{err} ({where}); {fix}")
        except TimeoutError:
            return Check("FAIL", "name service", f"no answer for user {name!r} within "
                         f"{timeout} s (LookupTimeout; {where}); {fix}")
        took = time.monotonic() - started
        if not self.user:
            return Check("OK", "name service", f"every source answers ({where}; a name nobody "
                         f"has took {took:.2f} s)")
        if entry is None:
            return Check("FAIL", "name service", f"no user {name!r} ({where}); check the "
                         "name, and that the directory holds it")
        return Check("OK", "name service", f"{name} is uid {entry.pw_uid} ({where}; "
                     f"answered in {took:.2f} s)")

    def group_policy(self) -> Optional[Check]:
        """AllowGroups and DenyGroups name groups that exist (a group the
        name service does not know admits nobody in AllowGroups, and in
        DenyGroups stops every token, as `internal`, until it knows it)."""
        assert self.cfg is not None
        if not (self.cfg.allow_groups or self.cfg.deny_groups):
            return None
        sources = _nss_sources(self.nsswitch, "group")
        found = []
        for key, names in (("AllowGroups", self.cfg.allow_groups),
                           ("DenyGroups", self.cfg.deny_groups)):
            for name in names:
                try:
                    gid = _within(self.cfg.lookup_timeout, nss.group_id, name)
                except (NameServiceError, TimeoutError) as err:
                    why = str(err) or f"no answer within {self.cfg.lookup_timeout} s"
                    return Check("FAIL", "group policy", f"{key}: {why}; "
                                 f"{_name_service_fix(sources, self.nsswitch)}")
                if gid is None:
                    harm = ("it admits nobody" if key == "AllowGroups" else
                            "the helper gives nobody a token (internal) until there is")
                    return Check("FAIL", "group policy", f"{key} names {name!r}, and there is no "
                                 f"such group, so {harm}; fix the name in "
                                 f"{self.cfg.path or 'slurmjwt.conf'}")
                found.append(f"{name}={gid}")
        return Check("OK", "group policy", f"groups by gid: {', '.join(found)}")

    def token_creation(self) -> Check:
        """A stolen token can ask slurmctld for its successor (scontrol token)
        for ever, unless AuthAltParameters has disable_token_creation."""
        assert self.slurm is not None
        name = "token creation"
        if self.slurm.has_alt_parameter("disable_token_creation"):
            return Check("OK", name, "AuthAltParameters has disable_token_creation: a stolen "
                         "token cannot renew itself with scontrol token")
        if self.slurm.alt_parameter("jwks") and not self.slurm.alt_parameter("jwt_key"):
            return Check("OK", name, "slurmctld has a JWKS and no HS256 key: scontrol token "
                         "cannot make tokens")
        return Check("WARN", name, "a stolen token can get its successor from scontrol token, "
                     "for ever: add disable_token_creation to AuthAltParameters in "
                     f"{self.slurm.path} and restart slurmctld (the helper never uses "
                     "scontrol token; with Backend=scontrol it runs as SlurmUser, who still "
                     "may)")

    def key(self) -> Check:
        from pam_slurmjwt.signing import load_signer

        assert self.cfg is not None and self.slurm is not None
        path = self.cfg.jwt_key or self.slurm.jwt_key_path()
        if self.cfg.backend == "scontrol":
            return Check("SKIP", "key", "Backend=scontrol: the key stays on the controller")
        signer = load_signer(path, self.slurm.slurm_user)
        self.key_path = path
        return Check("OK", "key", f"{path}: {signer.alg} key (kid {signer.kid}), owner and "
                     "mode safe")

    # -- the helper and slurmctld

    def helper_unit(self) -> Check:
        """systemd starts the helper: its two socket units are enabled,
        listening, and on the paths the clients use."""
        assert self.cfg is not None
        fix = f"systemctl enable --now {' '.join(SOCKET_UNITS)}"
        wanted = {SOCKET_UNITS[0]: ("HelperSocket", self.cfg.helper_socket),
                  SOCKET_UNITS[1]: ("RootSocket", self.cfg.root_socket)}
        for unit in SOCKET_UNITS:
            key, path = wanted[unit]
            enabled = _systemctl("is-enabled", unit)
            if enabled != "enabled":
                return Check("FAIL", "helper unit", f"{unit} is {enabled or 'not installed'}, "
                             f"so nothing will listen on {path} after a reboot; run {fix}")
            active = _systemctl("is-active", unit)
            if active != "active":
                return Check("FAIL", "helper unit", f"{unit} is enabled but {active}; run "
                             f"systemctl start {unit} and see systemctl status {unit}")
            listen = _systemctl("show", "--property=Listen", "--value", unit).split(" ")[0]
            if listen != path:
                return Check("FAIL", "helper unit", f"{unit} listens on {listen or 'nothing'} "
                             f"but clients use {key}={path}; make them the same (systemctl "
                             f"edit {unit}, or {key}= in slurmjwt.conf)")
        return Check("OK", "helper unit", f"{' and '.join(SOCKET_UNITS)} enabled and "
                     f"listening on {self.cfg.helper_socket} and {self.cfg.root_socket}: "
                     "systemd starts the helper on the first connection")

    def helper(self) -> Check:
        assert self.cfg is not None
        version = protocol.ping(self.cfg.helper_socket, self.cfg.helper_timeout)
        self.helper_ok = True
        return Check("OK", "helper", f"{self.cfg.helper_socket} answers (version {version})")

    def accepted(self) -> Check:
        """Prove the helper's key is slurmctld's: a 60 s token must be accepted.
        As root without --user, the first of a few users at or above MinUid
        whom the helper may serve is tried in turn: root gets no token."""
        assert self.cfg is not None
        if not self.helper_ok:
            return Check("SKIP", "slurmctld accepts", "needs the helper")
        tried: list[str] = []
        last = "no output"
        rsa = False
        for user in [self.user] if self.user else self._candidates():
            try:
                grant = protocol.request_token(self.cfg.helper_socket,
                                               user if self.root else "-", 60,
                                               self.cfg.helper_timeout)
            except SlurmJwtError as err:
                if not self.user:
                    tried.append(f"{user} ({err})")
                    continue
                raise
            self.kid = grant.kid
            rsa = inspect(grant.token)[0].get("alg") == "RS256"
            out = self._client(["squeue", "--noheader", "--user", user], grant.token)
            if out.returncode == 0:
                self.token = grant.token
                self.user = self.user or user
                key = (f"this node's key (RS256, kid {grant.kid}) is in slurmctld's JWKS"
                       if rsa else "the helper's key is slurmctld's")
                return Check("OK", "slurmctld accepts", f"a token for {user} from the helper "
                             f"works with squeue: {key}")
            last = (out.stderr.strip().splitlines() or ["no output"])[-1]
            tried.append(user)
        if not tried:
            return Check("FAIL", "slurmctld accepts", f"no user at or above MinUid "
                         f"{self.cfg.min_uid} to prove the key with; run slurmjwt doctor "
                         "--user NAME")
        if rsa and self.kid is not None:
            return Check("FAIL", "slurmctld accepts", f"squeue with a fresh helper token failed "
                         f"for {', '.join(tried)} ({last}); {self._missing_from_jwks(self.kid)}")
        return Check("FAIL", "slurmctld accepts",
                     f"squeue with a fresh helper token failed for {', '.join(tried)} "
                     f"({last}); the helper's key is not slurmctld's, the clocks differ, or "
                     "slurmctld does not know these users: compare the key files byte for "
                     "byte, see slurmctld's log for 'jwt_decode failure', or run slurmjwt "
                     "doctor --user NAME with a user slurmctld knows")

    def _candidates(self) -> list[str]:
        """Users the helper may serve, lowest uid first (at most CANDIDATES)."""
        assert self.cfg is not None
        names = [e for e in pwd.getpwall() if e.pw_uid >= self.cfg.min_uid
                 and e.pw_name not in self.cfg.deny_users and e.pw_name != "nobody"
                 and e.pw_uid != 65534]
        return [e.pw_name for e in sorted(names, key=lambda e: e.pw_uid)][:CANDIDATES]

    def key_id(self) -> Check:
        """The key id the helper publishes, which every cache is checked
        against, must be the one its tokens carry."""
        assert self.cfg is not None
        directory = protocol.key_dir(self.cfg.helper_socket)
        published = read_key_id(directory)
        if published is None:
            return Check("FAIL", "key id", f"no key id in {directory}/id: cached tokens count "
                         "as stale and every command asks the helper; restart slurmjwt-helper "
                         "(it writes the file at start), and make sure SlurmUser can write "
                         f"{directory}")
        if self.kid is not None and self.kid != published:
            return Check("FAIL", "key id", f"{directory}/id says {published} but the helper's "
                         f"tokens say {self.kid}: reload the helper (systemctl reload "
                         "slurmjwt-helper)")
        st = os.stat(os.path.join(directory, "id"))
        if st.st_mode & 0o022 or not st.st_mode & 0o004:
            return Check("FAIL", "key id", f"{directory}/id has mode "
                         f"{stat.S_IMODE(st.st_mode):04o}; it must be 0644: restart the helper")
        return Check("OK", "key id", f"{directory}/id names the key in use ({published}): "
                     "caches follow a change of key")

    def _missing_from_jwks(self, kid: str) -> str:
        """Say which node key slurmctld lacks, and, when slurm.conf's JWKS
        file is readable here, whether it lists that key."""
        from pam_slurmjwt.signing import read_jwks

        assert self.slurm is not None
        reload = reload_jwks(self.slurm_version())
        key = f" ({self.key_path})" if self.key_path else ""
        missing = f"this node's key{key}, kid {kid}, is not in slurmctld's JWKS"
        fix = (f"add it (slurmjwt jwks{' ' + self.key_path if self.key_path else ' JWTKEY'} "
               f"gives its entry) and {reload}")
        path = self.slurm.alt_parameter("jwks")
        if not path:
            return (f"{missing} (this host's slurm.conf names none: AuthAltParameters="
                    f"jwks=FILE); {fix}")
        try:
            kids = [entry["kid"] for entry in read_jwks(path)]
        except SlurmJwtError as err:
            return f"{missing} {path} (not compared here: {err}); {fix}"
        if kid in kids:
            return (f"the JWKS {path} here lists this node's key (kid {kid}), so slurmctld has "
                    f"not read it yet, or reads another file: {reload}")
        return f"{missing} {path} (it holds {', '.join(kids) or 'no key'}); {fix}"

    def _client(self, argv: list[str], token: str | None) -> subprocess.CompletedProcess[str]:
        assert self.cfg is not None
        env = {k: v for k, v in os.environ.items() if k != "SLURM_JWT"}
        env["SLURM_CONF"] = self.cfg.slurm_conf_path()
        # Run as root, so never from PATH: Slurm's clients beside Scontrol=.
        env["PATH"] = f"{os.path.dirname(self.cfg.scontrol)}:/usr/bin:/bin"
        argv = [os.path.join(os.path.dirname(self.cfg.scontrol), argv[0]), *argv[1:]]
        if token is not None:
            env["SLURM_JWT"] = token  # in the environment, never on a command line
        try:
            return subprocess.run(argv, env=env, capture_output=True, text=True,
                                  timeout=CLIENT_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as err:
            return subprocess.CompletedProcess(argv, 127, "", str(err))

    def clock(self) -> Check:
        """Skew to slurmctld, from sdiag's `sdiag output at ... (EPOCH)`."""
        assert self.cfg is not None
        before = time.time()
        out = self._client(["sdiag"], self.token)
        after = time.time()
        match = re.search(r"sdiag output at .*\((\d+)\)", out.stdout)
        if out.returncode != 0 or not match:
            return Check("SKIP", "clock", "cannot ask slurmctld for its time (sdiag failed)")
        skew = int(match.group(1)) - (before + after) / 2
        limit = self.cfg.refresh_margin / 4
        text = f"slurmctld's clock is {skew:+.0f} s from this host's"
        if abs(skew) > limit:
            return Check("FAIL", "clock", f"{text}, more than RefreshMargin/4 ({limit:.0f} s): "
                         "tokens may expire early; synchronise both with NTP (chrony)")
        return Check("OK", "clock", f"{text} (RefreshMargin {self.cfg.refresh_margin} s)")

    def export(self) -> Check:
        assert self.cfg is not None
        wanted = export_wanted(self.cfg)
        munge = _is_socket(self.cfg.munge_socket)
        why = {("auto", True): "no munge socket here: JWT is the only way in, so sessions get "
                               "SLURM_JWT",
               ("auto", False): f"munge works here ({self.cfg.munge_socket}): SLURM_JWT is "
                                "not exported, Slurm commands use munge; `slurmjwt token` still "
                                "serves REST clients"}.get((self.cfg.export, wanted))
        if why is None:
            why = f"Export={self.cfg.export}: SLURM_JWT is {'' if wanted else 'not '}exported"
            if wanted and munge:
                why += " although munge works here; srun needs the TaskProlog"
        return Check("OK", "export", why)

    # -- installation (root)

    def root_socket(self) -> Check:
        assert self.cfg is not None
        try:
            st = os.lstat(self.cfg.root_socket)
        except OSError:
            return Check("WARN", "root socket", f"no {self.cfg.root_socket}: logins share "
                         "the users' socket and its queue; systemctl enable --now "
                         "slurmjwt-helper-root.socket (or restart the helper)")
        if not stat.S_ISSOCK(st.st_mode) or st.st_uid != 0 or stat.S_IMODE(st.st_mode) & 0o077:
            return Check("FAIL", "root socket", f"{self.cfg.root_socket} is not a socket of "
                         f"root's with mode 0600 (mode {stat.S_IMODE(st.st_mode):04o}, uid "
                         f"{st.st_uid}): restart the helper's sockets")
        return Check("OK", "root socket", f"{self.cfg.root_socket}: root's, 0600")

    def wrappers(self) -> Check:
        assert self.cfg is not None
        if not os.access(self.wrap_program, os.X_OK):
            return Check("FAIL", "wrappers", f"{self.wrap_program} is missing: run make install "
                         "(or install the package)")
        missing, extra = wrappers.differences(self.wrapper_dir, self.wrap_program,
                                              self.cfg.slurm_bin_dir)
        if missing or extra:
            what = "; ".join(x for x in (
                f"no wrapper for {' '.join(missing)}" if missing else "",
                f"wrappers of removed commands: {' '.join(extra)}" if extra else "") if x)
            return Check("WARN", "wrappers", f"{self.wrapper_dir} and {self.cfg.slurm_bin_dir} "
                         f"differ ({what}); run slurmjwt wrappers --update")
        count = len(wrappers.current(self.wrapper_dir, self.wrap_program))
        if count == 0:
            return Check("WARN", "wrappers", f"no Slurm command in {self.cfg.slurm_bin_dir}: "
                         "set SlurmBinDir in slurmjwt.conf, then slurmjwt wrappers --update")
        return Check("OK", "wrappers", f"{count} Slurm commands in {self.wrapper_dir} fetch "
                     "their own live token")

    def shells(self) -> Check:
        """zsh's login file must read the shim (it reads no profile.d); the
        rc files of non-login interactive shells may (the admin's choice)."""
        line = f". {self.profile}"

        def reads(path: str) -> bool:
            try:
                with open(path) as fh:
                    return self.profile in fh.read(1 << 20)
            except OSError:
                return False

        zprofile = self.shell_rcs.get("zprofile", "")
        if zprofile and os.path.isdir(os.path.dirname(zprofile)) and not reads(zprofile):
            return Check("WARN", "shells", f"{zprofile} does not read the shim: zsh login "
                         f"shells get no token refresh; add the line "
                         f"'[ -r {self.profile} ] && {line}' to it")
        hooked = [name for name in ("bashrc", "zshrc")
                  if name in self.shell_rcs and reads(self.shell_rcs[name])]
        rest = [self.shell_rcs[n] for n in ("bashrc", "zshrc")
                if n in self.shell_rcs and n not in hooked]
        note = (f"the prompt hook also runs in non-login interactive shells "
                f"({', '.join(hooked)})" if hooked else "non-login interactive shells "
                "(IDE terminals) rely on the wrappers")
        if rest:
            note += f"; to add the prompt hook to {', '.join(rest)}: {line} there"
        return Check("OK", "shells", note)

    def fallback(self) -> Check:
        """Sessions without XDG_RUNTIME_DIR cache in FALLBACK_BASE: root's,
        0711, and best on a small tmpfs of its own."""
        try:
            st = os.lstat(FALLBACK_BASE)
        except OSError:
            return Check("OK", "fallback", f"no {FALLBACK_BASE}: every session has "
                         "XDG_RUNTIME_DIR, or the tmpfiles.d entry is not installed")
        if st.st_uid != 0 or stat.S_IMODE(st.st_mode) != 0o711:
            return Check("FAIL", "fallback", f"{FALLBACK_BASE} has mode "
                         f"{stat.S_IMODE(st.st_mode):04o}, uid {st.st_uid}; run chown root: "
                         f"{FALLBACK_BASE} && chmod 0711 {FALLBACK_BASE}")
        users = len(os.listdir(FALLBACK_BASE))
        if users and st.st_dev == os.stat(os.path.dirname(os.path.dirname(FALLBACK_BASE))
                                          ).st_dev:
            fix = ("systemctl enable --now run-slurmjwt-users.mount" if
                   os.path.isdir("/run/systemd/system") else
                   f"mount -t tmpfs -o mode=0711,size=4m,nr_inodes=16384,nosuid,nodev,noexec "
                   f"tmpfs {FALLBACK_BASE} (or an fstab line)")
            return Check("WARN", "fallback", f"{users} users' caches are on the shared /run "
                         f"tmpfs, which any of them could fill; give them a small tmpfs of "
                         f"their own: {fix}")
        return Check("OK", "fallback", f"{FALLBACK_BASE}: root's, 0711")

    def pam_module(self) -> Check:
        found = [p for d in PAM_DIRS for p in glob.glob(os.path.join(d, "pam_slurmjwt.so"))]
        if not found:
            return Check("FAIL", "pam module", "pam_slurmjwt.so is in no PAM module directory; "
                         "run make install (or install the package)")
        try:
            ctypes.CDLL(found[0])
        except OSError as err:
            return Check("FAIL", "pam module", f"{found[0]} does not load: {err}")
        return Check("OK", "pam module", f"{found[0]} loads")

    def pam_stack(self) -> Check:
        try:
            with open(self.sshd_pam) as fh:
                lines = [line.split("#", 1)[0].split() for line in fh]
        except OSError as err:
            return Check("FAIL", "sshd pam", f"cannot read {self.sshd_pam}: {err.strerror}")
        directory = os.path.dirname(self.sshd_pam)
        # Directly, or through an include: the Debian package puts the hook
        # into common-session with pam-auth-update.
        ours = _first(lines, lambda w: w[:2] == ["@include", "slurmjwt"]
                      or w[:3] in (["session", "include", "slurmjwt"],
                                   ["session", "substack", "slurmjwt"])
                      or (len(w) > 2 and w[0] == "session" and "pam_slurmjwt.so" in w[2])
                      or "pam_slurmjwt.so" in _session_modules(w, directory))
        if ours is None:
            return Check("FAIL", "sshd pam", f"{self.sshd_pam} does not use the hook; add the "
                         "line `@include slurmjwt` after `@include common-session` (Debian) or "
                         "after the `session include password-auth` line (RHEL)")
        if self.systemd:
            check = self._after_pam_systemd(lines, ours)
            if check.status != "OK":
                return check
        session = _first(lines, lambda w: w[:2] == ["@include", "common-session"]
                         or (len(w) > 2 and w[0] == "session" and w[2] in ("password-auth",
                                                                          "system-auth")))
        if session is not None and session > ours:
            return Check("FAIL", "sshd pam", f"in {self.sshd_pam} the hook comes before the "
                         "common session modules: move `@include slurmjwt` after them, so the "
                         "runtime directory exists when the cache is written")
        if self.systemd:
            return self._after_pam_systemd(lines, ours)
        return Check("OK", "sshd pam", f"{self.sshd_pam} includes the hook after the session "
                     "modules")

    def _after_pam_systemd(self, lines: list[list[str]], ours: int) -> Check:
        """With systemd, pam_systemd makes the session's XDG_RUNTIME_DIR: the
        hook must come after the line that brings it in (directly or through
        includes), or the cache goes to the /run/slurmjwt/users fallback."""
        directory = os.path.dirname(self.sshd_pam)
        at = _first(lines, lambda w: "pam_systemd.so" in _session_modules(w, directory))
        if at is None:
            return Check("WARN", "sshd pam", f"no pam_systemd in the session stack of "
                         f"{self.sshd_pam}: sessions get no XDG_RUNTIME_DIR, so the cache falls "
                         "back to /run/slurmjwt/users; add it (Debian: pam-auth-update --enable "
                         "systemd)")
        same = at == ours and _session_modules(lines[at], directory)
        if at > ours or (same and same.index("pam_systemd.so") > same.index("pam_slurmjwt.so")):
            return Check("FAIL", "sshd pam", f"in {self.sshd_pam} the hook comes before "
                         f"pam_systemd (brought in by `{' '.join(lines[at])}`): move `@include "
                         "slurmjwt` after that line, so the session's XDG_RUNTIME_DIR exists "
                         "when the cache is written")
        return Check("OK", "sshd pam", f"{self.sshd_pam} includes the hook after pam_systemd "
                     f"(`{' '.join(lines[at])}`)")

    def profile_d(self) -> Check:
        if os.path.isfile(self.profile):
            return Check("OK", "profile.d", f"{self.profile} installed")
        return Check("WARN", "profile.d", f"{self.profile} missing: shells will not refresh "
                     "their token; run make install")

    def user_timer(self) -> Check:
        """Every user's systemd starts the refresh timer (systemctl --global)."""
        enabled = _systemctl("--global", "is-enabled", TIMER_UNIT)
        if enabled == "enabled":
            return Check("OK", "user timer", f"{TIMER_UNIT} is enabled for every user's systemd")
        return Check("WARN", "user timer", f"{TIMER_UNIT} is {enabled or 'not installed'} for "
                     "users: tokens in long sessions and tmux stay fresh only while a shell "
                     f"prompts; run systemctl --global enable {TIMER_UNIT}")

    def task_prolog(self) -> Check:
        """Every release: the TaskProlog removes SLURM_JWT from every task,
        whatever reached the job (slurmside.BEHAVIOURS says why per release)."""
        assert self.slurm is not None
        version = self.slurm_version()
        why = f"{slurmside.behaviour(version).prolog_why}{_unproven(version)}"
        prolog = self.slurm.task_prolog
        if not prolog:
            return Check("WARN", "task prolog", f"no TaskProlog: {why}; set TaskProlog="
                         f"{slurmside.TASKPROLOG} in slurm.conf (or call it from yours)")
        try:
            with open(prolog) as fh:
                ok = "SLURM_JWT" in fh.read(65536)
        except OSError:
            ok = False
        if not ok:
            return Check("WARN", "task prolog", f"TaskProlog={prolog} does not mention "
                         f"SLURM_JWT: {why}; have it print `unset SLURM_JWT` (see "
                         f"{slurmside.TASKPROLOG})")
        return Check("OK", "task prolog", f"TaskProlog={prolog} unsets SLURM_JWT in every task")

    def cli_filter(self) -> Check:
        """Every release: the project's cli_filter keeps SLURM_JWT out of what
        sbatch submits (23.11+) and out of salloc's shell. A filter that unsets
        it without waiting for Slurm to have read it makes sbatch before 23.11
        lose its token."""
        assert self.slurm is not None
        version = self.slurm_version()
        side = slurmside.behaviour(version)
        script = os.path.join(os.path.dirname(self.slurm.path), "cli_filter.lua")
        try:
            with open(script) as fh:
                text = fh.read(65536)
        except OSError:
            text = ""
        unsets, waits = "SLURM_JWT" in text, "auth_jwt.so" in text
        release = f"Slurm {version[0]}.{version[1]:02d}{_unproven(version)}"
        if "cli_filter/lua" not in self.slurm.cli_filter_plugins or not unsets:
            return Check("WARN", "cli filter", f"no cli_filter removes SLURM_JWT ({release}); it "
                         f"{side.filter_does}: add CliFilterPlugins=cli_filter/lua to "
                         f"{self.slurm.path} and run ln -s {slurmside.CLI_FILTER} {script} on "
                         "every host that runs sbatch, salloc or srun, compute nodes included "
                         "(lua-posix on submit hosts)")
        if not waits and not side.reads_token_at_start:
            return Check("WARN", "cli filter", f"{script} unsets SLURM_JWT before sbatch has "
                         f"read it ({release}), so sbatch loses its token; replace it with "
                         f"{slurmside.CLI_FILTER}, which waits for that")
        return Check("OK", "cli filter", f"{script} {side.filter_does} ({release})")

    def slurm_version(self) -> tuple[int, int]:
        """Slurm's version from `scontrol --version`, asked once per run."""
        assert self.cfg is not None
        if self.version is None:
            self.version = _slurm_version(self.cfg.scontrol)
        return self.version

    # -- the user's side

    def cache(self) -> Check:
        assert self.cfg is not None
        cache = Cache.for_user(self.cfg.helper_socket)
        entry, why = cache.load()
        if entry is None:
            return Check("WARN", "cache", f"{cache.path}: {why}; run slurmjwt-refresh")
        return Check("OK", "cache", f"{cache.path}: token valid for "
                     f"{entry.exp - int(time.time())} s")

    def path(self) -> Check:
        """The wrappers should come first on this user's PATH."""
        first = next((d for d in os.environ.get("PATH", "").split(":")
                      if os.path.isfile(os.path.join(d, "squeue"))), None)
        if first == self.wrapper_dir:
            return Check("OK", "path", f"squeue on your PATH is the wrapper "
                         f"({self.wrapper_dir}): every Slurm command gets a live token")
        return Check("WARN", "path", f"squeue on your PATH is {first or 'missing'}, not the "
                     f"wrapper in {self.wrapper_dir}: Slurm commands started from here keep "
                     f"the token they inherit; log in again, or run PATH={self.wrapper_dir}:"
                     "$PATH")


    def own_timer(self) -> Optional[Check]:
        """The refresh timer runs in the user's own systemd, when they have one."""
        runtime = os.environ.get("XDG_RUNTIME_DIR", "")
        if not runtime or not os.path.exists(os.path.join(runtime, "systemd", "private")):
            return None  # no user manager for this session (su, cron): nothing to ask
        active = _systemctl("--user", "is-active", TIMER_UNIT)
        if active == "active":
            return Check("OK", "timer", f"{TIMER_UNIT} is active in your systemd")
        return Check("WARN", "timer", f"{TIMER_UNIT} is {active or 'unknown'} in your systemd: "
                     "your token stays fresh only while a shell prompts; run systemctl --user "
                     f"enable --now {TIMER_UNIT}, or ask an admin for systemctl --global enable "
                     f"{TIMER_UNIT}")


def _unproven(version: tuple[int, int]) -> str:
    if slurmside.proven(version):
        return ""
    nearest = slurmside.behaviour(version).since
    return (f"; Slurm {version[0]}.{version[1]:02d} is not in the compatibility matrix, this is "
            f"what {nearest[0]}.{nearest[1]:02d} does")


def reload_jwks(version: tuple[int, int]) -> str:
    """How slurmctld of `version` comes to read an edited JWKS: from 23.11 on,
    scontrol reconfigure re-executes it; before, only a restart does."""
    if version >= (23, 11):
        return "run scontrol reconfigure"
    if version == (0, 0):
        return "restart slurmctld (before Slurm 23.11) or run scontrol reconfigure (23.11+)"
    return "restart slurmctld (Slurm before 23.11 reads the JWKS only at start)"


def _session_modules(words: list[str], directory: str, depth: int = 0) -> list[str]:
    """Given the words of one PAM line (comment removed) and the directory of
    its file, return the file names of the session modules it runs,
    following @include, include and substack."""
    if not words or depth > INCLUDE_DEPTH:
        return []
    if words[0] == "@include" and len(words) > 1:
        return _file_session_modules(os.path.join(directory, words[1]), depth + 1)
    if words[0].lstrip("-") != "session" or len(words) < 3:
        return []
    rest = words[1:]
    if rest[0].startswith("["):  # [value=action ...] may hold spaces
        while rest and not rest[0].endswith("]"):
            rest = rest[1:]
    if len(rest) < 2:
        return []
    control, module = rest[0], rest[1]
    if control in ("include", "substack"):
        return _file_session_modules(os.path.join(directory, module), depth + 1)
    return [os.path.basename(module)]


def _file_session_modules(path: str, depth: int) -> list[str]:
    try:
        with open(path) as fh:
            lines = [line.split("#", 1)[0].split() for line in fh]
    except OSError:
        return []
    directory = os.path.dirname(path)
    return [module for words in lines for module in _session_modules(words, directory, depth)]


def _first(lines: list[list[str]], pred: Callable[[list[str]], bool]) -> int | None:
    for index, words in enumerate(lines):
        if words and pred(words):
            return index
    return None


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def _slurm_version(scontrol: str = "/usr/bin/scontrol") -> tuple[int, int]:
    try:
        out = subprocess.run([scontrol, "--version"], capture_output=True, text=True,
                             timeout=CLIENT_TIMEOUT).stdout
    except (OSError, subprocess.TimeoutExpired):
        return (0, 0)
    match = re.search(r"(\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _systemctl(*args: str) -> str:
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


def _nss_sources(path: str, database: str) -> list[str]:
    """Given nsswitch.conf's path and a database, return its sources in order
    (actions such as [NOTFOUND=return] left out); [] when unreadable."""
    try:
        with open(path) as fh:
            for line in fh:
                key, _, rest = line.split("#", 1)[0].partition(":")
                if key.strip() == database:
                    return [w for w in re.sub(r"\[[^]]*\]", " ", rest).split()]
    except OSError:
        pass
    return []


def _name_service_fix(sources: list[str], nsswitch: str) -> str:
    if "sss" in sources:
        return ("sssd is not answering: run systemctl restart sssd, and see journalctl -u sssd "
                "and sssctl domain-status")
    return f"check the sources of passwd and group in {nsswitch}"


def _within(seconds: float, lookup: Callable[..., Any], *args: Any) -> Any:
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


def run_doctor(config_path: str | None, user: str | None, out: Callable[[str], None]) -> bool:
    """Print every check through out(); return True when none failed."""
    failed = False
    for check in Doctor(config_path, user).run():
        out(check.line())
        failed |= check.status == "FAIL"
    return not failed
