"""slurmjwt-refresh: argument parsing, refresh decisions, print-env, stdin hand-off."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pam_slurmjwt import refresh as rf
from pam_slurmjwt.cache import Cache, Entry
from pam_slurmjwt.config import Config, parse_config
from pam_slurmjwt.errors import HelperUnreachable, UsageError
from pam_slurmjwt.signing import HS256Signer
from pam_slurmjwt.token import make_claims, slurm_claims
from tests.unit.inprocess import KEY, KID, ME, Running

REPO = Path(__file__).resolve().parents[2]


def _opts(*argv: str) -> rf.Options:
    opts = rf.parse_args(list(argv))
    assert opts is not None
    return opts


def _cfg(running: Running | None, extra: str = "") -> Config:
    sock = running.path if running else "/nonexistent/helper.sock"
    # Export=auto: a munge socket that is never there, whatever runs on this host.
    return parse_config(f"HelperSocket={sock}\nHelperTimeout=2\n"
                        f"MungeSocket=/nonexistent/munge.socket.2\n{extra}", "/c")


def _cache(tmp_path: Path, running: Running | None = None) -> Cache:
    """The cache in tmp_path/c, following the key of `running` (or of no helper)."""
    return Cache(str(tmp_path / "c"), running.key_dir if running else str(tmp_path / "key"))


# A cached token of the test's own user (cache readers check its `sun`).
OLD = HS256Signer(KEY, KID).sign(make_claims(ME, 1234))


def _entry(left: int, tok: str = OLD, kid: str = KID) -> Entry:
    exp = int(time.time()) + left
    return Entry(exp, exp - 600, True, kid, tok)


def test_parse_args_accepts_both_value_forms() -> None:
    opts = _opts("--if-needed", "--lifespan", "600", "--print-env=csh", "-q")
    assert (opts.if_needed, opts.lifespan, opts.print_env, opts.quiet) == (True, 600, "csh", True)
    assert rf.parse_args(["--help"]) is None


@pytest.mark.parametrize(("argv", "message"), [
    (["--print-env", "powershell"], "--print-env wants one of sh, csh, fish, not 'powershell'"),
    (["--lifespan", "soon"], "--lifespan wants a number of seconds, not 'soon'"),
    (["--lifespan"], "--lifespan needs a value"),
    (["--bogus"], "unknown argument '--bogus'; see slurmjwt-refresh --help"),
    (["--store-stdin", "--if-needed"], "--store-stdin takes no --if-needed or --lifespan"),
])
def test_usage_errors_are_one_line(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as err:
        rf.parse_args(argv)
    assert str(err.value) == message


def test_help_goes_to_stdout_with_exit_0() -> None:
    out = subprocess.run([sys.executable, "-m", "pam_slurmjwt.refresh", "--help"],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and out.stdout.startswith("usage: slurmjwt-refresh")
    assert out.stderr == ""
    out = subprocess.run([sys.executable, "-m", "pam_slurmjwt.refresh", "--nope"],
                         capture_output=True, text=True, cwd=REPO)
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == ("slurmjwt-refresh: unknown argument '--nope'; "
                          "see slurmjwt-refresh --help\n")


def test_refresh_fetches_and_stores(running: Running, tmp_path: Path) -> None:
    cache = _cache(tmp_path, running)
    entry = rf.refresh(_opts(), _cfg(running), cache)
    loaded = cache.load()[0]
    assert loaded is not None and loaded.token == entry.token
    assert loaded.kid == KID and 599 <= loaded.exp - loaded.refresh <= 600


def test_if_needed_keeps_a_fresh_token_and_replaces_one_that_is_due(
        running: Running, tmp_path: Path) -> None:
    cache = _cache(tmp_path, running)
    cfg = _cfg(running, "RefreshMargin=600")
    cache.store(_entry(1200))
    assert rf.refresh(_opts("--if-needed"), cfg, cache).token == OLD
    cache.store(_entry(300))
    assert rf.refresh(_opts("--if-needed"), cfg, cache).token != OLD


def test_if_needed_replaces_a_token_of_another_key(running: Running, tmp_path: Path) -> None:
    cache = _cache(tmp_path, running)
    cache.store(_entry(1200, kid="an-old-key"))
    entry = rf.refresh(_opts("--if-needed"), _cfg(running), cache)
    assert entry.token != OLD and entry.kid == KID


def test_an_entry_of_another_user_under_the_callers_uid_is_never_exported_and_is_replaced(
        running: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # The previous owner of this uid left a valid token of the right key.
    theirs = HS256Signer(KEY, KID).sign(make_claims("previous-owner", 3600))
    cache = _cache(tmp_path, running)
    monkeypatch.setattr(rf.Cache, "for_user", lambda _sock: cache)
    (tmp_path / "down.conf").write_text("HelperSocket=/nonexistent/helper.sock\n")
    (tmp_path / "up.conf").write_text(f"HelperSocket={running.path}\nHelperTimeout=2\n")
    cache.store(_entry(3600, tok=theirs))
    # Helper down: nothing to export, never theirs.
    assert rf.main(["-c", str(tmp_path / "down.conf"), "--if-needed", "--print-env", "sh",
                    "-q"]) == 4
    assert capsys.readouterr().out == "unset SLURM_JWT;\n"
    # Helper up: --if-needed replaces it with the caller's own.
    assert rf.main(["-c", str(tmp_path / "up.conf"), "--if-needed", "--print-env", "sh"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("SLURM_JWT=") and theirs not in out
    mine = cache.load()[0]
    assert mine is not None and mine.token != theirs and mine.token in out
    assert slurm_claims(mine.token).sun == ME


def test_refresh_with_expired_cache_mints_a_new_token(running: Running, tmp_path: Path) -> None:
    cache = _cache(tmp_path, running)
    cache.store(_entry(-100, tok="old.expired.token"))
    entry = rf.refresh(_opts("--if-needed"), _cfg(running), cache)
    assert entry.token != "old.expired.token" and entry.exp > time.time()


def test_refresh_never_reads_slurm_jwt(running: Running, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_JWT", "expired.garbage.value")
    entry = rf.refresh(_opts(), _cfg(running), _cache(tmp_path, running))
    assert entry.token != "expired.garbage.value"


def test_helper_down_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HelperUnreachable, match=r"no helper socket at /nonexistent/helper\.sock"):
        rf.refresh(_opts(), _cfg(None), _cache(tmp_path))


def test_a_full_file_system_is_one_line_keeps_the_old_entry_and_still_prints_the_token(
        running: Running, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import errno
    import os

    from pam_slurmjwt import cache as cache_module

    cache = _cache(tmp_path, running)
    cache.store(_entry(300))

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(cache_module.os, "fsync", full)
    monkeypatch.setenv("SLURMJWT_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("SLURMJWT_CONF", str(tmp_path / "slurmjwt.conf"))
    (tmp_path / "slurmjwt.conf").write_text(f"HelperSocket={running.path}\nHelperTimeout=2\n")
    monkeypatch.setattr(rf.Cache, "for_user", lambda _sock: cache)
    assert rf.main(["--if-needed", "--print-env", "sh"]) == 6
    out, err = capsys.readouterr()
    assert err == (f'slurmjwt-refresh: token cache "{tmp_path / "c"}" cannot be written (No '
                   f'space left on device); free some space there, or ask an admin\n')
    assert out.startswith("SLURM_JWT=") and OLD not in out  # the fresh token
    kept = cache.load()[0]
    assert kept is not None and kept.token == OLD
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [".clock", "token", "token.csh"]


def test_env_lines_never_export_without_a_valid_exportable_token() -> None:
    entry = _entry(100, tok="a.b.c")
    assert rf.env_lines("sh", entry) == "SLURM_JWT='a.b.c'; export SLURM_JWT;\n"
    assert rf.env_lines("csh", entry) == "setenv SLURM_JWT 'a.b.c';\n"
    assert rf.env_lines("fish", entry) == "set -gx SLURM_JWT 'a.b.c';\n"
    assert rf.env_lines("sh", None) == "unset SLURM_JWT;\n"
    assert rf.env_lines("csh", Entry(1, 1, False, "k", "a.b.c")) == "unsetenv SLURM_JWT;\n"


def _token(user: str, lifespan: int = 600) -> str:
    return HS256Signer(KEY, KID).sign(make_claims(user, lifespan))


def _published(tmp_path: Path, kid: str = KID) -> Cache:
    (tmp_path / "key").mkdir(exist_ok=True)
    (tmp_path / "key" / "id").write_text(f"{kid}\n")
    return _cache(tmp_path)


def test_store_stdin_takes_a_token_of_the_key_in_use(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg(None, "Export=never")
    cache = _published(tmp_path)
    token = _token(ME)
    entry = rf.entry_from_text(token + "\n", cfg, cache, ME)
    assert (entry.token, entry.export, entry.kid) == (token, False, KID)
    assert entry.exp - entry.refresh == 300  # a 600 s token: refreshed halfway
    monkeypatch.setattr(sys, "stdin", io.StringIO(token + "\n"))
    rf.refresh(_opts("--store-stdin"), cfg, cache)
    assert cache.load()[0] is not None


@pytest.mark.parametrize(("text", "message"), [
    ("not-a-token", "stdin: not a JWT (expected three base64url parts)"),
    (f"SLURMJWT/2 OK 5 4 1 k {'a' * 10}", "stdin: not a JWT (expected three base64url parts)"),
])
def test_store_stdin_rejects_garbage(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UsageError) as err:
        rf.entry_from_text(text, _cfg(None), _published(tmp_path), ME)
    assert str(err.value) == message


def test_store_stdin_rejects_someone_elses_an_expired_or_another_keys_token(
        tmp_path: Path) -> None:
    cache = _published(tmp_path)
    with pytest.raises(UsageError, match="the token is for 'mallory', not for you"):
        rf.entry_from_text(_token("mallory"), _cfg(None), cache, ME)
    with pytest.raises(UsageError, match="the token has expired"):
        rf.entry_from_text(_token(ME, lifespan=1), _cfg(None), cache, ME)
    with pytest.raises(UsageError, match="not from the key the helper signs with"):
        rf.entry_from_text(_token(ME), _cfg(None), _published(tmp_path, "other"), ME)


def test_refresh_module_does_not_import_pyjwt_or_heavy_modules() -> None:
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); import pam_slurmjwt.refresh; "
            "print(','.join(m for m in ('jwt', 'argparse', 'dataclasses', 'json', 'socket', "
            "'typing', 're') if m in sys.modules))")
    # The system interpreter, as installed scripts use: a venv's .pth files import more.
    out = subprocess.run(["/usr/bin/python3", "-I", "-c", code], capture_output=True, text=True,
                         cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_a_silent_helper_is_noted_once_and_a_due_cached_token_serves_meanwhile(
        tmp_path: Path) -> None:
    """A helper that takes the connection and never answers: the first
    refresh waits HelperTimeout and notes it; the next ones within 30 s ask
    nobody and, with --if-needed, take the cached token that is due but
    still valid (as the wrappers do)."""
    import socket

    from pam_slurmjwt.errors import HelperSilent

    (tmp_path / "key").mkdir()
    (tmp_path / "key" / "id").write_text(f"{KID}\n")
    cache = Cache(str(tmp_path / "c"), str(tmp_path / "key"))
    cache.store(_entry(300))  # due (refresh 600 s before exp), valid for 300 s
    cfg = parse_config(f"HelperSocket={tmp_path}/helper.sock\nHelperTimeout=1\n"
                       f"MungeSocket={tmp_path}/none\n", "/c")
    with socket.socket(socket.AF_UNIX) as hung:
        hung.bind(str(tmp_path / "helper.sock"))
        hung.listen(8)  # the kernel takes the connections; nobody answers
        start = time.monotonic()
        with pytest.raises(HelperSilent):
            rf.refresh(_opts(), cfg, cache)  # a refresh wants a new one: none
        assert time.monotonic() - start >= 1
        assert cache.late_until(time.time()) > time.time()
        start = time.monotonic()
        entry = rf.refresh(_opts("--if-needed"), cfg, cache)
        assert entry.token == OLD and time.monotonic() - start < 1
        with pytest.raises(HelperUnreachable, match="not asked again for"):
            rf.refresh(_opts(), cfg, cache)
