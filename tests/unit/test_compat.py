"""The upgrade rule of docs/internals.md ("Versions and upgrades"): this
release's helper answers the previous release's clients, its readers take
the previous release's cache, and a cache of a format they do not know
(a newer release's, or a downgrade's) is empty to them, never an error.

The previous release, 0.1.0, spoke SLURMJWT/2 and wrote cache format 2, as
this one does: the literal bytes below are what its clients sent and its
writers wrote. tests/integration/test_deb_lifecycle.py upgrades a real 0.1.0
package under a running session.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from pam_slurmjwt import protocol
from pam_slurmjwt import refresh as rf
from pam_slurmjwt.cache import Cache, parse_line
from pam_slurmjwt.config import parse_config
from pam_slurmjwt.errors import HelperUnreachable
from pam_slurmjwt.signing import HS256Signer
from pam_slurmjwt.token import make_claims
from tests.unit.inprocess import KEY, KID, ME, Running, exchange

ROOT = Path(__file__).resolve().parents[2]
CACHETOOL = ROOT / "build" / "c" / "cachetool"
# What 0.1.0's clients send: the PAM module and the wrappers (C), slurmjwt
# and slurmjwt-refresh (Python).
PREVIOUS_REQUESTS = (b"SLURMJWT/2 TOKEN - -\n", b"SLURMJWT/2 PING\n")


def test_this_helper_answers_the_previous_releases_requests(running: Running) -> None:
    token, ping = (exchange(running.path, line) for line in PREVIOUS_REQUESTS)
    grant = protocol.parse_response(token)
    assert grant.token.count(".") == 2 and grant.kid == KID
    assert ping.startswith(b"SLURMJWT/2 PONG ")


def test_a_newer_clients_request_is_refused_in_words_the_client_can_read(
        running: Running) -> None:
    # A client of a later release meeting this helper (not yet restarted)
    # gets this release's own error line: it fails open and asks again.
    answer = exchange(running.path, b"SLURMJWT/3 TOKEN - -\n")
    assert answer.startswith(b"SLURMJWT/2 ERR bad-version ")


def test_an_answer_of_another_version_fails_open_with_the_fix() -> None:
    with pytest.raises(HelperUnreachable) as err:
        protocol.parse_response(b"SLURMJWT/3 OK 1700000000 1699999000 1 k a.b.c\n")
    assert str(err.value) == ("the helper speaks SLURMJWT/3, this client SLURMJWT/2; "
                              "restart slurmjwt-helper")


def _line(fmt: str, left: int = 1800) -> str:
    """A cache line as 0.1.0's writers wrote it (format word `fmt`), for this
    boot, due for refresh in left/2 seconds."""
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    up = int(float(Path("/proc/uptime").read_text().split()[0]))
    exp = int(time.time()) + left
    token = HS256Signer(KEY, KID).sign(make_claims(ME, left))
    return f"{fmt} {boot} {up + left // 2} {up + left - 5} {exp} 1 {KID} {token} end\n"


def _cache(tmp_path: Path, running: Running, line: str) -> Cache:
    directory = tmp_path / "c"
    directory.mkdir(mode=0o700)
    (directory / "token").write_text(line)
    (directory / "token").chmod(0o600)
    return Cache(str(directory), running.key_dir)


def test_the_previous_releases_cache_is_read_and_kept(running: Running,
                                                      tmp_path: Path) -> None:
    line = _line("slurmjwt2")
    cache = _cache(tmp_path, running, line)
    entry, why = cache.load()
    assert why == "" and entry is not None and entry.token == parse_line(line).token
    cfg = parse_config(f"HelperSocket={running.path}\nMungeSocket=/nonexistent/m\n", "/c")
    assert rf.refresh(rf.parse_args(["--if-needed"]), cfg, cache).token == entry.token


@pytest.mark.parametrize("fmt", ["slurmjwt3", "slurmjwt1"])
def test_a_cache_of_an_unknown_format_is_empty_and_replaced_without_a_word(
        running: Running, tmp_path: Path, fmt: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    cache = _cache(tmp_path, running, _line(fmt))
    assert cache.load() == (None, "cached token is corrupt")
    cfg = parse_config(f"HelperSocket={running.path}\nMungeSocket=/nonexistent/m\n", "/c")
    fresh = rf.refresh(rf.parse_args(["--if-needed"]), cfg, cache)
    assert capsys.readouterr() == ("", "")
    assert (tmp_path / "c" / "token").read_text().startswith("slurmjwt2 ")
    loaded = cache.load()[0]
    assert loaded is not None and loaded.token == fresh.token


@pytest.mark.parametrize("fmt", ["slurmjwt3", "slurmjwt1"])
def test_the_c_reader_takes_an_unknown_format_as_no_token(tmp_path: Path, fmt: str) -> None:
    subprocess.run(["make", "-s", "-f", "mk/c.mk", "c-harness"], cwd=ROOT, check=True)
    directory = tmp_path / "c"
    directory.mkdir(mode=0o700)
    (directory / "token").write_text(_line(fmt))
    (directory / "token").chmod(0o600)
    out = subprocess.run([str(CACHETOOL), "load", str(directory)], capture_output=True,
                         text=True, timeout=30)
    assert out.stdout.startswith("NONE "), out.stdout
