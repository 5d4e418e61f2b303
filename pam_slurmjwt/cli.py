"""slurmjwt: the user and admin command (mint, tokenfile, decode, status, token,
exec, ping, wrappers, doctor, and for keys: keygen, jwks).

Each subcommand parses its words, calls one function that does the work,
and maps SlurmJwtError to the documented exit status here and only here.
"""

from __future__ import annotations

import os
import pwd
import sys
import time

from pam_slurmjwt import __version__, protocol
from pam_slurmjwt.cache import Cache, Entry, read_key_id
from pam_slurmjwt.config import DEFAULT_PATH, Config, load_config
from pam_slurmjwt.errors import (
    EXIT_ERROR,
    EXIT_OK,
    HelperUnreachable,
    Refused,
    SlurmJwtError,
    UsageError,
)
from pam_slurmjwt.log import Log, complain
from pam_slurmjwt.refresh import NotStored, Options, refresh, still_valid

# `slurmjwt token` runs wherever a program wants a token, often (cron jobs,
# portals' back ends, credential_process): what only other subcommands need
# (argparse, json, datetime, the token decoder, even typing) is imported
# where used. mypy takes any TYPE_CHECKING as typing's.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

PROG = "slurmjwt"


# ----------------------------------------------------------------- helpers

def _when(epoch: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: int) -> str:
    seconds = abs(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _left(exp: int) -> str:
    left = exp - int(time.time())
    return f"{_duration(left)} left" if left > 0 else f"EXPIRED {_duration(left)} ago"


def fresh_entry(config: str | None, lifespan: int | None = None,
                cfg: Config | None = None) -> Entry:
    """Return a valid token: the cached one unless it is due, else the
    helper's, cached where the cache can take it. Outside a session (cron,
    sudo, a service) the cache is the /run fallback; where even that cannot
    be written (read-only or full /run), the token comes straight from the
    helper, uncached: a place to keep it is an optimisation, not a need."""
    opts = Options()
    opts.if_needed = lifespan is None
    opts.lifespan = lifespan
    opts.config = config
    cfg = cfg or load_config(config)
    cache = Cache.for_user(cfg.helper_socket)
    try:
        return refresh(opts, cfg, cache)
    except NotStored as err:
        return err.entry
    except HelperUnreachable:
        # A due token that has not expired beats none, as in the wrappers.
        valid = still_valid(cache) if lifespan is None else None
        if valid is None:
            raise
        return valid


# ----------------------------------------------------------------- mint

def _mint_words(words: list[str]) -> tuple[str | None, int | None]:
    user, lifespan = None, None
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or key.lower() not in ("username", "lifespan"):
            raise UsageError(f"unknown word {word!r}; expected username=NAME or lifespan=SECONDS")
        if key.lower() == "username":
            user = value
        elif value.isascii() and value.isdigit() and 0 < int(value) < 10**8:
            lifespan = int(value)
        else:
            raise UsageError(f"lifespan={value} is not a number of seconds")
    return user, lifespan


def cmd_mint(args: argparse.Namespace) -> int:
    """Like `scontrol token`, signed locally with the key: root or SlurmUser only."""
    from pam_slurmjwt.policy import Policy
    from pam_slurmjwt.signing import KeyMinter, load_signer
    from pam_slurmjwt.slurmconf import parse_slurm_conf
    from pam_slurmjwt.token import fingerprint

    user, lifespan = _mint_words(args.words)
    user = args.user or user
    lifespan = args.lifespan or lifespan
    cfg = load_config(args.config)
    slurm = parse_slurm_conf(cfg.slurm_conf_path())
    policy = Policy(cfg, slurm.slurm_user)
    caller = os.getuid()
    admin = caller == 0 or caller == policy.slurm_uid
    entry = policy.resolve(0 if admin else caller, user or protocol.SELF)
    lifespan = lifespan or cfg.lifespan
    cap = policy.cap(entry)  # a group lookup: once
    if lifespan > cap:
        raise UsageError(f"lifespan={lifespan} exceeds {entry.pw_name}'s cap of "
                         f"{cap} s (MaxLifespan, MaxLifespanFor)")
    minter = KeyMinter(load_signer(cfg.jwt_key or slurm.jwt_key_path(), slurm.slurm_user),
                       cfg.identity_claims)
    token, _exp = minter.sign(entry, lifespan)
    Log(PROG, use_syslog=True, use_stderr=False).info(
        f"mint (user {entry.pw_name}) uid={entry.pw_uid} by uid={caller} lifespan={lifespan} "
        f"kid={minter.kid} fp={fingerprint(token)}")
    print(f"SLURM_JWT={token}")
    return EXIT_OK


# ----------------------------------------------------------------- decode

def describe(token: str) -> dict[str, Any]:
    """Given a token, return what `decode` shows; raise UsageError."""
    from pam_slurmjwt.token import fingerprint, inspect, slurm_claims

    try:
        header, claims = inspect(token)
    except ValueError as err:
        raise UsageError(str(err)) from None
    out: dict[str, Any] = {"header": header, "claims": claims,
                           "fingerprint": fingerprint(token), "verified": False}
    try:
        slurm = slurm_claims(token)
    except ValueError as err:
        out["problem"] = str(err)
    else:
        out["user"] = slurm.sun
        out["expires"] = slurm.exp
        out["seconds_left"] = slurm.exp - int(time.time())
    return out


def cmd_decode(args: argparse.Namespace) -> int:
    """Show a token's claims without verifying it. Exit 0 valid, 1 expired."""
    import json

    if args.token == "-":
        token = sys.stdin.read(8192).strip()
    elif args.token:
        # Too late for this one, but never again: every local user can read
        # a command line (ps, /proc/PID/cmdline).
        raise UsageError("a token on the command line is visible to every local user (ps); "
                         "pass it on stdin: slurmjwt decode - <FILE")
    else:
        token = os.environ.get("SLURM_JWT", "")
    if not token:
        raise UsageError("no token: SLURM_JWT is not set; pass - to read one on stdin")
    info = describe(token)
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
    else:
        print(f"user:        {info.get('user', '?')}")
        iat = info["claims"].get("iat")
        if isinstance(iat, int):
            print(f"issued:      {_when(iat)}")
        if "expires" in info:
            print(f"expires:     {_when(info['expires'])} ({_left(info['expires'])})")
        if "problem" in info:
            print(f"problem:     {info['problem']}")
        print(f"algorithm:   {info['header'].get('alg', '?')}")
        print(f"fingerprint: {info['fingerprint']}")
        print("signature:   not verified (only slurmctld can tell)")
    return EXIT_OK if info.get("seconds_left", 0) > 0 else EXIT_ERROR


# ----------------------------------------------------------------- status

def status_report(config: str | None) -> dict[str, Any]:
    from pam_slurmjwt.token import fingerprint, slurm_claims

    cfg = load_config(config)
    cache = Cache.for_user(cfg.helper_socket)
    report: dict[str, Any] = {"user": pwd.getpwuid(os.getuid()).pw_name,
                              "cache": cache.path, "key_in_use": read_key_id(cache.key_dir)}
    entry, why = cache.load()
    report["valid"] = entry is not None
    if entry is None:
        report["problem"] = why
    else:
        report.update(expires=entry.exp, seconds_left=entry.exp - int(time.time()),
                      export=entry.export, kid=entry.kid, fingerprint=fingerprint(entry.token),
                      refresh_due=entry.refresh <= int(time.time()))
    env = os.environ.get("SLURM_JWT")
    if env is None:
        report["environment"] = "unset"
    elif entry is not None and env == entry.token:
        report["environment"] = "same as cache"
    else:
        try:
            left = slurm_claims(env).exp - int(time.time())
            report["environment"] = "expired" if left <= 0 else f"other token, {left}s left"
        except ValueError:
            report["environment"] = "not a valid token"
    return report


def cmd_status(args: argparse.Namespace) -> int:
    """Show the cached token's state. Exit 0 if a valid token is cached."""
    import json

    report = status_report(args.config)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(f"user:        {report['user']}")
        print(f"cache:       {report['cache']}")
        if report["valid"]:
            print(f"expires:     {_when(report['expires'])} ({_left(report['expires'])})")
            print(f"exported:    {'yes' if report['export'] else 'no (Export policy)'}")
            print(f"key:         {report['kid']} (the helper's key)")
            print(f"fingerprint: {report['fingerprint']}")
        else:
            print(f"token:       none ({report['problem']})")
        print(f"SLURM_JWT:   {report['environment']}")
    return EXIT_OK if report["valid"] else EXIT_ERROR


# ----------------------------------------------------------------- token, exec, ping

def token_json(entry: Entry, user: str) -> str:
    """Given a cache entry, return `slurmjwt token --json`: the token and when
    to ask again, for programs that keep one (like AWS credential_process)."""
    import json

    return json.dumps({"version": 1, "user": user, "token": entry.token,
                       "expires": entry.exp, "expiration": _iso(entry.exp),
                       "refresh_after": entry.refresh}, sort_keys=True)


def _iso(epoch: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def cmd_token(args: argparse.Namespace) -> int:
    """Print a valid token (refreshing if needed), as JSON with its expiry,
    or as REST headers for curl -H @-."""
    form = "json" if args.json else "header" if args.header else "bearer" if args.bearer else ""
    return print_token(args.config, args.lifespan, form)


def print_token(config: str | None, lifespan: int | None, form: str) -> int:
    entry = fresh_entry(config, lifespan)
    if form == "json":
        print(token_json(entry, pwd.getpwuid(os.getuid()).pw_name))
    elif form == "header":
        user = pwd.getpwuid(os.getuid()).pw_name
        print(f"X-SLURM-USER-NAME: {user}")
        print(f"X-SLURM-USER-TOKEN: {entry.token}")
    elif form == "bearer":
        print(f"Authorization: Bearer {entry.token}")
    else:
        print(entry.token)
    return EXIT_OK


def exec_environment(env: dict[str, str], entry: Entry | None, config: str | None,
                     wrapper_dir: str) -> dict[str, str]:
    """Given an environment and the token (None where the Export policy wants
    none), return CMD's: the wrapper directory first on PATH, so that every
    Slurm command CMD starts, hours later too, gets a live token; SLURM_JWT
    set, or removed where Export says another authentication works; and the
    configuration named, so that the wrappers read the same one."""
    out = dict(env)
    path = [d for d in out.get("PATH", os.defpath).split(":") if d and d != wrapper_dir]
    out["PATH"] = ":".join([wrapper_dir, *path])
    if entry is not None and entry.export:
        out["SLURM_JWT"] = entry.token
    else:
        out.pop("SLURM_JWT", None)
    if config:
        out["SLURMJWT_CONF"] = os.path.abspath(config)
    return out


def cmd_exec(args: argparse.Namespace) -> int:
    """Run a command with the wrappers first on PATH and, where Export wants
    one, a fresh SLURM_JWT: the way to run cron jobs, CI jobs and services."""
    from pam_slurmjwt.config import export_wanted
    from pam_slurmjwt.wrappers import WRAPPER_DIR

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise UsageError("exec needs a command: slurmjwt exec -- COMMAND [ARGS...]")
    cfg = load_config(args.config)
    # Where munge (or sackd) works, no token is wanted: none is asked for.
    entry = fresh_entry(args.config, args.lifespan, cfg) if export_wanted(cfg) else None
    env = exec_environment(dict(os.environ), entry, args.config, WRAPPER_DIR)
    try:
        os.execvpe(command[0], command, env)
    except OSError as err:
        complain(PROG, f"cannot run {command[0]!r}: {err.strerror}")
        return 127
    return EXIT_ERROR  # not reached


def cmd_ping(args: argparse.Namespace) -> int:
    """Check that the helper answers; print its version."""
    cfg = load_config(args.config)
    print(protocol.ping(cfg.helper_socket, cfg.helper_timeout))
    return EXIT_OK


def cmd_metrics(args: argparse.Namespace) -> int:
    """Print the helper's metrics, as a scrape of MetricsListen= gets them,
    from the key directory's metrics.sock: root and SlurmUser only (its mode,
    and the helper checks SO_PEERCRED)."""
    import socket

    from pam_slurmjwt.metrics import SOCKET_NAME

    cfg = load_config(args.config)
    path = os.path.join(protocol.key_dir(cfg.helper_socket), SOCKET_NAME)
    reply = b""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(cfg.helper_timeout + 5)
            sock.connect(path)
            sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            while chunk := sock.recv(65536):
                reply += chunk
    except (FileNotFoundError, ConnectionRefusedError):
        complain(PROG, f"the helper serves no metrics; set MetricsListen= in "
                       f"{cfg.path or DEFAULT_PATH} and reload it")
        return EXIT_ERROR
    except PermissionError:
        reply = b""
    except OSError as err:
        complain(PROG, f'cannot read the helper\'s metrics from "{path}": {err.strerror or err}')
        return EXIT_ERROR
    head, _sep, body = reply.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.0 200"):
        complain(PROG, "only root and SlurmUser may read the helper's metrics")
        return EXIT_ERROR
    sys.stdout.write(body.decode("utf-8", "replace"))
    return EXIT_OK


def cmd_wrappers(args: argparse.Namespace) -> int:
    """List the Slurm command wrappers against the installed Slurm; with
    --update (root), make them match. Exit 1 when they differ (list only)."""
    from pam_slurmjwt import wrappers

    cfg = load_config(args.config)
    directory, program = args.dir or wrappers.WRAPPER_DIR, args.program or wrappers.WRAP_PROGRAM
    if args.update:
        if os.geteuid() != 0 and not args.dir:
            raise UsageError("--update changes the system's wrapper directory: run it as root")
        added, removed = wrappers.update(directory, program, cfg.slurm_bin_dir)
        for name in added:
            print(f"added {directory}/{name}")
        for name in removed:
            print(f"removed {directory}/{name}")
        return EXIT_OK
    missing, extra = wrappers.differences(directory, program, cfg.slurm_bin_dir)
    print(f"wrappers: {directory} -> {program}")
    print(f"Slurm commands in {cfg.slurm_bin_dir}: "
          f"{' '.join(wrappers.slurm_commands(cfg.slurm_bin_dir)) or 'none'}")
    for name in missing:
        print(f"missing: {name} (run slurmjwt wrappers --update as root)")
    for name in extra:
        print(f"extra: {name} (no {cfg.slurm_bin_dir}/{name}; run slurmjwt wrappers --update)")
    return EXIT_OK if not (missing or extra) else EXIT_ERROR


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check the whole chain; exit 0 when every check passed."""
    from pam_slurmjwt.doctor import run_doctor

    if args.user and os.geteuid() != 0:
        raise UsageError("--user is for root; run slurmjwt doctor as yourself")
    ok = run_doctor(args.config, args.user, print, as_json=args.json)
    return EXIT_OK if ok else EXIT_ERROR


def cmd_tokenfile(args: argparse.Namespace) -> int:
    """Root: keep a service account's token in a file (Prometheus'
    credentials_file), asked of the helper on RootSocket under its policy."""
    from pam_slurmjwt import tokenfile

    if os.geteuid() != 0:
        raise UsageError("tokenfile writes a file owned by another account through the "
                         "helper's root socket: run it as root")
    if args.lifespan is not None and not 0 < args.lifespan < 10**8:
        raise UsageError(f"--lifespan {args.lifespan} is not a number of seconds")
    cfg = load_config(args.config)
    target = tokenfile.target(args.output, args.user, args.group)
    grant = tokenfile.keep_fresh(cfg, target, args.if_needed, args.lifespan)
    if grant is not None:
        print(tokenfile.describe(target, grant))
    return EXIT_OK


# ----------------------------------------------------------------- keys

def cmd_keygen(args: argparse.Namespace) -> int:
    """Write a new RSA private key (never over an existing file), mode 0600,
    owned by SlurmUser when run as root; print its kid."""
    from pam_slurmjwt.keyfile import write_new_key
    from pam_slurmjwt.signing import KEYGEN_BITS, MIN_RSA_BITS, new_private_key, signer_of_pem

    bits = args.bits or KEYGEN_BITS
    if not MIN_RSA_BITS <= bits <= 16384:
        raise UsageError(f"--bits {bits}: choose {MIN_RSA_BITS} to 16384")
    owner = None
    if os.geteuid() == 0:
        from pam_slurmjwt.slurmconf import parse_slurm_conf

        owner = parse_slurm_conf(load_config(args.config).slurm_conf_path()).slurm_user
    data = new_private_key(bits)
    kid = signer_of_pem(args.file, data).kid  # checked before it is written
    write_new_key(args.file, data, owner)
    print(f'{args.file}: RSA {bits} bits, kid {kid}; its public half for slurmctld\'s '
          f"JWKS: slurmjwt jwks {args.file}")
    return EXIT_OK


def cmd_jwks(args: argparse.Namespace) -> int:
    """Print the JWKS (public keys only) of the PEM keys and JWKS files given."""
    import json

    from pam_slurmjwt.signing import jwks_document

    print(json.dumps(jwks_document(args.files), indent=2))
    return EXIT_OK


# ----------------------------------------------------------------- entry point

def build_parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog=PROG, description="Slurm JSON Web Tokens on login nodes.",
        epilog="Exit status: 0 ok, 1 error (expired, no token), 2 usage, 3 configuration, "
               "4 helper unreachable, 5 refused by policy, 6 cache unsafe, 7 mint failed.")
    parser.add_argument("-c", "--config", help="slurmjwt.conf (default /etc/slurm/slurmjwt.conf)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command_name", metavar="COMMAND")
    sub.required = True

    mint = sub.add_parser("mint", help="admin: make a token like `scontrol token`")
    mint.add_argument("words", nargs="*", help="username=NAME lifespan=SECONDS")
    mint.add_argument("--user", help="user to mint for (default: yourself)")
    mint.add_argument("--lifespan", type=int, help="seconds (default Lifespan)")
    mint.set_defaults(func=cmd_mint)

    tfile = sub.add_parser("tokenfile", help="root: keep a service account's token in a "
                           "file, for Prometheus' credentials_file")
    tfile.add_argument("--user", required=True, help="the account the token is for")
    tfile.add_argument("--output", required=True, metavar="PATH",
                       help="the file (its directory root's, not writable by others)")
    tfile.add_argument("--group", help="make the file 0640 and of this group (default: "
                       "0600, the account's own group)")
    tfile.add_argument("--if-needed", action="store_true",
                       help="only when missing, of another key or owner, or past its refresh "
                            "point (RefreshMargin before expiry, halfway for short tokens)")
    tfile.add_argument("--lifespan", type=int, help="seconds (default Lifespan; capped by "
                       "MaxLifespan, MaxLifespanFor)")
    tfile.set_defaults(func=cmd_tokenfile)

    decode = sub.add_parser("decode", help="show a token's claims (not verified)")
    decode.add_argument("token", nargs="?",
                        help="- to read the token on stdin (default: $SLURM_JWT); never "
                             "the token itself, which others could read in ps")
    decode.add_argument("--json", action="store_true", help="print the claims as JSON")
    decode.set_defaults(func=cmd_decode)

    status = sub.add_parser("status", help="show your cached token")
    status.add_argument("--json", action="store_true", help="print the report as JSON")
    status.set_defaults(func=cmd_status)

    token = sub.add_parser("token", help="print a valid token, refreshing if needed")
    form = token.add_mutually_exclusive_group()
    form.add_argument("--header", action="store_true",
                      help="print X-SLURM-USER-NAME/-TOKEN headers for `curl -H @-`")
    form.add_argument("--bearer", action="store_true",
                      help="print an Authorization: Bearer header (slurmrestd >= 23.02)")
    form.add_argument("--json", action="store_true",
                      help="print {token, expires, expiration, refresh_after, user} as JSON: "
                           "ask again after refresh_after")
    token.add_argument("--lifespan", type=int, help="ask for a new token of this lifespan")
    token.set_defaults(func=cmd_token)

    run = sub.add_parser("exec", help="run a command with a fresh SLURM_JWT and the "
                         "wrappers first on PATH (cron jobs, CI jobs, services)")
    run.add_argument("--lifespan", type=int, help="ask for a new token of this lifespan")
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    run.set_defaults(func=cmd_exec)

    ping = sub.add_parser("ping", help="check that slurmjwt-helper answers")
    ping.set_defaults(func=cmd_ping)

    met = sub.add_parser("metrics", help="root and SlurmUser: print the helper's metrics "
                         "(Prometheus text format)")
    met.set_defaults(func=cmd_metrics)

    wrap = sub.add_parser("wrappers", help="the Slurm command wrappers: list them, or "
                          "--update them to match the installed Slurm")
    wrap.add_argument("--update", action="store_true",
                      help="root: one link per Slurm command in SlurmBinDir, no other")
    wrap.add_argument("--dir", help="wrapper directory (default: LIBDIR/bin)")
    wrap.add_argument("--program", help="what the links point to (default: "
                      "LIBDIR/slurmjwt-wrap)")
    wrap.set_defaults(func=cmd_wrappers)

    keygen = sub.add_parser("keygen", help="admin: make a new RSA signing key (RS256) in FILE")
    keygen.add_argument("file", metavar="FILE", help="where to write it; never overwritten")
    keygen.add_argument("--bits", type=int, default=None,
                        help="RSA key size (default 2048; at least 2048)")
    keygen.set_defaults(func=cmd_keygen)

    jwks = sub.add_parser("jwks", help="print the JWKS slurmctld's jwks= wants for these keys")
    jwks.add_argument("files", metavar="FILE", nargs="+",
                      help="PEM keys (private or public) or JWKS files; public halves only "
                           "are printed")
    jwks.set_defaults(func=cmd_jwks)

    doctor = sub.add_parser("doctor", help="check the whole chain and say how to fix it")
    doctor.add_argument("--user", help="root: prove slurmctld accepts a token for this user")
    doctor.add_argument("--json", action="store_true",
                        help="one JSON document (check, name, status, message, fix per check)")
    doctor.set_defaults(func=cmd_doctor)
    return parser


# The forms programs run most often (cron jobs, credential_process, a pipe
# to curl), served without argparse: `make bench` holds `slurmjwt token`
# with a warm cache to 1.3x a bare Python start.
TOKEN_FORMS = {(): "", ("--json",): "json", ("--header",): "header", ("--bearer",): "bearer"}


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    try:
        if words[:1] == ["token"] and tuple(words[1:]) in TOKEN_FORMS:
            return print_token(None, None, TOKEN_FORMS[tuple(words[1:])])
        args = build_parser().parse_args(words)
        code: int = args.func(args)
        return code
    except Refused as err:
        complain(PROG, f"refused: {err}")
        return err.exit_code
    except SlurmJwtError as err:
        complain(PROG, str(err))
        return err.exit_code
    except BrokenPipeError:
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
