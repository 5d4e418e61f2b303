"""The per-user token cache, format 2: layout, atomic writes, the key id,
refusal of unsafe state."""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from pathlib import Path

import pytest

from pam_slurmjwt.cache import (
    FALLBACK_BASE,
    Cache,
    Entry,
    cache_dir,
    format_lines,
    parse_line,
    read_key_id,
)
from pam_slurmjwt.errors import CacheUnsafe
from pam_slurmjwt.token import b64url, compact_json

ME = pwd.getpwuid(os.getuid()).pw_name
# The caller's; with an exp, as c/common/token.c reads a token (test_c_cache.py).
TOKEN = f"eyJhbGciOiJIUzI1NiJ9.{b64url(compact_json({'sun': ME, 'exp': 1}))}.c2ln"
KID = "kid-A_1"


def _entry(left: int = 1800, export: bool = True, kid: str = KID) -> Entry:
    exp = int(time.time()) + left
    return Entry(exp, exp - min(600, left // 2), export, kid, TOKEN)


def _cache(tmp_path: Path, kid: str | None = KID, name: str = "c") -> Cache:
    """A cache in tmp_path/name whose helper publishes `kid` (None: nothing)."""
    keys = tmp_path / "key"
    keys.mkdir(exist_ok=True)
    if kid is not None:
        (keys / "id").write_text(f"{kid}\n")
    return Cache(str(tmp_path / name), str(keys))


def test_cache_dir_prefers_override_then_runtime_dir_then_run(tmp_path: Path) -> None:
    uid = os.getuid() or 4242
    runtime = tmp_path / "run-user"
    runtime.mkdir(mode=0o700)
    os.chown(runtime, uid, -1)
    assert cache_dir(uid, {"SLURMJWT_CACHE_DIR": "/x"}) == "/x"
    assert cache_dir(uid, {"XDG_RUNTIME_DIR": str(runtime)}) == f"{runtime}/slurmjwt"
    # A runtime dir owned by someone else is never used.
    assert cache_dir(uid + 1, {"XDG_RUNTIME_DIR": str(runtime)}) == f"{FALLBACK_BASE}/{uid + 1}"
    assert cache_dir(uid, {"XDG_RUNTIME_DIR": "relative"}) == f"{FALLBACK_BASE}/{uid}"
    assert cache_dir(uid, {}) == f"{FALLBACK_BASE}/{uid}"


def test_root_ignores_the_override_and_a_runtime_dir_it_does_not_own(tmp_path: Path) -> None:
    # Run as root, slurmjwt and slurmjwt-refresh once wrote a forged token
    # through a link a user had planted: a user must never choose where root writes.
    runtime = tmp_path / "run-user"
    runtime.mkdir(mode=0o700)
    os.chown(runtime, 4242, -1)
    assert cache_dir(0, {"SLURMJWT_CACHE_DIR": str(tmp_path / "evil")}) == f"{FALLBACK_BASE}/0"
    assert cache_dir(0, {"XDG_RUNTIME_DIR": str(runtime)}) == f"{FALLBACK_BASE}/0"
    os.chown(runtime, 0, -1)
    if os.getuid() == 0:
        assert cache_dir(0, {"XDG_RUNTIME_DIR": str(runtime)}) == f"{runtime}/slurmjwt"


def test_store_then_load_round_trip_with_private_modes(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    entry = _entry()
    cache.store(entry)
    loaded, why = cache.load()
    assert why == "" and loaded is not None
    assert (loaded.exp, loaded.export, loaded.kid, loaded.token) == (entry.exp, True, KID, TOKEN)
    # The refresh time survives the trip through uptime seconds (rounded up).
    assert entry.refresh <= loaded.refresh <= entry.refresh + 1
    assert (tmp_path / "c").stat().st_mode & 0o777 == 0o700
    for name in ("token", "token.csh", ".clock"):
        assert (tmp_path / "c" / name).stat().st_mode & 0o777 == 0o600
    assert not [p for p in (tmp_path / "c").iterdir() if p.name.startswith(".token")]


def test_line_is_readable_by_a_posix_shell_with_read(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    cache.store(_entry(export=False))
    out = subprocess.run(["dash", "-c", 'read v b r e x f k t z < "$1"; echo "$v|$f|$k|$t|$z"',
                          "-", str(tmp_path / "c" / "token")], capture_output=True, text=True)
    assert out.stdout.strip().split("|") == ["slurmjwt2", "0", KID, TOKEN, "end"]


def test_uptime_fields_bracket_the_refresh_time() -> None:
    line, csh = format_lines(Entry(10_000, 9_400, True, KID, TOKEN), now=8_200.0,
                             uptime=500.7, boot_id="b")
    _v, _b, refresh_up, expire_up, *_ = line.split()
    # 1700.7 rounds up (shims never see a token due before refresh does),
    # 2295.7 down (shims never see a token as valid past exp - SAFETY).
    assert (int(refresh_up), int(expire_up)) == (1701, 2295)
    assert line == f"slurmjwt2 b 1701 2295 10000 1 {KID} {TOKEN} end\n"
    assert csh == f"set _slurmjwt_c=({line.strip()})\n"


@pytest.mark.parametrize("text", [
    "", "slurmjwt2 a 1 2 3 1 k a.b.c\n",                 # no end
    f"slurmjwt1 a 1 2 3 1 {TOKEN}\n",                    # format 1
    "slurmjwt2 a 1 2 x 1 k a.b.c end\n",                 # exp not a number
    "slurmjwt2 a 1 2 3 1 k abc end\n",                   # not a JWT
    "slurmjwt2 a 1 2 3 1 k a.b.c end",                   # no newline: torn
    "slurmjwt2 a 1 2 3 1 k$x a.b.c end\n",               # kid a shell would expand
    "slurmjwt2 a 1 2 3 1 k a.b.c end extra\n",
    "slurmjwt2 a  1 2 3 1 k a.b.c end\n",                # two spaces
])
def test_corrupt_or_truncated_lines_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        parse_line(text)


def test_expired_and_corrupt_caches_count_as_empty(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    cache.store(_entry(left=3))  # inside the 5 s safety: as good as expired
    assert cache.load() == (None, "cached token has expired")
    (tmp_path / "c" / "token").write_text("slurmjwt2 garbage\n")
    assert cache.load() == (None, "cached token is corrupt")
    assert _cache(tmp_path, name="none").load() == (None, "no cache directory")


def test_a_token_of_another_key_is_stale_whatever_its_expiry(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    cache.store(_entry(left=3600))
    (tmp_path / "key" / "id").write_text("the-new-key\n")
    assert cache.load() == (None, "cached token is from another key")
    (tmp_path / "key" / "id").unlink()
    entry, why = cache.load()
    assert entry is None and "has not published its key id" in why


def _token_of(claims: object) -> str:
    return f"eyJhbGciOiJIUzI1NiJ9.{b64url(compact_json(claims))}.c2ln"  # type: ignore[arg-type]


@pytest.mark.parametrize(("token", "user"), [
    (_token_of({"sun": "previous-owner", "exp": 1}), None),  # the uid's name: looked up
    (_token_of({"sun": ME, "exp": 1}), "new-owner"),  # a name given to the cache
    (_token_of({"exp": 1}), None),  # no sun
    (_token_of({"sun": 0, "exp": 1}), None),  # not a name
    ("eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln", None),  # not JSON
    (f"eyJhbGciOiJIUzI1NiJ9.{b64url(b'[' * 5000)}.c2ln", None),  # too deep for json
], ids=["previous-owner", "renamed", "no-sun", "number", "not-json", "deep"])
def test_a_token_that_is_not_the_callers_is_stale_whatever_its_key_and_expiry(
        tmp_path: Path, token: str, user: str | None) -> None:
    # A uid given to someone else within one boot: the previous owner's
    # entry under /run/slurmjwt/users/UID is never used or exported for the
    # new owner (who can still read the file until a login removes it or a
    # grant replaces it; test_pam_module.py).
    cache = _cache(tmp_path)
    cache.store(Entry(int(time.time()) + 3600, int(time.time()) + 3000, True, KID, token))
    cache.user = user
    assert cache.load() == (None, "cached token is for another user")


@pytest.mark.parametrize("text", ["", "k", "k\nx\n", "k$(id)\n", "a" * 65 + "\n"])
def test_malformed_key_ids_are_none(tmp_path: Path, text: str) -> None:
    (tmp_path / "id").write_text(text)
    assert read_key_id(str(tmp_path)) is None


def test_symlinked_token_file_is_refused_and_target_untouched(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    cache.store(_entry())
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    (tmp_path / "c" / "token").unlink()
    (tmp_path / "c" / "token").symlink_to(target)
    with pytest.raises(CacheUnsafe, match="holds a symlink named token"):
        cache.load()
    cache.store(_entry())  # rename replaces the link, never follows it
    assert target.read_text() == "keep me\n"
    assert not (tmp_path / "c" / "token").is_symlink()


def test_symlinked_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    (tmp_path / "c").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(CacheUnsafe, match="is a symlink or not a directory"):
        _cache(tmp_path).store(_entry())
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_open_directory_is_refused_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir(mode=0o777)
    (tmp_path / "c").chmod(0o777)
    with pytest.raises(CacheUnsafe) as err:
        _cache(tmp_path).load()
    assert str(err.value) == (f'token cache "{tmp_path}/c" has mode 0777; '
                              f'run chmod 0700 "{tmp_path}/c"')


def test_readable_token_file_is_refused(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    cache.store(_entry())
    (tmp_path / "c" / "token").chmod(0o644)
    with pytest.raises(CacheUnsafe, match="has mode 0644; run chmod 0600"):
        cache.load()


def test_directory_of_another_owner_is_refused(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir(mode=0o700)
    cache = Cache(str(tmp_path / "c"), str(tmp_path / "key"), uid=os.getuid() + 1)
    with pytest.raises(CacheUnsafe, match=f"is owned by uid {os.getuid()}, not by you"):
        cache.load()


def test_the_helper_late_note_is_bounded_and_goes_with_the_next_token(tmp_path: Path) -> None:
    """As c/common/cache.c's sjwt_cache_late_until (c/tests/test_cache.c)."""
    from pam_slurmjwt.cache import LATE_FILE

    cache = Cache(str(tmp_path / "c"), str(tmp_path / "key"))
    now = 1_900_000_000
    cache.note_late(now + 30)
    assert cache.late_until(now) == 0  # no directory: nowhere to note it
    (tmp_path / "c").mkdir(mode=0o700)
    cache.note_late(now + 30)
    assert (cache.late_until(now), cache.late_until(now + 30), cache.late_until(now - 1)) \
        == (now + 30, 0, 0)
    for text in ("1900000010", "-5\n", "soon\n", ""):
        (tmp_path / "c" / LATE_FILE).write_text(text)
        assert cache.late_until(now) == 0, text
    cache.note_late(int(time.time()) + 10)
    cache.store(Entry(int(time.time()) + 600, int(time.time()) + 300, True, "kid", "a.b.c"))
    assert not (tmp_path / "c" / LATE_FILE).exists()
