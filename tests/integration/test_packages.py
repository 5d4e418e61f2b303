"""The Debian package and the RPM build from the tree (root: dpkg-deb
--root-owner-group and rpmbuild run as root here). Installing the .deb on a
clean system and logging in through it is the demo's job (test_demo.py)."""

from __future__ import annotations

import glob
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ("/usr/bin/slurmjwt", "/usr/bin/slurmjwt-refresh", "/usr/sbin/slurmjwt-helper",
           "/etc/pam.d/slurmjwt", "/etc/profile.d/slurmjwt.sh", "/etc/profile.d/slurmjwt.csh",
           "/etc/slurm/slurmjwt.conf", "/usr/lib/slurmjwt/pam_slurmjwt/helper.py",
           "/usr/lib/slurmjwt/taskprolog.sh", "/usr/lib/systemd/system/slurmjwt-helper.socket",
           "/usr/lib/systemd/system/slurmjwt-helper-root.socket",
           "/usr/lib/systemd/system/run-slurmjwt-users.mount",
           "/usr/lib/slurmjwt/slurmjwt-wrap", "/usr/share/fish/vendor_conf.d/slurmjwt.fish",
           "/usr/lib/systemd/user/slurmjwt-refresh.timer", "/usr/lib/tmpfiles.d/slurmjwt.conf",
           "/usr/share/man/man8/pam_slurmjwt.8")


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
    (deb,) = glob.glob(str(REPO / "build" / "pam-slurmjwt_*.deb"))
    listing = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True).stdout
    files = {line.split()[-1].lstrip(".") for line in listing.splitlines()}
    for path in SHIPPED:
        assert path in files, path
    assert any(p.endswith("/security/pam_slurmjwt.so") for p in files)
    owners = {line.split()[1] for line in listing.splitlines()}
    assert owners == {"root/root"}
    assert not any("__pycache__" in p for p in files)  # compiled by postinst instead
    assert "/usr/share/doc/pam-slurmjwt/copyright" in files
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


@pytest.mark.skipif(shutil.which("rpmbuild") is None, reason="rpmbuild not installed")
def test_rpm_spec_builds_with_the_same_file_list() -> None:
    out = make("rpm")
    assert out.returncode == 0, out.stderr[-2000:]
    (rpm,) = glob.glob(str(REPO / "build" / "rpm" / "RPMS" / "*" / "pam-slurmjwt-*.rpm"))
    files = set(subprocess.run(["rpm", "-qlp", rpm], capture_output=True,
                               text=True).stdout.split())
    for path in SHIPPED:
        if not path.startswith("/usr/lib/tmpfiles"):
            assert path in files or path + ".gz" in files, path
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
