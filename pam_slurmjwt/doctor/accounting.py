"""slurmjwt doctor: accounting: where slurm.conf sends it to slurmdbd, that
slurmdbd takes the helper's tokens too (sacct, sacctmgr, sreport and sshare
from a host without munge need it), and what it needs when it does not."""

from __future__ import annotations

from pam_slurmjwt.doctor.check import Check, advice
from pam_slurmjwt.doctor.context import Context
from pam_slurmjwt.doctor.registry import check
from pam_slurmjwt.token import inspect

NAME = "slurmdbd accepts"
# What a Slurm client prints when nothing listens where slurm.conf sends it.
UNREACHABLE = ("Connection refused", "No route to host", "Unable to connect")


class AccountingChecks(Context):
    """slurmdbd's view of the helper's tokens."""

    @check(34)
    def slurmdbd_accepts(self) -> Check | None:
        """Where AccountingStorageType=accounting_storage/slurmdbd, the token
        slurmctld took (from `accepted`) must work with sacctmgr too: slurmdbd
        takes tokens only with its own AuthAltTypes and key, read at its start."""
        assert self.slurm is not None
        if not self.slurm.slurmdbd:
            return None  # no slurmdbd: nothing to check on this host
        if self.token is None:
            return Check("SKIP", NAME, "needs a token that slurmctld accepts")
        out = self._client(["sacctmgr", "--noheader", "--parsable2", "show", "cluster",
                            "format=Cluster"], self.token)
        where = self._slurmdbd_address()
        if out.returncode == 0:
            return Check("OK", NAME, f"a token for {self.user} from the helper works with "
                         f"sacctmgr: slurmdbd ({where}) takes this node's tokens (it reads its "
                         "key only at start: restart it after every change of key)")
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        if any(text in out.stderr for text in UNREACHABLE):
            return advice("FAIL", NAME, f"sacctmgr cannot reach slurmdbd at {where} ({last})",
                          f"start slurmdbd there, or correct AccountingStorageHost and "
                          f"AccountingStoragePort in {self.slurm.path}", joint=": ")
        return advice("FAIL", NAME, f"sacctmgr with a fresh helper token for {self.user} failed "
                      f"({last}), while slurmctld accepts that token: slurmdbd ({where}) "
                      "refuses this node's tokens", f"in slurmdbd.conf on the slurmdbd host set "
                      f"AuthAltTypes=auth/jwt and AuthAltParameters={self._dbd_key()}, then "
                      "restart slurmdbd (it reads its key only at start)", joint=": ")

    def _slurmdbd_address(self) -> str:
        assert self.slurm is not None
        host = self.slurm.accounting_storage_host or "localhost"
        return f"{host}:{self.slurm.accounting_storage_port or 6819}"

    def _dbd_key(self) -> str:
        """The AuthAltParameters slurmdbd needs: slurmctld's key or JWKS."""
        assert self.slurm is not None and self.token is not None
        if inspect(self.token)[0].get("alg") == "RS256":
            jwks = self.slurm.alt_parameter("jwks") or "FILE"
            return f"jwks={jwks} (a JWKS with this node's key, kid {self.kid})"
        return f"jwt_key={self.slurm.jwt_key_path()} (the same key, byte for byte)"
