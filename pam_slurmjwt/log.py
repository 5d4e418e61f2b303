"""Every log line of the project goes through here: syslog (AUTHPRIV) for
the helper, stderr for commands. Tokens are never logged: callers pass
`fingerprint(token)` instead (token.py).
"""

from __future__ import annotations

import sys
import syslog


class Log:
    """Given a program name, write lines to syslog and/or stderr."""

    def __init__(self, ident: str, *, use_syslog: bool, use_stderr: bool, debug: bool = False):
        self.ident = ident
        self.use_syslog = use_syslog
        self.use_stderr = use_stderr
        self.debug_enabled = debug
        if use_syslog:
            syslog.openlog(ident, syslog.LOG_PID, syslog.LOG_AUTHPRIV)

    def _emit(self, priority: int, message: str) -> None:
        # One line per event: a message never spans lines in syslog.
        message = message.replace("\n", " ")
        if self.use_syslog:
            syslog.syslog(priority, message)
        if self.use_stderr:
            try:
                sys.stderr.write(f"{self.ident}: {message}\n")
                sys.stderr.flush()
            except OSError:
                pass

    def debug(self, message: str) -> None:
        if self.debug_enabled:
            self._emit(syslog.LOG_DEBUG, message)

    def info(self, message: str) -> None:
        self._emit(syslog.LOG_INFO, message)

    def notice(self, message: str) -> None:
        self._emit(syslog.LOG_NOTICE, message)

    def warning(self, message: str) -> None:
        self._emit(syslog.LOG_WARNING, message)

    def error(self, message: str) -> None:
        self._emit(syslog.LOG_ERR, message)


def complain(prog: str, message: str) -> None:
    """Print one `prog: message` line on stderr (user commands)."""
    try:
        sys.stderr.write(f"{prog}: {message}\n")
        sys.stderr.flush()
    except OSError:
        pass
