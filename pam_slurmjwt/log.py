"""Every log line of the project goes through here: for the helper, the
journal with structured fields when systemd runs it (JOURNAL_STREAM), else
syslog (AUTHPRIV); stderr for commands. Tokens are never logged: callers
pass `fingerprint(token)` instead (token.py).
"""

from __future__ import annotations

import _socket  # not `socket`: slurmjwt-refresh imports this module, and time matters there
import os
import sys
import syslog

TYPE_CHECKING = False  # typing itself is too heavy an import here
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Optional

JOURNAL_SOCKET = "/run/systemd/journal/socket"
AUTHPRIV = 10  # syslog's facility number, as journald's SYSLOG_FACILITY wants it


def journal_socket() -> Optional[str]:
    """The journal's socket when systemd connected our output to the
    journal (JOURNAL_STREAM) and journald listens; else None (syslog)."""
    if os.environ.get("JOURNAL_STREAM") and os.path.exists(JOURNAL_SOCKET):
        return JOURNAL_SOCKET
    return None


def journal_entry(fields: Mapping[str, object]) -> bytes:
    """Given fields, return one datagram of journald's native protocol:
    `NAME=value` lines; a value with a newline in the binary form (name,
    newline, little-endian 64-bit length, value, newline)."""
    out = bytearray()
    for name, value in fields.items():
        data = str(value).encode("utf-8", "replace")
        if b"\n" in data:
            out += name.encode("ascii") + b"\n" + len(data).to_bytes(8, "little") + data + b"\n"
        else:
            out += name.encode("ascii") + b"=" + data + b"\n"
    return bytes(out)


class Log:
    """Given a program name, write lines to syslog and/or stderr."""

    def __init__(self, ident: str, *, use_syslog: bool, use_stderr: bool, debug: bool = False,
                 journal: Optional[str] = None):
        self.ident = ident
        self.use_syslog = use_syslog
        self.use_stderr = use_stderr
        self.debug_forced = debug  # --debug: on whatever Debug= says
        self.debug_enabled = debug
        # With a journal socket, the lines go there instead of syslog (the
        # journal forwards to syslog where the site asks it to).
        self.journal: Optional[_socket.socket] = None
        self.journal_path = journal
        if use_syslog and journal is not None:
            self.journal = _socket.socket(_socket.AF_UNIX,
                                          _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
        if use_syslog:
            syslog.openlog(ident, syslog.LOG_PID, syslog.LOG_AUTHPRIV)

    def set_debug(self, on: bool) -> None:
        """Follow Debug= (at start and each reload); --debug keeps it on."""
        self.debug_enabled = self.debug_forced or on

    def _emit(self, priority: int, message: str,
              fields: Optional[Mapping[str, object]] = None) -> None:
        # One line per event: a message never spans lines in syslog.
        message = message.replace("\n", " ")
        if self.use_syslog and not self._journal(priority, message, fields):
            syslog.syslog(priority, message)
        if self.use_stderr:
            try:
                sys.stderr.write(f"{self.ident}: {message}\n")
                sys.stderr.flush()
            except OSError:
                pass

    def _journal(self, priority: int, message: str,
                 fields: Optional[Mapping[str, object]]) -> bool:
        """Send one entry to the journal; False when there is none or it
        failed (the caller falls back to syslog)."""
        if self.journal is None or self.journal_path is None:
            return False
        entry = {"MESSAGE": message, "PRIORITY": priority, "SYSLOG_IDENTIFIER": self.ident,
                 "SYSLOG_FACILITY": AUTHPRIV, "SYSLOG_PID": os.getpid(), **(fields or {})}
        try:
            self.journal.sendto(journal_entry(entry), self.journal_path)
        except OSError:
            return False
        return True

    def debug(self, message: str, fields: Optional[Mapping[str, object]] = None) -> None:
        if self.debug_enabled:
            self._emit(syslog.LOG_DEBUG, message, fields)

    def info(self, message: str, fields: Optional[Mapping[str, object]] = None) -> None:
        self._emit(syslog.LOG_INFO, message, fields)

    def notice(self, message: str, fields: Optional[Mapping[str, object]] = None) -> None:
        self._emit(syslog.LOG_NOTICE, message, fields)

    def warning(self, message: str, fields: Optional[Mapping[str, object]] = None) -> None:
        self._emit(syslog.LOG_WARNING, message, fields)

    def error(self, message: str, fields: Optional[Mapping[str, object]] = None) -> None:
        self._emit(syslog.LOG_ERR, message, fields)


def complain(prog: str, message: str) -> None:
    """Print one `prog: message` line on stderr (user commands)."""
    try:
        sys.stderr.write(f"{prog}: {message}\n")
        sys.stderr.flush()
    except OSError:
        pass
