"""slurmjwt doctor: PAM and sshd: the module loads, and sshd's session
stack runs the hook after the modules that make the runtime directory
(pam_systemd included, through @include, include and substack)."""

from __future__ import annotations

import ctypes
import glob
import os
from collections.abc import Callable

from pam_slurmjwt.doctor.check import Check, advice
from pam_slurmjwt.doctor.context import Context
from pam_slurmjwt.doctor.registry import ROOT, check

PAM_DIRS = ("/usr/lib64/security", "/lib64/security", "/usr/lib/*/security",
            "/lib/*/security", "/usr/lib/security", "/lib/security")
INCLUDE_DEPTH = 8  # PAM's own limit on nested includes is similar


class PamChecks(Context):
    """The PAM module and sshd's stack."""

    @check(41, ROOT)
    def pam_module(self) -> Check:
        found = [p for d in PAM_DIRS for p in glob.glob(os.path.join(d, "pam_slurmjwt.so"))]
        if not found:
            return advice("FAIL", "pam module", "pam_slurmjwt.so is in no PAM module directory",
                          "run make install (or install the package)")
        try:
            ctypes.CDLL(found[0])
        except OSError as err:
            return Check("FAIL", "pam module", f"{found[0]} does not load: {err}")
        return Check("OK", "pam module", f"{found[0]} loads")

    @check(42, ROOT)
    def pam_stack(self) -> Check:
        try:
            with open(self.sshd_pam) as fh:
                lines = [line.split("#", 1)[0].split() for line in fh]
        except OSError as err:
            return Check("FAIL", "sshd pam", f"cannot read {self.sshd_pam}: {err.strerror}")
        directory = os.path.dirname(self.sshd_pam)
        # Directly, or through an include: the Debian package puts the hook
        # into common-session with pam-auth-update.
        ours = _first(lines, lambda w: w[:2] == ["@include", "slurmjwt"]
                      or w[:3] in (["session", "include", "slurmjwt"],
                                   ["session", "substack", "slurmjwt"])
                      or (len(w) > 2 and w[0] == "session" and "pam_slurmjwt.so" in w[2])
                      or "pam_slurmjwt.so" in _session_modules(w, directory))
        if ours is None:
            return advice("FAIL", "sshd pam", f"{self.sshd_pam} does not use the hook",
                          self.distro.hook_after)
        if self.systemd:
            check = self._after_pam_systemd(lines, ours)
            if check.status != "OK":
                return check
        session = _first(lines, lambda w: w[:2] == ["@include", "common-session"]
                         or (len(w) > 2 and w[0] == "session" and w[2] in ("password-auth",
                                                                          "system-auth")))
        if session is not None and session > ours:
            return advice("FAIL", "sshd pam", f"in {self.sshd_pam} the hook comes before the "
                          "common session modules", "move `@include slurmjwt` after them, so the "
                          "runtime directory exists when the cache is written", joint=": ")
        if self.systemd:
            return self._after_pam_systemd(lines, ours)
        return Check("OK", "sshd pam", f"{self.sshd_pam} includes the hook after the session "
                     "modules")

    def _after_pam_systemd(self, lines: list[list[str]], ours: int) -> Check:
        """With systemd, pam_systemd makes the session's XDG_RUNTIME_DIR: the
        hook must come after the line that brings it in (directly or through
        includes), or the cache goes to the /run/slurmjwt/users fallback."""
        directory = os.path.dirname(self.sshd_pam)
        at = _first(lines, lambda w: "pam_systemd.so" in _session_modules(w, directory))
        if at is None:
            return advice("WARN", "sshd pam", f"no pam_systemd in the session stack of "
                          f"{self.sshd_pam}: sessions get no XDG_RUNTIME_DIR, so the cache falls "
                          "back to /run/slurmjwt/users", f"add it ({self.distro.pam_systemd})")
        same = at == ours and _session_modules(lines[at], directory)
        if at > ours or (same and same.index("pam_systemd.so") > same.index("pam_slurmjwt.so")):
            return advice("FAIL", "sshd pam", f"in {self.sshd_pam} the hook comes before "
                          f"pam_systemd (brought in by `{' '.join(lines[at])}`)", "move `@include "
                          "slurmjwt` after that line, so the session's XDG_RUNTIME_DIR exists "
                          "when the cache is written", joint=": ")
        return Check("OK", "sshd pam", f"{self.sshd_pam} includes the hook after pam_systemd "
                     f"(`{' '.join(lines[at])}`)")


def _session_modules(words: list[str], directory: str, depth: int = 0) -> list[str]:
    """Given the words of one PAM line (comment removed) and the directory of
    its file, return the file names of the session modules it runs,
    following @include, include and substack."""
    if not words or depth > INCLUDE_DEPTH:
        return []
    if words[0] == "@include" and len(words) > 1:
        return _file_session_modules(os.path.join(directory, words[1]), depth + 1)
    if words[0].lstrip("-") != "session" or len(words) < 3:
        return []
    rest = words[1:]
    if rest[0].startswith("["):  # [value=action ...] may hold spaces
        while rest and not rest[0].endswith("]"):
            rest = rest[1:]
    if len(rest) < 2:
        return []
    control, module = rest[0], rest[1]
    if control in ("include", "substack"):
        return _file_session_modules(os.path.join(directory, module), depth + 1)
    return [os.path.basename(module)]


def _file_session_modules(path: str, depth: int) -> list[str]:
    try:
        with open(path) as fh:
            lines = [line.split("#", 1)[0].split() for line in fh]
    except OSError:
        return []
    directory = os.path.dirname(path)
    return [module for words in lines for module in _session_modules(words, directory, depth)]


def _first(lines: list[list[str]], pred: Callable[[list[str]], bool]) -> int | None:
    for index, words in enumerate(lines):
        if words and pred(words):
            return index
    return None
