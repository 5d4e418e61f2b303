"""Who may have a token for whom: the helper's policy, decided by uid and
passwd entry, never by a name the caller claims. `slurmjwt mint` applies the
same rules. Also who a token says its user is, when tokens carry the
user's ids (IdentityClaims). Pure lookups through NSS; no I/O of its own.
"""

from __future__ import annotations

import grp
import os
import pwd
from typing import Any, Optional

from pam_slurmjwt import protocol
from pam_slurmjwt.config import Config
from pam_slurmjwt.errors import Refused
from pam_slurmjwt.token import is_plain_user_name


class Policy:
    """Decides who may have a token for whom, by uid, never by claimed name."""

    def __init__(self, cfg: Config, slurm_user: str) -> None:
        self.cfg = cfg
        self.slurm_user = slurm_user
        try:
            self.slurm_uid: Optional[int] = pwd.getpwnam(slurm_user).pw_uid
        except KeyError:
            self.slurm_uid = None
        # Denied by uid too: a second name for the same uid must not slip by.
        self.deny_uids = set()
        for name in cfg.deny_users:
            try:
                self.deny_uids.add(pwd.getpwnam(name).pw_uid)
            except KeyError:
                pass
        # MaxLifespanFor, by id: (uid, seconds) and (gid, seconds).
        self.user_caps: list[tuple[int, int]] = []
        self.group_caps: list[tuple[int, int]] = []
        for name, seconds in cfg.max_lifespan_for:
            try:
                if name.startswith("@"):
                    self.group_caps.append((grp.getgrnam(name[1:]).gr_gid, seconds))
                else:
                    self.user_caps.append((pwd.getpwnam(name).pw_uid, seconds))
            except KeyError:
                pass  # an unknown name grants nothing

    def resolve(self, caller_uid: int, requested: str) -> pwd.struct_passwd:
        """Given the caller's uid and the requested name (`-` = caller),
        return the passwd entry to mint for; raise Refused otherwise."""
        if caller_uid == 0 and requested != protocol.SELF:
            entry = self._lookup(requested)
        else:
            try:
                entry = pwd.getpwuid(caller_uid)
            except KeyError:
                # The kernel says this uid exists; a failed lookup is a name
                # service hiccup (or fd exhaustion), not a policy answer, so
                # the caller is told to try again rather than to give up.
                raise Refused("internal", f"cannot look up uid {caller_uid} right now; "
                                          f"try again") from None
            # Anyone but root names itself or nothing: another name is refused
            # before it reaches the name service, so a stream of made-up names
            # cannot make the helper wait on a slow directory for everyone.
            if requested not in (protocol.SELF, entry.pw_name):
                raise Refused("denied", f"uid {caller_uid} may only ask for its own token")
        if not is_plain_user_name(entry.pw_name):
            raise Refused("no-user", f"{entry.pw_name!r} is not a plain user name")
        self._check_allowed(entry)
        return entry

    @staticmethod
    def _lookup(name: str) -> pwd.struct_passwd:
        # slurmctld takes a numeric `sun` as a uid ("0" is root): only plain
        # names that resolve to themselves are ever signed.
        if not is_plain_user_name(name):
            raise Refused("no-user", f"{name!r} is not a plain user name")
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise Refused("no-user", f"no such user {name!r}") from None
        if entry.pw_name != name:
            raise Refused("no-user", f"{name!r} resolves to {entry.pw_name!r}; ask for that")
        return entry

    def _check_allowed(self, entry: pwd.struct_passwd) -> None:
        name, uid = entry.pw_name, entry.pw_uid
        allowed = name in self.cfg.allow_privileged
        if uid == 0 and not allowed:
            raise Refused("denied", f"{name} is root; tokens for root are off "
                                    f"(AllowPrivileged)")
        if uid == self.slurm_uid and not allowed:
            raise Refused("denied", f"{name} is SlurmUser; its tokens are off "
                                    f"(AllowPrivileged)")
        if uid < self.cfg.min_uid and not allowed:
            raise Refused("denied", f"{name} is a system account (uid {uid} < "
                                    f"MinUid {self.cfg.min_uid})")
        if name in self.cfg.deny_users or uid in self.deny_uids:
            raise Refused("denied", f"{name} is in DenyUsers")

    def cap(self, entry: pwd.struct_passwd) -> int:
        """Given the passwd entry a token is for, return the longest lifespan
        it may have: MaxLifespan, or the longest MaxLifespanFor that names
        the user or one of its groups (supplementary groups included)."""
        cap = self.cfg.max_lifespan
        for uid, seconds in self.user_caps:
            if uid == entry.pw_uid:
                cap = max(cap, seconds)
        if self.group_caps:
            gids = groups_of(entry)
            for gid, seconds in self.group_caps:
                if gid in gids:
                    cap = max(cap, seconds)
        return cap


def groups_of(entry: pwd.struct_passwd) -> set[int]:
    """Given a passwd entry, return its gids, supplementary ones included
    (through NSS, so directory groups count)."""
    try:
        return set(os.getgrouplist(entry.pw_name, entry.pw_gid))
    except OSError:
        return {entry.pw_gid}


def identity_claims(entry: pwd.struct_passwd) -> dict[str, Any]:
    """Given a passwd entry, return the claims Slurm >= 26.05 takes instead of
    looking the user up itself (AuthAltParameters=use_jwt_client_ids): `uid`,
    `gid`, and `id` with name, gecos, home directory, shell and `gids` (the
    primary group first, then the supplementary ones, through NSS).

    26.05 refuses an identity with an empty gecos, dir or shell (seen: "identity
    validation failed", the request then runs as nobody), and empty ones are
    common: they are sent as login(1) reads them, the name, / and /bin/sh."""
    gids = [entry.pw_gid, *sorted(groups_of(entry) - {entry.pw_gid})]
    return {"uid": entry.pw_uid, "gid": entry.pw_gid,
            "id": {"name": entry.pw_name, "gecos": entry.pw_gecos or entry.pw_name,
                   "dir": entry.pw_dir or "/", "shell": entry.pw_shell or "/bin/sh",
                   "gids": gids}}
