"""python -m tests.demo up|keys|down|status [--release CODENAME]: the demo cluster.

`up` builds and starts a directory, a controller and a login node in
containers and shows, over ssh, a demo user working with the token; `keys`
starts the same cluster and shows the key layout (a key per login node, the
controller's JWKS, a key switch, one node revoked; tests/demo/keyring.py);
`down` removes it all (the cached images stay). Exit status: 0 ok, 1 a step
failed, 2 usage.
"""

from __future__ import annotations

import argparse
import sys

from tests.demo import keyring, run
from tests.demo.cluster import DEMO_USER
from tests.demo.errors import DemoError
from tests.demo.releases import DEFAULT, RELEASES, release


def say(line: str) -> None:
    print(f"demo: {line}", flush=True)


def cmd_up(args: argparse.Namespace) -> int:
    shown = run.up(release(args.release), say)
    rel = shown.release
    built = f" built from {rel.source.tarball}" if rel.source else ""
    print(f"\nDebian {rel.debian}, Slurm {rel.slurm}{built}. On the login node, as {DEMO_USER} "
          "(each command is one ssh login; SLURM_JWT comes from the PAM hook):\n")
    print(shown.transcript.render())
    print()
    laps = ", ".join(f"{name} {secs:.0f} s" for name, secs in shown.timings.items())
    say(f"done in {sum(shown.timings.values()):.0f} s ({laps})")
    if not shown.transcript.ok:
        failed = [s.key for s in shown.transcript.steps if not s.as_expected]
        say(f"these steps did not go as expected: {', '.join(failed)}")
    print(f"\nlog in yourself: {shown.login_command()}")
    print("remove it all:   make demo-down")
    return 0 if shown.transcript.ok else 1


def cmd_keys(args: argparse.Namespace) -> int:
    rel = release(args.release)
    running = keyring.bring_up(rel, say)
    print(f"\nDebian {rel.codename}, Slurm {rel.slurm}: one key per login node\n", flush=True)
    keyring.scenario(running, rel, print)
    print("\nremove it all:   make demo-down")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    drop = [release(args.release)] if args.images and args.release else (
        list(RELEASES.values()) if args.images else [])
    run.down(args.release, say, drop)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    print(run.status(args.release))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.demo",
                                     description="The container demo of pam-slurmjwt.")
    sub = parser.add_subparsers(dest="command", metavar="up|keys|down|status", required=True)
    up = sub.add_parser("up", help="build, start and show the demo")
    up.add_argument("--release", default=DEFAULT, choices=sorted(RELEASES),
                    help=f"Debian release or slurm-X.Y built from source, i.e. Slurm version "
                         f"(default {DEFAULT})")
    up.set_defaults(func=cmd_up)
    keys = sub.add_parser("keys", help="start the cluster and show a key per login node, "
                                       "rotation and revocation")
    keys.add_argument("--release", default=DEFAULT, choices=sorted(RELEASES),
                      help=f"Debian release, i.e. Slurm version (default {DEFAULT})")
    keys.set_defaults(func=cmd_keys)
    down = sub.add_parser("down", help="remove containers, network and volume")
    down.add_argument("--release", choices=sorted(RELEASES), help="only this release's demo")
    down.add_argument("--images", action="store_true", help="remove the cached images too")
    down.set_defaults(func=cmd_down)
    status = sub.add_parser("status", help="show what of the demo exists")
    status.add_argument("--release", choices=sorted(RELEASES))
    status.set_defaults(func=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except DemoError as err:
        print(f"demo: {err}", file=sys.stderr)
        print("demo: inspect with `docker ps -a`; remove everything with `make demo-down`",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
