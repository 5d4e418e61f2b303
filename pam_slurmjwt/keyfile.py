"""Loading and checking the signing key the way munged checks its key:
a regular file, not a symlink, owned by root or SlurmUser, no group or
other permission bits, in a directory others cannot write; and writing a
new one the same way (`slurmjwt keygen`). What the bytes mean (HS256 or
a PEM RSA key) is signing.py's business.
"""

from __future__ import annotations

import errno
import os
import pwd
import stat

from pam_slurmjwt.errors import KeyFileError

MAX_KEY_BYTES = 64 * 1024
MIN_KEY_BYTES = 16


def _owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def load_key(path: str, slurm_user: str) -> bytes:
    """Given the key path and SlurmUser's name, return the key bytes exactly
    as slurmctld reads them (trailing newline included); raise KeyFileError
    naming the file and the fix when it is missing or unsafe."""
    return load_key_file(path, slurm_user)[0]


def load_key_file(path: str, slurm_user: str) -> tuple[bytes, os.stat_result]:
    """As load_key, and return the file's fstat too (what names an HS256
    key: docs/internals.md, "Key id")."""
    try:
        slurm_uid = pwd.getpwnam(slurm_user).pw_uid
    except KeyError:
        slurm_uid = 0
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise KeyFileError(f'cannot use key "{path}": it is a symlink; '
                               f"point JwtKey at the real file") from None
        if err.errno == errno.ENOENT:
            raise KeyFileError(f'cannot read key "{path}": no such file; set JwtKey in '
                               f"slurmjwt.conf or AuthAltParameters=jwt_key= in "
                               f"slurm.conf") from None
        if err.errno == errno.EACCES:
            _explain_denied(path, slurm_uid, slurm_user)
        raise KeyFileError(f'cannot read key "{path}": {err.strerror}') from None
    try:
        st = os.fstat(fd)
        _check_stat(path, st, slurm_uid, slurm_user)
        _check_directory(path)
        data = os.read(fd, MAX_KEY_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_BYTES:
        raise KeyFileError(f'cannot use key "{path}": larger than {MAX_KEY_BYTES} bytes')
    if len(data) < MIN_KEY_BYTES:
        raise KeyFileError(f'cannot use key "{path}": only {len(data)} bytes; make a new '
                           f"one with: dd if=/dev/random of={path} bs=32 count=1")
    return data, st


def _explain_denied(path: str, slurm_uid: int, slurm_user: str) -> None:
    # The helper reads the key as SlurmUser: "permission denied" nearly always
    # means a wrong owner; say which, and how to fix it.
    try:
        st = os.lstat(path)
    except OSError:
        st = None
    if st is not None:
        _check_stat(path, st, slurm_uid, slurm_user)
    raise KeyFileError(f'cannot read key "{path}": permission denied for '
                       f"{_owner_name(os.geteuid())}; run chown {slurm_user}: \"{path}\" and "
                       f"make sure its directory is reachable")


def _check_stat(path: str, st: os.stat_result, slurm_uid: int, slurm_user: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f'cannot use key "{path}": not a regular file')
    if st.st_uid not in (0, slurm_uid):
        raise KeyFileError(
            f'cannot use key "{path}": owned by {_owner_name(st.st_uid)}, not root or '
            f'SlurmUser {slurm_user}; run chown {slurm_user}: "{path}"')
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f'cannot use key "{path}": mode {mode:04o} allows group or others; '
            f'run chmod 0600 "{path}"')


def _check_directory(path: str) -> None:
    # A key in a directory others can write could be swapped under us.
    directory = os.path.dirname(os.path.abspath(path))
    st = os.stat(directory)
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise KeyFileError(
            f'cannot use key "{path}": its directory "{directory}" is writable by '
            f'others; run chmod go-w "{directory}"')


def write_new_key(path: str, data: bytes, owner: str | None) -> None:
    """Write `data` to a new key file at path, never replacing anything nor
    following a link, mode 0600, owned by `owner` (SlurmUser; None: the
    caller), fsynced; raise KeyFileError naming the file and the fix."""
    uid = gid = -1
    if owner is not None:
        try:
            entry = pwd.getpwnam(owner)
        except KeyError:
            raise KeyFileError(f"SlurmUser {owner!r} does not exist; fix SlurmUser in "
                               f"slurm.conf") from None
        uid, gid = entry.pw_uid, entry.pw_gid
    try:
        _check_directory(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
    except FileExistsError:
        raise KeyFileError(f'will not write key "{path}": it exists, and a key is never '
                           f"overwritten; choose a new name (a rotation puts the new key "
                           f"beside the old one)") from None
    except OSError as err:
        raise KeyFileError(f'cannot write key "{path}": {err.strerror}') from None
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.fchown(fd, uid, gid)  # before the secret is in it
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as err:
        os.unlink(path)
        raise KeyFileError(f'cannot write key "{path}": {err.strerror}') from None
    finally:
        os.close(fd)
