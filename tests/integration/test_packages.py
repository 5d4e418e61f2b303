"""The Debian package and the RPM build from the tree (root: rpmbuild runs as
root here). Installing the .deb on a clean system and logging in through it
is the demo's job (test_demo.py); installing, upgrading and removing it with
users logged in is test_deb_lifecycle.py's."""

from __future__ import annotations

import glob
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VERSION = re.search(r"^version = (\S+)$", (REPO / "setup.cfg").read_text(), re.M).group(1)  # type: ignore[union-attr]
ARCH = subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                      text=True).stdout.strip()
SHIPPED = ("/usr/bin/slurmjwt", "/usr/bin/slurmjwt-refresh", "/usr/sbin/slurmjwt-helper",
           "/etc/pam.d/slurmjwt", "/etc/profile.d/slurmjwt.sh", "/etc/profile.d/slurmjwt.csh",
           "/etc/slurm/slurmjwt.conf", "/usr/lib/slurmjwt/pam_slurmjwt/helper.py",
           "/usr/lib/slurmjwt/taskprolog.sh", "/lib/systemd/system/slurmjwt-helper.socket",
           "/lib/systemd/system/slurmjwt-helper-root.socket",
           "/lib/systemd/system/run-slurmjwt-users.mount",
           "/usr/lib/slurmjwt/slurmjwt-wrap", "/usr/lib/slurmjwt/slurmjwt-userdir",
           "/lib/systemd/system/slurmjwt-userdir.socket",
           "/lib/systemd/system/slurmjwt-userdir@.service",
           "/usr/share/fish/vendor_conf.d/slurmjwt.fish",
           "/usr/lib/systemd/user/slurmjwt-refresh.timer", "/usr/lib/tmpfiles.d/slurmjwt.conf",
           "/usr/share/man/man8/pam_slurmjwt.8.gz", "/usr/share/pam-configs/slurmjwt")
# Debian 12 keeps system units in /lib (debhelper 13.11 looks there only;
# merged /usr makes it /usr/lib), RHEL in /usr/lib; man pages are compressed.
RPM_PLACE = {"/lib/systemd/system/": "/usr/lib/systemd/system/"}


# sshd's compiled-in PATH for users (OpenSSH --with-default-path): Debian's
# debian/rules and Fedora's/RHEL's openssh.spec. The module built for each
# puts it after the wrappers in sshd sessions without a PAM PATH.
DEBIAN_SSHD_PATH = b"/usr/local/bin:/usr/bin:/bin:/usr/games"
RHEL_SSHD_PATH = b"/usr/local/bin:/usr/bin:/usr/local/sbin:/usr/sbin"


def make(target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-s", "-C", str(REPO), target], capture_output=True,
                          text=True, timeout=600)


def test_deb_holds_every_piece_and_depends_on_debians_pyjwt() -> None:
    out = make("deb")
    assert out.returncode == 0, out.stderr
    (deb,) = glob.glob(str(REPO / "build" / f"pam-slurmjwt_{VERSION}_*.deb"))
    assert Path(deb).name == f"pam-slurmjwt_{VERSION}_{ARCH}.deb"
    listing = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True).stdout
    files = {line.split()[-1].lstrip(".") for line in listing.splitlines()}
    for path in SHIPPED:
        assert path in files, path
    assert any(p.endswith("/security/pam_slurmjwt.so") for p in files)
    owners = {line.split()[1] for line in listing.splitlines()}
    assert owners == {"root/root"}
    assert not any("__pycache__" in p for p in files)  # compiled by postinst instead
    assert "/usr/share/doc/pam-slurmjwt/copyright" in files
    assert "/usr/share/doc/pam-slurmjwt/changelog.gz" in files
    assert "/usr/share/doc/pam-slurmjwt/NEWS.gz" in files
    fields = subprocess.run(["dpkg-deb", "-f", deb, "Depends"], capture_output=True,
                            text=True).stdout
    assert "python3-jwt" in fields and "libpam0g" in fields
    assert "python3-cryptography" in fields  # RS256 keys
    conffiles = subprocess.run(["dpkg-deb", "-I", deb, "conffiles"], capture_output=True,
                               text=True).stdout.split()
    assert "/etc/slurm/slurmjwt.conf" in conffiles and "/etc/pam.d/slurmjwt" in conffiles
    # The wrappers are made on the machine, for the Slurm installed there
    # (postinst, and again whenever squeue or sbatch change: the triggers).
    assert not any(p.startswith("/usr/lib/slurmjwt/bin/") and p != "/usr/lib/slurmjwt/bin/"
                   for p in files)
    triggers = subprocess.run(["dpkg-deb", "-I", deb, "triggers"], capture_output=True,
                              text=True).stdout.split("\n")
    assert "interest-noawait /usr/bin/squeue" in triggers
    postinst = subprocess.run(["dpkg-deb", "-I", deb, "postinst"], capture_output=True,
                              text=True).stdout
    assert "slurmjwt wrappers --update" in postinst
    (so,) = [p for p in files if p.endswith("/security/pam_slurmjwt.so")]
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", deb], capture_output=True,
                         check=True).stdout
    module = subprocess.run(["tar", "-xOf", "-", f".{so}"], input=tar, capture_output=True,
                            check=True).stdout
    assert b"\0" + DEBIAN_SSHD_PATH + b"\0" in module and RHEL_SSHD_PATH not in module
    # debhelper's snippets: the sockets enabled and started, /run/slurmjwt
    # made; the running helper restarted on upgrade; the hook in and out of
    # common-session with pam-auth-update.
    assert "deb-systemd-helper enable 'slurmjwt-helper.socket'" in postinst
    assert "deb-systemd-helper enable 'slurmjwt-helper-root.socket'" in postinst
    assert "deb-systemd-helper enable 'slurmjwt-userdir.socket'" in postinst
    assert "systemd-tmpfiles ${DPKG_ROOT:+--root=\"$DPKG_ROOT\"} --create slurmjwt.conf" in postinst
    assert "deb-systemd-invoke try-restart slurmjwt-helper.service" in postinst
    assert "pam-auth-update --package" in postinst
    prerm = subprocess.run(["dpkg-deb", "-I", deb, "prerm"], capture_output=True,
                           text=True).stdout
    assert "pam-auth-update --package --remove slurmjwt" in prerm


def test_deb_passes_lintian_without_errors() -> None:
    out = make("deb-lint")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "\nE: " not in "\n" + out.stdout


def test_versions_agree_everywhere() -> None:
    """setup.cfg (which the RPM reads), the Python package (--version, PONG),
    the Debian changelog and NEWS name the same release."""
    from pam_slurmjwt import __version__
    assert __version__ == VERSION
    changelog = (REPO / "packaging/debian/changelog").read_text().splitlines()[0]
    assert changelog.startswith(f"pam-slurmjwt ({VERSION}) "), changelog
    news = (REPO / "NEWS").read_text().splitlines()
    assert news[2:4] == [VERSION, "=" * len(VERSION)], news[:4]
    spec = re.search(r"^Version:\s*(\S+)$", (REPO / "packaging/rpm/pam-slurmjwt.spec").read_text(),
                     re.M)
    # A literal Version: is this one; a macro reads setup.cfg.
    assert spec is not None and (spec.group(1) == VERSION or "%" in spec.group(1)), spec


@pytest.mark.skipif(shutil.which("rpmbuild") is None, reason="rpmbuild not installed")
def test_rpm_spec_builds_with_the_same_file_list() -> None:
    out = make("rpm")
    assert out.returncode == 0, out.stderr[-2000:]
    (rpm,) = glob.glob(str(REPO / "build" / "rpm" / "RPMS" / "*" / "pam-slurmjwt-*.rpm"))
    files = set(subprocess.run(["rpm", "-qlp", rpm], capture_output=True,
                               text=True).stdout.split())
    for path in SHIPPED:
        for deb_place, rpm_place in RPM_PLACE.items():
            path = path.replace(deb_place, rpm_place) if path.startswith(deb_place) else path
        if not path.startswith(("/usr/lib/tmpfiles", "/usr/share/pam-configs")):
            assert path in files or path.removesuffix(".gz") in files, path
    licenses = subprocess.run(["rpm", "-qp", "--licensefiles", rpm], capture_output=True,
                              text=True).stdout.split()
    assert any(p.endswith("/LICENSE") for p in licenses), licenses
    requires = subprocess.run(["rpm", "-qp", "--requires", rpm], capture_output=True,
                              text=True).stdout
    assert "python3dist(pyjwt)" in requires and "python3dist(cryptography)" in requires
    # Built here on Debian, the module still has RHEL's sshd PATH.
    (so,) = [p for p in files if p.endswith("/security/pam_slurmjwt.so")]
    cpio = subprocess.run(["rpm2cpio", rpm], capture_output=True, check=True).stdout
    module = subprocess.run(["cpio", "--quiet", "-i", "--to-stdout", f".{so}"], input=cpio,
                            capture_output=True, check=True).stdout
    assert b"\0" + RHEL_SSHD_PATH + b"\0" in module and DEBIAN_SSHD_PATH not in module
