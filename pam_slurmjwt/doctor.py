"""slurmjwt doctor: check the whole chain on a login node and say, for each
link, OK or what is wrong and the exact fix. Root gets every check; a user
gets those that concern them. Nothing here prints or logs a token.
"""

from __future__ import annotations

import ctypes
import glob
import os
import pwd
import re
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pam_slurmjwt import protocol, slurmside
from pam_slurmjwt.cache import Cache
from pam_slurmjwt.config import Config, export_wanted, load_config
from pam_slurmjwt.errors import SlurmJwtError
from pam_slurmjwt.keyfile import load_key
from pam_slurmjwt.slurmconf import SlurmConf, parse_slurm_conf

PAM_DIRS = ("/usr/lib64/security", "/lib64/security", "/usr/lib/*/security",
            "/lib/*/security", "/usr/lib/security", "/lib/security")
SSHD_PAM = "/etc/pam.d/sshd"
PROFILE = "/etc/profile.d/slurmjwt.sh"
CLIENT_TIMEOUT = 20


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
                 sshd_pam: str = SSHD_PAM, profile: str = PROFILE) -> None:
        self.config_path = config_path
        self.root = os.geteuid() == 0
        self.user = user or pwd.getpwuid(os.getuid()).pw_name
        self.sshd_pam = sshd_pam
        self.profile = profile
        self.cfg: Config | None = None
        self.slurm: SlurmConf | None = None
        self.helper_ok = False
        self.version: tuple[int, int] | None = None
        # The helper's token from `accepted`: lets `clock` ask slurmctld on a
        # host where JWT is the only way in (no munge).
        self.token: str | None = None

    def run(self) -> Iterator[Check]:
        steps: list[Callable[[], Check]] = [self.config, self.slurm_conf, self.jwt_enabled]
        if self.root:
            steps += [self.key]
        steps += [self.helper, self.accepted, self.clock, self.export]
        if self.root:
            steps += [self.pam_module, self.pam_stack, self.profile_d, self.task_prolog,
                      self.cli_filter]
        else:
            steps += [self.cache]
        for step in steps:
            try:
                yield step()
            except SlurmJwtError as err:
                yield Check("FAIL", step.__name__.replace("_", " "), str(err))

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

    def key(self) -> Check:
        assert self.cfg is not None and self.slurm is not None
        path = self.cfg.jwt_key or self.slurm.jwt_key_path()
        if self.cfg.backend == "scontrol":
            return Check("SKIP", "key", "Backend=scontrol: the key stays on the controller")
        load_key(path, self.slurm.slurm_user)
        return Check("OK", "key", f"{path}: regular file, owner and mode safe")

    # -- the helper and slurmctld

    def helper(self) -> Check:
        assert self.cfg is not None
        version = protocol.ping(self.cfg.helper_socket, self.cfg.helper_timeout)
        self.helper_ok = True
        return Check("OK", "helper", f"{self.cfg.helper_socket} answers (version {version})")

    def accepted(self) -> Check:
        """Prove the helper's key is slurmctld's: a 60 s token must be accepted."""
        assert self.cfg is not None
        if not self.helper_ok:
            return Check("SKIP", "slurmctld accepts", "needs the helper")
        if self.root and self.user == "root":
            return Check("SKIP", "slurmctld accepts", "root gets no token; run slurmjwt doctor "
                         "as a user, or as root with --user NAME")
        grant = protocol.request_token(self.cfg.helper_socket, self.user if self.root else "-",
                                       60, self.cfg.helper_timeout)
        out = self._client(["squeue", "--noheader", "--user", self.user], grant.token)
        if out.returncode == 0:
            self.token = grant.token
            return Check("OK", "slurmctld accepts", f"a token for {self.user} from the helper "
                         "works with squeue: the helper's key is slurmctld's")
        reason = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return Check("FAIL", "slurmctld accepts",
                     f"squeue with a fresh helper token failed ({reason}); the helper's key is "
                     "not slurmctld's, or the clocks differ: compare the JwtKey files byte for "
                     "byte and see slurmctld's log for 'jwt_decode failure'")

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
        ours = _first(lines, lambda w: w[:2] == ["@include", "slurmjwt"]
                      or w[:3] in (["session", "include", "slurmjwt"],
                                   ["session", "substack", "slurmjwt"])
                      or (len(w) > 2 and w[0] == "session" and "pam_slurmjwt.so" in w[2]))
        if ours is None:
            return Check("FAIL", "sshd pam", f"{self.sshd_pam} does not use the hook; add the "
                         "line `@include slurmjwt` after `@include common-session` (Debian) or "
                         "after the `session include password-auth` line (RHEL)")
        session = _first(lines, lambda w: w[:2] == ["@include", "common-session"]
                         or (len(w) > 2 and w[0] == "session" and w[2] in ("password-auth",
                                                                          "system-auth")))
        if session is not None and session > ours:
            return Check("FAIL", "sshd pam", f"in {self.sshd_pam} the hook comes before the "
                         "common session modules: move `@include slurmjwt` after them, so the "
                         "runtime directory exists when the cache is written")
        return Check("OK", "sshd pam", f"{self.sshd_pam} includes the hook after the session "
                     "modules")

    def profile_d(self) -> Check:
        if os.path.isfile(self.profile):
            return Check("OK", "profile.d", f"{self.profile} installed")
        return Check("WARN", "profile.d", f"{self.profile} missing: shells will not refresh "
                     "their token; run make install")

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
        cache = Cache.for_user()
        entry, why = cache.load()
        if entry is None:
            return Check("WARN", "cache", f"{cache.path}: {why}; run slurmjwt-refresh")
        return Check("OK", "cache", f"{cache.path}: token valid for "
                     f"{entry.exp - int(time.time())} s")


def _unproven(version: tuple[int, int]) -> str:
    if slurmside.proven(version):
        return ""
    nearest = slurmside.behaviour(version).since
    return (f"; Slurm {version[0]}.{version[1]:02d} is not in the compatibility matrix, this is "
            f"what {nearest[0]}.{nearest[1]:02d} does")


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


def run_doctor(config_path: str | None, user: str | None, out: Callable[[str], None]) -> bool:
    """Print every check through out(); return True when none failed."""
    failed = False
    for check in Doctor(config_path, user).run():
        out(check.line())
        failed |= check.status == "FAIL"
    return not failed
