"""slurmjwt-refresh: fetch a token from the helper into the user's cache.

It starts on every refresh (shims, the user timer, the PAM hand-off), so
it imports only the standard library's cheapest modules; signing happens
in the helper. It never reads SLURM_JWT: a refresh must not depend on the
old token being valid.
"""

from __future__ import annotations

import os
import sys
import time

from pam_slurmjwt import protocol
from pam_slurmjwt.cache import LATE_BACKOFF, SAFETY, Cache, Entry, read_key_id
from pam_slurmjwt.config import Config, export_wanted, load_config, refresh_at
from pam_slurmjwt.errors import (
    EXIT_OK,
    CacheUnsafe,
    HelperSilent,
    HelperUnreachable,
    MintFailed,
    SlurmJwtError,
    UsageError,
)
from pam_slurmjwt.log import complain

PROG = "slurmjwt-refresh"
SHELLS = ("sh", "csh", "fish")
MAX_STDIN = 2048
# Refusals that mean "not now" (the per-user connection limit, hit by a burst
# of this user's own refreshes, or our request arriving late on a loaded
# host): asked again after a short pause, within HelperTimeout.
RETRY_CODES = ("busy", "timeout")
RETRY_PAUSE = 0.05

USAGE = f"""usage: {PROG} [--if-needed] [--lifespan N] [--print-env sh|csh|fish] [--quiet]
       {PROG} --store-stdin
Get a fresh Slurm token from slurmjwt-helper and store it in your token cache.

  --if-needed       only if the cached token is missing, due (RefreshMargin)
                    or from another key; otherwise exit 0 quietly
  --lifespan N      ask for N seconds (capped by the helper's MaxLifespan)
  --print-env SHELL print what to eval: sh, csh or fish. Stdout always holds
                    the right thing to eval, even on failure (an unset when
                    there is no valid token)
  --store-stdin     store the token read on stdin if it is yours, unexpired
                    and from the key in use (the shims offer it an inherited
                    SLURM_JWT); never takes a token as argument
  -q, --quiet       no message on stderr
  -c, --config FILE slurmjwt.conf to read (default /etc/slurm/slurmjwt.conf)
  -h, --help        show this help

Exit status: 0 ok, 2 usage, 3 configuration, 4 helper unreachable,
5 refused by policy, 6 cache unsafe, 7 the helper could not make a token.
"""


class Options:
    __slots__ = ("config", "if_needed", "lifespan", "print_env", "quiet", "store_stdin")

    def __init__(self) -> None:
        self.if_needed = False
        self.store_stdin = False
        self.quiet = False
        self.lifespan: int | None = None
        self.print_env: str | None = None
        self.config: str | None = None


def parse_args(argv: list[str]) -> Options | None:
    """Given argv without the program name, return Options, or None for
    --help; raise UsageError. Hand-rolled: argparse costs a refresh 30 %."""
    opts = Options()
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            return None
        if arg == "--if-needed":
            opts.if_needed = True
        elif arg == "--store-stdin":
            opts.store_stdin = True
        elif arg in ("-q", "--quiet"):
            opts.quiet = True
        elif arg in ("--lifespan", "--print-env", "-c", "--config") or "=" in arg:
            name, _, value = arg.partition("=")
            if not _:
                if not args:
                    raise UsageError(f"{name} needs a value")
                value = args.pop(0)
            _set_valued(opts, name, value)
        else:
            raise UsageError(f"unknown argument {arg!r}; see {PROG} --help")
    if opts.store_stdin and (opts.if_needed or opts.lifespan):
        raise UsageError("--store-stdin takes no --if-needed or --lifespan")
    return opts


def _set_valued(opts: Options, name: str, value: str) -> None:
    if name == "--lifespan":
        if not (value.isascii() and value.isdigit()) or not 0 < int(value) < 10**8:
            raise UsageError(f"--lifespan wants a number of seconds, not {value!r}")
        opts.lifespan = int(value)
    elif name == "--print-env":
        if value not in SHELLS:
            raise UsageError(f"--print-env wants one of {', '.join(SHELLS)}, not {value!r}")
        opts.print_env = value
    elif name in ("-c", "--config"):
        opts.config = value
    else:
        raise UsageError(f"unknown argument {name!r}; see {PROG} --help")


def env_lines(shell: str, entry: Entry | None) -> str:
    """Return what a shell should eval: export the token, or unset it."""
    if entry is None or not entry.export:
        return {"sh": "unset SLURM_JWT;", "csh": "unsetenv SLURM_JWT;",
                "fish": "set -e SLURM_JWT;"}[shell] + "\n"
    tok = entry.token  # [A-Za-z0-9_.-] only: safe inside single quotes
    return {"sh": f"SLURM_JWT='{tok}'; export SLURM_JWT;",
            "csh": f"setenv SLURM_JWT '{tok}';",
            "fish": f"set -gx SLURM_JWT '{tok}';"}[shell] + "\n"


def entry_from_text(text: str, cfg: Config, cache: Cache, user: str) -> Entry:
    """Given a token, return the Entry to cache; raise UsageError when it is
    not an unexpired token for `user` from the key the helper signs with."""
    # Imported here: only --store-stdin needs to look inside a token.
    from pam_slurmjwt.token import key_id_of, slurm_claims

    token = text.strip()
    try:
        claims = slurm_claims(token)
        kid = key_id_of(token)
    except ValueError as err:
        raise UsageError(f"stdin: {err}") from None
    if claims.sun != user:
        raise UsageError(f"stdin: the token is for {claims.sun!r}, not for you ({user})")
    if claims.exp - SAFETY <= time.time():
        raise UsageError("stdin: the token has expired")
    if kid != read_key_id(cache.key_dir):
        raise UsageError("stdin: the token is not from the key the helper signs with")
    return Entry(claims.exp, refresh_at(cfg, claims.iat, claims.exp), export_wanted(cfg),
                 kid, token)


def refresh(opts: Options, cfg: Config, cache: Cache) -> Entry:
    """Return a valid entry, from the cache when --if-needed allows it, else
    from the helper (and stored); raise SlurmJwtError."""
    if opts.store_stdin:
        import pwd

        user = pwd.getpwuid(os.getuid()).pw_name
        entry = entry_from_text(sys.stdin.read(MAX_STDIN), cfg, cache, user)
        cache.store(entry)
        return entry
    deadline = time.monotonic() + cfg.helper_timeout
    cached: Entry | None = None
    while True:
        if opts.if_needed:
            cached, _why = cache.load()
            if cached is not None and cached.refresh > time.time():
                return cached
        # A helper that just took its whole timeout is not asked again for a
        # while: a loop of commands must not each wait as long.
        not_before = cache.late_until(time.time())
        if not_before:
            if opts.if_needed and cached is not None:
                return cached  # due, but still valid: as the wrappers do meanwhile
            raise HelperUnreachable(
                f"the helper did not answer within HelperTimeout ({cfg.helper_timeout:g} s) "
                f"just now; not asked again for {not_before - int(time.time())} s")
        try:
            grant = protocol.request_token(cfg.helper_socket, protocol.SELF, opts.lifespan,
                                           max(deadline - time.monotonic(), 0.1))
            break
        except HelperSilent:
            cache.note_late(int(time.time()) + LATE_BACKOFF)
            raise
        except MintFailed as err:
            # Jittered, so a burst does not come back in lockstep.
            pause = RETRY_PAUSE * (1 + os.urandom(1)[0] / 255)
            if err.code not in RETRY_CODES or time.monotonic() + pause >= deadline:
                raise
            time.sleep(pause)
    entry = Entry.from_grant(grant)
    try:
        cache.store(entry)
    except CacheUnsafe as err:
        raise NotStored(str(err), entry) from None
    return entry


class NotStored(CacheUnsafe):
    """A fresh token the cache could not take: --print-env still gives it."""

    def __init__(self, sentence: str, entry: Entry) -> None:
        super().__init__(sentence)
        self.entry = entry


def still_valid(cache: Cache) -> Entry | None:
    """After a failed refresh: the cached token if it has not expired yet."""
    try:
        return cache.load()[0]
    except SlurmJwtError:
        return None


def main(argv: list[str] | None = None) -> int:
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as err:
        complain(PROG, str(err))
        return err.exit_code
    if opts is None:
        sys.stdout.write(USAGE)
        return EXIT_OK
    entry: Entry | None = None
    code = EXIT_OK
    try:
        cfg = load_config(opts.config)
        cache = Cache.for_user(cfg.helper_socket)
        try:
            entry = refresh(opts, cfg, cache)
        except NotStored as err:
            entry = err.entry
            raise
        except SlurmJwtError:
            entry = still_valid(cache)
            raise
    except SlurmJwtError as err:
        if not opts.quiet:
            complain(PROG, str(err))
        code = err.exit_code
    if opts.print_env:
        sys.stdout.write(env_lines(opts.print_env, entry))
    return code


if __name__ == "__main__":
    sys.exit(main())
