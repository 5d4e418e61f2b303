"""The paths and commands slurmjwt doctor names that differ between the
Debian and the RHEL families, in one table, and which family this host is
(from /etc/os-release: ID, then ID_LIKE)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

OS_RELEASE = "/etc/os-release"
FAMILIES = {"debian": ("debian", "ubuntu"),
            "rhel": ("rhel", "fedora", "centos", "rocky", "almalinux")}


@dataclass(frozen=True)
class Paths:
    """What a family calls things doctor talks about."""

    # Shells' system-wide files that profile.d does not cover: zsh on Debian
    # reads neither profile.d nor /etc/profile (login: zprofile; RHEL's
    # /etc/zprofile reads /etc/profile, so profile.d); non-login interactive
    # bash and zsh (IDE terminals) read only their rc.
    shell_rcs: dict[str, str]
    hook_after: str  # where sshd's PAM file takes the hook
    pam_systemd: str  # how pam_systemd gets into the session stack


DEBIAN = Paths({"zprofile": "/etc/zsh/zprofile", "bashrc": "/etc/bash.bashrc",
                "zshrc": "/etc/zsh/zshrc"},
               "add the line `@include slurmjwt` after `@include common-session`",
               "pam-auth-update --enable systemd")
RHEL = Paths({"bashrc": "/etc/bashrc", "zshrc": "/etc/zshrc"},
             "add the line `session include slurmjwt` after the `session include "
             "password-auth` line",
             "authselect select sssd (or local) brings it in through password-auth "
             "and system-auth")
# Neither family known: Debian's files (doctor looks for them where they
# are), and both families' advice where the words differ.
UNKNOWN = Paths(DEBIAN.shell_rcs,
                "add the line `@include slurmjwt` after `@include common-session` (Debian) or "
                "after the `session include password-auth` line (RHEL)",
                "Debian: pam-auth-update --enable systemd")
PATHS = {"debian": DEBIAN, "rhel": RHEL, "": UNKNOWN}


def family(os_release: str = OS_RELEASE) -> str:
    """Given os-release's path, return "debian", "rhel", or "" when it is
    unreadable or names neither (ID first, then each ID_LIKE in order)."""
    fields: dict[str, str] = {}
    try:
        with open(os_release) as fh:
            for line in fh:
                key, sep, value = line.strip().partition("=")
                if sep and not key.startswith("#"):
                    words = shlex.split(value, comments=False) or [""]
                    fields[key] = " ".join(words)
    except (OSError, ValueError):
        return ""
    for name in [fields.get("ID", ""), *fields.get("ID_LIKE", "").split()]:
        for found, names in FAMILIES.items():
            if name.lower() in names:
                return found
    return ""


def paths(os_release: str = OS_RELEASE) -> Paths:
    """This host's family's paths (PATHS[""] when unknown)."""
    return PATHS[family(os_release)]
