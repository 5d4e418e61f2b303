"""A name service for unit tests: a few directory users and groups, and the
two ways sssd goes wrong (down: every lookup fails; hung: lookups block)."""

from __future__ import annotations

import pwd
import threading
from typing import Optional

from pam_slurmjwt.errors import NameServiceError

# name: (uid, primary gid); the groups of the demo's directory (packaging/docker).
USERS = {"root": (0, 0), "slurm": (64030, 64030), "demo": (2000, 2000), "eve": (2001, 2001),
         "frank": (2002, 2002), "grace": (2003, 3001)}
# Two names for gid 3001: a policy by name would let one of them slip by.
GROUPS = {"root": 0, "demo": 2000, "hpc": 3000, "contractors": 3001, "extern": 3001}
SUPPLEMENTARY = {"demo": {3000}, "eve": {3000, 3001}, "grace": {3000}}


class FakeDirectory:
    """USERS and GROUPS through the policy's NameService interface; a test
    may add a group (`groups`, `supplementary`) as a directory admin would."""

    def __init__(self) -> None:
        self.groups = dict(GROUPS)
        self.supplementary = {name: set(gids) for name, gids in SUPPLEMENTARY.items()}
        self.down = False
        # Group lookups only fail (a user cached in sssd's memory cache, the
        # group not): group_members raises, group_ids lists the primary only.
        self.groups_down = False
        self.initgroups_silent = False  # group_ids leaves out the supplementary groups
        self.asked: list[str] = []  # what was looked up, in order
        self.release = threading.Event()
        self.release.set()  # clear() makes lookups hang until set()...
        self.hang_for: set[str] = set()  # ...only those of these users, if any

    @property
    def lookups(self) -> int:
        return len(self.asked)

    def _ask(self, what: str, name: Optional[str] = None) -> None:
        """Record a lookup of `what` (about user `name`, if known); hang or fail."""
        self.asked.append(what)
        if (not self.hang_for or name in self.hang_for
                or any(f"'{user}'" in what for user in self.hang_for)):
            self.release.wait()
        if self.down:
            raise NameServiceError(f"cannot look up {what}: Connection refused")

    def user_by_name(self, name: str) -> Optional[pwd.struct_passwd]:
        self._ask(f"user {name!r}")
        return _entry(name) if name in USERS else None

    def user_by_uid(self, uid: int) -> Optional[pwd.struct_passwd]:
        names = [name for name, (u, _gid) in USERS.items() if u == uid]
        self._ask(f"uid {uid}", names[0] if names else None)
        return _entry(names[0]) if names else None

    def group_id(self, name: str) -> Optional[int]:
        self._ask(f"group {name!r}")
        return self.groups.get(name)

    def group_members(self, gid: int) -> Optional[frozenset[str]]:
        self._ask(f"group {gid}")
        if self.groups_down:
            raise NameServiceError(f"cannot look up group {gid}: Connection refused")
        if gid not in self.groups.values():
            return None
        return frozenset(name for name, gids in self.supplementary.items() if gid in gids)

    def group_ids(self, user: str, gid: int) -> frozenset[int]:
        # As glibc does it: a failing source is left out, no error.
        self.asked.append(f"the groups of {user!r}")
        self.release.wait()
        if self.down or self.groups_down or self.initgroups_silent:
            return frozenset({gid})
        return frozenset({gid, *self.supplementary.get(user, ())})


def _entry(name: str) -> pwd.struct_passwd:
    uid, gid = USERS[name]
    return pwd.struct_passwd((name, "*", uid, gid, name, f"/home/{name}", "/bin/bash"))
