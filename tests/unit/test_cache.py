"""The per-user token cache: layout, atomic writes, refusal of unsafe state."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from pam_slurmjwt.cache import FALLBACK_BASE, Cache, Entry, cache_dir, format_lines, parse_line
from pam_slurmjwt.errors import CacheUnsafe

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdW4iOiJhIn0.c2ln"


def _entry(left: int = 1800, export: bool = True) -> Entry:
    return Entry(int(time.time()) + left, export, TOKEN)


def test_cache_dir_prefers_override_then_runtime_dir_then_run(tmp_path: Path) -> None:
    uid = os.getuid()
    runtime = tmp_path / "run-user"
    runtime.mkdir(mode=0o700)
    assert cache_dir(uid, {"SLURMJWT_CACHE_DIR": "/x"}) == "/x"
    assert cache_dir(uid, {"XDG_RUNTIME_DIR": str(runtime)}) == f"{runtime}/slurmjwt"
    # A runtime dir owned by someone else is never used.
    assert cache_dir(uid + 1, {"XDG_RUNTIME_DIR": str(runtime)}) == f"{FALLBACK_BASE}/{uid + 1}"
    assert cache_dir(uid, {"XDG_RUNTIME_DIR": "relative"}) == f"{FALLBACK_BASE}/{uid}"
    assert cache_dir(uid, {}) == f"{FALLBACK_BASE}/{uid}"


def test_store_then_load_round_trip_with_private_modes(tmp_path: Path) -> None:
    cache = Cache(str(tmp_path / "c"))
    entry = _entry()
    cache.store(entry, margin=600)
    loaded, why = cache.load()
    assert why == "" and loaded is not None
    assert (loaded.exp, loaded.export, loaded.token) == (entry.exp, True, TOKEN)
    assert (tmp_path / "c").stat().st_mode & 0o777 == 0o700
    for name in ("token", "token.csh", ".clock"):
        assert (tmp_path / "c" / name).stat().st_mode & 0o777 == 0o600
    assert not [p for p in (tmp_path / "c").iterdir() if p.name.startswith(".token")]


def test_line_is_readable_by_a_posix_shell_with_read(tmp_path: Path) -> None:
    cache = Cache(str(tmp_path / "c"))
    cache.store(_entry(export=False), margin=600)
    out = subprocess.run(["dash", "-c", 'read v b r e x f t < "$1"; echo "$v|$x|$f|$t"', "-",
                          str(tmp_path / "c" / "token")], capture_output=True, text=True)
    assert out.stdout.split("|")[0] == "slurmjwt1"
    assert out.stdout.strip().split("|")[2:] == ["0", TOKEN]


def test_uptime_fields_bracket_the_margin() -> None:
    line, csh = format_lines(Entry(10_000, True, TOKEN), margin=600, now=8_200.0,
                             uptime=500.7, boot_id="b")
    _v, _b, refresh_up, expire_up, *_ = line.split()
    # 1700.7 rounds up (shims never see the margin before refresh does),
    # 2295.7 down (shims never see a token as valid past exp - SAFETY).
    assert (int(refresh_up), int(expire_up)) == (1701, 2295)
    assert csh == f"set _slurmjwt_c=({line.strip()})\n"


@pytest.mark.parametrize("text", ["", "slurmjwt1 a 1 2 3 1\n", "slurmjwt2 a 1 2 3 1 a.b.c\n",
                                  "slurmjwt1 a 1 2 x 1 a.b.c\n", "slurmjwt1 a 1 2 3 1 abc\n",
                                  "slurmjwt1 a 1 2 3 1 a.b.c"])
def test_corrupt_or_truncated_lines_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        parse_line(text)


def test_expired_and_corrupt_caches_count_as_empty(tmp_path: Path) -> None:
    cache = Cache(str(tmp_path / "c"))
    cache.store(_entry(left=3), margin=1)  # inside the 5 s safety: as good as expired
    assert cache.load() == (None, "cached token has expired")
    (tmp_path / "c" / "token").write_text("slurmjwt1 garbage\n")
    assert cache.load() == (None, "cached token is corrupt")
    assert Cache(str(tmp_path / "none")).load() == (None, "no cache directory")


def test_symlinked_token_file_is_refused_and_target_untouched(tmp_path: Path) -> None:
    cache = Cache(str(tmp_path / "c"))
    cache.store(_entry(), margin=600)
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    (tmp_path / "c" / "token").unlink()
    (tmp_path / "c" / "token").symlink_to(target)
    with pytest.raises(CacheUnsafe, match="holds a symlink named token"):
        cache.load()
    cache.store(_entry(), margin=600)  # rename replaces the link, never follows it
    assert target.read_text() == "keep me\n"
    assert not (tmp_path / "c" / "token").is_symlink()


def test_symlinked_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    (tmp_path / "c").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(CacheUnsafe, match="is a symlink or not a directory"):
        Cache(str(tmp_path / "c")).store(_entry(), margin=600)
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_open_directory_is_refused_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir(mode=0o777)
    (tmp_path / "c").chmod(0o777)
    with pytest.raises(CacheUnsafe) as err:
        Cache(str(tmp_path / "c")).load()
    assert str(err.value) == (f'token cache "{tmp_path}/c" has mode 0777; '
                              f'run chmod 0700 "{tmp_path}/c"')


def test_readable_token_file_is_refused(tmp_path: Path) -> None:
    cache = Cache(str(tmp_path / "c"))
    cache.store(_entry(), margin=600)
    (tmp_path / "c" / "token").chmod(0o644)
    with pytest.raises(CacheUnsafe, match="has mode 0644; run chmod 0600"):
        cache.load()


def test_directory_of_another_owner_is_refused(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir(mode=0o700)
    cache = Cache(str(tmp_path / "c"), uid=os.getuid() + 1)
    with pytest.raises(CacheUnsafe, match=f"is owned by uid {os.getuid()}, not by you"):
        cache.load()
