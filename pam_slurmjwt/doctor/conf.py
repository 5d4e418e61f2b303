"""slurmjwt doctor: the two configuration files (slurmjwt.conf, slurm.conf's
auth/jwt), and what Export= means on this host."""

from __future__ import annotations

from pam_slurmjwt.config import export_wanted, load_config
from pam_slurmjwt.doctor.check import Check, advice
from pam_slurmjwt.doctor.context import Context
from pam_slurmjwt.doctor.host import is_socket
from pam_slurmjwt.doctor.registry import check
from pam_slurmjwt.slurmconf import parse_slurm_conf


class ConfChecks(Context):
    """slurmjwt.conf and slurm.conf."""

    @check(10, needed=True)
    def config(self) -> Check:
        self.cfg = load_config(self.config_path)
        where = self.cfg.path or "no slurmjwt.conf (defaults)"
        if self.cfg.warnings:
            return Check("WARN", "config", f"{where}; " + "; ".join(self.cfg.warnings))
        return Check("OK", "config", where)

    @check(11, needed=True)
    def slurm_conf(self) -> Check:
        assert self.cfg is not None
        self.slurm = parse_slurm_conf(self.cfg.slurm_conf_path())
        return Check("OK", "slurm.conf", f"{self.slurm.path} (SlurmUser={self.slurm.slurm_user})")

    @check(12)
    def jwt_enabled(self) -> Check:
        assert self.slurm is not None
        if self.slurm.jwt_enabled:
            return Check("OK", "auth/jwt", f"AuthAltTypes={','.join(self.slurm.auth_alt_types)}")
        return advice("FAIL", "auth/jwt", f"AuthAltTypes in {self.slurm.path} lacks auth/jwt",
                      "add AuthAltTypes=auth/jwt (and AuthAltParameters=jwt_key=PATH) on every "
                      "host, then restart slurmctld")

    @check(34)
    def export(self) -> Check:
        assert self.cfg is not None
        wanted = export_wanted(self.cfg)
        munge = is_socket(self.cfg.munge_socket)
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
