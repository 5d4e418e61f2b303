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
from pam_slurmjwt.protocol import MAX_TOKEN, TOKEN_CHARS, Grant, is_kid, key_dir

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
    """Given a token, return its `sun` claim (unverified), or None when its
    payload is not base64url JSON with a string `sun`."""
    # Here, not token.slurm_claims: slurmjwt-refresh must not pay for its
    # imports at start; these two are paid only when a cached entry is read.
    import base64
    import json

    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, RecursionError):  # binascii's and json's are ValueErrors
        return None
    sun = claims.get("sun") if isinstance(claims, dict) else None
    return sun if isinstance(sun, str) else None


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
                raise self._unsafe("cannot be created (permission denied)",
                                   "log in again over ssh (pam_slurmjwt creates it), or "
                                   "set SLURMJWT_CACHE_DIR to a private directory") from None
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOTDIR):
                raise self._unsafe("is a symlink or not a directory",
                                   f'remove it: rm "{self.path}"') from None
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
