"""slurmjwt doctor's text report, byte for byte: whole runs (root with and
without systemd, a user, a helper that answers and one that does not) on
fixtures in a temporary directory, compared with tests/unit/doctor_text.golden,
which was written by the doctor before its checks were split by concern and
given a JSON renderer. Only what differs between hosts or runs is masked (the
temporary directory, durations, an HS256 key's id); checks that read the
host's own files whatever the fixture (pam module, fallback) are left out.
SLURMJWT_WRITE_GOLDEN=1 rewrites the file (only when a message is meant to
change)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import pam_slurmjwt.doctor as doctor_module
from pam_slurmjwt import nss
from pam_slurmjwt.doctor import Doctor
from tests.unit.inprocess import Running

GOLDEN = Path(__file__).with_name("doctor_text.golden")
HOST_DEPENDENT = ("pam module:", "fallback:")


def _fixture(tmp: Path, *, jwt: bool, good: bool) -> tuple[Path, dict[str, str]]:
    """Write slurm.conf, slurmjwt.conf, a key, sshd's PAM file, shells' rc
    files and fake Slurm clients under tmp; return the config and the rcs."""
    bindir = tmp / "slurm-bin"
    bindir.mkdir()
    for name, body in (("squeue", "exit 0" if good else
                        "echo 'slurm_load_jobs error: Zero Bytes' >&2; exit 1"),
                       ("sdiag", "echo \"sdiag output at now ($(date +%s))\"" if good
                        else "exit 1"),
                       ("scontrol", "echo 'slurm 24.11.1'"), ("sbatch", "exit 0")):
        (bindir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bindir / name).chmod(0o755)
    key = tmp / "jwt.key"
    key.write_bytes(os.urandom(32) if good else b"k" * 48)
    key.chmod(0o600)
    prolog = tmp / "prolog.sh"
    prolog.write_text("#!/bin/sh\necho 'unset SLURM_JWT'\n" if good else "#!/bin/sh\n")
    params = f"jwt_key={key}" + (",disable_token_creation" if good else "")
    (tmp / "slurm.conf").write_text(
        "SlurmUser=root\n" + (f"AuthAltTypes=auth/jwt\nAuthAltParameters={params}\n" if jwt
                              else "") + f"TaskProlog={prolog}\n"
        + ("CliFilterPlugins=cli_filter/lua\n" if good else ""))
    if good:
        (tmp / "cli_filter.lua").write_text("-- auth_jwt.so\nunset('SLURM_JWT')\n")
    conf = tmp / "slurmjwt.conf"
    conf.write_text(f"SlurmConf={tmp}/slurm.conf\nHelperSocket={tmp}/helper.sock\n"
                    f"RootSocket={tmp}/root.sock\nMungeSocket={tmp}/munge.socket.2\n"
                    f"Scontrol={bindir}/scontrol\nSlurmBinDir={bindir}\nMinUid=0\n"
                    + ("AllowGroups=root\n" if good else "DenyGroups=no-such-group\n")
                    + ("" if good else "Bogus=1\n"))
    (tmp / "pam.d").mkdir()
    (tmp / "pam.d" / "common-session").write_text("session optional pam_systemd.so\n")
    (tmp / "pam.d" / "sshd").write_text("@include common-session\n@include slurmjwt\n" if good
                                        else "@include slurmjwt\n@include common-session\n")
    (tmp / "zsh").mkdir()
    rcs = {"zprofile": str(tmp / "zsh" / "zprofile"), "bashrc": str(tmp / "bash.bashrc"),
           "zshrc": str(tmp / "zsh" / "zshrc")}
    if good:
        Path(rcs["zprofile"]).write_text(f". {tmp}/profile.sh\n")
        Path(rcs["bashrc"]).write_text(f". {tmp}/profile.sh\n")
        (tmp / "profile.sh").write_text("")
    (tmp / "wrappers").mkdir()
    (tmp / "slurmjwt-wrap").write_text("#!/bin/sh\n")
    (tmp / "slurmjwt-wrap").chmod(0o755)
    if good:
        for name in ("squeue", "sdiag", "scontrol", "sbatch"):
            (tmp / "wrappers" / name).symlink_to(tmp / "slurmjwt-wrap")
    else:
        (tmp / "wrappers" / "sgone").symlink_to(tmp / "slurmjwt-wrap")
    return conf, rcs


def _report(tmp: Path, conf: Path, rcs: dict[str, str], user: str | None, *, root: bool,
            systemd: bool) -> list[str]:
    doctor = Doctor(str(conf), user, sshd_pam=str(tmp / "pam.d" / "sshd"),
                    profile=str(tmp / "profile.sh"), wrapper_dir=str(tmp / "wrappers"),
                    wrap_program=str(tmp / "slurmjwt-wrap"), shell_rcs=rcs, systemd=systemd,
                    nsswitch=str(tmp / "nsswitch.conf"))
    doctor.root = root
    lines = []
    for check in doctor.run():
        line = check.line()
        if not line[5:].startswith(HOST_DEPENDENT):
            lines.append(line)
    return lines


def _mask(text: str, tmp: Path) -> str:
    text = text.replace(str(tmp), "TMP")
    text = re.sub(r"\d+\.\d\d s\)", "N.NN s)", text)
    text = re.sub(r"kid [^ )]+", "kid KID", text)
    text = re.sub(r"\(version [^)]+\)", "(version V)", text)
    text = re.sub(r"is [+-]\d+ s from", "is +N s from", text)
    return re.sub(r"token valid for \d+ s", "token valid for N s", text)


def _scenarios(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    answers = {"is-enabled": "disabled", "is-active": "inactive"}
    monkeypatch.setattr(doctor_module, "_systemctl",
                        lambda *args: answers.get(next(a for a in args if a[0] != "-"), ""))
    monkeypatch.setattr(doctor_module, "_slurm_version", lambda *_: (24, 11))
    monkeypatch.setattr(nss, "group_id", {"root": 0}.get)
    out: list[str] = []
    for name, jwt, good in (("bad", False, False), ("good", True, True)):
        tmp = tmp_path / name
        tmp.mkdir()
        (tmp / "nsswitch.conf").write_text("passwd: files sss\ngroup: files sss\n")
        conf, rcs = _fixture(tmp, jwt=jwt, good=good)
        (tmp / "runtime" / "systemd").mkdir(parents=True)
        (tmp / "runtime" / "systemd" / "private").write_text("")
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp / "runtime"))
        monkeypatch.setenv("PATH", f"{tmp}/slurm-bin:/usr/bin")
        for who, user, root, systemd in (("root", None, True, True),
                                         ("root --user root", "root", True, False),
                                         ("user", "root", False, True)):
            # No helper listening: its checks fail or are skipped, named.
            out.append(f"## {name}, {who}, systemd {systemd}, no helper")
            out += _report(tmp, conf, rcs, user, root=root, systemd=systemd)
        helper = Running(tmp, f"MinUid=0\nAllowPrivileged=root\n{'Lifespan=900' if good else ''}")
        try:
            for who, user, root, systemd in (("root --user root", "root", True, False),
                                             ("user", "root", False, True)):
                out.append(f"## {name}, {who}, systemd {systemd}, a helper")
                out += _report(tmp, conf, rcs, user, root=root, systemd=systemd)
        finally:
            helper.stop()
        os.unlink(tmp / "helper.sock")
    return _mask("\n".join(out) + "\n", tmp_path)


def test_text_report_is_byte_for_byte_what_it_was(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    text = _scenarios(tmp_path, monkeypatch)
    if os.environ.get("SLURMJWT_WRITE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()
