"""slurmjwt doctor: several clusters: where slurmjwt.conf's Clusters= lists
the clusters that take this node's token, each one's slurmctld is asked with
it (squeue -M), and one that refuses is named with the fix."""

from __future__ import annotations

from pam_slurmjwt.doctor.check import Check, advice
from pam_slurmjwt.doctor.context import Context
from pam_slurmjwt.doctor.keys import reload_jwks
from pam_slurmjwt.doctor.registry import check
from pam_slurmjwt.token import inspect

NAME = "clusters accept"
# What squeue -M prints when slurmdbd knows no such cluster.
UNKNOWN = "invalid entry for --cluster"


class ClusterChecks(Context):
    """Each cluster of Clusters= and this node's token."""

    @check(35)
    def clusters_accept(self) -> Check | None:
        """The token slurmctld took (from `accepted`) must work with squeue -M
        for every cluster Clusters= lists: the wrapper lets such commands run."""
        assert self.cfg is not None
        if not self.cfg.clusters:
            return None  # no Clusters=: the wrapper checks nothing, nor does doctor
        listed = ",".join(self.cfg.clusters)
        where = self.cfg.path or "slurmjwt.conf"
        local = self.slurm.cluster_name if self.slurm is not None else None
        if local and local.lower() not in (c.lower() for c in self.cfg.clusters):
            # The wrapper refuses every command that names no cluster.
            return advice("FAIL", NAME, f"this node's own cluster {local} (slurm.conf's "
                          f"ClusterName) is not in Clusters={listed}, so every Slurm command "
                          "without -M stops", f"add {local} to Clusters= in {where}",
                          joint=": ")
        if self.token is None:
            return Check("SKIP", NAME, "needs a token that slurmctld accepts")
        unknown: list[str] = []
        refused: list[str] = []
        for cluster in self.cfg.clusters:
            out = self._client(["squeue", "--noheader", "--clusters", cluster, "--user",
                                self.user], self.token)
            if out.returncode == 0 and "error" not in out.stderr:
                continue
            last = (out.stderr.strip().splitlines() or ["no output"])[-1]
            (unknown if UNKNOWN in out.stderr else refused).append(f"{cluster} ({last})")
        if unknown:
            return advice("FAIL", NAME, f"slurmdbd knows no cluster {', '.join(unknown)}, "
                          f"which Clusters={listed} names", f"correct Clusters= in {where} "
                          "(sacctmgr show cluster lists the clusters), or register the cluster "
                          "with slurmdbd (its slurm.conf's AccountingStorageHost)", joint=": ")
        if refused:
            return advice("FAIL", NAME, f"squeue -M with a fresh helper token for {self.user} "
                          f"failed for {', '.join(refused)}", self._publish_fix(), joint=": ")
        return Check("OK", NAME, f"a token for {self.user} from the helper works with squeue -M "
                     f"on every cluster of Clusters={listed}")

    def _publish_fix(self) -> str:
        """What a cluster that refuses this node's tokens needs."""
        assert self.token is not None
        if inspect(self.token)[0].get("alg") == "RS256":
            key = self.key_path or "JWTKEY"
            return (f"add this node's key (kid {self.kid}; slurmjwt jwks {key} gives its entry) "
                    "to the JWKS of that cluster's slurmctld (AuthAltParameters=jwks=FILE) and "
                    f"{reload_jwks(self.slurm_version())}")
        return ("this node signs HS256, so every listed cluster would need its key byte for "
                "byte: give this node an RS256 key (slurmjwt keygen) and publish it in every "
                "cluster's JWKS, or drop that cluster from Clusters=")
