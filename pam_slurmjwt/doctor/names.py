"""slurmjwt doctor: the name service, asked as the helper asks it (nss.py,
within LookupTimeout), and the group names of the group policy."""

from __future__ import annotations

import re
import time
from typing import Optional

from pam_slurmjwt import nss
from pam_slurmjwt.doctor.check import Check, advice
from pam_slurmjwt.doctor.context import Context
from pam_slurmjwt.doctor.host import within
from pam_slurmjwt.doctor.registry import ROOT, check
from pam_slurmjwt.errors import NameServiceError

# Looked up when doctor has no user to look up: nobody has this name, so
# every passwd source is asked, and one that fails shows.
PROBE_NAME = "slurmjwt-doctor-probe"


class NameChecks(Context):
    """The user's lookup and the group policy's groups."""

    @check(13)
    def name_service(self) -> Check:
        """The user, looked up as the helper looks users up (nss.py), within
        LookupTimeout: sssd down or hung is named, with the fix."""
        assert self.cfg is not None
        sources = _nss_sources(self.nsswitch, "passwd")
        where = f"passwd: {' '.join(sources) or 'files'} in {self.nsswitch}"
        fix = _name_service_fix(sources, self.nsswitch)
        timeout = self.cfg.lookup_timeout
        name = self.user or PROBE_NAME
        started = time.monotonic()
        try:
            entry = within(timeout, nss.user_by_name, name)
        except NameServiceError as err:
            return advice("FAIL", "name service", f"{err} ({where})", f"{fix}")
        except TimeoutError:
            return advice("FAIL", "name service", f"no answer for user {name!r} within "
                          f"{timeout} s (LookupTimeout; {where})", f"{fix}")
        took = time.monotonic() - started
        if not self.user:
            return Check("OK", "name service", f"every source answers ({where}; a name nobody "
                         f"has took {took:.2f} s)")
        if entry is None:
            return advice("FAIL", "name service", f"no user {name!r} ({where})", "check the "
                          "name, and that the directory holds it")
        return Check("OK", "name service", f"{name} is uid {entry.pw_uid} ({where}; "
                     f"answered in {took:.2f} s)")

    @check(22, ROOT)
    def group_policy(self) -> Optional[Check]:
        """AllowGroups and DenyGroups name groups that exist (a group the
        name service does not know admits nobody in AllowGroups, and in
        DenyGroups stops every token, as `internal`, until it knows it)."""
        assert self.cfg is not None
        if not (self.cfg.allow_groups or self.cfg.deny_groups):
            return None
        sources = _nss_sources(self.nsswitch, "group")
        found = []
        for key, names in (("AllowGroups", self.cfg.allow_groups),
                           ("DenyGroups", self.cfg.deny_groups)):
            for name in names:
                try:
                    gid = within(self.cfg.lookup_timeout, nss.group_id, name)
                except (NameServiceError, TimeoutError) as err:
                    why = str(err) or f"no answer within {self.cfg.lookup_timeout} s"
                    return advice("FAIL", "group policy", f"{key}: {why}",
                                  _name_service_fix(sources, self.nsswitch))
                if gid is None:
                    harm = ("it admits nobody" if key == "AllowGroups" else
                            "the helper gives nobody a token (internal) until there is")
                    return advice("FAIL", "group policy", f"{key} names {name!r}, and there is no "
                                  f"such group, so {harm}", f"fix the name in "
                                  f"{self.cfg.path or 'slurmjwt.conf'}")
                found.append(f"{name}={gid}")
        return Check("OK", "group policy", f"groups by gid: {', '.join(found)}")


def _nss_sources(path: str, database: str) -> list[str]:
    """Given nsswitch.conf's path and a database, return its sources in order
    (actions such as [NOTFOUND=return] left out); [] when unreadable."""
    try:
        with open(path) as fh:
            for line in fh:
                key, _, rest = line.split("#", 1)[0].partition(":")
                if key.strip() == database:
                    return [w for w in re.sub(r"\[[^]]*\]", " ", rest).split()]
    except OSError:
        pass
    return []


def _name_service_fix(sources: list[str], nsswitch: str) -> str:
    if "sss" in sources:
        return ("sssd is not answering: run systemctl restart sssd, and see journalctl -u sssd "
                "and sssctl domain-status")
    return f"check the sources of passwd and group in {nsswitch}"
