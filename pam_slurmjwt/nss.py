"""Name service lookups (passwd and group through NSS: files, sssd, LDAP) that
tell "there is no such entry" from "the name service did not answer".

Python's pwd and grp raise KeyError for both, so these call glibc's reentrant
functions through ctypes and read their error numbers: a failed lookup raises
NameServiceError, and callers answer `internal` (try again), never `no-user`
or someone else's identity. ctypes releases the GIL during each call, so a
lookup can run in a thread while the helper's event loop keeps serving.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import os
import pwd
from collections.abc import Callable
from typing import Optional, TypeVar

from pam_slurmjwt.errors import NameServiceError

FIRST_BUFFER = 16384  # bytes; ERANGE doubles it
MAX_BUFFER = 16 << 20  # a group of many thousands of members still fits
FIRST_GROUPS = 64
MAX_GROUPS = 65536  # NGROUPS_MAX on Linux


class _Passwd(ctypes.Structure):
    _fields_ = [("pw_name", ctypes.c_char_p), ("pw_passwd", ctypes.c_char_p),
                ("pw_uid", ctypes.c_uint32), ("pw_gid", ctypes.c_uint32),
                ("pw_gecos", ctypes.c_char_p), ("pw_dir", ctypes.c_char_p),
                ("pw_shell", ctypes.c_char_p)]


class _Group(ctypes.Structure):
    _fields_ = [("gr_name", ctypes.c_char_p), ("gr_passwd", ctypes.c_char_p),
                ("gr_gid", ctypes.c_uint32), ("gr_mem", ctypes.POINTER(ctypes.c_char_p))]


_S = TypeVar("_S", bound=ctypes.Structure)
_T = TypeVar("_T")
_libc = ctypes.CDLL(None, use_errno=True)
_PW = ctypes.POINTER(ctypes.POINTER(_Passwd))
_GR = ctypes.POINTER(ctypes.POINTER(_Group))
for _name, _key, _struct, _out in (
        ("getpwnam_r", ctypes.c_char_p, _Passwd, _PW),
        ("getpwuid_r", ctypes.c_uint32, _Passwd, _PW),
        ("getgrnam_r", ctypes.c_char_p, _Group, _GR),
        ("getgrgid_r", ctypes.c_uint32, _Group, _GR)):
    _fn = getattr(_libc, _name)
    _fn.argtypes = [_key, ctypes.POINTER(_struct), ctypes.c_char_p, ctypes.c_size_t, _out]
    _fn.restype = ctypes.c_int
_libc.getgrouplist.argtypes = [ctypes.c_char_p, ctypes.c_uint32,
                               ctypes.POINTER(ctypes.c_uint32), ctypes.POINTER(ctypes.c_int)]
_libc.getgrouplist.restype = ctypes.c_int


def _encode(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


def _text(raw: Optional[bytes]) -> str:
    return (raw or b"").decode("utf-8", "surrogateescape")


def _lookup(what: str, fn: Callable[..., int], key: object, struct: type[_S],
            convert: Callable[[_S], _T]) -> Optional[_T]:
    """Given a getXXnam_r/getXXuid_r function and its key, return the entry
    converted while its buffer lives, or None when the name service says
    there is no such entry; raise NameServiceError when it fails to answer.
    glibc returns 0 with no result for "not found" and an error number for
    anything else (sssd down: ECONNREFUSED, or ENOENT for a missing socket)."""
    size = FIRST_BUFFER
    while True:
        entry = struct()
        buf = ctypes.create_string_buffer(size)
        result = ctypes.POINTER(struct)()
        code = fn(key, ctypes.byref(entry), buf, size, ctypes.byref(result))
        if code == errno.ERANGE and size < MAX_BUFFER:
            size *= 2
            continue
        if code != 0:
            raise NameServiceError(f"cannot look up {what}: {os.strerror(code)}")
        return convert(entry) if result else None


def _passwd(entry: _Passwd) -> pwd.struct_passwd:
    return pwd.struct_passwd((_text(entry.pw_name), _text(entry.pw_passwd), entry.pw_uid,
                              entry.pw_gid, _text(entry.pw_gecos), _text(entry.pw_dir),
                              _text(entry.pw_shell)))


def _gid(entry: _Group) -> int:
    return int(entry.gr_gid)


def _members(entry: _Group) -> frozenset[str]:
    names: list[str] = []
    for index in itertools.count():
        member = entry.gr_mem[index]
        if member is None:
            return frozenset(names)
        names.append(_text(member))
    raise AssertionError("unreachable")


def user_by_name(name: str) -> Optional[pwd.struct_passwd]:
    """Given a user name, return its passwd entry, or None when there is no
    such user; raise NameServiceError when the name service fails."""
    return _lookup(f"user {name!r}", _libc.getpwnam_r, _encode(name), _Passwd, _passwd)


def user_by_uid(uid: int) -> Optional[pwd.struct_passwd]:
    """Given a uid, return its passwd entry, or None when no user has it;
    raise NameServiceError when the name service fails."""
    return _lookup(f"uid {uid}", _libc.getpwuid_r, uid, _Passwd, _passwd)


def group_id(name: str) -> Optional[int]:
    """Given a group name, return its gid, or None when there is no such
    group; raise NameServiceError when the name service fails."""
    return _lookup(f"group {name!r}", _libc.getgrnam_r, _encode(name), _Group, _gid)


def group_members(gid: int) -> Optional[frozenset[str]]:
    """Given a gid, return the names its group lists as members (not those
    whose primary group it is), or None when there is no such group; raise
    NameServiceError when the name service fails."""
    return _lookup(f"group {gid}", _libc.getgrgid_r, gid, _Group, _members)


def group_ids(user: str, gid: int) -> frozenset[int]:
    """Given a user name and its primary gid, return the gids the user gets
    at login (initgroups: the primary and the supplementary groups).

    glibc reports no error here: a source that fails (sssd down) is left
    out silently, and the errno it leaves is no guide (nss-systemd leaves
    ESRCH after a perfect answer). A caller that must not miss a group asks
    group_members() about it too."""
    count = FIRST_GROUPS
    name = _encode(user)
    while True:
        groups = (ctypes.c_uint32 * count)()
        have = ctypes.c_int(count)
        if _libc.getgrouplist(name, gid, groups, ctypes.byref(have)) >= 0:
            return frozenset(groups[:have.value])
        if count >= MAX_GROUPS:
            return frozenset(groups[:count])
        count = min(max(have.value, 2 * count), MAX_GROUPS)
