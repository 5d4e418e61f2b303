"""A service account's token file: one token, kept fresh at a fixed path for a
program that re-reads it at every use (Prometheus' authorization
credentials_file, scraping slurmctld's /metrics/*). Root asks the helper on
RootSocket, so the helper's policy (MinUid, AllowPrivileged, DenyUsers, ...)
decides, and writes the file atomically, owned by the account.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import time
from dataclasses import dataclass

from pam_slurmjwt import protocol
from pam_slurmjwt.cache import read_key_id
from pam_slurmjwt.config import Config, refresh_at
from pam_slurmjwt.errors import CacheUnsafe, Refused, UsageError
from pam_slurmjwt.token import fingerprint, key_id_of, slurm_claims

MAX_FILE = 8192  # a token is at most protocol.MAX_TOKEN bytes, plus a newline


@dataclass(frozen=True)
class Target:
    """Where the token goes and whose it is: the account's uid, the file's
    group and mode (0600 with the account's own group, 0640 with --group)."""

    path: str
    account: str
    uid: int
    gid: int
    mode: int


def target(path: str, account: str, group: str | None) -> Target:
    """Given the command line, return the Target; raise UsageError for a
    relative path or an unknown group, Refused for an unknown account,
    CacheUnsafe for a directory others could swap the file in."""
    if not os.path.isabs(path) or path.endswith("/"):
        raise UsageError(f'--output "{path}" is not an absolute file path')
    try:
        entry = pwd.getpwnam(account)
    except KeyError:
        raise Refused("no-user", f"no such user {account!r} (--user)") from None
    gid, mode = entry.pw_gid, 0o600
    if group is not None:
        try:
            gid, mode = grp.getgrnam(group).gr_gid, 0o640
        except KeyError:
            raise UsageError(f"no such group {group!r} (--group)") from None
    check_directory(path)
    return Target(path, entry.pw_name, entry.pw_uid, gid, mode)


def check_directory(path: str) -> None:
    """Refuse a directory (or file there) that anyone but root could change:
    the file could be swapped or linked elsewhere between checks."""
    directory = os.path.dirname(path)
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        raise CacheUnsafe(f'cannot write token file "{path}": no directory "{directory}"; '
                          f'run install -d -m 0755 "{directory}"') from None
    if not stat.S_ISDIR(st.st_mode):
        raise CacheUnsafe(f'cannot write token file "{path}": "{directory}" is not a '
                          f"directory (a symbolic link?); use a real directory")
    if st.st_uid != 0:
        raise CacheUnsafe(f'cannot write token file "{path}": directory "{directory}" is '
                          f'owned by uid {st.st_uid}, not root; run chown root "{directory}"')
    if st.st_mode & 0o022:
        raise CacheUnsafe(f'cannot write token file "{path}": directory "{directory}" is '
                          f"writable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
                          f'run chmod go-w "{directory}"')
    try:
        old = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(old.st_mode):
        raise CacheUnsafe(f'cannot write token file "{path}": it is not a regular file; '
                          f'remove it')


def due(tgt: Target, cfg: Config, now: float | None = None) -> bool:
    """Return whether the file needs a new token: missing, unreadable, not
    the account's, of another owner or mode, of another key than the one
    the helper publishes, or past its refresh point (RefreshMargin before
    exp, or halfway for a short token: config.refresh_at). Nothing here
    needs the old token to be valid: any doubt means a new one."""
    now = time.time() if now is None else now
    try:
        fd = os.open(tgt.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return True
    try:
        st = os.fstat(fd)
        data = os.read(fd, MAX_FILE + 1)
    except OSError:
        return True
    finally:
        os.close(fd)
    if (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) != (tgt.uid, tgt.gid, tgt.mode):
        return True
    try:
        token = data.decode("ascii").strip()
        claims = slurm_claims(token)
        kid = key_id_of(token)
    except (UnicodeDecodeError, ValueError):
        return True
    published = read_key_id(protocol.key_dir(cfg.helper_socket))
    if claims.sun != tgt.account or (published is not None and kid != published):
        return True
    return now >= refresh_at(cfg, claims.iat, claims.exp)


def write(tgt: Target, token: str) -> None:
    """Replace the file atomically: a temp file in the same directory
    (O_EXCL, O_NOFOLLOW), its mode and owner set on the descriptor before
    the token is written, fsync, rename, fsync of the directory. A reader
    sees the old token or the new one, never a part; raise CacheUnsafe."""
    directory, name = os.path.split(tgt.path)
    temp = os.path.join(directory, f".{name}.{os.getpid()}.{os.urandom(4).hex()}")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
    except OSError as err:
        raise CacheUnsafe(f'cannot write token file "{tgt.path}": {err.strerror}') from None
    try:
        try:
            os.fchmod(fd, tgt.mode)
            os.fchown(fd, tgt.uid, tgt.gid)
            os.write(fd, f"{token}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temp, tgt.path)
    except OSError as err:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise CacheUnsafe(f'cannot write token file "{tgt.path}": {err.strerror}') from None
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def keep_fresh(cfg: Config, tgt: Target, if_needed: bool,
               lifespan: int | None = None) -> protocol.Grant | None:
    """Given a checked Target, ask the helper on RootSocket for the account's
    token and write it, unless `if_needed` and the file is still good.
    Return the grant, or None when nothing was due; raise Refused (policy),
    MintFailed, HelperUnreachable or CacheUnsafe."""
    if if_needed and not due(tgt, cfg):
        return None
    grant = protocol.request_token(cfg.root_socket, tgt.account, lifespan, cfg.helper_timeout)
    write(tgt, grant.token)
    return grant


def describe(tgt: Target, grant: protocol.Grant) -> str:
    """One line for the journal: where, whose, until when; a fingerprint,
    never the token."""
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(grant.exp))
    return (f'wrote "{tgt.path}": token for {tgt.account} until {when}, kid {grant.kid}, '
            f"fp {fingerprint(grant.token)}")
