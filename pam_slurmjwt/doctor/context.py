"""What slurmjwt doctor's checks share: the options it was given, what
earlier checks found (configuration, slurm.conf, the helper's key id and
token), and the host probes, injectable for tests."""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Callable

from pam_slurmjwt import wrappers
from pam_slurmjwt.config import Config
from pam_slurmjwt.doctor.distro import OS_RELEASE, paths
from pam_slurmjwt.doctor.host import CLIENT_TIMEOUT, SYSTEMD_RUNNING, slurm_version, systemctl
from pam_slurmjwt.slurmconf import SlurmConf

SSHD_PAM = "/etc/pam.d/sshd"
PROFILE = "/etc/profile.d/slurmjwt.sh"
NSSWITCH = "/etc/nsswitch.conf"


class Context:
    """The state of one run; the checks (one mixin per concern) read and
    fill it in order, later ones using what earlier ones found."""

    def __init__(self, config_path: str | None, user: str | None,
                 sshd_pam: str = SSHD_PAM, profile: str = PROFILE,
                 wrapper_dir: str = wrappers.WRAPPER_DIR,
                 wrap_program: str = wrappers.WRAP_PROGRAM,
                 shell_rcs: dict[str, str] | None = None,
                 systemd: bool | None = None, nsswitch: str = NSSWITCH,
                 systemctl: Callable[..., str] = systemctl,
                 scontrol_version: Callable[[str], tuple[int, int]] = slurm_version,
                 os_release: str = OS_RELEASE) -> None:
        self.config_path = config_path
        self.root = os.geteuid() == 0
        # As root without --user: a user is picked to prove the key (accepted).
        self.user = user or ("" if self.root else pwd.getpwuid(os.getuid()).pw_name)
        self.sshd_pam = sshd_pam
        self.profile = profile
        self.wrapper_dir = wrapper_dir
        self.wrap_program = wrap_program
        # Debian's or RHEL's paths in what doctor reads and advises (distro.py).
        self.distro = paths(os_release)
        self.shell_rcs = self.distro.shell_rcs if shell_rcs is None else shell_rcs
        self.kid: str | None = None  # the key id of the helper's tokens
        self.nsswitch = nsswitch
        # systemd as PID 1: the helper's socket units, pam_systemd and the
        # users' timer are checked too.
        self.systemd = os.path.isdir(SYSTEMD_RUNNING) if systemd is None else systemd
        self.systemctl = systemctl
        self.scontrol_version = scontrol_version
        self.cfg: Config | None = None
        self.slurm: SlurmConf | None = None
        self.helper_ok = False
        self.version: tuple[int, int] | None = None
        # The helper's token from `accepted`: lets `clock` ask slurmctld on a
        # host where JWT is the only way in (no munge).
        self.token: str | None = None
        # This node's key, from `key` (root): its path and, for RSA, its kid.
        self.key_path: str | None = None

    def slurm_version(self) -> tuple[int, int]:
        """Slurm's version from `scontrol --version`, asked once per run."""
        assert self.cfg is not None
        if self.version is None:
            self.version = self.scontrol_version(self.cfg.scontrol)
        return self.version

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
