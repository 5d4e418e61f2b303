"""slurmjwt doctor names each distribution family's own paths, chosen from
os-release (ID, then ID_LIKE): Debian's and RHEL's PAM stacks, shell rc files
and pam_systemd advice; both, or the generic advice, on any other."""

from __future__ import annotations

from pathlib import Path

import pytest

from pam_slurmjwt.doctor import Doctor
from pam_slurmjwt.doctor.distro import family

OS_RELEASES = {
    "debian 12": ('ID=debian\nVERSION_ID="12"\n', "debian"),
    "ubuntu 24.04": ('ID=ubuntu\nID_LIKE=debian\n', "debian"),
    "rhel 9": ('ID="rhel"\nID_LIKE="fedora"\n', "rhel"),
    "rocky 9": ('ID="rocky"\nID_LIKE="rhel centos fedora"\n', "rhel"),
    "almalinux 9": ('ID="almalinux"\nID_LIKE="rhel centos fedora"\n', "rhel"),
    "fedora": ("ID=fedora\n", "rhel"),
    "arch": ("ID=arch\n", ""),
    "opensuse": ('ID="opensuse-leap"\nID_LIKE="suse opensuse"\n', ""),
}


@pytest.mark.parametrize("name", sorted(OS_RELEASES))
def test_the_family_comes_from_id_then_id_like(tmp_path: Path, name: str) -> None:
    text, expect = OS_RELEASES[name]
    (tmp_path / "os-release").write_text(text)
    assert family(str(tmp_path / "os-release")) == expect


def test_no_os_release_is_an_unknown_family(tmp_path: Path) -> None:
    assert family(str(tmp_path / "missing")) == ""


def _doctor(tmp_path: Path, os_release: str, sshd: str, systemd: bool = False) -> Doctor:
    (tmp_path / "os-release").write_text(os_release)
    (tmp_path / "sshd").write_text(sshd)
    return Doctor(None, None, sshd_pam=str(tmp_path / "sshd"), systemd=systemd,
                  os_release=str(tmp_path / "os-release"))


@pytest.mark.parametrize(("release", "fix", "rcs"), [
    ("debian 12", "add the line `@include slurmjwt` after `@include common-session`",
     {"zprofile": "/etc/zsh/zprofile", "bashrc": "/etc/bash.bashrc", "zshrc": "/etc/zsh/zshrc"}),
    ("rocky 9", "add the line `session include slurmjwt` after the `session include "
                "password-auth` line", {"bashrc": "/etc/bashrc", "zshrc": "/etc/zshrc"}),
    ("arch", "add the line `@include slurmjwt` after `@include common-session` (Debian) or "
             "after the `session include password-auth` line (RHEL)",
     {"zprofile": "/etc/zsh/zprofile", "bashrc": "/etc/bash.bashrc", "zshrc": "/etc/zsh/zshrc"}),
])
def test_a_missing_hook_and_the_shells_name_the_familys_own_files(
        tmp_path: Path, release: str, fix: str, rcs: dict[str, str]) -> None:
    doctor = _doctor(tmp_path, OS_RELEASES[release][0], "session include password-auth\n")
    check = doctor.pam_stack()
    assert (check.status, check.message, check.fix) == (
        "FAIL", f"{tmp_path}/sshd does not use the hook; {fix}", fix)
    assert doctor.shell_rcs == rcs


@pytest.mark.parametrize(("release", "how"), [
    ("ubuntu 24.04", "pam-auth-update --enable systemd"),
    ("almalinux 9", "authselect select sssd (or local) brings it in through password-auth and "
                    "system-auth"),
    ("opensuse", "Debian: pam-auth-update --enable systemd"),
])
def test_no_pam_systemd_says_how_this_family_adds_it(tmp_path: Path, release: str,
                                                     how: str) -> None:
    (tmp_path / "password-auth").write_text("session required pam_unix.so\n")
    check = _doctor(tmp_path, OS_RELEASES[release][0], "session include password-auth\n"
                    "session include slurmjwt\n", systemd=True).pam_stack()
    assert check.status == "WARN" and check.message.endswith(f"; add it ({how})"), check.message
