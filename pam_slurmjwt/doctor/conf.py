"""slurmjwt doctor: the two configuration files (slurmjwt.conf, slurm.conf's
auth/jwt), and what Export= means on this host."""

from __future__ import annotations

from pam_slurmjwt.config import export_wanted, load_config, other_auth
from pam_slurmjwt.doctor.check import Check, advice
from pam_slurmjwt.doctor.context import Context
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
        """What Export= decides here, and from which authentication (config.other_auth)."""
        assert self.cfg is not None
        wanted = export_wanted(self.cfg)
        found = other_auth(self.cfg)
        # Without a slurm.conf, the first socket tried is munged's.
        munge = found.auth == "auth/munge" or (found.auth is None and found.tried
                                                and found.socket == found.tried[0])
        daemon = "munge" if munge else "sackd"
        if found.works:
            way = f"{daemon} works here ({found.socket})"
        elif found.auth == "auth/munge":
            way = "no munge socket here"
        elif found.auth == "auth/slurm":
            way = f"AuthType=auth/slurm but no sackd socket here ({', '.join(found.tried)})"
        elif found.auth:
            way = f"AuthType={found.auth}"
        else:
            way = "no slurm.conf, and no munge or sackd socket here"
        if self.cfg.export == "auto" and wanted:
            why = f"{way}: JWT is the only way in, so sessions get SLURM_JWT"
        elif self.cfg.export == "auto":
            named = f"AuthType={found.auth}: " if found.auth else ""
            why = (f"{named}{way}: SLURM_JWT is not exported, Slurm commands use {daemon}; "
                   "`slurmjwt token` still serves REST clients")
        else:
            why = f"Export={self.cfg.export}: SLURM_JWT is {'' if wanted else 'not '}exported"
            if wanted and found.works:
                why += f" although {way}; srun needs the TaskProlog"
        return Check("OK", "export", why)
