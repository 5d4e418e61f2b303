"""slurmjwt keygen and slurmjwt jwks (the admin's two key commands: output,
exit codes, one-line refusals) and slurmjwt decode's inputs."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import jwt
import pytest

from pam_slurmjwt import cli
from pam_slurmjwt.signing import jwks_document, public_of, signer_of_pem
from pam_slurmjwt.token import make_claims


def _conf(tmp_path: Path) -> str:
    (tmp_path / "slurm.conf").write_text("SlurmUser=nobody\n")
    conf = tmp_path / "slurmjwt.conf"
    conf.write_text(f"SlurmConf={tmp_path}/slurm.conf\n")
    return str(conf)


def test_keygen_writes_a_new_key_and_prints_its_kid(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "login1.pem"
    assert cli.main(["-c", _conf(tmp_path), "keygen", str(key)]) == 0
    signer = signer_of_pem(str(key), key.read_bytes())
    assert capsys.readouterr().out == (
        f"{key}: RSA 2048 bits, kid {signer.kid}; its public half for slurmctld's JWKS: "
        f"slurmjwt jwks {key}\n")
    st = key.stat()
    assert st.st_mode & 0o777 == 0o600
    # Run as root, the key is SlurmUser's (the helper reads it after dropping to it).
    owner = pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else os.getuid()
    assert st.st_uid == owner


def test_keygen_never_overwrites_and_refuses_small_keys(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "login1.pem"
    key.write_bytes(b"the old key")
    assert cli.main(["-c", _conf(tmp_path), "keygen", str(key)]) == 3
    assert capsys.readouterr().err == (
        f'slurmjwt: will not write key "{key}": it exists, and a key is never overwritten; '
        f"choose a new name (a rotation puts the new key beside the old one)\n")
    assert key.read_bytes() == b"the old key"
    assert cli.main(["keygen", "--bits", "1024", str(tmp_path / "small.pem")]) == 2
    assert capsys.readouterr().err == "slurmjwt: --bits 1024: choose 2048 to 16384\n"
    assert not (tmp_path / "small.pem").exists()


def test_jwks_prints_public_keys_that_verify_the_tokens(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = _conf(tmp_path)
    signers = []
    for name in ("login1.pem", "login2.pem"):
        assert cli.main(["-c", conf, "keygen", str(tmp_path / name)]) == 0
        signers.append(signer_of_pem(name, (tmp_path / name).read_bytes()))
    capsys.readouterr()
    assert cli.main(["jwks", str(tmp_path / "login1.pem"), str(tmp_path / "login2.pem")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [entry["kid"] for entry in doc["keys"]] == [s.kid for s in signers]
    for signer, entry in zip(signers, doc["keys"]):
        assert set(entry) == {"kty", "kid", "alg", "use", "n", "e"}
        token = signer.sign(make_claims("alice", 60))
        assert jwt.decode(token, public_of(entry), algorithms=["RS256"])["sun"] == "alice"


def test_jwks_of_a_bad_file_is_one_line_with_exit_3(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "jwks.json"
    bad.write_text("{")
    assert cli.main(["jwks", str(bad)]) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f'slurmjwt: cannot use JWKS "{bad}": not JSON; rebuild it with: '
                            f"slurmjwt jwks KEYFILE...\n")


def test_decode_reads_stdin_or_slurm_jwt_never_a_token_on_the_command_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import io

    token = jwt.encode({"sun": "alice", "iat": make_claims("alice", 600).iat,
                        "exp": make_claims("alice", 600).exp}, "k" * 32, algorithm="HS256")
    assert cli.main(["decode", token]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", "slurmjwt: a token on the command line is visible to every local "
                              "user (ps); pass it on stdin: slurmjwt decode - <FILE\n")
    monkeypatch.setattr("sys.stdin", io.StringIO(token + "\n"))
    assert cli.main(["decode", "-", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["user"] == "alice"
    monkeypatch.setenv("SLURM_JWT", token)
    assert cli.main(["decode", "--json"]) == 0
    assert token not in capsys.readouterr().out  # a fingerprint, never the token


def _two_keys(tmp_path: Path) -> tuple[Path, Path]:
    conf = _conf(tmp_path)
    for name in ("login1.pem", "login2.pem"):
        assert cli.main(["-c", conf, "keygen", str(tmp_path / name)]) == 0
    return tmp_path / "login1.pem", tmp_path / "login2.pem"


def test_jwks_refuses_two_different_keys_under_one_kid_naming_both_files(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A stray file in jwks.d that sorts first once put its own key under
    # login1's id, and login1's key was silently dropped.
    login1, login2 = _two_keys(tmp_path)
    kid1 = signer_of_pem(str(login1), login1.read_bytes()).kid
    entry2 = jwks_document([str(login2)])["keys"][0]
    stray = tmp_path / "00-stray.json"
    stray.write_text(json.dumps({"keys": [{**entry2, "kid": kid1}]}))
    capsys.readouterr()
    assert cli.main(["jwks", str(stray), str(login1)]) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f'slurmjwt: cannot use "{login1}": it holds another key under kid '
                            f'{kid1} than "{stray}" does; remove the one that is not that '
                            f"login node's key\n")


def test_jwks_refuses_an_input_whose_kid_is_not_its_thumbprint(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    login1, _login2 = _two_keys(tmp_path)
    entry = jwks_document([str(login1)])["keys"][0]
    renamed = tmp_path / "renamed.json"
    renamed.write_text(json.dumps({"keys": [{**entry, "kid": "login1"}]}))
    capsys.readouterr()
    assert cli.main(["jwks", str(renamed)]) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f'slurmjwt: cannot use "{renamed}": its key under kid login1 has '
                            f"the thumbprint {entry['kid']} (RFC 7638), which slurmjwt uses as "
                            f"its kid; rebuild it with: slurmjwt jwks KEYFILE...\n")
    # The same key given twice, under its own id, is printed once.
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"keys": [entry]}))
    assert cli.main(["jwks", str(good), str(login1)]) == 0
    assert [e["kid"] for e in json.loads(capsys.readouterr().out)["keys"]] == [entry["kid"]]


# --- exec and token, wherever they run --------------------------------------------------

def _entry(export: bool) -> cli.Entry:
    return cli.Entry(2_000_000_000, 1_999_999_000, export, "kid", "a.b.c")


def test_exec_puts_the_wrappers_first_on_path_once_and_names_the_config() -> None:
    env = cli.exec_environment({"PATH": "/usr/bin:/w:/bin", "SLURM_JWT": "old.x.y", "X": "1"},
                               _entry(True), "rel/slurmjwt.conf", "/w")
    assert env == {"PATH": "/w:/usr/bin:/bin", "SLURM_JWT": "a.b.c", "X": "1",
                   "SLURMJWT_CONF": os.path.abspath("rel/slurmjwt.conf")}
    # No PATH at all (a bare service): the wrappers before the system default.
    assert cli.exec_environment({}, _entry(True), None, "/w")["PATH"] == f"/w:{os.defpath}"


@pytest.mark.parametrize("entry", [None, _entry(False)], ids=["none wanted", "export=0"])
def test_exec_takes_an_inherited_token_away_where_export_wants_none(
        entry: cli.Entry | None) -> None:
    env = cli.exec_environment({"PATH": "/bin", "SLURM_JWT": "old.x.y"}, entry, None, "/w")
    assert env == {"PATH": "/w:/bin"}


def test_token_forms_are_served_without_argparse(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "fresh_entry", lambda config, lifespan: _entry(True))
    monkeypatch.setattr(cli, "build_parser", lambda: pytest.fail("argparse was used"))
    me = pwd.getpwuid(os.getuid()).pw_name
    for words, out in ((["token"], "a.b.c\n"),
                       (["token", "--bearer"], "Authorization: Bearer a.b.c\n"),
                       (["token", "--header"],
                        f"X-SLURM-USER-NAME: {me}\nX-SLURM-USER-TOKEN: a.b.c\n")):
        assert cli.main(words) == 0
        assert capsys.readouterr().out == out
    assert cli.main(["token", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["token"] == "a.b.c"


def test_a_cache_that_cannot_be_made_still_gives_the_token(
        running: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """No place for a cache (here its parent is missing; on a node: no
    session and no slurmjwt-userdir, or a read-only /run): `slurmjwt token`
    prints the helper's token all the same, and says nothing."""
    from pam_slurmjwt.cache import Cache
    from tests.unit.inprocess import Running

    assert isinstance(running, Running)
    conf = tmp_path / "slurmjwt.conf"
    conf.write_text(f"HelperSocket={running.path}\nMungeSocket={tmp_path}/none\n")
    monkeypatch.setenv("SLURMJWT_CONF", str(conf))
    monkeypatch.setattr(cli.Cache, "for_user",
                        lambda _sock: Cache(str(tmp_path / "missing" / "c"), running.key_dir))
    assert cli.main(["token"]) == 0
    out, err = capsys.readouterr()
    assert (out.count("."), err) == (2, "")


def test_a_hung_helper_leaves_a_due_but_valid_cached_token_in_use(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """As the wrappers do: `slurmjwt token` waits HelperTimeout once, then
    prints the cached token that is due but has not expired."""
    import socket
    import time

    from pam_slurmjwt.cache import Cache, Entry
    from pam_slurmjwt.signing import HS256Signer
    from tests.unit.inprocess import KEY, KID, ME

    (tmp_path / "key").mkdir()
    (tmp_path / "key" / "id").write_text(f"{KID}\n")
    cache = Cache(str(tmp_path / "c"), str(tmp_path / "key"))
    token = HS256Signer(KEY, KID).sign(make_claims(ME, 1234))
    exp = int(time.time()) + 300
    cache.store(Entry(exp, exp - 600, True, KID, token))  # due, valid 300 s
    conf = tmp_path / "slurmjwt.conf"
    conf.write_text(f"HelperSocket={tmp_path}/helper.sock\nHelperTimeout=1\n"
                    f"MungeSocket={tmp_path}/none\n")
    monkeypatch.setenv("SLURMJWT_CONF", str(conf))
    monkeypatch.setattr(cli.Cache, "for_user", lambda _sock: cache)
    with socket.socket(socket.AF_UNIX) as hung:
        hung.bind(str(tmp_path / "helper.sock"))
        hung.listen(8)
        assert cli.main(["token"]) == 0
        assert capsys.readouterr() == (f"{token}\n", "")
