"""make install / make uninstall into a scratch root (root: files owned by root).

Everything is redirected under a temp directory with PREFIX and the *DIR
variables, so the installed wrappers really run, without touching /usr or /etc.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def make(target: str, root: Path) -> subprocess.CompletedProcess[str]:
    variables = [f"PREFIX={root}/usr", f"SYSCONFDIR={root}/etc", f"LIBDIR={root}/usr/lib/slurmjwt",
                 f"UNITDIR={root}/usr/lib/systemd/system",
                 f"USERUNITDIR={root}/usr/lib/systemd/user",
                 f"TMPFILESDIR={root}/usr/lib/tmpfiles.d", f"PAMDIR={root}/lib/security"]
    return subprocess.run(["make", "-s", "-C", str(REPO), target, *variables],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="slurmjwt-root-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


EXPECTED = {
    "usr/bin/slurmjwt": 0o755, "usr/bin/slurmjwt-refresh": 0o755,
    "usr/sbin/slurmjwt-helper": 0o755, "lib/security/pam_slurmjwt.so": 0o644,
    "etc/profile.d/slurmjwt.sh": 0o644, "etc/profile.d/slurmjwt.csh": 0o644,
    "usr/lib/slurmjwt/profile.d/slurmjwt.sh": 0o644,
    "usr/lib/slurmjwt/profile.d/slurmjwt.csh": 0o644,
    "etc/pam.d/slurmjwt": 0o644, "etc/slurm/slurmjwt.conf": 0o644,
    "usr/lib/slurmjwt/taskprolog.sh": 0o755, "usr/lib/slurmjwt/pam_slurmjwt/helper.py": 0o644,
    "usr/lib/systemd/system/slurmjwt-helper.socket": 0o644,
    "usr/lib/systemd/system/slurmjwt-helper-root.socket": 0o644,
    "usr/lib/systemd/system/slurmjwt-helper.service": 0o644,
    "usr/lib/systemd/system/run-slurmjwt-users.mount": 0o644,
    "usr/lib/slurmjwt/slurmjwt-wrap": 0o755, "usr/lib/slurmjwt/bin": 0o755,
    "usr/share/fish/vendor_conf.d/slurmjwt.fish": 0o644,
    "usr/lib/systemd/user/slurmjwt-refresh.timer": 0o644,
    "usr/lib/tmpfiles.d/slurmjwt.conf": 0o644,
    "usr/share/man/man8/pam_slurmjwt.8": 0o644, "usr/share/man/man5/slurmjwt.conf.5": 0o644,
}


def test_install_puts_every_piece_in_place_with_safe_modes(root: Path) -> None:
    out = make("install", root)
    assert out.returncode == 0, out.stderr
    for rel, mode in EXPECTED.items():
        st = (root / rel).stat()
        assert stat.S_IMODE(st.st_mode) == mode, rel
        assert st.st_uid == 0, rel
    for path in root.rglob("*"):
        assert not path.stat().st_mode & 0o002, f"{path} is world-writable"
    wrapper = (root / "usr/bin/slurmjwt-refresh").read_text()
    assert wrapper.startswith("#!/usr/bin/python3 -I\n")  # the system Python, isolated
    help_out = subprocess.run([str(root / "usr/bin/slurmjwt-refresh"), "--help"],
                              capture_output=True, text=True, env={"PYTHONPATH": "/nonexistent"})
    assert help_out.returncode == 0 and help_out.stdout.startswith("usage: slurmjwt-refresh")
    tmpfiles = (root / "usr/lib/tmpfiles.d/slurmjwt.conf").read_text()
    assert "d /run/slurmjwt/users  0711 root root -" in tmpfiles


def test_install_makes_one_wrapper_per_installed_slurm_command(root: Path) -> None:
    out = make("install", root)
    assert out.returncode == 0, out.stderr
    lib = root / "usr/lib/slurmjwt"
    names = sorted(p.name for p in (lib / "bin").iterdir())
    assert {"sbatch", "squeue", "scancel", "scontrol", "srun"} <= set(names)
    for name in names:
        assert os.readlink(lib / "bin" / name) == f"{lib}/slurmjwt-wrap"
    # The wrapper names the installed configuration, and the module the
    # installed wrapper directory (SYSCONFDIR, LIBDIR).
    assert f"{root}/etc/slurm/slurmjwt.conf".encode() in (lib / "slurmjwt-wrap").read_bytes()
    assert f"{lib}/bin".encode() in (root / "lib/security/pam_slurmjwt.so").read_bytes()
    # The shims name the installed wrapper directory too.
    assert f"{lib}/bin" in (root / "etc/profile.d/slurmjwt.sh").read_text()
    listed = subprocess.run([str(root / "usr/bin/slurmjwt"), "wrappers"], capture_output=True,
                            text=True, env={"PATH": "/usr/bin:/bin"})
    assert listed.returncode == 0, listed.stdout  # nothing missing, nothing extra


def test_installed_shims_read_their_full_logic_from_libdir(root: Path) -> None:
    out = make("install", root)
    assert out.returncode == 0, out.stderr
    lib = root / "usr/lib/slurmjwt/profile.d"
    for name in ("slurmjwt.sh", "slurmjwt.csh"):
        text = (root / "etc/profile.d" / name).read_text()
        assert f"{lib}/{name}" in text, name
        assert "/usr/lib/slurmjwt/" not in text.replace(f"{root}/usr/lib/slurmjwt/", ""), name
    # An interactive shell takes the full path: the prompt hook comes from the library.
    r = subprocess.run(["bash", "--norc", "-i", "-c",
                        f". {root}/etc/profile.d/slurmjwt.sh; declare -F _slurmjwt_hook"],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.stdout.strip() == "_slurmjwt_hook", r.stderr
    # Debian's csh.login reads /etc/csh/login.d: the csh shim is linked there.
    if Path("/etc/csh/login.d").is_dir():
        link = root / "etc/csh/login.d/slurmjwt.csh"
        assert os.readlink(link) == f"{root}/etc/profile.d/slurmjwt.csh"


def test_install_never_overwrites_an_edited_config_and_uninstall_keeps_it(root: Path) -> None:
    assert make("install", root).returncode == 0
    conf = root / "etc/slurm/slurmjwt.conf"
    conf.write_text("Lifespan=900\n")
    out = make("install", root)
    assert out.returncode == 0 and "keeping existing" in out.stdout
    assert conf.read_text() == "Lifespan=900\n"
    out = make("uninstall", root)
    assert out.returncode == 0, out.stderr
    assert "keeping" in out.stdout and conf.read_text() == "Lifespan=900\n"
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert left == ["etc/slurm/slurmjwt.conf"]


def test_uninstall_removes_an_untouched_sample_config(root: Path) -> None:
    assert make("install", root).returncode == 0
    assert make("uninstall", root).returncode == 0
    assert [p for p in root.rglob("*") if p.is_file()] == []
    assert os.path.isdir(root / "usr/bin")  # directories others may share stay
