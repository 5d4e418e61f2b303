"""Who may have a token for whom: the helper's policy, decided by uid, gid and
passwd entry, never by a name the caller claims. `slurmjwt mint` applies the
same rules. Also who a token says its user is, when tokens carry the user's
ids (IdentityClaims). Lookups go through NSS (nss.py); a name service that
fails or does not answer makes the answer `internal` (try again), never
`no-user` or another identity; a configured group it does not know, and a
DenyGroups group it knows, is asked again (ASK_AGAIN): an unknown group
never reads as "not a member", and a deny rule follows its group's gid.
No I/O of its own.
"""

from __future__ import annotations

import pwd
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Optional, Protocol, TypeVar

from pam_slurmjwt import nss, protocol
from pam_slurmjwt.config import Config
from pam_slurmjwt.errors import NameServiceError, Refused
from pam_slurmjwt.token import is_plain_user_name

_T = TypeVar("_T")
# A configured group the name service said it does not know is asked again at
# most this often (seconds): a group created after the load, or one sssd
# still hides behind its negative cache, counts soon after it shows, and a
# stream of requests costs sssd one lookup per name in this time, not one each.
ASK_AGAIN = 5.0


class NameService(Protocol):
    """The lookups the policy needs (nss.py; a fake one in unit tests)."""

    def user_by_name(self, name: str) -> Optional[pwd.struct_passwd]: ...

    def user_by_uid(self, uid: int) -> Optional[pwd.struct_passwd]: ...

    def group_id(self, name: str) -> Optional[int]: ...

    def group_members(self, gid: int) -> Optional[frozenset[str]]: ...

    def group_ids(self, user: str, gid: int) -> frozenset[int]: ...


@dataclass(frozen=True)
class Names:
    """The configuration's names as ids: SlurmUser's uid, DenyUsers' uids and
    MaxLifespanFor's users, resolved once per load (a user name without an
    entry is left out: DenyUsers matches by name too, and an unknown cap
    only shortens); and the group names of AllowGroups, DenyGroups and
    MaxLifespanFor, each kept once the name service knows it (DenyGroups
    names are asked again all the same). Those it did not know are in
    `unknown`; both are asked again from `ask_again_at` (monotonic seconds)
    on."""

    slurm_uid: Optional[int]
    deny_uids: frozenset[int]
    # MaxLifespanFor's users, by id: (uid, seconds).
    user_caps: tuple[tuple[int, int], ...]
    gids: Mapping[str, int]
    unknown: frozenset[str]
    ask_again_at: float

    def by_gid(self, groups: Iterable[str]) -> dict[int, str]:
        """Given configured group names, return those known as {gid: name}."""
        return {self.gids[name]: name for name in groups if name in self.gids}


class Policy:
    """Decides who may have a token for whom, by uid and gid, never by claimed name."""

    def __init__(self, cfg: Config, slurm_user: str, names: NameService = nss,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.slurm_user = slurm_user
        self.nss = names
        self.clock = clock
        self._names: Optional[Names] = None

    @property
    def slurm_uid(self) -> Optional[int]:
        return self.names().slurm_uid

    def names(self) -> Names:
        """Return the configured names as ids, looked up on first use and kept
        for this load; a group name the name service did not know, and every
        DenyGroups name, is asked again once ASK_AGAIN has passed. Raise
        Refused("internal") while the name service fails (the next request
        tries again), so a DenyUsers or DenyGroups entry is never skipped
        because sssd was down.

        Lookup threads call this at once: the worst a race costs is a
        second lookup of the same names."""
        names = self._names
        if names is None:
            names = self._load()
        elif self.clock() < names.ask_again_at:
            return names
        else:
            # Unknown names, and every DenyGroups name: a deny rule follows
            # the directory, so a group deleted and made again under a new
            # gid is denied by its new gid from this answer on (and while it
            # is gone, nobody gets a token), not admitted until a reload.
            ask = [name for name in self._group_names()
                   if name in names.unknown or name in self.cfg.deny_groups]
            if not ask:
                return names
            # Claimed before asking: the other threads decide on what is
            # known meanwhile (an unknown group never admits or clears
            # anyone), and a failure here waits for the next turn too.
            self._names = replace(names, ask_again_at=self.clock() + ASK_AGAIN)
            kept = {name: gid for name, gid in names.gids.items() if name not in ask}
            gids, unknown = self._groups(ask, kept)
            names = replace(names, gids=gids, unknown=unknown,
                            ask_again_at=self.clock() + ASK_AGAIN)
        self._names = names
        return names

    def _load(self) -> Names:
        slurm_uid = self._uid(self.slurm_user)
        deny_uids = frozenset(uid for uid in map(self._uid, self.cfg.deny_users)
                              if uid is not None)
        user_caps = []
        for name, seconds in self.cfg.max_lifespan_for:
            uid = None if name.startswith("@") else self._uid(name)
            if uid is not None:
                user_caps.append((uid, seconds))
        gids, unknown = self._groups(self._group_names(), {})
        return Names(slurm_uid=slurm_uid, deny_uids=deny_uids, user_caps=tuple(user_caps),
                     gids=gids, unknown=unknown, ask_again_at=self.clock() + ASK_AGAIN)

    def _group_names(self) -> list[str]:
        """Return every group name the configuration holds, each once."""
        caps = [name[1:] for name, _seconds in self.cfg.max_lifespan_for
                if name.startswith("@")]
        return list(dict.fromkeys([*self.cfg.allow_groups, *self.cfg.deny_groups, *caps]))

    def _groups(self, names: Iterable[str],
                known: Mapping[str, int]) -> tuple[dict[str, int], frozenset[str]]:
        """Given group names and those already known, return all known ones
        ({name: gid}) and the names the name service does not know."""
        gids, unknown = dict(known), set()
        for name in names:
            gid = _ask(self.nss.group_id, name)
            if gid is None:
                unknown.add(name)
            else:
                gids[name] = gid
        return gids, frozenset(unknown)

    def _uid(self, name: str) -> Optional[int]:
        entry = _ask(self.nss.user_by_name, name)
        return None if entry is None else entry.pw_uid

    def resolve(self, caller_uid: int, requested: str) -> pwd.struct_passwd:
        """Given the caller's uid and the requested name (`-` = caller),
        return the passwd entry to mint for; raise Refused otherwise
        (`internal` when the name service fails: try again)."""
        names = self.names()
        if caller_uid == 0 and requested != protocol.SELF:
            entry = self._lookup(requested)
        else:
            entry = self._caller(caller_uid, requested)
        if not is_plain_user_name(entry.pw_name):
            raise Refused("no-user", f"{entry.pw_name!r} is not a plain user name")
        self._check_allowed(entry, names)
        return entry

    def _caller(self, caller_uid: int, requested: str) -> pwd.struct_passwd:
        """Given a caller that is not root (or root asking for itself), return
        its own entry; raise Refused when it names anyone else."""
        entry = _ask(self.nss.user_by_uid, caller_uid)
        if entry is None:
            # The kernel says this uid exists; sssd answers "no such uid"
            # while it cannot reach the directory, so this is a hiccup to
            # retry, not a policy answer.
            raise Refused("internal", f"cannot look up uid {caller_uid} right now; try again")
        # Anyone but root names itself or nothing: another name is refused
        # before it reaches the name service, so a stream of made-up names
        # cannot make the helper wait on a slow directory for everyone.
        if requested not in (protocol.SELF, entry.pw_name):
            raise Refused("denied", f"uid {caller_uid} may only ask for its own token")
        return entry

    def decide(self, caller_uid: int, requested: str,
               lifespan: int) -> tuple[pwd.struct_passwd, int]:
        """Given the caller's uid, the requested name and the lifespan asked
        for, return the passwd entry to mint for and the lifespan it gets
        (capped: cap()); raise Refused as resolve() does. Every name service
        lookup of a request is in here, for the helper to run off its loop."""
        entry = self.resolve(caller_uid, requested)
        if lifespan > self.cfg.max_lifespan:  # look up groups only for long asks
            lifespan = min(lifespan, self.cap(entry))
        return entry, lifespan

    def cap(self, entry: pwd.struct_passwd) -> int:
        """Given the passwd entry a token is for, return the longest lifespan
        it may have: MaxLifespan, or the longest MaxLifespanFor that names
        the user or one of its groups (supplementary groups included). A
        group lookup that fails silently only shortens the cap."""
        names = self.names()
        cap = self.cfg.max_lifespan
        for uid, seconds in names.user_caps:
            if uid == entry.pw_uid:
                cap = max(cap, seconds)
        group_caps = [(names.gids[name[1:]], seconds)
                      for name, seconds in self.cfg.max_lifespan_for
                      if name.startswith("@") and name[1:] in names.gids]
        if group_caps:
            gids = _ask(self.nss.group_ids, entry.pw_name, entry.pw_gid)
            for gid, seconds in group_caps:
                if gid in gids:
                    cap = max(cap, seconds)
        return cap

    def _lookup(self, name: str) -> pwd.struct_passwd:
        # slurmctld takes a numeric `sun` as a uid ("0" is root): only plain
        # names that resolve to themselves are ever signed.
        if not is_plain_user_name(name):
            raise Refused("no-user", f"{name!r} is not a plain user name")
        entry = _ask(self.nss.user_by_name, name)
        if entry is None:
            raise Refused("no-user", f"no such user {name!r}")
        if entry.pw_name != name:
            raise Refused("no-user", f"{name!r} resolves to {entry.pw_name!r}; ask for that")
        return entry

    def _check_allowed(self, entry: pwd.struct_passwd, names: Names) -> None:
        name, uid = entry.pw_name, entry.pw_uid
        allowed = name in self.cfg.allow_privileged
        if uid == 0 and not allowed:
            raise Refused("denied", f"{name} is root; tokens for root are off "
                                    f"(AllowPrivileged)")
        if uid == names.slurm_uid and not allowed:
            raise Refused("denied", f"{name} is SlurmUser; its tokens are off "
                                    f"(AllowPrivileged)")
        if uid < self.cfg.min_uid and not allowed:
            raise Refused("denied", f"{name} is a system account (uid {uid} < "
                                    f"MinUid {self.cfg.min_uid})")
        if name in self.cfg.deny_users or uid in names.deny_uids:
            raise Refused("denied", f"{name} is in DenyUsers")
        if self.cfg.allow_groups or self.cfg.deny_groups:
            self._check_groups(entry, names)

    def _check_groups(self, entry: pwd.struct_passwd, names: Names) -> None:
        """Refuse a member of DenyGroups, then anyone in none of AllowGroups
        (a group the name service does not know admits nobody). While a
        DenyGroups name is unknown, nobody else passes either: its members
        cannot be told apart (sssd's negative cache hides a new group from
        initgroups too), so the answer is `internal`, never a grant."""
        deny, allow = names.by_gid(self.cfg.deny_groups), names.by_gid(self.cfg.allow_groups)
        gids = self._groups_of(entry, deny.keys() | allow.keys())
        denied = sorted({deny[gid] for gid in gids if gid in deny})
        if denied:
            raise Refused("denied", f"{entry.pw_name} is in DenyGroups ({', '.join(denied)})")
        if self.cfg.allow_groups and not gids & allow.keys():
            raise Refused("denied", f"{entry.pw_name} is in none of AllowGroups "
                                    f"({', '.join(self.cfg.allow_groups)})")
        unknown = [name for name in self.cfg.deny_groups if name in names.unknown]
        if unknown:
            raise Refused("internal", f"DenyGroups names {', '.join(map(repr, unknown))}, "
                                      f"which the name service does not know, so nobody gets "
                                      f"a token until it does; try again (sssd hides a new "
                                      f"group until its negative cache expires), or fix the "
                                      f"name in {self.cfg.path or 'slurmjwt.conf'}")

    def _groups_of(self, entry: pwd.struct_passwd, configured: Iterable[int]) -> frozenset[int]:
        """Return which gids the user has, by gid, as a session gets them: a
        second name for a denied gid, or membership through the primary gid,
        counts too. initgroups cannot report a failed source, so each
        configured gid it did not list is asked for its members as well,
        a lookup that does report failure (raised as Refused("internal"))."""
        gids = set(_ask(self.nss.group_ids, entry.pw_name, entry.pw_gid)) | {entry.pw_gid}
        for gid in set(configured) - gids:
            members = _ask(self.nss.group_members, gid)
            if members is not None and entry.pw_name in members:
                gids.add(gid)
        return frozenset(gids)


def _ask(lookup: Callable[..., _T], *key: object) -> _T:
    """Run one name service lookup; turn its failure into Refused("internal")."""
    try:
        return lookup(*key)
    except NameServiceError as err:
        raise Refused("internal", f"{err}; the name service (sssd?) did not answer, "
                                  f"try again") from None


def identity_claims(entry: pwd.struct_passwd) -> dict[str, Any]:
    """Given a passwd entry, return the claims Slurm >= 26.05 takes instead of
    looking the user up itself (AuthAltParameters=use_jwt_client_ids): `uid`,
    `gid`, and `id` with name, gecos, home directory, shell and `gids` (the
    primary group first, then the supplementary ones, through NSS).

    26.05 refuses an identity with an empty gecos, dir or shell (seen: "identity
    validation failed", the request then runs as nobody), and empty ones are
    common: they are sent as login(1) reads them, the name, / and /bin/sh."""
    gids = [entry.pw_gid, *sorted(nss.group_ids(entry.pw_name, entry.pw_gid) - {entry.pw_gid})]
    return {"uid": entry.pw_uid, "gid": entry.pw_gid,
            "id": {"name": entry.pw_name, "gecos": entry.pw_gecos or entry.pw_name,
                   "dir": entry.pw_dir or "/", "shell": entry.pw_shell or "/bin/sh",
                   "gids": gids}}
