"""The helper's wire protocol, version 2 (docs/internals.md), both ends.

One request line, one response line, plain ASCII, bounded sizes, so that
the C front ends speak it with fixed buffers and no parser library. The
client checks who answers: only root (or the caller itself) may.
"""

from __future__ import annotations

import _socket  # not `socket`: its enum import alone costs more than a refresh
import os
import stat
import struct
import time

from pam_slurmjwt.errors import HelperSilent, HelperUnreachable, MintFailed, Refused

VERSION = "SLURMJWT/2"
MAX_REQUEST = 256
MAX_RESPONSE = 8192
MAX_TOKEN = 7168
MAX_KID = 64
CONNECT_RETRY = 0.01  # seconds between connects while the accept queue is full
SELF = "-"

# Refusal codes and what a client should make of them.
POLICY_CODES = ("denied", "no-user")
CODES = ("bad-request", "too-long", "bad-version", "no-user", "denied", "busy",
         "timeout", "backend", "internal")

_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
TOKEN_CHARS = _ALNUM | frozenset("_.-")
KID_CHARS = _ALNUM | frozenset("_-")
FIELD_CHARS = TOKEN_CHARS | frozenset("@$")
# SO_PEERCRED: pid_t (signed), uid_t and gid_t (unsigned: uids reach 2**32 - 2).
PEERCRED = struct.Struct("iII")


def _only(text: str, allowed: frozenset[str], longest: int) -> bool:
    return 0 < len(text) <= longest and all(ch in allowed for ch in text)


class ProtocolError(Exception):
    """Raised when a request line is malformed; `code` is the reason code."""

    def __init__(self, code: str, sentence: str) -> None:
        super().__init__(sentence)
        self.code = code


class Request:
    """A parsed request: command, user (`-` = caller) and lifespan (None = default)."""

    __slots__ = ("command", "lifespan", "user")

    def __init__(self, command: str, user: str = SELF, lifespan: int | None = None) -> None:
        self.command = command
        self.user = user
        self.lifespan = lifespan


class Grant:
    """A token the helper handed out: its expiry, when a cache should get a
    new one (epoch seconds), the export policy and the id of its key."""

    __slots__ = ("exp", "export", "kid", "refresh", "token")

    def __init__(self, exp: int, refresh: int, export: bool, kid: str, token: str) -> None:
        self.exp = exp
        self.refresh = refresh
        self.export = export
        self.kid = kid
        self.token = token


def is_kid(text: str) -> bool:
    """True for a key id as the protocol and the cache carry it."""
    return _only(text, KID_CHARS, MAX_KID)


def format_request(user: str = SELF, lifespan: int | None = None) -> bytes:
    life = SELF if lifespan is None else str(int(lifespan))
    line = f"{VERSION} TOKEN {user} {life}\n".encode("ascii")
    if len(line) > MAX_REQUEST:
        raise ValueError("request too long")
    return line


def parse_request(line: bytes) -> Request:
    """Given one request line (with its newline), return a Request; raise
    ProtocolError with the wire reason code when it is malformed."""
    if len(line) > MAX_REQUEST:
        raise ProtocolError("too-long", f"request longer than {MAX_REQUEST} bytes")
    if not line.endswith(b"\n"):
        raise ProtocolError("bad-request", "request line not terminated")
    try:
        text = line[:-1].decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError("bad-request", "request is not ASCII") from None
    words = text.split(" ")
    if not words or words[0] != VERSION:
        raise ProtocolError("bad-version", f"this helper speaks {VERSION} only")
    if words[1:] == ["PING"]:
        return Request("PING")
    if len(words) != 4 or words[1] != "TOKEN":
        raise ProtocolError("bad-request", f"expected: {VERSION} TOKEN <user> <lifespan>")
    user, life = words[2], words[3]
    if user != SELF and not _only(user, FIELD_CHARS, 64):
        raise ProtocolError("bad-request", "user field has characters a user name cannot have")
    if life == SELF:
        return Request("TOKEN", user, None)
    if not life.isdigit() or len(life) > 9 or int(life) == 0:
        raise ProtocolError("bad-request", "lifespan must be a positive number of seconds")
    return Request("TOKEN", user, int(life))


def format_ok(grant: Grant) -> bytes:
    return (f"{VERSION} OK {grant.exp} {grant.refresh} {int(grant.export)} {grant.kid} "
            f"{grant.token}\n").encode("ascii")


def format_err(code: str, sentence: str) -> bytes:
    sentence = " ".join(sentence.split())  # one line, single spaces
    line = f"{VERSION} ERR {code} {sentence}".encode("ascii", "replace")[: MAX_RESPONSE - 1]
    return line + b"\n"


def format_pong(version: str) -> bytes:
    return f"{VERSION} PONG {version}\n".encode("ascii")


def _epoch(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 12


def parse_grant(words: list[str]) -> Grant:
    """Given the words after `SLURMJWT/2 OK`, return a Grant; raise ValueError."""
    if len(words) != 5:
        raise ValueError("OK line needs exp, refresh, export, kid and token")
    exp, refresh, export, kid, token = words
    if (not _epoch(exp) or not _epoch(refresh) or int(refresh) > int(exp)
            or export not in ("0", "1") or not is_kid(kid)
            or not _only(token, TOKEN_CHARS, MAX_TOKEN)):
        raise ValueError("OK line has a malformed field")
    return Grant(int(exp), int(refresh), export == "1", kid, token)


def parse_response(line: bytes) -> Grant:
    """Given a response line, return the Grant; raise Refused for a policy
    refusal, MintFailed for other refusals, HelperUnreachable for nonsense."""
    if not line.endswith(b"\n") or len(line) > MAX_RESPONSE:
        raise HelperUnreachable("the helper sent an incomplete or oversized answer")
    try:
        words = line[:-1].decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise HelperUnreachable("the helper sent a non-ASCII answer") from None
    if len(words) < 2 or not words[0].startswith("SLURMJWT/"):
        raise HelperUnreachable("the helper answered in an unknown protocol")
    if words[0] != VERSION:
        raise HelperUnreachable(f"the helper speaks {words[0][:16]}, this client "
                                f"{VERSION}; restart slurmjwt-helper")
    if words[1] == "OK":
        try:
            return parse_grant(words[2:])
        except ValueError as err:
            raise HelperUnreachable(f"the helper sent a malformed answer ({err})") from None
    if words[1] == "ERR" and len(words) >= 3:
        code, sentence = words[2], " ".join(words[3:]) or words[2]
        if code in POLICY_CODES:
            raise Refused(code, sentence)
        raise MintFailed(f"the helper could not make a token: {sentence}", code=code)
    raise HelperUnreachable("the helper sent an answer this client does not understand")


def exchange(path: str, request: bytes, timeout: float) -> bytes:
    """Given the socket path, send one request and return the response line;
    raise HelperUnreachable when the helper is absent, slow or too chatty.
    `timeout` bounds the whole exchange, not each step."""
    deadline = time.monotonic() + timeout
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(timeout)
        try:
            _connect(sock, path, deadline)
        except FileNotFoundError:
            raise HelperUnreachable(f"no helper socket at {path}; is slurmjwt-helper "
                                    f"running?") from None
        except (ConnectionRefusedError, PermissionError, _socket.timeout) as err:
            raise HelperUnreachable(f"cannot reach the helper at {path}: "
                                    f"{err.strerror or 'timed out'}") from None
        except OSError as err:
            raise HelperUnreachable(f"cannot reach the helper at {path}: "
                                    f"{err.strerror}") from None
        check_peer(sock, path)
        return _talk(sock, request, deadline)
    finally:
        sock.close()


def check_peer(sock: _socket.socket, path: str) -> None:
    """Accept only the helper (docs/internals.md, "Helper sockets"): a peer
    of uid 0, of our own uid, or of the uid that owns the key directory root
    made beside the socket. Raise HelperUnreachable otherwise."""
    raw = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, PEERCRED.size)
    uid = PEERCRED.unpack(raw)[1]
    if uid in (0, os.getuid()) or uid == helper_uid(path):
        return
    raise HelperUnreachable(f"the helper socket {path} is served by uid {uid}, not root or "
                            f"the helper's user; refusing its answer (check HelperSocket)")


USERDIR_SOCKET = "userdir.sock"  # slurmjwt-userdir's (c/common/userdir.h)


def userdir_socket(helper_socket: str) -> str:
    """Given HelperSocket, return slurmjwt-userdir's socket beside it."""
    return os.path.join(os.path.dirname(helper_socket), USERDIR_SOCKET)


def key_dir(helper_socket: str) -> str:
    """Given HelperSocket, return the directory where the helper publishes
    the id of its key (docs/internals.md, "Key id"); its owner is the
    helper's user (helper_uid)."""
    return os.path.join(os.path.dirname(helper_socket), "key")


def helper_uid(path: str) -> int | None:
    """Given the socket path, return the owner of the key/ directory beside
    it when the socket's directory is root's alone (so only root can have
    made key/ there), else None."""
    directory = os.path.dirname(path)
    try:
        parent = os.stat(directory)
        keys = os.lstat(key_dir(path))
    except OSError:
        return None
    if parent.st_uid != 0 or parent.st_mode & 0o022 or not stat.S_ISDIR(keys.st_mode):
        return None
    return keys.st_uid


def _connect(sock: _socket.socket, path: str, deadline: float) -> None:
    """connect(), retrying while the helper's accept queue is full (EAGAIN on
    a unix socket) until the deadline: a burst is not a failure."""
    while True:
        try:
            sock.connect(path)
            return
        except BlockingIOError:
            if time.monotonic() + CONNECT_RETRY >= deadline:
                raise _socket.timeout from None
            time.sleep(CONNECT_RETRY)


def _talk(sock: _socket.socket, request: bytes, deadline: float) -> bytes:
    buf = b""
    try:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # a quick refusal (busy) may close first: its answer is still readable
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _socket.timeout
            sock.settimeout(left)
            chunk = sock.recv(MAX_RESPONSE + 1 - len(buf))
            if not chunk:
                break
            buf += chunk
            if len(buf) > MAX_RESPONSE:
                raise HelperUnreachable("the helper sent an oversized answer")
    except _socket.timeout:  # TimeoutError on 3.10+, its own class on 3.9
        raise HelperSilent("the helper did not answer in time") from None
    except OSError as err:
        raise HelperUnreachable(f"lost the helper connection: {err.strerror}") from None
    line, newline, _rest = buf.partition(b"\n")
    return line + newline


def request_token(path: str, user: str = SELF, lifespan: int | None = None,
                  timeout: float = 3.0) -> Grant:
    """Ask the helper at `path` for a token; return the Grant or raise
    Refused, MintFailed or HelperUnreachable."""
    return parse_response(exchange(path, format_request(user, lifespan), timeout))


def ping(path: str, timeout: float = 3.0) -> str:
    """Return the helper's version string; raise HelperUnreachable."""
    line = exchange(path, f"{VERSION} PING\n".encode("ascii"), timeout)
    words = line.decode("ascii", "replace").split()
    if len(words) != 3 or words[0] != VERSION or words[1] != "PONG":
        raise HelperUnreachable("the helper sent a malformed PING answer")
    return words[2]
