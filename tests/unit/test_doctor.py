"""slurmjwt doctor's checks that need no daemon: the sshd PAM stack order
(pam_systemd included), the export explanation, the TaskProlog advice, token
creation, which node key a JWKS lacks, and what it says when the name
service, the group policy, the helper's socket units or the users' timer is
wrong (the real ones: test_login_node.py)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from pam_slurmjwt import nss
from pam_slurmjwt.config import parse_config
from pam_slurmjwt.doctor import Doctor
from pam_slurmjwt.errors import NameServiceError
from pam_slurmjwt.signing import signer_of_pem
from pam_slurmjwt.slurmconf import SlurmConf, parse_slurm_conf


def _doctor(tmp_path: Path, sshd: str, systemd: bool = False) -> Doctor:
    path = tmp_path / "sshd"
    path.write_text(sshd)
    return Doctor(None, None, sshd_pam=str(path), systemd=systemd)


def test_hook_after_common_session_passes(tmp_path: Path) -> None:
    check = _doctor(tmp_path, "@include common-auth\n@include common-session\n"
                              "@include slurmjwt\n").pam_stack()
    assert check.status == "OK"


def test_hook_before_common_session_fails_with_the_fix(tmp_path: Path) -> None:
    check = _doctor(tmp_path, "@include slurmjwt\n@include common-session\n").pam_stack()
    assert check.status == "FAIL" and "move `@include slurmjwt` after them" in check.message


def test_rhel_style_stack_with_direct_module_line(tmp_path: Path) -> None:
    check = _doctor(tmp_path, "session include password-auth\n"
                              "session optional pam_slurmjwt.so timeout=1500\n").pam_stack()
    assert check.status == "OK"


def test_rhel_style_include_line(tmp_path: Path) -> None:
    check = _doctor(tmp_path, "session include password-auth\n"
                              "session include slurmjwt\n").pam_stack()
    assert check.status == "OK"


def test_missing_hook_and_commented_hook_fail(tmp_path: Path) -> None:
    for text in ("@include common-session\n", "@include common-session\n# @include slurmjwt\n"):
        check = _doctor(tmp_path, text).pam_stack()
        assert check.status == "FAIL" and "does not use the hook" in check.message


@pytest.mark.parametrize(("conf", "munge", "expect"), [
    ("Export=auto", False, "no munge socket here: JWT is the only way in"),
    ("Export=auto", True, "AuthType=auth/munge: munge works here"),
    ("Export=never", False, "Export=never: SLURM_JWT is not exported"),
    ("Export=always", True, "exported although munge works here"),
    ("AuthType=auth/slurm", False, "AuthType=auth/slurm but no sackd socket here ("),
    ("AuthType=auth/slurm", True, "AuthType=auth/slurm: sackd works here ("),
])
def test_export_explains_what_it_means_here(tmp_path: Path, conf: str, munge: bool,
                                            expect: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    # The socket is munged's under auth/munge, sackd's under auth/slurm.
    sock_path = tmp_path / "munge.sock"
    monkeypatch.setenv("SLURM_SACK_SOCKET", str(sock_path))
    monkeypatch.delenv("SLURM_CONF", raising=False)
    slurm = "AuthType=auth/slurm" if conf.startswith("AuthType") else "AuthType=auth/munge"
    (tmp_path / "slurm.conf").write_text(slurm + "\n")
    sock = socket.socket(socket.AF_UNIX)
    if munge:
        sock.bind(str(sock_path))
    try:
        doctor = Doctor(None, None)
        doctor.cfg = parse_config(f"{'' if slurm == conf else conf}\nMungeSocket={sock_path}\n"
                                  f"SlurmConf={tmp_path}/slurm.conf\n", "/c")
        assert expect in doctor.export().message
    finally:
        sock.close()


def _slurm_side_doctor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       version: tuple[int, int], conf: str, script: str = "") -> Doctor:
    import pam_slurmjwt.doctor as doctor_module

    monkeypatch.setattr(doctor_module, "_slurm_version", lambda *_: version)
    path = tmp_path / "slurm.conf"
    path.write_text(conf or "SlurmUser=slurm\n")
    if script:
        (tmp_path / "cli_filter.lua").write_text(script)
    doctor = Doctor(None, None)
    doctor.cfg = parse_config("", "/c")
    doctor.slurm = parse_slurm_conf(str(path))
    return doctor


PROLOG_WHY = {
    (22, 5): "sbatch copies SLURM_JWT into every job, and srun in a job then fails",
    (25, 11): "sbatch copies SLURM_JWT into every job, and srun in a job then fails",
    (26, 5): "sbatch --export=ALL (also SBATCH_EXPORT=ALL, --export=ALL,VAR=x) still copies "
             "SLURM_JWT into the job, and srun there refuses to start",
}


@pytest.mark.parametrize("version", sorted(PROLOG_WHY))
def test_task_prolog_is_asked_for_on_every_release_with_that_releases_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: tuple[int, int]) -> None:
    check = _slurm_side_doctor(tmp_path, monkeypatch, version, "").task_prolog()
    assert check.status == "WARN"
    assert PROLOG_WHY[version] in check.message
    assert "set TaskProlog=/usr/lib/slurmjwt/taskprolog.sh" in check.message


def test_task_prolog_that_unsets_the_token_passes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prolog = tmp_path / "prolog.sh"
    prolog.write_text("#!/bin/sh\necho 'unset SLURM_JWT'\n")
    check = _slurm_side_doctor(tmp_path, monkeypatch, (26, 5),
                               f"TaskProlog={prolog}\n").task_prolog()
    assert (check.status, check.message) == (
        "OK", f"TaskProlog={prolog} unsets SLURM_JWT in every task")


def test_task_prolog_that_ignores_the_token_is_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prolog = tmp_path / "prolog.sh"
    prolog.write_text("#!/bin/sh\necho 'export FOO=1'\n")
    check = _slurm_side_doctor(tmp_path, monkeypatch, (24, 11),
                               f"TaskProlog={prolog}\n").task_prolog()
    assert check.status == "WARN" and f"TaskProlog={prolog} does not mention" in check.message


SHIPPED = (Path(__file__).resolve().parents[2] / "packaging" / "slurm"
           / "cli_filter.lua").read_text()
UNGUARDED = "require('posix.stdlib').setenv('SLURM_JWT', nil)"


@pytest.mark.parametrize(("version", "plugins", "script", "status", "words"), [
    # No filter: asked for on every release, with what it does there.
    ((22, 5), "", "", "WARN", "it keeps SLURM_JWT out of salloc's shell; sbatch reads its "
                              "token only when it submits"),
    ((24, 11), "", "", "WARN", "it keeps SLURM_JWT out of stored jobs and salloc's shell: "
                               "add CliFilterPlugins=cli_filter/lua"),
    ((26, 5), "", "", "WARN", "on every host that runs sbatch, salloc or srun"),
    ((26, 5), "cli_filter/lua", "", "WARN", "no cli_filter removes SLURM_JWT (Slurm 26.05)"),
    # The shipped filter: right on every release, saying what it achieves there.
    ((22, 5), "cli_filter/lua", SHIPPED, "OK", "keeps SLURM_JWT out of salloc's shell; sbatch "
                                               "reads its token only when it submits"),
    ((23, 11), "cli_filter/lua", SHIPPED, "OK", "keeps SLURM_JWT out of stored jobs and "
                                                "salloc's shell (Slurm 23.11)"),
    ((26, 5), "cli_filter/lua", SHIPPED, "OK", "keeps SLURM_JWT out of stored jobs"),
    # A filter that unsets at once: harmful before 23.11 only.
    ((22, 5), "cli_filter/lua", UNGUARDED, "WARN", "so sbatch loses its token; replace it"),
    ((24, 5), "cli_filter/lua", UNGUARDED, "OK", "keeps SLURM_JWT out of stored jobs"),
    # Releases the matrix does not run get the nearest older one's advice, said so.
    ((23, 2), "", "", "WARN", "Slurm 23.02 is not in the compatibility matrix, this is what "
                              "22.05 does"),
])
def test_cli_filter_advice_follows_the_slurm_release(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: tuple[int, int],
        plugins: str, script: str, status: str, words: str) -> None:
    conf = f"CliFilterPlugins={plugins}\n" if plugins else ""
    check = _slurm_side_doctor(tmp_path, monkeypatch, version, conf, script).cli_filter()
    assert (check.status, words in check.message) == (status, True), check.message


# ---- the checks this project's wrappers, key id and shells need --------------------


def _with_cfg(tmp_path: Path, text: str = "", **kwargs: object) -> Doctor:
    doctor = Doctor(None, None, sshd_pam=str(tmp_path / "sshd"), **kwargs)  # type: ignore[arg-type]
    doctor.cfg = parse_config(f"HelperSocket={tmp_path}/run/helper.sock\n{text}", "/c")
    return doctor


def test_key_id_missing_mismatched_or_good(tmp_path: Path) -> None:
    doctor = _with_cfg(tmp_path)
    check = doctor.key_id()
    assert check.status == "FAIL" and f"no key id in {tmp_path}/run/key/id" in check.message
    (tmp_path / "run" / "key").mkdir(parents=True)
    (tmp_path / "run" / "key" / "id").write_text("abc\n")
    (tmp_path / "run" / "key" / "id").chmod(0o644)
    doctor.kid = "xyz"
    check = doctor.key_id()
    assert check.status == "FAIL" and "says abc but the helper's tokens say xyz" in check.message
    doctor.kid = "abc"
    assert doctor.key_id().status == "OK"


def test_wrappers_missing_or_out_of_step_say_how_to_fix(tmp_path: Path) -> None:
    program = tmp_path / "slurmjwt-wrap"
    out = tmp_path / "bin"
    out.mkdir()
    doctor = _with_cfg(tmp_path, f"SlurmBinDir={tmp_path}/slurm\n", wrapper_dir=str(out),
                       wrap_program=str(program))
    assert "is missing: run make install" in doctor.wrappers().message
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    check = doctor.wrappers()
    assert check.status == "WARN" and "no Slurm command in" in check.message
    (out / "sgone").symlink_to(program)
    check = doctor.wrappers()
    assert check.status == "WARN" and "wrappers of removed commands: sgone" in check.message
    assert check.message.endswith("run slurmjwt wrappers --update")


def test_zsh_login_file_must_read_the_shim_and_rc_files_are_a_choice(tmp_path: Path) -> None:
    (tmp_path / "zsh").mkdir()
    rcs = {"zprofile": str(tmp_path / "zsh" / "zprofile"),
           "bashrc": str(tmp_path / "bash.bashrc"), "zshrc": str(tmp_path / "zsh" / "zshrc")}
    doctor = _with_cfg(tmp_path, shell_rcs=rcs, profile="/etc/profile.d/slurmjwt.sh")
    check = doctor.shells()
    assert check.status == "WARN" and "zsh login shells get no token refresh" in check.message
    Path(rcs["zprofile"]).write_text("[ -r /etc/profile.d/slurmjwt.sh ] && "
                                     ". /etc/profile.d/slurmjwt.sh\n")
    check = doctor.shells()
    assert check.status == "OK" and "rely on the wrappers" in check.message
    Path(rcs["bashrc"]).write_text(". /etc/profile.d/slurmjwt.sh\n")
    check = doctor.shells()
    assert check.status == "OK" and "also runs in non-login interactive shells (bashrc)" \
        in check.message


def test_path_says_whether_squeue_is_the_wrapper(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    wrappers_dir, real = tmp_path / "wrappers", tmp_path / "usr-bin"
    for d in (wrappers_dir, real):
        d.mkdir()
        (d / "squeue").write_text("")
    doctor = _with_cfg(tmp_path, wrapper_dir=str(wrappers_dir))
    monkeypatch.setenv("PATH", f"{wrappers_dir}:{real}")
    assert doctor.path().status == "OK"
    monkeypatch.setenv("PATH", f"{real}:{wrappers_dir}")
    check = doctor.path()
    assert check.status == "WARN" and f"squeue on your PATH is {real}/" not in check.message
    assert f"is {real}, not the wrapper" in check.message


def test_root_without_a_user_and_nobody_to_try_fails_saying_why(tmp_path: Path) -> None:
    doctor = _with_cfg(tmp_path, "MinUid=999999999")
    doctor.helper_ok, doctor.user = True, ""
    check = doctor.accepted()
    assert check.status == "FAIL"
    assert "no user at or above MinUid 999999999 to prove the key with" in check.message


@pytest.mark.parametrize(("params", "status", "words"), [
    ("jwt_key=/k", "WARN", "a stolen token can get its successor from scontrol token, for "
                           "ever: add disable_token_creation to AuthAltParameters"),
    ("jwt_key=/k,disable_token_creation", "OK", "has disable_token_creation"),
    ("disable_token_creation,jwks=/j.json", "OK", "has disable_token_creation"),
    ("jwks=/etc/slurm/jwks.json", "OK", "a JWKS and no HS256 key"),
    ("jwks=/j.json,jwt_key=/k", "WARN", "add disable_token_creation"),
])
def test_doctor_recommends_disable_token_creation(tmp_path: Path, params: str, status: str,
                                                  words: str) -> None:
    conf = tmp_path / "slurm.conf"
    conf.write_text(f"AuthAltTypes=auth/jwt\nAuthAltParameters={params}\n")
    doctor = Doctor(None, None)
    doctor.slurm = parse_slurm_conf(str(conf))
    check = doctor.token_creation()
    assert (check.status, words in check.message) == (status, True), check.message


@pytest.mark.parametrize(("version", "how"), [
    ((22, 5), "restart slurmctld (Slurm before 23.11 reads the JWKS only at start)"),
    ((23, 11), "run scontrol reconfigure"),
    ((26, 5), "run scontrol reconfigure"),
])
def test_a_node_key_missing_from_the_jwks_is_named_with_the_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: tuple[int, int],
        how: str) -> None:
    import pam_slurmjwt.doctor as doctor_module
    from pam_slurmjwt.signing import jwks_document

    monkeypatch.setattr(doctor_module, "_slurm_version", lambda *_: version)
    key = tmp_path / "login2.pem"
    assert cli_keygen(tmp_path, key) == 0
    other = tmp_path / "login1.pem"
    assert cli_keygen(tmp_path, other) == 0
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(jwks_document([str(other)])))
    conf = tmp_path / "slurm.conf"
    conf.write_text(f"AuthAltParameters=jwks={jwks}\n")
    doctor = Doctor(None, None)
    doctor.cfg = parse_config("", "/c")
    doctor.slurm = parse_slurm_conf(str(conf))
    doctor.key_path = str(key)
    mine, theirs = (signer_of_pem(str(p), p.read_bytes()).kid for p in (key, other))
    assert doctor._missing_from_jwks(mine) == (
        f"this node's key ({key}), kid {mine}, is not in slurmctld's JWKS {jwks} (it holds "
        f"{theirs}); add it (slurmjwt jwks {key} gives its entry) and {how}")
    # Listed here but still refused: slurmctld has not read the file yet.
    jwks.write_text(json.dumps(jwks_document([str(other), str(key)])))
    assert doctor._missing_from_jwks(mine) == (
        f"the JWKS {jwks} here lists this node's key (kid {mine}), so slurmctld has not read "
        f"it yet, or reads another file: {how}")
    # A stray entry under this node's kid holding another key is not this
    # node's key, whatever it claims.
    stray = {**jwks_document([str(other)])["keys"][0], "kid": mine}
    jwks.write_text(json.dumps({"keys": [stray]}))
    assert doctor._missing_from_jwks(mine) == (
        f"this node's key ({key}), kid {mine}, is not in slurmctld's JWKS {jwks} (its entry "
        f"under kid {mine} holds another key: {theirs}); replace that entry with this node's "
        f"(slurmjwt jwks {key} gives it) and {how}")


def cli_keygen(tmp_path: Path, key: Path) -> int:
    from pam_slurmjwt import cli

    (tmp_path / "kg-slurm.conf").write_text("SlurmUser=nobody\n")
    (tmp_path / "kg.conf").write_text(f"SlurmConf={tmp_path}/kg-slurm.conf\n")
    return cli.main(["-c", str(tmp_path / "kg.conf"), "keygen", str(key)])


def test_a_missing_node_key_is_named_when_the_jwks_is_not_here(tmp_path: Path) -> None:
    doctor = Doctor(None, None)
    doctor.cfg = parse_config("", "/c")
    doctor.version = (24, 11)
    conf = tmp_path / "slurm.conf"
    conf.write_text("AuthAltParameters=jwt_key=/k\n")
    doctor.slurm = parse_slurm_conf(str(conf))
    assert doctor._missing_from_jwks("K") == (
        "this node's key, kid K, is not in slurmctld's JWKS (this host's slurm.conf names "
        "none: AuthAltParameters=jwks=FILE); add it (slurmjwt jwks JWTKEY gives its entry) "
        "and run scontrol reconfigure")
    conf.write_text(f"AuthAltParameters=jwks={tmp_path}/jwks.json\n")
    doctor.slurm = parse_slurm_conf(str(conf))
    assert doctor._missing_from_jwks("K") == (
        f"this node's key, kid K, is not in slurmctld's JWKS {tmp_path}/jwks.json (not "
        f'compared here: cannot read "{tmp_path}/jwks.json": No such file or directory); add '
        f"it (slurmjwt jwks JWTKEY gives its entry) and run scontrol reconfigure")


# -- pam_systemd, on a host where systemd runs

COMMON_SESSION = ("session [default=1] pam_permit.so\nsession required pam_unix.so\n"
                  "session optional pam_systemd.so\n")


def _systemd_stack(tmp_path: Path, sshd: str) -> Doctor:
    (tmp_path / "common-session").write_text(COMMON_SESSION)
    (tmp_path / "slurmjwt").write_text("session optional pam_slurmjwt.so timeout=2000\n")
    return _doctor(tmp_path, sshd, systemd=True)


def test_hook_after_pam_systemd_passes(tmp_path: Path) -> None:
    check = _systemd_stack(tmp_path, "session [success=ok ignore=ignore default=bad] "
                                     "pam_selinux.so close\n@include common-session\n"
                                     "@include slurmjwt\n").pam_stack()
    assert (check.status, check.message) == ("OK", f"{tmp_path}/sshd includes the hook after "
                                             "pam_systemd (`@include common-session`)")


def test_hook_before_pam_systemd_fails_naming_the_line_that_brings_it(tmp_path: Path) -> None:
    (tmp_path / "systemd-session").write_text("session optional pam_systemd.so\n")
    check = _systemd_stack(tmp_path, "@include common-auth\n@include slurmjwt\n"
                                     "session substack systemd-session\n").pam_stack()
    assert (check.status, check.message) == (
        "FAIL", f"in {tmp_path}/sshd the hook comes before pam_systemd (brought in by `session "
                "substack systemd-session`): move `@include slurmjwt` after that line, so the "
                "session's XDG_RUNTIME_DIR exists when the cache is written")


def test_hook_in_common_session_after_pam_systemd_passes(tmp_path: Path) -> None:
    # What the Debian package's pam-auth-update profile makes (Priority -1:
    # after pam_systemd's 0).
    (tmp_path / "common-session").write_text(
        COMMON_SESSION + "session optional pam_slurmjwt.so timeout=2000\n")
    check = _doctor(tmp_path, "@include common-auth\n@include common-session\n",
                    systemd=True).pam_stack()
    assert (check.status, check.message) == ("OK", f"{tmp_path}/sshd includes the hook after "
                                             "pam_systemd (`@include common-session`)")


def test_hook_in_common_session_before_pam_systemd_fails(tmp_path: Path) -> None:
    (tmp_path / "common-session").write_text(
        "session optional pam_slurmjwt.so timeout=2000\n" + COMMON_SESSION)
    check = _doctor(tmp_path, "@include common-session\n", systemd=True).pam_stack()
    assert check.status == "FAIL"
    assert check.message.startswith(f"in {tmp_path}/sshd the hook comes before pam_systemd "
                                    "(brought in by `@include common-session`)")


def test_no_pam_systemd_under_systemd_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "common-session").write_text("session required pam_unix.so\n")
    check = _doctor(tmp_path, "@include common-session\n@include slurmjwt\n",
                    systemd=True).pam_stack()
    assert check.status == "WARN"
    assert "sessions get no XDG_RUNTIME_DIR" in check.message
    assert "pam-auth-update --enable systemd" in check.message


# -- the name service, the group policy

def _configured(text: str, nsswitch: str, tmp_path: Path) -> Doctor:
    (tmp_path / "nsswitch.conf").write_text(nsswitch)
    doctor = Doctor(None, "demo", nsswitch=str(tmp_path / "nsswitch.conf"), systemd=False)
    doctor.cfg = parse_config(text, "/etc/slurm/slurmjwt.conf")
    return doctor


SSS = "passwd:         files sss\ngroup:          files [SUCCESS=merge] sss\n"


def test_name_service_down_is_named_with_the_fix(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def down(name: str) -> None:
        raise NameServiceError(f"cannot look up user {name!r}: Connection refused")

    monkeypatch.setattr(nss, "user_by_name", down)
    check = _configured("", SSS, tmp_path).name_service()
    assert (check.status, check.message) == (
        "FAIL", f"cannot look up user 'demo': Connection refused (passwd: files sss in "
                f"{tmp_path}/nsswitch.conf); sssd is not answering: run systemctl restart sssd, "
                "and see journalctl -u sssd and sssctl domain-status")


def test_name_service_hung_is_a_failure_within_lookup_timeout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    monkeypatch.setattr(nss, "user_by_name", lambda _name: release.wait(30))
    try:
        start = time.monotonic()
        check = _configured("LookupTimeout=1\nHelperTimeout=5", SSS, tmp_path).name_service()
        assert time.monotonic() - start < 2.5
    finally:
        release.set()
    assert check.status == "FAIL"
    assert check.message.startswith("no answer for user 'demo' within 1 s (LookupTimeout; ")
    assert check.message.endswith("sssd is not answering: run systemctl restart sssd, and see "
                                  "journalctl -u sssd and sssctl domain-status")


def test_name_service_ok_says_where_the_user_came_from(tmp_path: Path) -> None:
    doctor = _configured("", "passwd: files\n", tmp_path)
    doctor.user = "root"
    check = doctor.name_service()
    assert check.status == "OK"
    assert check.message.startswith(f"root is uid 0 (passwd: files in {tmp_path}/nsswitch.conf; ")


@pytest.mark.parametrize(("conf", "expect"), [
    ("AllowGroups=hcp", "AllowGroups names 'hcp', and there is no such group, so it admits "
                        "nobody; fix the name in /etc/slurm/slurmjwt.conf"),
    ("DenyGroups=hpc,contractrs", "DenyGroups names 'contractrs', and there is no such group, "
                                  "so the helper gives nobody a token (internal) until there "
                                  "is; fix the name in /etc/slurm/slurmjwt.conf"),
])
def test_group_policy_naming_no_group_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            conf: str, expect: str) -> None:
    monkeypatch.setattr(nss, "group_id", {"hpc": 3000, "contractors": 3001}.get)
    check = _configured(conf, SSS, tmp_path).group_policy()
    assert check is not None and (check.status, check.message) == ("FAIL", expect)


def test_group_policy_lists_gids_and_is_silent_when_unset(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nss, "group_id", {"hpc": 3000, "contractors": 3001}.get)
    check = _configured("AllowGroups=hpc\nDenyGroups=contractors", SSS, tmp_path).group_policy()
    assert check is not None
    assert (check.status, check.message) == ("OK", "groups by gid: hpc=3000, contractors=3001")
    assert _configured("", SSS, tmp_path).group_policy() is None


# -- systemd units

HELPER = "/run/slurmjwt/helper.sock (Stream)"
ROOT = "/run/slurmjwt/root.sock (Stream)"
BOTH = "systemctl enable --now slurmjwt-helper.socket slurmjwt-helper-root.socket"


@pytest.mark.parametrize(("answers", "status", "expect"), [
    ({"is-enabled": ["disabled"]}, "FAIL",
     f"slurmjwt-helper.socket is disabled, so nothing will listen on /run/slurmjwt/helper.sock "
     f"after a reboot; run {BOTH}"),
    ({"is-enabled": ["enabled", "disabled"], "is-active": ["active"], "show": [HELPER]}, "FAIL",
     f"slurmjwt-helper-root.socket is disabled, so nothing will listen on "
     f"/run/slurmjwt/root.sock after a reboot; run {BOTH}"),
    ({"is-enabled": ["enabled"], "is-active": ["failed"]}, "FAIL",
     "slurmjwt-helper.socket is enabled but failed; run systemctl start slurmjwt-helper.socket "
     "and see systemctl status slurmjwt-helper.socket"),
    ({"is-enabled": ["enabled"], "is-active": ["active"], "show": ["/run/other.sock (Stream)"]},
     "FAIL", "slurmjwt-helper.socket listens on /run/other.sock but clients use "
             "HelperSocket=/run/slurmjwt/helper.sock; make them the same (systemctl edit "
             "slurmjwt-helper.socket, or HelperSocket= in slurmjwt.conf)"),
    ({"is-enabled": ["enabled", "enabled"], "is-active": ["active", "active"],
      "show": [HELPER, ROOT]}, "OK",
     "slurmjwt-helper.socket and slurmjwt-helper-root.socket enabled and listening on "
     "/run/slurmjwt/helper.sock and /run/slurmjwt/root.sock: systemd starts the helper on the "
     "first connection"),
])
def test_helper_socket_units(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             answers: dict[str, list[str]], status: str, expect: str) -> None:
    import pam_slurmjwt.doctor as doctor_module

    def systemctl(*args: str) -> str:
        # Each verb's answers in turn: the users' socket, then root's.
        said = answers.get(next(a for a in args if not a.startswith("-")), [])
        return said.pop(0) if said else ""

    answers = {verb: list(said) for verb, said in answers.items()}
    monkeypatch.setattr(doctor_module, "_systemctl", systemctl)
    check = _configured("", SSS, tmp_path).helper_unit()
    assert (check.status, check.message) == (status, expect)


@pytest.mark.parametrize(("answer", "status"), [("enabled", "OK"), ("disabled", "WARN")])
def test_user_timer_enabled_globally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     answer: str, status: str) -> None:
    import pam_slurmjwt.doctor as doctor_module

    asked: list[tuple[str, ...]] = []
    monkeypatch.setattr(doctor_module, "_systemctl", lambda *args: asked.append(args) or answer)
    check = _configured("", SSS, tmp_path).user_timer()
    assert asked == [("--global", "is-enabled", "slurmjwt-refresh.timer")]
    assert check.status == status
    if status == "WARN":
        assert check.message == (
            "slurmjwt-refresh.timer is disabled for users: tokens in long sessions and tmux stay "
            "fresh only while a shell prompts; run systemctl --global enable "
            "slurmjwt-refresh.timer")


def _accounting_doctor(tmp_path: Path, conf: str, sacctmgr: str,
                       token: str | None) -> Doctor:
    """A doctor whose slurm.conf is `conf`, whose sacctmgr is the shell
    `sacctmgr` (beside Scontrol), and to whom slurmctld accepted `token`."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "sacctmgr").write_text(f"#!/bin/sh\n{sacctmgr}\n")
    (bindir / "sacctmgr").chmod(0o755)
    (tmp_path / "slurm.conf").write_text(conf)
    doctor = Doctor(None, "alice")
    doctor.cfg = parse_config(f"Scontrol={bindir}/scontrol\n", "/c")
    doctor.slurm = parse_slurm_conf(str(tmp_path / "slurm.conf"))
    doctor.token = token
    return doctor


DBD_CONF = ("AuthAltTypes=auth/jwt\nAuthAltParameters=jwt_key=/etc/slurm/jwt.key\n"
            "AccountingStorageType=accounting_storage/slurmdbd\n"
            "AccountingStorageHost=dbd.example\n")
# A token's shape only: the doctor reads its header (alg), never checks it.
HS256 = "eyJhbGciOiJIUzI1NiJ9.e30.c2ln"


def test_slurmdbd_check_is_absent_without_slurmdbd(tmp_path: Path) -> None:
    doctor = _accounting_doctor(tmp_path, "AccountingStorageType=accounting_storage/none\n",
                                "exit 1", HS256)
    assert doctor.slurmdbd_accepts() is None


def test_slurmdbd_that_takes_the_token_passes_and_says_it_reads_keys_at_start(
        tmp_path: Path) -> None:
    # The token reaches sacctmgr in its environment, never on its command line.
    doctor = _accounting_doctor(tmp_path, DBD_CONF, '[ -n "$SLURM_JWT" ] && [ "$#" -eq 5 ]',
                                token=HS256)
    check = doctor.slurmdbd_accepts()
    assert check is not None
    assert (check.status, check.message) == (
        "OK", "a token for alice from the helper works with sacctmgr: slurmdbd "
        "(dbd.example:6819) takes this node's tokens (it reads its key only at start: "
        "restart it after every change of key)")


def test_slurmdbd_that_refuses_the_token_is_named_with_the_fix(tmp_path: Path) -> None:
    doctor = _accounting_doctor(
        tmp_path, DBD_CONF, "echo 'sacctmgr: error: Problem talking to the database: "
        "Protocol authentication error' >&2; exit 1", token=HS256)
    check = doctor.slurmdbd_accepts()
    assert check is not None and check.status == "FAIL"
    assert check.message == (
        "sacctmgr with a fresh helper token for alice failed (sacctmgr: error: Problem talking "
        "to the database: Protocol authentication error), while slurmctld accepts that token: "
        "slurmdbd (dbd.example:6819) refuses this node's tokens: in slurmdbd.conf on the "
        "slurmdbd host set AuthAltTypes=auth/jwt and AuthAltParameters=jwt_key=/etc/slurm/"
        "jwt.key (the same key, byte for byte), then restart slurmdbd (it reads its key only "
        "at start)")
    assert check.fix.startswith("in slurmdbd.conf on the slurmdbd host")


def test_slurmdbd_that_is_down_is_told_apart_from_one_that_refuses(tmp_path: Path) -> None:
    doctor = _accounting_doctor(
        tmp_path, DBD_CONF + "AccountingStoragePort=7000\n",
        "echo 'sacctmgr: error: Sending PersistInit msg: Connection refused' >&2; exit 1", HS256)
    check = doctor.slurmdbd_accepts()
    assert check is not None and check.status == "FAIL"
    assert check.message.startswith("sacctmgr cannot reach slurmdbd at dbd.example:7000")
    assert check.fix.startswith("start slurmdbd there")


def test_slurmdbd_check_waits_for_a_token_slurmctld_accepts(tmp_path: Path) -> None:
    doctor = _accounting_doctor(tmp_path, DBD_CONF, "exit 0", token=None)
    check = doctor.slurmdbd_accepts()
    assert check is not None
    assert (check.status, check.message) == ("SKIP", "needs a token that slurmctld accepts")


def test_slurmdbd_refusing_an_rs256_token_is_told_to_take_the_jwks(tmp_path: Path) -> None:
    conf = DBD_CONF.replace("jwt_key=/etc/slurm/jwt.key", "jwks=/etc/slurm/jwks.json")
    doctor = _accounting_doctor(tmp_path, conf, "echo 'refused' >&2; exit 1",
                                token="eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
    doctor.kid = "node-kid"
    check = doctor.slurmdbd_accepts()
    assert check is not None and check.status == "FAIL"
    assert ("AuthAltParameters=jwks=/etc/slurm/jwks.json (a JWKS with this node's key, kid "
            "node-kid), then restart slurmdbd") in check.fix


def _clusters_doctor(tmp_path: Path, clusters: str, squeue: str, token: str | None) -> Doctor:
    """A doctor with Clusters=`clusters`, whose squeue is the shell `squeue`
    (beside Scontrol), and to whom slurmctld accepted `token`."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "squeue").write_text(f"#!/bin/sh\n{squeue}\n")
    (bindir / "squeue").chmod(0o755)
    doctor = Doctor(None, "alice")
    doctor.cfg = parse_config(f"Scontrol={bindir}/scontrol\n{clusters}", "/c")
    doctor.token = token
    return doctor


def test_clusters_check_is_absent_without_clusters(tmp_path: Path) -> None:
    assert _clusters_doctor(tmp_path, "", "exit 1", HS256).clusters_accept() is None


def test_clusters_check_names_a_cluster_slurmdbd_does_not_know(tmp_path: Path) -> None:
    # The token reaches squeue in its environment, never on its command line.
    doctor = _clusters_doctor(
        tmp_path, "Clusters=a, zz\n", '[ -n "$SLURM_JWT" ] && [ "$3" = a ] && exit 0; echo '
        '"squeue: error: \'$3\' can\'t be reached now, or it is an invalid entry for '
        '--cluster.  Use \'sacctmgr list clusters\' to see available clusters." >&2; exit 1',
        HS256)
    check = doctor.clusters_accept()
    assert check is not None and check.status == "FAIL"
    assert check.message == (
        "slurmdbd knows no cluster zz (squeue: error: 'zz' can't be reached now, or it is an "
        "invalid entry for --cluster.  Use 'sacctmgr list clusters' to see available "
        "clusters.), which Clusters=a,zz names: correct Clusters= in /c (sacctmgr show cluster "
        "lists the clusters), or register the cluster with slurmdbd (its slurm.conf's "
        "AccountingStorageHost)")


def test_clusters_refusing_an_hs256_token_are_told_one_key_cannot_serve_them(
        tmp_path: Path) -> None:
    doctor = _clusters_doctor(tmp_path, "Clusters=a,b\n",
                              '[ "$3" = a ] && exit 0; echo "squeue: error: Zero Bytes were '
                              'transmitted or received" >&2; exit 1', HS256)
    check = doctor.clusters_accept()
    assert check is not None and check.status == "FAIL"
    assert check.message.startswith("squeue -M with a fresh helper token for alice failed for "
                                    "b (squeue: error: Zero Bytes were transmitted or received)")
    assert check.fix.startswith("this node signs HS256, so every listed cluster would need its "
                                "key byte for byte: give this node an RS256 key")


def test_clusters_check_fails_when_the_nodes_own_cluster_is_not_listed(tmp_path: Path) -> None:
    doctor = _clusters_doctor(tmp_path, "Clusters=b\n", "exit 0", HS256)
    doctor.slurm = SlurmConf("/s", cluster_name="a")
    check = doctor.clusters_accept()
    assert check is not None and check.status == "FAIL"
    assert check.message == ("this node's own cluster a (slurm.conf's ClusterName) is not in "
                             "Clusters=b, so every Slurm command without -M stops: add a to "
                             "Clusters= in /c")
    doctor.slurm = SlurmConf("/s", cluster_name="B")  # Slurm lowers it; so does the wrapper
    check = doctor.clusters_accept()
    assert check is not None and check.status == "OK"


def test_clusters_check_waits_for_a_token_slurmctld_accepts(tmp_path: Path) -> None:
    check = _clusters_doctor(tmp_path, "Clusters=a\n", "exit 0", None).clusters_accept()
    assert check is not None and (check.status, check.message) == (
        "SKIP", "needs a token that slurmctld accepts")
