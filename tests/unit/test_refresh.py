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
from pam_slurmjwt.signing import KeyMinter
from pam_slurmjwt.token import make_claims
from tests.unit.inprocess import KEY, ME, Running

REPO = Path(__file__).resolve().parents[2]


def _opts(*argv: str) -> rf.Options:
    opts = rf.parse_args(list(argv))
    assert opts is not None
    return opts


def _cfg(running: Running | None, extra: str = "") -> Config:
    sock = running.path if running else "/nonexistent/helper.sock"
    return parse_config(f"HelperSocket={sock}\nHelperTimeout=2\n{extra}", "/c")


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
    cache = Cache(str(tmp_path / "c"))
    entry = rf.refresh(_opts(), _cfg(running), cache)
    loaded = cache.load()[0]
    assert loaded is not None and loaded.token == entry.token


def test_if_needed_keeps_a_fresh_token_and_replaces_one_in_the_margin(
        running: Running, tmp_path: Path) -> None:
    cache = Cache(str(tmp_path / "c"))
    cfg = _cfg(running, "RefreshMargin=600")
    fresh = Entry(int(time.time()) + 1200, True, "a.b.c")
    cache.store(fresh, 600)
    assert rf.refresh(_opts("--if-needed"), cfg, cache).token == "a.b.c"
    cache.store(Entry(int(time.time()) + 300, True, "a.b.c"), 600)
    assert rf.refresh(_opts("--if-needed"), cfg, cache).token != "a.b.c"


def test_refresh_with_expired_cache_mints_a_new_token(running: Running, tmp_path: Path) -> None:
    cache = Cache(str(tmp_path / "c"))
    cache.store(Entry(int(time.time()) - 100, True, "old.expired.token"), 600)
    entry = rf.refresh(_opts("--if-needed"), _cfg(running), cache)
    assert entry.token != "old.expired.token" and entry.exp > time.time()


def test_refresh_never_reads_slurm_jwt(running: Running, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_JWT", "expired.garbage.value")
    entry = rf.refresh(_opts(), _cfg(running), Cache(str(tmp_path / "c")))
    assert entry.token != "expired.garbage.value"


def test_helper_down_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HelperUnreachable, match=r"no helper socket at /nonexistent/helper\.sock"):
        rf.refresh(_opts(), _cfg(None), Cache(str(tmp_path / "c")))


def test_env_lines_never_export_without_a_valid_exportable_token() -> None:
    entry = Entry(int(time.time()) + 100, True, "a.b.c")
    assert rf.env_lines("sh", entry) == "SLURM_JWT='a.b.c'; export SLURM_JWT;\n"
    assert rf.env_lines("csh", entry) == "setenv SLURM_JWT 'a.b.c';\n"
    assert rf.env_lines("fish", entry) == "set -gx SLURM_JWT 'a.b.c';\n"
    assert rf.env_lines("sh", None) == "unset SLURM_JWT;\n"
    assert rf.env_lines("csh", Entry(1, False, "a.b.c")) == "unsetenv SLURM_JWT;\n"


def _token(user: str, lifespan: int = 600) -> str:
    return KeyMinter(KEY).sign(user, lifespan)[0]


def test_store_stdin_takes_a_helper_line_or_a_bare_token(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg(None, "Export=never")
    token = _token(ME)
    entry = rf.entry_from_text(token + "\n", cfg, ME)
    assert (entry.token, entry.export) == (token, False)
    exp = make_claims(ME, 600).exp
    entry = rf.entry_from_text(f"SLURMJWT/1 OK {exp} 1 {token}\n", cfg, ME)
    assert entry.export is True
    cache = Cache(str(tmp_path / "c"))
    monkeypatch.setattr(sys, "stdin", io.StringIO(token + "\n"))
    rf.refresh(_opts("--store-stdin"), cfg, cache)
    assert cache.load()[0] is not None


@pytest.mark.parametrize(("text", "message"), [
    ("not-a-token", "stdin: not a JWT (expected three base64url parts)"),
    ("SLURMJWT/1 OK 5 1 a$b", "stdin: OK line has a malformed field"),
])
def test_store_stdin_rejects_garbage(text: str, message: str) -> None:
    with pytest.raises(UsageError) as err:
        rf.entry_from_text(text, _cfg(None), ME)
    assert str(err.value) == message


def test_store_stdin_rejects_someone_elses_or_an_expired_token() -> None:
    with pytest.raises(UsageError, match="the token is for 'mallory', not for you"):
        rf.entry_from_text(_token("mallory"), _cfg(None), ME)
    with pytest.raises(UsageError, match="the token has expired"):
        rf.entry_from_text(_token(ME, lifespan=1), _cfg(None), ME)


def test_refresh_module_does_not_import_pyjwt_or_heavy_modules() -> None:
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); import pam_slurmjwt.refresh; "
            "print(','.join(m for m in ('jwt', 'argparse', 'dataclasses', 'json', 'socket', "
            "'typing', 're') if m in sys.modules))")
    # The system interpreter, as installed scripts use: a venv's .pth files import more.
    out = subprocess.run(["/usr/bin/python3", "-I", "-c", code], capture_output=True, text=True,
                         cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
