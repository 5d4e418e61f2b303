"""`slurmjwt tokenfile`: a service account's token file, asked of an
in-process helper as root and written atomically with the account's owner
and mode; refused for what the helper's policy denies, with one line."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from pam_slurmjwt import cli, tokenfile
from pam_slurmjwt.config import parse_config
from pam_slurmjwt.token import fingerprint, slurm_claims
from tests.unit.inprocess import KID, Running

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="writes files for another uid: root")

ACCOUNT = "daemon"  # a system account every Debian and RHEL host has (uid 1 or 2)


@pytest.fixture
def helper(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Running]:
    """A helper that lets ACCOUNT (a system uid) have tokens, as an admin
    would with AllowPrivileged; the test's param replaces that policy."""
    conf = getattr(request, "param", f"AllowPrivileged={ACCOUNT}\n")
    server = Running(tmp_path, f"ReadTimeout=3\nLifespan=60\nRefreshMargin=20\n{conf}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    return path


def run(helper: Running, tmp_path: Path, *argv: str) -> int:
    conf = tmp_path / "slurmjwt.conf"
    conf.write_text(f"HelperSocket={helper.path}\nRootSocket={helper.path}\nLifespan=60\n"
                    "RefreshMargin=20\n")
    return cli.main(["-c", str(conf), "tokenfile", *argv])


def test_writes_the_accounts_token_owned_by_it_mode_0600_and_says_where_never_what(
        helper: Running, tmp_path: Path, out_dir: Path, capsys: pytest.CaptureFixture[str]
        ) -> None:
    path = out_dir / ACCOUNT
    assert run(helper, tmp_path, "--user", ACCOUNT, "--output", str(path)) == 0
    entry = pwd.getpwnam(ACCOUNT)
    st = path.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (entry.pw_uid, entry.pw_gid,
                                                                0o600)
    text = path.read_text()
    assert text.endswith("\n") and text.count("\n") == 1
    token = text.strip()
    assert slurm_claims(token).sun == ACCOUNT
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith(f'wrote "{path}": token for {ACCOUNT} until ')
    assert out.endswith(f", kid {KID}, fp {fingerprint(token)}\n")
    assert token not in out
    assert sorted(os.listdir(out_dir)) == [ACCOUNT]  # no temp file left


def test_group_makes_it_0640_of_that_group(helper: Running, tmp_path: Path,
                                           out_dir: Path) -> None:
    group = grp.getgrgid(0).gr_name
    path = out_dir / "f"
    assert run(helper, tmp_path, "--user", ACCOUNT, "--group", group, "--output",
               str(path)) == 0
    st = path.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (pwd.getpwnam(ACCOUNT).pw_uid,
                                                                0, 0o640)


def test_replacement_is_atomic_a_reader_of_the_old_file_reads_it_whole(
        helper: Running, tmp_path: Path, out_dir: Path) -> None:
    path = out_dir / "f"
    assert run(helper, tmp_path, "--user", ACCOUNT, "--output", str(path)) == 0
    before = path.stat().st_ino
    with open(path) as old:
        assert run(helper, tmp_path, "--user", ACCOUNT, "--lifespan", "30", "--output",
                   str(path)) == 0
        first = old.read()  # the old inode, whole, read after the rename
    assert path.stat().st_ino != before  # renamed over, never rewritten in place
    assert slurm_claims(first.strip()).sun == ACCOUNT
    new = path.read_text().strip()
    assert new != first.strip()
    claims = slurm_claims(new)
    assert claims.exp - claims.iat == 30
    assert sorted(os.listdir(out_dir)) == ["f"]


def test_if_needed_leaves_a_fresh_file_and_replaces_one_past_its_refresh_point(
        helper: Running, tmp_path: Path, out_dir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = out_dir / "f"
    assert run(helper, tmp_path, "--if-needed", "--user", ACCOUNT, "--output", str(path)) == 0
    capsys.readouterr()
    inode = path.stat().st_ino
    assert run(helper, tmp_path, "--if-needed", "--user", ACCOUNT, "--output", str(path)) == 0
    assert path.stat().st_ino == inode
    assert capsys.readouterr().out == ""
    # Lifespan 60, RefreshMargin 20: due at exp - 20; a token asked for 30 s
    # (less than twice the margin) is due halfway, at iat + 15.
    cfg = parse_config(f"HelperSocket={helper.path}\nLifespan=60\nRefreshMargin=20\n", "/c")
    tgt = tokenfile.target(str(path), ACCOUNT, None)
    claims = slurm_claims(path.read_text().strip())
    assert claims.exp - claims.iat == 60
    assert not tokenfile.due(tgt, cfg, now=claims.exp - 21)
    assert tokenfile.due(tgt, cfg, now=claims.exp - 20)
    assert run(helper, tmp_path, "--lifespan", "30", "--user", ACCOUNT, "--output",
               str(path)) == 0
    claims = slurm_claims(path.read_text().strip())
    assert not tokenfile.due(tgt, cfg, now=claims.iat + 14)
    assert tokenfile.due(tgt, cfg, now=claims.iat + 15)


def test_due_for_any_doubt_about_the_file(helper: Running, tmp_path: Path,
                                          out_dir: Path) -> None:
    path = out_dir / "f"
    assert run(helper, tmp_path, "--user", ACCOUNT, "--output", str(path)) == 0
    cfg = parse_config(f"HelperSocket={helper.path}\n", "/c")
    tgt = tokenfile.target(str(path), ACCOUNT, None)
    now = slurm_claims(path.read_text().strip()).iat
    assert not tokenfile.due(tgt, cfg, now=now)
    # The helper's key changed: the token is another key's.
    key_id = Path(helper.key_dir) / "id"
    key_id.write_text("another-kid\n")
    assert tokenfile.due(tgt, cfg, now=now)
    key_id.write_text(f"{KID}\n")
    assert not tokenfile.due(tgt, cfg, now=now)
    # Another mode, another owner, another account's token, not a token.
    path.chmod(0o644)
    assert tokenfile.due(tgt, cfg, now=now)
    path.chmod(0o600)
    os.chown(path, 0, -1)
    assert tokenfile.due(tgt, cfg, now=now)
    other = tokenfile.target(str(path), "root", None)
    assert tokenfile.due(other, cfg, now=now)
    path.write_text("garbage\n")
    assert tokenfile.due(other, cfg, now=now)
    path.unlink()
    assert tokenfile.due(tgt, cfg, now=now)


@pytest.mark.parametrize("helper", ["MinUid=1000\n"], indirect=True)
def test_a_system_account_without_allow_privileged_is_refused_in_one_line(
        helper: Running, tmp_path: Path, out_dir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    uid = pwd.getpwnam(ACCOUNT).pw_uid
    assert run(helper, tmp_path, "--user", ACCOUNT, "--output", str(out_dir / "f")) == 5
    assert capsys.readouterr().err == (f"slurmjwt: refused: {ACCOUNT} is a system account "
                                       f"(uid {uid} < MinUid 1000)\n")
    assert os.listdir(out_dir) == []


def test_root_without_allow_privileged_is_refused_in_one_line(
        helper: Running, tmp_path: Path, out_dir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert run(helper, tmp_path, "--user", "root", "--output", str(out_dir / "f")) == 5
    assert capsys.readouterr().err == ("slurmjwt: refused: root is root; tokens for root are "
                                       "off (AllowPrivileged)\n")
    assert os.listdir(out_dir) == []


def test_a_directory_others_can_write_is_refused_with_the_fix(
        helper: Running, tmp_path: Path, out_dir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out_dir.chmod(0o1777)
    path = out_dir / "f"
    assert run(helper, tmp_path, "--user", ACCOUNT, "--output", str(path)) == 6
    assert capsys.readouterr().err == (
        f'slurmjwt: cannot write token file "{path}": directory "{out_dir}" is writable by '
        f'others (mode 1777); run chmod go-w "{out_dir}"\n')
    out_dir.chmod(0o775)
    assert run(helper, tmp_path, "--user", ACCOUNT, "--output", str(path)) == 6
    assert "(mode 0775)" in capsys.readouterr().err
    assert os.listdir(out_dir) == []


def test_a_directory_of_another_owner_a_link_or_none_is_refused_with_the_fix(
        helper: Running, tmp_path: Path, out_dir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    uid = pwd.getpwnam(ACCOUNT).pw_uid
    os.chown(out_dir, uid, -1)
    path = out_dir / "f"
    assert run(helper, tmp_path, "--user", ACCOUNT, "--output", str(path)) == 6
    assert capsys.readouterr().err == (
        f'slurmjwt: cannot write token file "{path}": directory "{out_dir}" is owned by '
        f'uid {uid}, not root; run chown root "{out_dir}"\n')
    link = tmp_path / "link"
    link.symlink_to(out_dir)
    assert run(helper, tmp_path, "--user", ACCOUNT, "--output", f"{link}/f") == 6
    assert capsys.readouterr().err == (
        f'slurmjwt: cannot write token file "{link}/f": "{link}" is not a directory (a '
        f"symbolic link?); use a real directory\n")
    missing = tmp_path / "none"
    assert run(helper, tmp_path, "--user", ACCOUNT, "--output", f"{missing}/f") == 6
    assert capsys.readouterr().err == (
        f'slurmjwt: cannot write token file "{missing}/f": no directory "{missing}"; '
        f'run install -d -m 0755 "{missing}"\n')


def test_an_output_that_is_not_a_regular_file_is_refused(
        helper: Running, tmp_path: Path, out_dir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    target = out_dir / "f"
    target.symlink_to("/etc/shadow")
    assert run(helper, tmp_path, "--user", ACCOUNT, "--output", str(target)) == 6
    assert capsys.readouterr().err == (
        f'slurmjwt: cannot write token file "{target}": it is not a regular file; remove it\n')
    assert target.is_symlink()


@pytest.mark.parametrize("argv, line", [
    (["--user", ACCOUNT, "--output", "tokens/f"],
     'slurmjwt: --output "tokens/f" is not an absolute file path'),
    (["--user", ACCOUNT, "--group", "no-such-group-x", "--output", "/run/f"],
     "slurmjwt: no such group 'no-such-group-x' (--group)"),
    (["--user", ACCOUNT, "--lifespan", "0", "--output", "/run/f"],
     "slurmjwt: --lifespan 0 is not a number of seconds"),
])
def test_usage_errors_are_one_line_with_exit_2(
        helper: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        argv: list[str], line: str) -> None:
    assert run(helper, tmp_path, *argv) == 2
    assert capsys.readouterr().err == line + "\n"


def test_an_unknown_account_is_refused_before_anything_is_asked(
        helper: Running, tmp_path: Path, out_dir: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert run(helper, tmp_path, "--user", "no-such-user-x", "--output",
               str(out_dir / "f")) == 5
    assert capsys.readouterr().err == ("slurmjwt: refused: no such user 'no-such-user-x' "
                                       "(--user)\n")


def test_not_root_is_a_usage_error(helper: Running, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert run(helper, tmp_path, "--user", ACCOUNT, "--output", "/run/x/f") == 2
    assert capsys.readouterr().err == (
        "slurmjwt: tokenfile writes a file owned by another account through the helper's "
        "root socket: run it as root\n")


def test_no_helper_is_exit_4_and_nothing_written(tmp_path: Path, out_dir: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "c.conf"
    conf.write_text(f"RootSocket={tmp_path}/none.sock\n")
    assert cli.main(["-c", str(conf), "tokenfile", "--user", ACCOUNT, "--output",
                     str(out_dir / "f")]) == 4
    assert capsys.readouterr().err == (f"slurmjwt: no helper socket at {tmp_path}/none.sock; "
                                       f"is slurmjwt-helper running?\n")
    assert os.listdir(out_dir) == []
