"""slurmjwt doctor: keys and slurmctld: this node's key, token creation by
scontrol, that slurmctld accepts the helper's tokens (naming the node key a
JWKS lacks), and the key id the caches follow."""

from __future__ import annotations

import os
import pwd
import stat

from pam_slurmjwt import protocol
from pam_slurmjwt.cache import read_key_id
from pam_slurmjwt.doctor.check import Check, advice
from pam_slurmjwt.doctor.context import Context
from pam_slurmjwt.doctor.registry import ROOT, check
from pam_slurmjwt.errors import SlurmJwtError
from pam_slurmjwt.token import inspect

CANDIDATES = 5  # users doctor tries, as root without --user, to prove the key


class KeyChecks(Context):
    """The signing key, and slurmctld's view of it."""

    @check(20, ROOT)
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
        return advice("WARN", name, "a stolen token can get its successor from scontrol token, "
                      "for ever", "add disable_token_creation to AuthAltParameters in "
                      f"{self.slurm.path} and restart slurmctld (the helper never uses "
                      "scontrol token; with Backend=scontrol it runs as SlurmUser, who still "
                      "may)", joint=": ")

    @check(21, ROOT)
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

    @check(31)
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
            return advice("FAIL", "slurmctld accepts", f"no user at or above MinUid "
                          f"{self.cfg.min_uid} to prove the key with", "run slurmjwt doctor "
                          "--user NAME")
        if rsa and self.kid is not None:
            return advice("FAIL", "slurmctld accepts", f"squeue with a fresh helper token failed "
                          f"for {', '.join(tried)} ({last})", self._missing_from_jwks(self.kid))
        return advice("FAIL", "slurmctld accepts",
                      f"squeue with a fresh helper token failed for {', '.join(tried)} "
                      f"({last}); the helper's key is not slurmctld's, the clocks differ, or "
                      "slurmctld does not know these users", "compare the key files byte for "
                      "byte, see slurmctld's log for 'jwt_decode failure', or run slurmjwt "
                      "doctor --user NAME with a user slurmctld knows", joint=": ")

    def _candidates(self) -> list[str]:
        """Users the helper may serve, lowest uid first (at most CANDIDATES)."""
        assert self.cfg is not None
        names = [e for e in pwd.getpwall() if e.pw_uid >= self.cfg.min_uid
                 and e.pw_name not in self.cfg.deny_users and e.pw_name != "nobody"
                 and e.pw_uid != 65534]
        return [e.pw_name for e in sorted(names, key=lambda e: e.pw_uid)][:CANDIDATES]

    @check(32)
    def key_id(self) -> Check:
        """The key id the helper publishes, which every cache is checked
        against, must be the one its tokens carry."""
        assert self.cfg is not None
        directory = protocol.key_dir(self.cfg.helper_socket)
        published = read_key_id(directory)
        if published is None:
            return advice("FAIL", "key id", f"no key id in {directory}/id: cached tokens count "
                          "as stale and every command asks the helper", "restart slurmjwt-helper "
                          "(it writes the file at start), and make sure SlurmUser can write "
                          f"{directory}")
        if self.kid is not None and self.kid != published:
            return advice("FAIL", "key id", f"{directory}/id says {published} but the helper's "
                          f"tokens say {self.kid}", "reload the helper (systemctl reload "
                          "slurmjwt-helper)", joint=": ")
        st = os.stat(os.path.join(directory, "id"))
        if st.st_mode & 0o022 or not st.st_mode & 0o004:
            return advice("FAIL", "key id", f"{directory}/id has mode "
                          f"{stat.S_IMODE(st.st_mode):04o}; it must be 0644", "restart the helper",
                          joint=": ")
        return Check("OK", "key id", f"{directory}/id names the key in use ({published}): "
                     "caches follow a change of key")

    def _missing_from_jwks(self, kid: str) -> str:
        """Say which node key slurmctld lacks, and, when slurm.conf's JWKS
        file is readable here, whether it lists that key."""
        from pam_slurmjwt.signing import public_of, read_jwks, thumbprint

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
            entries = read_jwks(path)
        except SlurmJwtError as err:
            return f"{missing} {path} (not compared here: {err}); {fix}"
        kids = [entry["kid"] for entry in entries]
        # An entry is this node's key when its n and e are, whatever kid it
        # claims: a stray entry under this node's kid holds another key.
        for entry in entries:
            if entry["kid"] != kid:
                continue
            try:
                holds = thumbprint(public_of(entry))
            except (KeyError, ValueError):
                holds = "no readable key"
            if holds != kid:
                return (f"{missing} {path} (its entry under kid {kid} holds another key: "
                        f"{holds}); replace that entry with this node's (slurmjwt jwks "
                        f"{self.key_path or 'JWTKEY'} gives it) and {reload}")
            return (f"the JWKS {path} here lists this node's key (kid {kid}), so slurmctld has "
                    f"not read it yet, or reads another file: {reload}")
        return f"{missing} {path} (it holds {', '.join(kids) or 'no key'}); {fix}"


def reload_jwks(version: tuple[int, int]) -> str:
    """How slurmctld of `version` comes to read an edited JWKS: from 23.11 on,
    scontrol reconfigure re-executes it; before, only a restart does."""
    if version >= (23, 11):
        return "run scontrol reconfigure"
    if version == (0, 0):
        return "restart slurmctld (before Slurm 23.11) or run scontrol reconfigure (23.11+)"
    return "restart slurmctld (Slurm before 23.11 reads the JWKS only at start)"
