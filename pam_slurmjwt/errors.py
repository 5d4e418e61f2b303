"""The project's exceptions and the exit codes they map to.

Code raises these; only entry points (cli.py, refresh.py, helper.py) turn
them into exit statuses, messages or wire-protocol refusals.
"""

from __future__ import annotations

# Documented exit codes (docs/internals.md, man pages).
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_UNREACHABLE = 4
EXIT_REFUSED = 5
EXIT_CACHE = 6
EXIT_MINT = 7

# What each code means, for --help, the man pages and the README.
EXIT_CODES = (
    (EXIT_OK, "success (or nothing needed)"),
    (EXIT_ERROR, "other error (slurmjwt status/decode: no valid token)"),
    (EXIT_USAGE, "usage error"),
    (EXIT_CONFIG, "configuration error: slurmjwt.conf, slurm.conf or the key"),
    (EXIT_UNREACHABLE, "the helper is unreachable, timed out or answered nonsense"),
    (EXIT_REFUSED, "refused by the helper's policy (denied, no such user)"),
    (EXIT_CACHE, "the token cache is unsafe (owner, mode, symlink) or cannot be written"),
    (EXIT_MINT, "the helper could not make a token (key, scontrol, busy)"),
)


class SlurmJwtError(Exception):
    """Base of every error this project reports to a person."""

    exit_code = EXIT_ERROR


class UsageError(SlurmJwtError):
    """Raised when a command line is malformed."""

    exit_code = EXIT_USAGE


class ConfigError(SlurmJwtError):
    """Raised when slurmjwt.conf or slurm.conf is unreadable, unsafe or invalid."""

    exit_code = EXIT_CONFIG


class KeyFileError(ConfigError):
    """Raised when the signing key is missing, unsafe or unreadable."""


class HelperUnreachable(SlurmJwtError):
    """Raised when the helper cannot be reached, times out or answers nonsense."""

    exit_code = EXIT_UNREACHABLE


class HelperSilent(HelperUnreachable):
    """Raised when the helper took the connection and did not answer in time
    (it hangs; not a full queue or `busy`, which are load and pass)."""


class Refused(SlurmJwtError):
    """Raised when policy refuses a token (denied user, no such user, ...).

    `code` is the wire-protocol reason code (docs/internals.md).
    """

    exit_code = EXIT_REFUSED

    def __init__(self, code: str, sentence: str) -> None:
        super().__init__(sentence)
        self.code = code


class MintFailed(SlurmJwtError):
    """Raised when a token could not be made (signing or scontrol failed)."""

    exit_code = EXIT_MINT

    def __init__(self, sentence: str, code: str = "backend") -> None:
        super().__init__(sentence)
        self.code = code


class CacheUnsafe(SlurmJwtError):
    """Raised when the token cache has a wrong owner, mode or a symlink, or
    cannot be written (a full file system)."""

    exit_code = EXIT_CACHE


class NameServiceError(SlurmJwtError):
    """Raised when the name service (files, sssd, LDAP) fails to answer a
    user or group lookup, as opposed to answering that there is no such entry."""

    exit_code = EXIT_MINT


class ReloadFailed(SlurmJwtError):
    """Raised when the helper did not take a reload (`slurmjwt-helper
    --reload`): the new configuration or key was refused, or no verdict."""
