"""Generate the man pages and the sample slurmjwt.conf from the code itself:
the option table (config.py), the argument parsers (cli.py, helper.py), the
usage text (refresh.py), the exit codes (errors.py) and the PAM module's
argument list (c/pam/pam_slurmjwt.c). So the manual cannot drift.

Usage: python3 -I packaging/man/generate.py OUTDIR
       python3 -I packaging/man/generate.py --readme   (README reference table)
       python3 -I packaging/man/generate.py --readme-rotation   (README rotation steps)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from pam_slurmjwt import __version__, cli, helper, refresh  # noqa: E402
from pam_slurmjwt.config import BY_KEY, GROUPS, Option  # noqa: E402
from pam_slurmjwt.errors import EXIT_CODES  # noqa: E402

DATE = "2026-11"


def esc(text: str) -> str:
    """Escape text for roff: backslashes, leading dots and quotes, hyphens."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    lines = []
    for line in text.split("\n"):
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line)
    return "\n".join(lines)


def header(name: str, section: int, title: str) -> list[str]:
    return [f'.TH {name.upper()} {section} "{DATE}" "pam-slurmjwt {__version__}" "{title}"',
            ".SH NAME", f"{esc(name)} \\- {esc(TITLES[name])}"]


TITLES = {
    "slurmjwt": "Slurm JSON Web Tokens on login nodes",
    "slurmjwt-refresh": "fetch a fresh Slurm token into your token cache",
    "slurmjwt-helper": "mint Slurm JSON Web Tokens for local users",
    "pam_slurmjwt": "give every login session a Slurm JSON Web Token",
    "slurmjwt.conf": "configuration of pam-slurmjwt",
}


# Rotating an RS256 key, step by step: slurmjwt.conf(5) and the README show
# these, and tests/integration/test_keys.py runs these very command lines
# (with its own paths for /etc/slurm/...). A comment after # says where a
# line runs, or for which Slurm.
ROTATION: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("On the login node, make the new key beside the old one.",
     ("slurmjwt keygen /etc/slurm/slurmjwt-2027.pem",)),
    ("Put its public half into slurmctld's JWKS. The .jwks file holds the public key "
     "only, safe to copy; on the controller, /etc/slurm/jwks.d holds one such file per "
     "node key, and the JWKS is rebuilt from it.",
     ("slurmjwt jwks /etc/slurm/slurmjwt-2027.pem > login1-2027.jwks",
      "cp login1-2027.jwks /etc/slurm/jwks.d/          # on the controller",
      "slurmjwt jwks /etc/slurm/jwks.d/* > /etc/slurm/jwks.json.new",
      "mv /etc/slurm/jwks.json.new /etc/slurm/jwks.json")),
    ("Make slurmctld read it. From Slurm 23.11 on, scontrol reconfigure re-executes "
     "slurmctld, which re-reads the JWKS; before 23.11 only a restart does. (slurmdbd, if "
     "it takes tokens, reads its keys only when it starts: restart it too.)",
     ("scontrol reconfigure                            # Slurm 23.11 and later",
      "systemctl restart slurmctld                     # before 23.11")),
    ("Switch the login node's helper to the new key. Open sessions follow at their next "
     "command: the helper publishes the id of the key it signs with "
     "(/run/slurmjwt/key/id), every cached token records the id of its key, and a token "
     "of another key is never exported or served again.",
     ("sed -i 's|^JwtKey=.*|JwtKey=/etc/slurm/slurmjwt-2027.pem|' /etc/slurm/slurmjwt.conf",
      "systemctl reload slurmjwt-helper")),
    ("Wait MaxLifespan (default: twice Lifespan, one hour), or the longest MaxLifespanFor "
     "cap if you set any: tokens of the old key handed out before the switch live that "
     "long, and keep working meanwhile.", ()),
    ("Drop the old key: its public half from the JWKS (its tokens are refused as soon as "
     "slurmctld has read it), its private half from the login node.",
     ("rm /etc/slurm/jwks.d/login1-2026.jwks           # on the controller",
      "slurmjwt jwks /etc/slurm/jwks.d/* > /etc/slurm/jwks.json.new",
      "mv /etc/slurm/jwks.json.new /etc/slurm/jwks.json",
      "scontrol reconfigure                            # Slurm 23.11 and later",
      "systemctl restart slurmctld                     # before 23.11",
      "rm /etc/slurm/slurmjwt-2026.pem                 # on the login node")),
)


def rotation_markdown() -> str:
    """The README's rotation steps, from ROTATION."""
    out = []
    for number, (text, commands) in enumerate(ROTATION, start=1):
        out += [f"{number}. {text}", ""]
        if commands:
            out += [*(f"       {line}" for line in commands), ""]
    return "\n".join(out).rstrip("\n") + "\n"


def rotation_roff() -> list[str]:
    out = []
    for number, (text, commands) in enumerate(ROTATION, start=1):
        out += [".TP", f".B {number}.", esc(text)]
        if commands:
            out += [".RS", ".nf", *(esc(line) for line in commands), ".fi", ".RE"]
    return out


def para(text: str) -> list[str]:
    return [".PP", esc(" ".join(text.split()))]


def exit_status() -> list[str]:
    out = [".SH EXIT STATUS"]
    for code, meaning in EXIT_CODES:
        out += [".TP", f".B {code}", esc(meaning)]
    return out


def option_default(opt: Option) -> str:
    if opt.default_text:
        return opt.default_text
    if opt.default in (None, (), ""):
        return "unset"
    if isinstance(opt.default, bool):
        return "yes" if opt.default else "no"
    if isinstance(opt.default, tuple):
        return ",".join(opt.default)
    return str(opt.default)


def option_kind(opt: Option) -> str:
    if opt.kind == "choice":
        return "|".join(opt.choices)
    return {"seconds": "SECONDS", "int": "NUMBER", "path": "PATH", "list": "NAME,...",
            "caps": "NAME:SECONDS,...", "bool": "yes|no",
            "address": "ADDRESS:PORT"}[opt.kind]


def argparse_options(parser: argparse.ArgumentParser) -> list[str]:
    out = []
    for action in parser._actions:  # documented-by-generation: every option appears
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        names = ", ".join(action.option_strings)
        if action.nargs != 0 and action.metavar is None and action.dest:
            names += f" {action.dest.upper()}"
        out += [".TP", f".B {esc(names)}", esc(action.help or "")]
    return out


def conf_page() -> str:
    out = header("slurmjwt.conf", 5, "File formats")
    out += [".SH SYNOPSIS", ".B /etc/slurm/slurmjwt.conf", ".SH DESCRIPTION"]
    out += para("""slurmjwt.conf configures slurmjwt-helper(8), slurmjwt(1),
        slurmjwt-refresh(1) and the profile.d shims. It uses slurm.conf syntax:
        one Key=Value per line, keys case-insensitive, # starts a comment. Every
        key is optional: with no file at all, the tools read slurm.conf
        (SLURM_CONF or /etc/slurm/slurm.conf) for SlurmUser, the key path
        (AuthAltParameters=jwt_key=, else StateSaveLocation/jwt_hs256.key) and
        AuthAltTypes, and work on a standard cluster.""")
    out += para("""The file must be a regular file owned by root and not writable
        by group or others; otherwise every tool refuses it and says how to fix
        it. An unknown key is a warning naming the file and line, not an error.
        slurmjwt-helper re-reads the file, slurm.conf and the key on SIGHUP and
        keeps its previous configuration if the new one is invalid.""")
    out += [".SH OPTIONS"]
    for title, names in GROUPS:
        out += [f".SS {esc(title)}"]
        for name in names:
            opt = BY_KEY[name.lower()]
            out += [".TP", f".BI {name}= {esc(option_kind(opt))}",
                    esc(opt.help) + f" Default: {esc(option_default(opt))}."]
    out += [".SH KEYS"]
    out += para("""JwtKey names one of two kinds of key. A PEM RSA private key
        (slurmjwt keygen FILE) signs RS256: slurmctld checks such tokens against
        the public keys in its JWKS (AuthAltParameters=jwks=FILE; slurmjwt jwks
        prints one), picking the key by the token's kid, the RFC 7638 thumbprint of
        the public key. This is the recommended way to run: each login node has its
        own key, slurmctld holds public keys only, a node's key is revoked by
        dropping it from the JWKS, and a key is rotated without cutting off any
        token. Any other file is an HS256 key, the one key slurmctld shares
        (jwt_key=), used byte for byte.""")
    out += para("""The key file must be a regular file, not a symlink, owned by root
        or SlurmUser, mode 0600, in a directory others cannot write. An encrypted,
        malformed, public, non-RSA or smaller than 2048-bit key is refused with one
        line naming the file and the fix; on SIGHUP the helper then keeps signing
        with its last good key.""")
    out += [".SS Rotating an RS256 key"]
    out += rotation_roff()
    out += [".SS HS256"]
    out += para("""With HS256 there is one key: change it on the controller (jwt_key=,
        then scontrol reconfigure from Slurm 23.11 on, a restart before) and on every
        login node (JwtKey=, systemctl reload slurmjwt-helper). Every token in flight
        dies as soon as slurmctld has the new key; that cannot be avoided with one
        key. The caches follow the key: at their next command the shims, the
        wrappers and slurmjwt-refresh get a token of the new key.""")
    out += [".SH FILES", ".TP", ".B /etc/slurm/slurmjwt.conf", "this file",
            ".TP", ".B /usr/lib/slurmjwt/slurmjwt.conf.sample",
            "every key, commented out, with its default",
            ".TP", ".B /run/slurmjwt/key/id",
            "the id of the key the helper signs with (beside HelperSocket)"]
    out += [".SH EXAMPLES", ".nf", "# Short tokens, refreshed 10 minutes before they expire",
            "Lifespan=3600", "RefreshMargin=600", "# Sign RS256 with this login node's key",
            "JwtKey=/etc/slurm/slurmjwt\\-2026.pem", "DenyUsers=guest,backup", ".fi"]
    out += [".SH SEE ALSO", "slurmjwt(1), slurmjwt\\-refresh(1), slurmjwt\\-helper(8), "
            "pam_slurmjwt(8), slurm.conf(5)"]
    return "\n".join(out) + "\n"


def sample_conf() -> str:
    out = ["# /etc/slurm/slurmjwt.conf - pam-slurmjwt configuration (slurmjwt.conf(5)).",
           "# slurm.conf syntax: Key=Value, keys case-insensitive. Every key is optional;",
           "# the defaults (shown commented out) work on a standard cluster.",
           "# Must be owned by root and not writable by others. Reload: systemctl reload",
           "# slurmjwt-helper (SIGHUP)."]
    for title, names in GROUPS:
        out += ["", f"## {title}"]
        for name in names:
            opt = BY_KEY[name.lower()]
            words = opt.help.split()
            line, lines = "#", []
            for word in words:
                if len(line) + len(word) > 76:
                    lines.append(line)
                    line = "#"
                line += " " + word
            lines.append(line)
            default = option_default(opt) if opt.default not in (None, ()) else ""
            out += [*lines, f"#{name}={default}"]
    return "\n".join(out) + "\n"


def slurmjwt_page() -> str:
    parser = cli.build_parser()
    out = header("slurmjwt", 1, "User commands")
    out += [".SH SYNOPSIS", ".B slurmjwt", "[\\-c \\fICONFIG\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]",
            ".SH DESCRIPTION"]
    out += para("""slurmjwt shows and hands out the Slurm JSON Web Token that
        pam-slurmjwt keeps for you in your token cache, so that Slurm commands and
        slurmrestd accept you without munge. At login, pam_slurmjwt(8) puts a token
        in SLURM_JWT and the profile.d shims keep it fresh; slurmjwt is for looking
        at it, for scripts and REST clients, and for admins.""")
    out += [".SH OPTIONS", *argparse_options(parser)]
    out += [".SH COMMANDS"]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in sub._choices_actions}
    for name, subparser in sub.choices.items():
        out += [f".SS {name}", esc(helps.get(name) or "")]
        out += argparse_options(subparser)
    out += exit_status()
    out += [".SH ENVIRONMENT", ".TP", ".B SLURM_JWT",
            "the token Slurm commands use; read by decode and status, set by exec",
            ".TP", ".B SLURMJWT_CONF", "configuration file (default /etc/slurm/slurmjwt.conf)",
            ".TP", ".B SLURMJWT_CACHE_DIR", "token cache directory (default "
            "$XDG_RUNTIME_DIR/slurmjwt, else /run/slurmjwt/users/UID)"]
    out += [".SH FILES", ".TP", ".B $XDG_RUNTIME_DIR/slurmjwt/token",
            "your cached token (mode 0600, in a 0700 directory you own)",
            ".TP", ".B /run/slurmjwt/users/UID/token", "the same without XDG_RUNTIME_DIR"]
    out += [".SH EXAMPLES", ".nf", "slurmjwt status", "slurmjwt exec \\-\\- squeue \\-\\-me",
            "# REST, token on stdin, never on a command line:",
            "slurmjwt token \\-\\-header | curl \\-H @\\- http://ctl:6820/slurm/v0.0.40/jobs",
            "# admin, like scontrol token:", "slurmjwt mint username=alice lifespan=600",
            "# admin: a scraper's token, kept fresh for Prometheus (slurmjwt\\-tokenfile@.timer):",
            "slurmjwt tokenfile \\-\\-if\\-needed \\-\\-user prometheus \\-\\-output "
            "/run/slurmjwt\\-tokens/prometheus",
            "# admin: this login node's RS256 key, and its public half for slurmctld:",
            "slurmjwt keygen /etc/slurm/slurmjwt\\-2026.pem",
            "slurmjwt jwks /etc/slurm/slurmjwt\\-2026.pem > login1\\-2026.jwks",
            "# admin, for Ansible, Salt or monitoring: what to fix (exit 1 when a check fails):",
            "slurmjwt doctor \\-\\-json | jq \\-r '.checks[] | select(.status == \"fail\") | .fix'",
            ".fi"]
    out += [".SH SEE ALSO", "slurmjwt\\-refresh(1), slurmjwt.conf(5), slurmjwt\\-helper(8), "
            "pam_slurmjwt(8)"]
    return "\n".join(out) + "\n"


def refresh_page() -> str:
    out = header("slurmjwt-refresh", 1, "User commands")
    out += [".SH SYNOPSIS", ".B slurmjwt\\-refresh",
            "[\\-\\-if\\-needed] [\\-\\-lifespan \\fIN\\fR] [\\-\\-print\\-env "
            "\\fIsh\\fR|\\fIcsh\\fR|\\fIfish\\fR] [\\-q]", ".br",
            ".B slurmjwt\\-refresh \\-\\-store\\-stdin", ".SH DESCRIPTION"]
    out += para("""slurmjwt-refresh asks slurmjwt-helper(8) for a fresh token for the
        calling user (the helper knows who you are from the kernel) and stores it
        in your token cache with an atomic write. It never depends on the old token
        and ignores SLURM_JWT. The profile.d shims, the slurmjwt-refresh.timer user
        unit and pam_slurmjwt(8) run it; you rarely need to.""")
    out += [".SH OPTIONS"]
    usage_opts = [line for line in refresh.USAGE.splitlines() if line.startswith("  -")]
    block: list[str] = []
    for line in refresh.USAGE.splitlines():
        if line.startswith("  -"):
            if block:
                out += block
            name, _, text = line.strip().partition("  ")
            block = [".TP", f".B {esc(name)}", esc(text.strip())]
        elif line.startswith("      ") and block:
            block[-1] += " " + esc(line.strip())
        elif block:
            out += block
            block = []
    out += block
    assert usage_opts
    out += exit_status()
    out += [".SH EXAMPLES", ".nf", "eval \"$(slurmjwt\\-refresh \\-\\-print\\-env sh)\"",
            "slurmjwt\\-refresh \\-\\-lifespan 7200", ".fi",
            ".SH SEE ALSO", "slurmjwt(1), slurmjwt.conf(5), slurmjwt\\-helper(8)"]
    return "\n".join(out) + "\n"


def helper_page() -> str:
    out = header("slurmjwt-helper", 8, "System administration")
    out += [".SH SYNOPSIS", ".B slurmjwt\\-helper", "[\\fIOPTIONS\\fR]", ".SH DESCRIPTION"]
    out += para("""slurmjwt-helper holds the Slurm JWT signing key and mints tokens
        for local users over a unix socket (HelperSocket, default
        /run/slurmjwt/helper.sock). The key is root over the cluster: a token for
        root is accepted as root by slurmctld. So the helper identifies every
        caller by the kernel (SO_PEERCRED), never by what the caller sends: uid 0
        (pam_slurmjwt in sshd) may ask for any permitted user, everyone else gets
        a token for themselves only. Root, SlurmUser and uids below MinUid never
        get a token unless named in AllowPrivileged; DenyUsers, AllowGroups and
        DenyGroups (by gid) apply to everyone; names that are numbers are
        refused (slurmctld would take "0" as root).""")
    out += para("""Users and groups are looked up through NSS (files, sssd, LDAP) in
        a few threads, never on the event loop. A lookup that fails, or does not
        answer within LookupTimeout, is refused as internal (try again) and
        logged: never as "no such user", never as another identity.""")
    out += para("""Started as root it binds its socket, then drops to SlurmUser for
        good before it reads the key; it also takes a socket from systemd socket
        activation. It runs in the foreground, is not dumpable, reads each request
        line within ReadTimeout, bounds requests and answers in size and
        connections per uid and in total, and logs every grant and refusal as one
        AUTHPRIV syslog line with a token fingerprint, never the token.""")
    out += [".SH OPTIONS", *argparse_options(helper.build_parser())]
    out += [".SH SIGNALS", ".TP", ".B SIGHUP",
            "(to the main process; workers ignore it) re-read slurmjwt.conf, slurm.conf "
            "and the key once; if they are good, replace every worker with one serving "
            "them, then publish the new key's id in the directory key/ beside "
            "HelperSocket (caches of another key then count as stale); if not, change "
            "nothing and keep serving with the old configuration and key. Either way "
            "the verdict goes to key/reload\\-status, which \\fB\\-\\-reload\\fR "
            "waits for", ".TP", ".B SIGTERM, SIGINT",
            "stop: the workers finish the requests in flight (at most 10 s)"]
    out += exit_status()
    out += [".SH FILES", ".TP", ".B /etc/slurm/slurmjwt.conf", "configuration",
            ".TP", ".B /run/slurmjwt/helper.sock", "the socket",
            ".TP", ".B /usr/lib/systemd/system/slurmjwt\\-helper.socket", "socket activation"]
    out += [".SH EXAMPLES", ".nf", "systemctl enable \\-\\-now slurmjwt\\-helper.socket",
            "slurmjwt\\-helper \\-\\-check     # configuration and key only",
            "journalctl \\-t slurmjwt\\-helper", ".fi",
            ".SH SEE ALSO", "slurmjwt.conf(5), pam_slurmjwt(8), slurmjwt(1)"]
    return "\n".join(out) + "\n"


def pam_arguments() -> list[tuple[str, str]]:
    """Return (argument, description) pairs from pam_slurmjwt.c's header."""
    text = (REPO / "c" / "pam" / "pam_slurmjwt.c").read_text()
    comment = text.split("*/", 1)[0]
    lines = [line.strip()[1:].rstrip() if line.strip().startswith("*") else line
             for line in comment.splitlines()]
    args: list[tuple[str, str]] = []
    inside = False
    for line in lines:
        if line.rstrip().endswith("Arguments:"):
            inside = True
            continue
        if inside and line.strip().startswith("Unknown"):
            break
        if not inside or not line.strip():
            continue
        if line.startswith("   ") and not line.startswith("     " + " " * 10):
            name, _, desc = line.strip().partition(" ")
            args.append((name, desc.strip()))
        elif args:
            args[-1] = (args[-1][0], f"{args[-1][1]} {line.strip()}")
    return args


def pam_page() -> str:
    out = header("pam_slurmjwt", 8, "System administration")
    out += [".SH SYNOPSIS", ".B session optional pam_slurmjwt.so", "[\\fIARGUMENTS\\fR]",
            ".SH DESCRIPTION"]
    out += para("""pam_slurmjwt gives every login session a Slurm JSON Web Token. At
        session open it asks slurmjwt-helper(8) for a token for the PAM user, checks
        that the token is that user's, puts it into the PAM environment as SLURM_JWT
        (so even a non-interactive ssh host squeue has it) when the helper's Export
        policy says so, and puts the Slurm command wrappers (/usr/lib/slurmjwt/bin)
        in front of the session's PATH, so that every Slurm command the
        session ever starts fetches a live token. The application (sshd, su,
        login) sets its own PATH after the session opens and copies the PAM
        environment over it, so the module puts the wrappers in front of the
        PAM environment's PATH when there is one; when there is none and the
        PAM service is sshd, it sets the wrappers followed by sshd's own
        compiled-in PATH (sshd_path=), so that ssh host CMD has them too; for
        other services without one it makes none, the session keeps the
        application's PATH and login shells get the wrappers from the
        profile.d shim.
        It writes the user's token cache in a child process that has become the
        user for good; root never writes into the user's
        directories.""")
    out += para("""It fails open, always: helper down or hung, slurmctld down, key
        missing, bad arguments: the session opens without a token after at most
        timeout= milliseconds, with one AUTHPRIV syslog line saying why. It never
        writes to the user's terminal and never logs a token, only a fingerprint.
        Configuration comes from module arguments only, never from the
        environment.""")
    out += para("""Services: it belongs in the interactive stacks: sshd, login, su,
        su-l, sudo-i (common-session on Debian; RHEL's system-auth and
        password-auth). The services cron, crond, atd and sudo are skipped
        unless its line says noninteractive: users decide how often those open
        sessions, each a request on root's socket, and a sudoers rule that lets
        one user run a command as another would hand that command the other's
        token; their work gets tokens from slurmjwt exec and the wrappers. The
        service systemd-user gets nothing, whatever the arguments: the user
        manager would pass SLURM_JWT on to every user service for hours, long
        after it expired. Root and uids below minuid= are skipped before the
        helper is asked: su to root, sudo -i and root's cron jobs cost nothing
        and log nothing.""")
    out += [".SH ARGUMENTS"]
    for name, desc in pam_arguments():
        out += [".TP", f".B {esc(name)}", esc(desc)]
    out += [".SH EXAMPLES", "In /etc/pam.d/sshd, after @include common-session "
            "(Debian, Ubuntu) or after the session lines of password-auth (RHEL):",
            ".nf", "@include slurmjwt", ".fi", "where /etc/pam.d/slurmjwt holds:", ".nf",
            "session optional pam_slurmjwt.so", ".fi",
            ".SH FILES", ".TP", ".B /etc/pam.d/slurmjwt", "the snippet",
            ".TP", ".B /run/slurmjwt/root.sock", "the helper's socket for root (logins)",
            ".TP", ".B /usr/lib/slurmjwt/bin", "the Slurm command wrappers",
            ".SH SEE ALSO", "slurmjwt\\-helper(8), slurmjwt.conf(5), slurmjwt(1), pam(8)"]
    return "\n".join(out) + "\n"


def readme_reference() -> str:
    """The README's configuration reference, from the same table."""
    out = []
    for title, names in GROUPS:
        out += [f"**{title}**", "", "| key | default | meaning |", "| --- | --- | --- |"]
        for name in names:
            opt = BY_KEY[name.lower()]
            kind = option_kind(opt).replace("|", "\\|")
            out.append(f"| `{name}={kind}` | `{option_default(opt)}` | {opt.help} |")
        out.append("")
    return "\n".join(out)


def main() -> int:
    if sys.argv[1:] == ["--readme"]:
        sys.stdout.write(readme_reference())
        return 0
    if sys.argv[1:] == ["--readme-rotation"]:
        sys.stdout.write(rotation_markdown())
        return 0
    outdir = Path(sys.argv[1] if len(sys.argv) > 1 else "build/man")
    outdir.mkdir(parents=True, exist_ok=True)
    pages = {"slurmjwt.1": slurmjwt_page(), "slurmjwt-refresh.1": refresh_page(),
             "slurmjwt.conf.5": conf_page(), "slurmjwt-helper.8": helper_page(),
             "pam_slurmjwt.8": pam_page(), "slurmjwt.conf.sample": sample_conf()}
    for name, text in pages.items():
        (outdir / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
