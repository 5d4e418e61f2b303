"""The per-user token store: where it lives, atomic writes, safe reads.

Format 2 (docs/internals.md): a `token` line a POSIX shell reads with the
`read` builtin, a `token.csh` line tcsh can `source`, and an empty `.clock`
file; each entry records the id of its key, and an entry of a key the
helper no longer signs with, or whose token names another user (a uid
given to someone else within one boot), is stale. Everything runs as the
user; every open is relative to a directory descriptor checked for owner
and mode, and refuses symlinks. c/common/cache.c reads and writes the same bytes.
"""

from __future__ import annotations

import errno
import math
import os
import pwd
import stat
import time

from pam_slurmjwt.errors import CacheUnsafe
from pam_slurmjwt.protocol import (
    MAX_TOKEN,
    TOKEN_CHARS,
    USERDIR_SOCKET,
    Grant,
    is_kid,
    key_dir,
)

FORMAT = "slurmjwt2"
END = "end"
FALLBACK_BASE = "/run/slurmjwt/users"
TOKEN_FILE = "token"
CSH_FILE = "token.csh"
CLOCK_FILE = ".clock"
KEY_ID_FILE = "id"
KEY_ID_CSH = "id.csh"
SAFETY = 5  # seconds before exp at which a cached token counts as expired
BOOT_ID_CHARS = frozenset("0123456789abcdef-")
MAX_FILE = 16384
LATE_FILE = ".helper-late"  # the helper did not answer in time: not asked before this epoch
LATE_BACKOFF = 30  # seconds (c/common/cache.h SJWT_LATE_BACKOFF)
USERDIR_TIMEOUT = 2.0


class Entry:
    """A cached token: its expiry and refresh time (epoch), export flag, the
    id of its key and the token."""

    __slots__ = ("exp", "export", "kid", "refresh", "token")

    def __init__(self, exp: int, refresh: int, export: bool, kid: str, token: str) -> None:
        self.exp = exp
        self.refresh = refresh
        self.export = export
        self.kid = kid
        self.token = token

    @classmethod
    def from_grant(cls, grant: Grant) -> Entry:
        return cls(grant.exp, grant.refresh, grant.export, grant.kid, grant.token)


def read_key_id(directory: str) -> str | None:
    """Return the key id the helper published in `directory`, or None when
    it is missing, unreadable or malformed (then every entry is stale)."""
    try:
        fd = os.open(os.path.join(directory, KEY_ID_FILE),
                     os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 128)
    except OSError:
        return None
    finally:
        os.close(fd)
    text = data.decode("ascii", "replace")
    if not text.endswith("\n") or not is_kid(text[:-1]):
        return None
    return text[:-1]


def cache_dir(uid: int, env: dict[str, str] | None = None) -> str:
    """Given a uid and an environment, return the cache directory path
    (docs/internals.md: SLURMJWT_CACHE_DIR, XDG_RUNTIME_DIR, /run fallback).
    Root takes neither SLURMJWT_CACHE_DIR nor an XDG_RUNTIME_DIR it does
    not own: a user must never choose where root writes."""
    if env is None:
        env = dict(os.environ)
    root = uid == 0
    if env.get("SLURMJWT_CACHE_DIR") and not root:
        return env["SLURMJWT_CACHE_DIR"]
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and runtime.startswith("/"):
        try:
            st = os.stat(runtime)
        except OSError:
            st = None
        # Chosen exactly as the shell shims choose it (they cannot see mode
        # bits); the modes of our own subdirectory are checked on every use.
        if st and stat.S_ISDIR(st.st_mode) and st.st_uid == (0 if root else uid):
            return os.path.join(runtime, "slurmjwt")
    return os.path.join(FALLBACK_BASE, str(uid))


def _uptime() -> float:
    with open("/proc/uptime", "rb") as fh:
        return float(fh.read().split()[0])


def _boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id", "rb") as fh:
        return fh.read().decode("ascii").strip()


def format_lines(entry: Entry, now: float, uptime: float, boot_id: str) -> tuple[str, str]:
    """Return the `token` and `token.csh` contents for an entry."""
    # Shims compare whole uptime seconds: round so they never see the entry
    # due before slurmjwt-refresh does (it would decline to refresh, and the
    # prompt hook back off), nor the expiry later than exp - SAFETY.
    refresh_up = math.ceil(entry.refresh - now + uptime)
    expire_up = math.floor(entry.exp - SAFETY - now + uptime)
    fields = (f"{FORMAT} {boot_id} {refresh_up} {expire_up} {entry.exp} "
              f"{int(entry.export)} {entry.kid} {entry.token} {END}")
    return fields + "\n", f"set _slurmjwt_c=({fields})\n"


def parse_line(text: str) -> Entry:
    """Given the `token` file's text, return its Entry; raise ValueError."""
    words = text.split(" ")
    if len(words) != 9 or words[0] != FORMAT or words[8] != END + "\n":
        raise ValueError("malformed cache line")
    _fmt, boot, refresh_up, expire_up, exp, export, kid, token, _end = words
    if not 0 < len(boot) <= 64 or not set(boot) <= BOOT_ID_CHARS:
        raise ValueError("malformed boot id")
    numbers = (refresh_up.lstrip("-"), expire_up.lstrip("-"), exp)
    if not all(n.isascii() and n.isdigit() and len(n) <= 12 for n in numbers) \
            or export not in ("0", "1") or not is_kid(kid):
        raise ValueError("malformed cache fields")
    # The token is eval'd by shells (--print-env): its characters are checked
    # here as the helper's protocol checks them, not trusted from the file.
    if token.count(".") != 2 or len(token) > MAX_TOKEN or not set(token) <= TOKEN_CHARS:
        raise ValueError("malformed cached token")
    # The line keeps the refresh time as an uptime second; what is left of
    # the margin is the same against the epoch (docs/internals.md).
    refresh = int(exp) - SAFETY - (int(expire_up) - int(refresh_up))
    return Entry(int(exp), min(refresh, int(exp)), export == "1", kid, token)


def token_user(token: str) -> str | None:
    """Given a token, return its `sun` claim (unverified), or None when
    c/common/token.c's sjwt_peek would refuse it: exactly the same rules
    (three unpadded base64url parts; a header object with no `kid` or a plain
    valid one; a payload object with one plain `sun` of 1 to 64 bytes and one
    integer `exp`; no top-level member name with an escape), so that every
    cache reader takes a token for the same user or for none."""
    # Here, not token.slurm_claims: slurmjwt-refresh must not pay for its
    # imports at start; this one is paid only when a cached entry is read.
    import binascii

    if not 0 < len(token) <= MAX_TOKEN or not set(token) <= TOKEN_CHARS \
            or token.count(".") != 2:
        return None
    header, payload, _sig = token.split(".")
    try:
        if len(header) % 4 == 1 or len(payload) % 4 == 1:
            return None
        header_json = binascii.a2b_base64(_standard_b64(header))
        payload_json = binascii.a2b_base64(_standard_b64(payload))
    except binascii.Error:
        return None
    head = _Walk(header_json, {b"kid": True})
    claims = _Walk(payload_json, {b"sun": True, b"exp": False})
    if not head.ok or not claims.ok or b"sun" not in claims.found \
            or b"exp" not in claims.found:
        return None
    kid = head.found.get(b"kid")
    if isinstance(kid, bytes) and not is_kid(kid.decode("latin-1")):
        return None
    sun = claims.found[b"sun"]
    # As pwd decodes user names: equal strings, equal bytes (C's strcmp).
    return sun.decode("utf-8", "surrogateescape") if isinstance(sun, bytes) else None


def _standard_b64(part: str) -> str:
    return part.replace("-", "+").replace("_", "/") + "=" * (-len(part) % 4)


class _Walk:
    """c/common/token.c's JSON walker, line for line: the top level of one
    object, taking the wanted members (name -> is a string) and skipping the
    rest without interpreting it; `ok` is False where token.c's walk() fails.
    Not a JSON parser, on purpose: where the two differ, the readers would
    disagree on a token's user."""

    WS = frozenset(b" \t\n\r")
    DIGITS = frozenset(b"0123456789")
    NOT_AN_INTEGER = frozenset(b".eE")  # 1.5 or 1e9: not the integer slurmctld wants
    OPEN = frozenset(b"{[")
    LITERAL = frozenset(b"0123456789-+.abcdefghijklmnopqrstuvwxyzE")
    DEPTH_MAX = 32
    NAME_MAX = 64
    EXP_DIGITS_MAX = 18

    def __init__(self, data: bytes, wanted: dict[bytes, bool]) -> None:
        self.data, self.at, self.wanted = data, 0, wanted
        self.found: dict[bytes, bytes | int] = {}
        self.ok = self._object()

    def _ws(self) -> None:
        while self.at < len(self.data) and self.data[self.at] in self.WS:
            self.at += 1

    def _peek(self) -> int:
        """The byte at the cursor, or -1 at the end."""
        return self.data[self.at] if self.at < len(self.data) else -1

    def _string(self) -> tuple[bytes, bool] | None:
        """At a quote: move past the string; return it and whether it is plain
        (no escape), or None when it is cut short or holds a control byte."""
        if self._peek() != ord('"'):
            return None
        self.at += 1
        start, plain = self.at, True
        while self.at < len(self.data) and self.data[self.at] != ord('"'):
            if self.data[self.at] < 0x20:
                return None
            if self.data[self.at] == ord("\\"):
                plain = False
                self.at += 1
                if self.at == len(self.data):
                    return None
            self.at += 1
        if self.at == len(self.data):
            return None
        self.at += 1
        return self.data[start:self.at - 1], plain

    def _value(self, depth: int) -> bool:
        self._ws()
        if self.at == len(self.data) or depth > self.DEPTH_MAX:
            return False
        if self._peek() == ord('"'):
            return self._string() is not None
        if self._peek() in self.OPEN:
            close = ord("}") if self._peek() == ord("{") else ord("]")
            self.at += 1
            self._ws()
            if self._peek() == close:
                self.at += 1
                return True
            while True:
                if close == ord("}"):
                    self._ws()
                    if self._string() is None:
                        return False
                    self._ws()
                    if self._peek() != ord(":"):
                        return False
                    self.at += 1
                if not self._value(depth + 1):
                    return False
                self._ws()
                if self.at == len(self.data):
                    return False
                if self._peek() == close:
                    self.at += 1
                    return True
                if self._peek() != ord(","):
                    return False
                self.at += 1
        start = self.at
        while self.at < len(self.data) and self.data[self.at] in self.LITERAL:
            self.at += 1
        return self.at > start

    def _take(self, name: bytes) -> bool:
        self._ws()
        if self.wanted[name]:
            got = self._string()
            if got is None or not got[1] or not 0 < len(got[0]) <= self.NAME_MAX:
                return False
            value: bytes | int = got[0]
        else:
            start = self.at
            while self.at < len(self.data) and self.data[self.at] in self.DIGITS:
                self.at += 1
            if not 0 < self.at - start <= self.EXP_DIGITS_MAX \
                    or self._peek() in self.NOT_AN_INTEGER:
                return False
            value = int(self.data[start:self.at])
        if name in self.found:
            return False  # a member given twice: which one would slurmctld read?
        self.found[name] = value
        return True

    def _object(self) -> bool:
        self._ws()
        if self._peek() != ord("{"):
            return False
        self.at += 1
        self._ws()
        if self._peek() == ord("}"):
            self.at += 1
        else:
            while True:
                self._ws()
                # An escaped name ("s\u0075n") could spell a wanted one to
                # slurmctld's JSON parser while we skip it: refuse it.
                got = self._string()
                if got is None or not got[1]:
                    return False
                self._ws()
                if self._peek() != ord(":"):
                    return False
                self.at += 1
                if not (self._take(got[0]) if got[0] in self.wanted else self._value(1)):
                    return False
                self._ws()
                if self.at == len(self.data):
                    return False
                if self._peek() == ord("}"):
                    self.at += 1
                    break
                if self._peek() != ord(","):
                    return False
                self.at += 1
        self._ws()
        return self.at == len(self.data)


class Cache:
    """One user's cache directory, opened and checked once per use, and the
    directory where the helper publishes the id of its key."""

    def __init__(self, path: str, key_dir: str, uid: int | None = None,
                 user: str | None = None) -> None:
        self.path = path
        self.key_dir = key_dir
        self.uid = os.getuid() if uid is None else uid
        self.user = user  # the uid's name; looked up on the first load when None

    @classmethod
    def for_user(cls, helper_socket: str) -> Cache:
        uid = os.getuid()
        return cls(cache_dir(uid), key_dir(helper_socket), uid)

    def is_fallback(self) -> bool:
        """True when this cache is the uid's entry under FALLBACK_BASE."""
        return self.path == os.path.join(FALLBACK_BASE, str(self.uid))

    def late_until(self, now: float) -> int:
        """The epoch second before which the helper is not to be asked again
        (it took its whole timeout just now), or 0: c/common/cache.c's rules."""
        try:
            dfd = self.open_dir(create=False)
        except CacheUnsafe:
            return 0
        if dfd is None:
            return 0
        try:
            fd = os.open(LATE_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         dir_fd=dfd)
            try:
                data = os.read(fd, 24)
            finally:
                os.close(fd)
        except OSError:
            return 0
        finally:
            os.close(dfd)
        text = data.decode("ascii", "replace")
        if not text.endswith("\n") or not (text[:-1].isascii() and text[:-1].isdigit()) \
                or len(text) > 19:
            return 0
        until = int(text[:-1])
        return until if now < until <= now + LATE_BACKOFF else 0

    def note_late(self, until: int) -> None:
        """Best effort: no client asks the helper again before `until`."""
        try:
            dfd = self.open_dir(create=False)
        except CacheUnsafe:
            return
        if dfd is None:
            return
        try:
            _replace(dfd, LATE_FILE, f"{until}\n")
        except OSError:
            pass
        finally:
            os.close(dfd)

    def _unsafe(self, what: str, fix: str) -> CacheUnsafe:
        return CacheUnsafe(f'token cache "{self.path}" {what}; {fix}')

    def open_dir(self, create: bool) -> int | None:
        """Return a descriptor of the checked cache directory, creating it if
        asked; None when it does not exist; raise CacheUnsafe when unsafe."""
        if create:
            try:
                os.mkdir(self.path, 0o700)
            except FileExistsError:
                pass
            except FileNotFoundError:
                raise self._unsafe("cannot be created (its parent does not exist)",
                                   "ask an admin to install the tmpfiles.d entry "
                                   "for /run/slurmjwt") from None
            except PermissionError:
                # Outside a session: only root makes SJWT_FALLBACK_BASE/UID.
                if not (self.is_fallback() and ask_userdir(self.key_dir)):
                    raise self._unsafe("cannot be created (permission denied)",
                                       "ask an admin to enable slurmjwt-userdir.socket, or "
                                       "set SLURMJWT_CACHE_DIR to a private directory") from None
            except OSError as err:
                raise self._unsafe(f"cannot be created ({err.strerror})",
                                   "ask an admin to check /run") from None
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOTDIR):
                raise self._unsafe("is a symlink or not a directory",
                                   f'remove it: rm "{self.path}"') from None
            if err.errno == errno.EACCES:
                # Most likely another uid's (a uid given to someone else
                # within one boot): name the owner, as for a readable one.
                try:
                    owner = os.lstat(self.path).st_uid
                except OSError:
                    owner = self.uid
                if owner != self.uid:
                    raise self._unsafe(
                        f"is owned by uid {owner}, not by you (uid {self.uid})",
                        f'remove it or ask an admin to: rm -r "{self.path}"') from None
            raise self._unsafe(f"cannot be opened ({err.strerror})", "check it") from None
        self._check(fd, "directory")
        return fd

    def _check(self, fd: int, kind: str, name: str = "") -> None:
        st = os.fstat(fd)
        where = os.path.join(self.path, name) if name else self.path
        problem = None
        if st.st_uid != self.uid:
            problem = (f"is owned by uid {st.st_uid}, not by you (uid {self.uid})",
                       f'remove it or ask an admin to: rm -r "{where}"')
        elif st.st_mode & 0o077:
            mode = stat.S_IMODE(st.st_mode)
            want = "0700" if kind == "directory" else "0600"
            problem = (f"has mode {mode:04o}", f'run chmod {want} "{where}"')
        elif kind == "file" and not stat.S_ISREG(st.st_mode):
            problem = ("is not a regular file", f'remove it: rm "{where}"')
        if problem:
            os.close(fd)
            what, fix = problem
            raise CacheUnsafe(f'token cache "{where}" {what}; {fix}')

    def load(self, now: float | None = None) -> tuple[Entry | None, str]:
        """Return (entry, "") for a cached token that has not expired, is of
        the key in use and names this cache's user, or (None, reason); raise
        CacheUnsafe when the cache is unsafe."""
        dfd = self.open_dir(create=False)
        if dfd is None:
            return None, "no cache directory"
        try:
            try:
                fd = os.open(TOKEN_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                             | os.O_CLOEXEC, dir_fd=dfd)
            except FileNotFoundError:
                return None, "no cached token"
            except OSError as err:
                if err.errno == errno.ELOOP:
                    raise self._unsafe("holds a symlink named token",
                                       f'remove it: rm "{self.path}/token"') from None
                if err.errno == errno.EACCES:
                    # Someone else's file (or ours without a read bit): say which.
                    fd = os.open(TOKEN_FILE, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC,
                                 dir_fd=dfd)
                    self._check(fd, "file", TOKEN_FILE)
                    os.close(fd)
                    raise self._unsafe("holds a token file you cannot read",
                                       f'run chmod 0600 "{self.path}/token"') from None
                raise
            self._check(fd, "file", TOKEN_FILE)
            try:
                data = os.read(fd, MAX_FILE)
            finally:
                os.close(fd)
        finally:
            os.close(dfd)
        try:
            entry = parse_line(data.decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            return None, "cached token is corrupt"
        if entry.exp - SAFETY <= (time.time() if now is None else now):
            return None, "cached token has expired"
        current = read_key_id(self.key_dir)
        if entry.kid != current:
            if current is None:
                return None, f"the helper has not published its key id in {self.key_dir}"
            return None, "cached token is from another key"
        if self.user is None:
            try:
                self.user = pwd.getpwuid(self.uid).pw_name
            except KeyError:
                return None, f"uid {self.uid} has no user name"
        if token_user(entry.token) != self.user:
            return None, "cached token is for another user"
        return entry, ""

    def store(self, entry: Entry) -> None:
        """Write entry atomically (temp file, fsync, rename) with mode 0600;
        raise CacheUnsafe when unsafe or when it cannot be written (a full
        file system: the old entry, if any, stays as it was)."""
        try:
            self._store(entry)
        except OSError as err:
            raise self._unsafe(f"cannot be written ({err.strerror or err})",
                               "free some space there, or ask an admin") from None

    def _store(self, entry: Entry) -> None:
        dfd = self.open_dir(create=True)
        if dfd is None:
            raise self._unsafe("vanished while being created", "try again")
        try:
            line, csh = format_lines(entry, time.time(), _uptime(), _boot_id())
            _replace(dfd, TOKEN_FILE, line)
            _replace(dfd, CSH_FILE, csh)
            try:
                os.unlink(LATE_FILE, dir_fd=dfd)  # the helper answered
            except FileNotFoundError:
                pass
            _touch(dfd, CLOCK_FILE)
        finally:
            os.close(dfd)


def _replace(dfd: int, name: str, text: str) -> None:
    tmp = f".{name}.{os.getpid()}.{os.urandom(4).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600, dir_fd=dfd)
    try:
        data = text.encode("ascii")
        if os.write(fd, data) != len(data):
            raise OSError(errno.ENOSPC, "short write")
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp, dir_fd=dfd)
        raise
    os.close(fd)
    os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)


def _touch(dfd: int, name: str) -> None:
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                     | os.O_CLOEXEC, 0o600, dir_fd=dfd)
    except OSError:
        return  # only the csh shim's clock; a failure costs it a refresh, nothing more
    os.close(fd)


def ask_userdir(key_dir: str) -> bool:
    """Ask slurmjwt-userdir (root, socket-activated, beside the helper's
    socket) to make this uid's directory under FALLBACK_BASE; True once it
    says it did. It takes the uid from the kernel, not from us."""
    import socket

    from pam_slurmjwt.errors import HelperUnreachable
    from pam_slurmjwt.protocol import check_peer

    path = os.path.join(os.path.dirname(key_dir), USERDIR_SOCKET)  # key/'s sibling
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(USERDIR_TIMEOUT)
            sock.connect(path)
            check_peer(sock, path)  # as c/common/client.c's sjwt_ask: root's answer
            sock.sendall(b"mkdir\n")
            answer = sock.recv(512)
    except (OSError, HelperUnreachable):
        return False
    return answer == b"ok\n"
