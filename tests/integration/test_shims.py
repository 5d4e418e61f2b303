"""The profile.d shims in real shells: what they export, when they refresh,
what they refuse, and that they stay silent, fork-free and tidy.

Shells run as alice (setpriv) with a controlled environment; a fake
slurmjwt-refresh (SLURMJWT_REFRESH) writes the cache in format 2 with the
key id it finds in SLURMJWT_KEY_DIR and logs its arguments, so each test
knows whether and how the refresh was called.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.fixtures.install import install_shims, shims
from tests.integration.fixtures.users import TestUser

REPO = Path(__file__).resolve().parents[2]

SH_SHELLS = ("dash", "bash", "zsh", "ksh")
ALL_SHELLS = (*SH_SHELLS, "tcsh")
ARGV = {
    "dash": ["dash"],
    "bash": ["bash", "--noprofile", "--norc"],
    "zsh": ["zsh", "-f"],
    "ksh": ["ksh"],
    "tcsh": ["tcsh", "-f"],
}
# Shaped like slurmctld's: HS256 signatures are 43 base64url characters.
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdW4iOiJhbGljZSJ9.c2lnbmF0dXJlLW9mLWFsaWNlcy10b2tlbi1udW1iZXI"
TOKEN2 = "eyJhbGciOiJIUzI1NiJ9.eyJzdW4iOiJhbGljZTIifQ.YW5vdGhlci1zaWduYXR1cmUtb2YtYWxpY2VzLXRva2V"
PAM_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJwYW0iOjF9.cGFtc2ln"
FAIL_MSG = "slurmjwt-refresh: cannot reach slurmjwt-helper at /run/slurmjwt/helper.sock"

FAKE_REFRESH = r"""#!/bin/sh
# Stand-in for slurmjwt-refresh: logs its arguments, writes cache format 2.
printf '%s\n' "$*" >>"$FAKE_LOG"
dir=$SLURMJWT_CACHE_DIR
write() {  # token export lifetime margin
    read -r up _ </proc/uptime; up=${up%.*}
    read -r bid </proc/sys/kernel/random/boot_id
    read -r kid <"$SLURMJWT_KEY_DIR/id"
    now=$(date +%s)
    printf 'slurmjwt2 %s %s %s %s %s %s %s end\n' "$bid" $((up + $3 - $4)) $((up + $3 - 5)) \
        $((now + $3)) "$2" "$kid" "$1" >"$dir/.t"
    printf 'set _slurmjwt_c=(slurmjwt2 %s %s %s %s %s %s %s end)\n' "$bid" $((up + $3 - $4)) \
        $((up + $3 - 5)) $((now + $3)) "$2" "$kid" "$1" >"$dir/.tc"
    : >>"$dir/.clock"
    chmod 600 "$dir/.t" "$dir/.tc" "$dir/.clock"
    mv -f "$dir/.t" "$dir/token"
    mv -f "$dir/.tc" "$dir/token.csh"
}
if [ "$1" = --store-stdin ]; then
    read -r tok
    printf 'stdin:%s\n' "$tok" >>"$FAKE_LOG"
    if [ "${FAKE_STORE:-reject}" = accept ]; then write "$tok" 1 1800 300; exit 0; fi
    echo "slurmjwt-refresh: token on stdin has expired" >&2
    exit 1
fi
case ${FAKE_MODE:-works} in
works) write "$FAKE_TOKEN" "${FAKE_EXPORT:-1}" 1800 300 ;;
fail) echo "$FAKE_MSG" >&2; exit 4 ;;
hang) sleep 3; echo "slurmjwt-refresh: helper timed out" >&2; exit 4 ;;
garbage)
    echo 'SLURM_JWT=evil.evil.evil; export SLURM_JWT; echo pwned'
    echo 'garbage on stderr' >&2
    printf 'slurmjwt2 garbage\n' >"$dir/token"
    printf 'set _slurmjwt_c=(slurmjwt2 garbage)\n' >"$dir/token.csh"
    ;;
denied) echo "slurmjwt-refresh: denied: uid 1001 is not allowed" >&2; exit 5 ;;
unsafe) echo "slurmjwt-refresh: cache unsafe: mode 0777" >&2; exit 6 ;;
esac
"""


@dataclass
class Env:
    """One test's world: a cache dir owned by the user and a fake refresh."""

    base: Path
    cache: Path
    user: TestUser
    log: Path
    keys: Path  # where "the helper" publishes its key id (root's, 0755)
    extra: dict[str, str] = field(default_factory=dict)

    def environ(self, **over: str | None) -> dict[str, str]:
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": self.user.home,
            "LANG": "C",
            "SLURMJWT_CACHE_DIR": str(self.cache),
            "SLURMJWT_KEY_DIR": str(self.keys),
            "SLURMJWT_REFRESH": str(self.base / "fake-refresh"),
            "FAKE_LOG": str(self.log),
            "FAKE_TOKEN": TOKEN,
            "FAKE_MSG": FAIL_MSG,
            **self.extra,
        }
        for k, v in over.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        return env

    def calls(self) -> list[str]:
        if not self.log.exists():
            return []
        return self.log.read_text().splitlines()

    def publish(self, kid: str) -> None:
        """Publish kid as the helper does: id and id.csh, root's, 0644."""
        for name, text in (("id", f"{kid}\n"), ("id.csh", f"set _slurmjwt_kid={kid}\n")):
            tmp = self.keys / f".{name}"
            tmp.write_text(text)
            tmp.chmod(0o644)
            tmp.rename(self.keys / name)


def uptime() -> int:
    return int(float(Path("/proc/uptime").read_text().split()[0]))


def boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


KEY = "key-A_1"  # the key id the shim_env's "helper" publishes
KEY2 = "key-B_2"


def write_cache(
    env: Env,
    token: str = TOKEN,
    *,
    life: int = 1800,
    margin: int = 300,
    export: int = 1,
    kid: str = KEY,
    boot: str | None = None,
    line: str | None = None,
    csh_line: str | None = None,
    owner: TestUser | None = None,
) -> None:
    """Write token, token.csh and .clock as slurmjwt-refresh would (format 2).

    life: seconds until exp; margin: refresh margin. The csh view is exactly
    the same instant: refresh at exp - margin, expire at exp - 5.
    """
    up, now = uptime(), int(time.time())
    fields = (f"slurmjwt2 {boot or boot_id()} {up + life - margin} {up + life - 5} "
              f"{now + life} {export} {kid} {token} end")
    files = {
        "token": line if line is not None else fields + "\n",
        "token.csh": csh_line if csh_line is not None else f"set _slurmjwt_c=({fields})\n",
        ".clock": "",
    }
    who = owner or env.user
    for name, text in files.items():
        p = env.cache / name
        if p.is_symlink() or p.exists():
            p.unlink()
        p.write_text(text)
        os.chmod(p, 0o600)
        os.chown(p, who.uid, who.gid)


def run(
    env: Env,
    shell: str,
    script: str,
    *,
    interactive: bool = False,
    user: TestUser | None = None,
    timeout: float = 30,
    prefix: list[str] | None = None,
    over: dict[str, str | None] | None = None,
    **more: str | None,
) -> subprocess.CompletedProcess[str]:
    """Run script in shell as the env's user (interactive: on stdin, with -i)."""
    who = user or env.user
    argv = [
        *(prefix or []),
        "setpriv", f"--reuid={who.uid}", f"--regid={who.gid}", "--clear-groups", "--",
        "env", "-i", *(f"{k}={v}" for k, v in env.environ(**(over or {}), **more).items()),
        *ARGV[shell],
    ]
    if interactive:
        argv.append("-i")
        stdin = script + "\nexit\n"
    else:
        argv += ["-c", script]
        stdin = ""
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=timeout,
        cwd=str(env.base), check=False,
    )


def source(shell: str) -> str:
    sh, csh = shims()
    return f"source {csh}" if shell == "tcsh" else f". {sh}"


def show_jwt(shell: str) -> str:
    """A command printing SLURM_JWT or <unset> on stdout."""
    if shell == "tcsh":
        return "printenv SLURM_JWT || echo '<unset>'"
    return "printf '%s\\n' \"${SLURM_JWT-<unset>}\""


def jwt_after_source(env: Env, shell: str, **over: str | None) -> tuple[str, str]:
    """Source the shim, return (SLURM_JWT or <unset>, stderr)."""
    r = run(env, shell, f"{source(shell)}; {show_jwt(shell)}", over=over)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip(), r.stderr


@pytest.fixture
def shim_env(test_users: dict[str, TestUser]) -> Iterator[Env]:
    alice = test_users["alice"]
    # Not pytest's tmp_path: its root is 0700 and any concurrent pytest run
    # resets that mode, which would lock alice out mid-test.
    base = Path(tempfile.mkdtemp(prefix="slurmjwt-shim-"))
    os.chmod(base, 0o755)
    cache = base / "cache"
    cache.mkdir(mode=0o700)
    os.chown(cache, alice.uid, alice.gid)
    fake = base / "fake-refresh"
    fake.write_text(FAKE_REFRESH)
    os.chmod(fake, 0o755)
    log = base / "log"
    log.touch()
    os.chown(log, alice.uid, alice.gid)
    log.unlink()  # absent means "never called"
    logdir = base / "logs"
    logdir.mkdir()
    os.chown(logdir, alice.uid, alice.gid)
    keys = base / "key"
    keys.mkdir(mode=0o755)
    env = Env(base=base, cache=cache, user=alice, log=logdir / "calls", keys=keys)
    env.publish(KEY)
    yield env
    shutil.rmtree(base, ignore_errors=True)


# --- the warm path ---------------------------------------------------------

@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_warm_cache_exports_the_cache_token_without_calling_refresh(shim_env: Env, shell: str
                                                                   ) -> None:
    write_cache(shim_env)
    jwt, err = jwt_after_source(shim_env, shell)
    assert jwt == TOKEN
    assert err == ""
    assert shim_env.calls() == []


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_warm_cache_replaces_an_inherited_token(shim_env: Env, shell: str) -> None:
    write_cache(shim_env)
    jwt, _ = jwt_after_source(shim_env, shell, SLURM_JWT=PAM_TOKEN)
    assert jwt == TOKEN
    assert shim_env.calls() == []


def _events(trace: Path, shell: str) -> list[str]:
    """The shell's own execve and every fork/exec after it (strace also saw
    setpriv and env start)."""
    events = [ln for ln in trace.read_text().splitlines()
              if re.search(r"\b(execve|clone3?|v?fork)\(", ln)]
    start = max(i for i, ln in enumerate(events) if f'execve("/usr/bin/{shell}"' in ln)
    return events[start:]


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_warm_cache_neither_forks_nor_execs(shim_env: Env, shell: str) -> None:
    """Compare against the same shell running an empty script: tcsh forks
    once at start-up on its own; the shim must add nothing."""
    write_cache(shim_env)
    counts: list[list[str]] = []
    for script in (source(shell), "source /dev/null" if shell == "tcsh" else ":"):
        trace = shim_env.base / "logs" / f"strace.{len(counts)}"
        r = run(shim_env, shell, script, prefix=[
            "strace", "-f", "-e", "trace=execve,clone,clone3,fork,vfork", "-o", str(trace)])
        assert r.returncode == 0, r.stderr
        counts.append(_events(trace, shell))
    with_shim, without = counts
    assert len(with_shim) == len(without), "\n".join(with_shim)
    assert sum("execve(" in e for e in with_shim) == 1
    if shell != "tcsh":
        assert len(with_shim) == 1


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_warm_cache_in_a_script_never_reads_the_full_logic(shim_env: Env, shell: str) -> None:
    """The fast path in profile.d exports on its own: shims whose library
    only says it was read still export, silently, when not interactive; an
    interactive shell does read it."""
    write_cache(shim_env)
    lib = shim_env.base / "lib"
    (lib / "profile.d").mkdir(mode=0o755, parents=True)
    for name in ("slurmjwt.sh", "slurmjwt.csh"):
        (lib / "profile.d" / name).write_text("echo LIBRARY-READ >&2\n" if name.endswith(".sh")
                                              else "sh -c 'echo LIBRARY-READ >&2'\n")
        (lib / "profile.d" / name).chmod(0o644)
    sh, csh = install_shims(shim_env.base, lib)
    src = f"source {csh}" if shell == "tcsh" else f". {sh}"
    r = run(shim_env, shell, f"{src}; {show_jwt(shell)}")
    assert (r.stdout.strip(), r.stderr, r.returncode) == (TOKEN, "", 0)
    assert shim_env.calls() == []
    r = run(shim_env, shell, f"{src}\n", interactive=True)
    assert "LIBRARY-READ" in r.stderr


# --- cold and broken caches --------------------------------------------------

@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_missing_cache_calls_refresh_once_and_exports(shim_env: Env, shell: str) -> None:
    jwt, err = jwt_after_source(shim_env, shell)
    assert jwt == TOKEN
    assert err == ""
    assert shim_env.calls() == ["--if-needed"]


_FAR = "99999999 99999999 2999999999"  # refresh_up, expire_up, exp: far ahead
_B = boot_id()
BROKEN_SH = {
    "expired": {"life": -10},
    "wrong_boot_id": {"boot": "00000000-0000-0000-0000-000000000000"},
    "another_key": {"kid": KEY2},
    "format_1": {"line": f"slurmjwt1 {_B} {_FAR} 1 {TOKEN}\n"},
    # Cut inside the signature, without `end` or the newline (a torn write).
    "truncated": {"line": f"slurmjwt2 {_B} {_FAR} 1 {KEY} {TOKEN[:-7]}"},
    "no_end": {"line": f"slurmjwt2 {_B} {_FAR} 1 {KEY} {TOKEN}\n"},
    "missing_field": {"line": f"slurmjwt2 {_B} 99999999 2999999999 1 {KEY} {TOKEN} end\n"},
    "extra_field": {"line": f"slurmjwt2 {_B} {_FAR} 1 {KEY} {TOKEN} end x\n"},
    "bad_token_chars": {"line": f"slurmjwt2 {_B} {_FAR} 1 {KEY} a$(id).b.c end\n"},
    "bad_kid_chars": {"line": f"slurmjwt2 {_B} {_FAR} 1 k$(id>&2) {TOKEN} end\n"},
    "three_dots": {"line": f"slurmjwt2 {_B} {_FAR} 1 {KEY} a.b.c.d end\n"},
    "arith_injection": {"line": f"slurmjwt2 {_B} x[$(id>&2)] 9 2999999999 1 {KEY} {TOKEN} end\n"},
    "long_number": {"line": f"slurmjwt2 {_B} 99999999 9999999999999 2999999999 1 {KEY} {TOKEN} "
                            f"end\n"},
    "non_ascii_token": {"line": f"slurmjwt2 {_B} {_FAR} 1 {KEY} {TOKEN[:30]}\u00e9{TOKEN[31:]} "
                                f"end\n"},
    "tab_in_line": {"line": f"slurmjwt2 {_B} {_FAR} 1 {KEY}\t{TOKEN} end\n"},
    "empty": {"line": ""},
}
BROKEN_CSH = {
    "expired": {"life": -10},
    "another_key": {"kid": KEY2},
    "format_1": {"csh_line": f"set _slurmjwt_c=(slurmjwt1 b 1 2 2999999999 1 {TOKEN})\n"},
    "no_end": {"csh_line": f"set _slurmjwt_c=(slurmjwt2 b 1 2 2999999999 1 {KEY} {TOKEN})\n"},
    "missing_field": {"csh_line": f"set _slurmjwt_c=(slurmjwt2 b 1 2999999999 1 {KEY} {TOKEN} "
                                  f"end)\n"},
    "bad_token_chars": {"csh_line": f"set _slurmjwt_c=(slurmjwt2 b 1 2 2999999999 1 {KEY} "
                                    f"a:b.c.d end)\n"},
    "bad_number": {"csh_line": f"set _slurmjwt_c=(slurmjwt2 b 1x 2 2999999999 1 {KEY} {TOKEN} "
                               f"end)\n"},
    "empty": {"csh_line": ""},
}
BROKEN = [(s, k) for s in SH_SHELLS for k in BROKEN_SH] + [("tcsh", k) for k in BROKEN_CSH]


@pytest.mark.parametrize(("shell", "kind"), BROKEN)
def test_unusable_cache_is_treated_as_empty(shim_env: Env, shell: str, kind: str) -> None:
    spec = BROKEN_CSH[kind] if shell == "tcsh" else BROKEN_SH[kind]
    write_cache(shim_env, **spec)  # type: ignore[arg-type]
    jwt, err = jwt_after_source(shim_env, shell, FAKE_MODE="fail", SLURM_JWT=TOKEN)
    assert jwt == "<unset>"
    assert err == ""  # not interactive: silent, and no injected `id` ran
    # The inherited token is offered to --store-stdin (which refuses it here)
    # unless it is the very token the unusable cache holds.
    assert shim_env.calls()[0] == "--if-needed"


def test_zsh_fast_path_never_expands_the_cache_as_patterns(shim_env: Env) -> None:
    """GLOB_SUBST in the user's zsh must not turn the cache line into glob
    qualifiers that run code (e:...:) before any check."""
    marker = shim_env.base / "logs" / "ran"
    sig = "A" * 43
    hostile = f"/*(e:touch\\ {marker}:)"
    write_cache(shim_env, line=f"slurmjwt2 {boot_id()} {_FAR} 1 {KEY} a.b.{sig} end {hostile}\n")
    r = run(shim_env, "zsh", f"setopt globsubst; {source('zsh')}; {show_jwt('zsh')}",
            FAKE_MODE="fail", LANG="C.UTF-8")
    assert r.returncode == 0, r.stderr
    assert not marker.exists()
    assert r.stdout.strip() == "<unset>"


@pytest.mark.parametrize(("shell", "kind"), BROKEN)
def test_unusable_cache_is_replaced_by_a_refresh(shim_env: Env, shell: str, kind: str) -> None:
    spec = BROKEN_CSH[kind] if shell == "tcsh" else BROKEN_SH[kind]
    write_cache(shim_env, **spec)  # type: ignore[arg-type]
    jwt, _ = jwt_after_source(shim_env, shell)
    assert jwt == TOKEN


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_token_inside_margin_is_refreshed(shim_env: Env, shell: str) -> None:
    write_cache(shim_env, TOKEN2, life=200, margin=300)
    jwt, _ = jwt_after_source(shim_env, shell)
    assert jwt == TOKEN
    assert shim_env.calls() == ["--if-needed"]


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_token_inside_margin_is_kept_when_refresh_fails(shim_env: Env, shell: str) -> None:
    write_cache(shim_env, TOKEN2, life=200, margin=300)
    jwt, err = jwt_after_source(shim_env, shell, FAKE_MODE="fail")
    assert jwt == TOKEN2
    assert err == ""


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_refresh_reporting_an_unsafe_cache_makes_the_shim_distrust_it(shim_env: Env, shell: str
                                                                      ) -> None:
    write_cache(shim_env, TOKEN2, life=200, margin=300)
    jwt, _ = jwt_after_source(shim_env, shell, FAKE_MODE="unsafe", SLURM_JWT=TOKEN2)
    assert jwt == "<unset>"


# --- refresh failures ------------------------------------------------------------

@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_failed_refresh_unsets_and_is_silent_when_not_interactive(shim_env: Env, shell: str
                                                                  ) -> None:
    r = run(shim_env, shell, source(shell), FAKE_MODE="fail", SLURM_JWT="")
    assert (r.stdout, r.stderr, r.returncode) == ("", "", 0)
    jwt, _ = jwt_after_source(shim_env, shell, FAKE_MODE="fail", SLURM_JWT="")
    assert jwt == "<unset>"


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_failed_refresh_says_why_once_on_stderr_when_interactive(shim_env: Env, shell: str
                                                                 ) -> None:
    script = f"{source(shell)}\n{show_jwt(shell)}\n"
    r = run(shim_env, shell, script, interactive=True, FAKE_MODE="fail")
    said = [ln for ln in r.stderr.splitlines() if "slurmjwt:" in ln]
    assert len(said) == 1, r.stderr
    assert said[0].endswith(f"slurmjwt: SLURM_JWT not set: {FAIL_MSG}")
    assert "slurmjwt" not in r.stdout
    assert "<unset>" in r.stdout


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_hanging_refresh_does_not_hang_the_shell(shim_env: Env, shell: str) -> None:
    start = time.monotonic()
    jwt, _ = jwt_after_source(shim_env, shell, FAKE_MODE="hang")
    assert time.monotonic() - start < 10
    assert jwt == "<unset>"


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_garbage_from_refresh_is_never_evaluated_or_exported(shim_env: Env, shell: str) -> None:
    r = run(shim_env, shell, source(shell), FAKE_MODE="garbage")
    assert r.stdout == ""
    jwt, _ = jwt_after_source(shim_env, shell, FAKE_MODE="garbage")
    assert jwt == "<unset>"


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_denied_user_environment_is_left_alone_silently(shim_env: Env, shell: str) -> None:
    r = run(shim_env, shell, f"{source(shell)}\n{show_jwt(shell)}\n", interactive=True,
            FAKE_MODE="denied", SLURM_JWT=PAM_TOKEN)
    assert PAM_TOKEN in r.stdout
    assert "slurmjwt:" not in r.stderr
    assert shim_env.calls() == ["--if-needed"]


# --- a token from PAM ---------------------------------------------------------------

@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_inherited_token_is_kept_only_once_store_stdin_accepts_it(shim_env: Env, shell: str
                                                                  ) -> None:
    jwt, _ = jwt_after_source(shim_env, shell, FAKE_MODE="fail", FAKE_STORE="accept",
                              SLURM_JWT=PAM_TOKEN)
    assert jwt == PAM_TOKEN
    # Refresh first; the token travels on stdin, never in argv.
    assert shim_env.calls() == ["--if-needed", "--store-stdin", f"stdin:{PAM_TOKEN}"]


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_inherited_token_refused_by_store_stdin_is_unset(shim_env: Env, shell: str) -> None:
    jwt, _ = jwt_after_source(shim_env, shell, FAKE_MODE="fail", FAKE_STORE="reject",
                              SLURM_JWT=PAM_TOKEN)
    assert jwt == "<unset>"
    assert shim_env.calls()[:2] == ["--if-needed", "--store-stdin"]


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_malformed_inherited_token_is_never_offered_and_is_unset(shim_env: Env, shell: str
                                                                 ) -> None:
    jwt, _ = jwt_after_source(shim_env, shell, FAKE_MODE="fail", FAKE_STORE="accept",
                              SLURM_JWT="not a token")
    assert jwt == "<unset>"
    assert shim_env.calls() == ["--if-needed"]


# --- export policy -----------------------------------------------------------------

@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_export_0_does_not_set_slurm_jwt(shim_env: Env, shell: str) -> None:
    write_cache(shim_env, export=0)
    assert jwt_after_source(shim_env, shell)[0] == "<unset>"


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_export_0_unsets_the_cache_token_but_not_the_users_own(shim_env: Env, shell: str
                                                               ) -> None:
    write_cache(shim_env, export=0)
    assert jwt_after_source(shim_env, shell, SLURM_JWT=TOKEN)[0] == "<unset>"
    assert jwt_after_source(shim_env, shell, SLURM_JWT="")[0] == "<unset>"
    assert jwt_after_source(shim_env, shell, SLURM_JWT=PAM_TOKEN)[0] == PAM_TOKEN


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_export_0_from_refresh_does_not_set_slurm_jwt(shim_env: Env, shell: str) -> None:
    assert jwt_after_source(shim_env, shell, FAKE_EXPORT="0")[0] == "<unset>"
    assert (shim_env.cache / "token").exists()


# --- hostile caches ---------------------------------------------------------------------

def _hostile(env: Env, kind: str, users: dict[str, TestUser]) -> None:
    bob = users["bob"]
    if kind == "symlinked_token":
        write_cache(env)
        real = env.base / "elsewhere"
        for name in ("token", "token.csh"):
            (env.cache / name).rename(real.with_suffix("." + name.replace(".", "_")))
            os.symlink(real.with_suffix("." + name.replace(".", "_")), env.cache / name)
    elif kind == "token_owned_by_bob":
        write_cache(env, owner=bob)
    elif kind == "token_owned_by_root":
        write_cache(env, owner=TestUser("root", 0, 0, "/root"))
    elif kind == "dir_owned_by_bob_0777":
        write_cache(env)
        os.chown(env.cache, bob.uid, bob.gid)
        os.chmod(env.cache, 0o777)
    elif kind == "dir_is_symlink":
        write_cache(env)
        real = env.base / "realcache"
        env.cache.rename(real)
        os.symlink(real, env.cache)
    else:
        raise AssertionError(kind)


HOSTILE = ("symlinked_token", "token_owned_by_bob", "token_owned_by_root",
           "dir_owned_by_bob_0777", "dir_is_symlink")


@pytest.mark.parametrize("kind", HOSTILE)
@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_hostile_cache_is_never_exported(shim_env: Env, shell: str, kind: str,
                                         test_users: dict[str, TestUser]) -> None:
    _hostile(shim_env, kind, test_users)
    jwt, _ = jwt_after_source(shim_env, shell, FAKE_MODE="fail", SLURM_JWT=TOKEN)
    assert jwt == "<unset>"


@pytest.mark.parametrize("mode", [0o777, 0o755, 0o770])
def test_csh_refuses_a_cache_dir_with_group_or_other_bits(shim_env: Env, mode: int) -> None:
    """tcsh can read mode bits (-P); the POSIX shims cannot and rely on
    slurmjwt-refresh's exit 6 (tested above)."""
    write_cache(shim_env)
    os.chmod(shim_env.cache, mode)
    jwt, _ = jwt_after_source(shim_env, "tcsh", FAKE_MODE="fail")
    assert jwt == "<unset>"


# --- switches --------------------------------------------------------------------------

@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_user_switch_disables_everything(shim_env: Env, shell: str) -> None:
    write_cache(shim_env)
    jwt, err = jwt_after_source(shim_env, shell, SLURMJWT_DISABLE="1", SLURM_JWT=PAM_TOKEN)
    assert (jwt, err) == (PAM_TOKEN, "")
    shutil.rmtree(shim_env.cache)
    jwt, err = jwt_after_source(shim_env, shell, SLURMJWT_DISABLE="1")
    assert (jwt, err) == ("<unset>", "")
    assert shim_env.calls() == []


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_admin_switch_disables_everything(shim_env: Env, shell: str) -> None:
    """/etc/slurm/slurmjwt.disable, in a private mount namespace so the host's
    /etc/slurm is never touched."""
    if not Path("/etc/slurm").is_dir() or shutil.which("unshare") is None:
        pytest.skip("needs /etc/slurm and unshare(1)")
    write_cache(shim_env)
    setup = ("mount -t tmpfs none /etc/slurm && : >/etc/slurm/slurmjwt.disable && "
             'exec "$@"')
    r = run(shim_env, shell, f"{source(shell)}; {show_jwt(shell)}",
            prefix=["unshare", "-m", "sh", "-c", setup, "sh"], SLURM_JWT=PAM_TOKEN)
    assert (r.stdout.strip(), r.stderr) == (PAM_TOKEN, "")
    assert shim_env.calls() == []


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_root_shells_are_left_alone(shim_env: Env, shell: str) -> None:
    write_cache(shim_env)
    root = TestUser("root", 0, 0, "/root")
    r = run(shim_env, shell, f"{source(shell)}; {show_jwt(shell)}", user=root)
    assert r.stdout.strip() == "<unset>"
    assert shim_env.calls() == []


# --- shell hygiene --------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["works", "fail", "garbage", "hang", "warm"])
@pytest.mark.parametrize("shell", SH_SHELLS)
def test_set_eu_before_sourcing_does_not_abort_the_shell(shim_env: Env, shell: str, mode: str
                                                         ) -> None:
    if mode == "warm":
        write_cache(shim_env)
    r = run(shim_env, shell, f"set -eu; {source(shell)}; echo survived",
            FAKE_MODE="works" if mode == "warm" else mode)
    assert (r.stdout, r.returncode) == ("survived\n", 0), r.stderr


@pytest.mark.parametrize("mode", ["works", "fail", "garbage", "warm"])
@pytest.mark.parametrize("shell", ALL_SHELLS)
@pytest.mark.parametrize("interactive", [False, True])
def test_nothing_ever_reaches_stdout(shim_env: Env, shell: str, mode: str, interactive: bool
                                     ) -> None:
    if mode == "warm":
        write_cache(shim_env)
    r = run(shim_env, shell, source(shell), interactive=interactive,
            FAKE_MODE="works" if mode == "warm" else mode)
    out = r.stdout
    if interactive and shell == "tcsh":
        # tcsh's own no-tty warning and prompts go to stdout; the shim adds nothing.
        out = re.sub(r"Warning: no access to tty.*\nThus no job control in this shell.\n", "",
                     out)
        out = out.replace("> ", "").replace("exit\n", "")
    assert out == ""


_DUMP_SH = {
    # Variables and functions, minus what changes by itself between two dumps.
    "dash": "set; echo ==; alias",
    "bash": "set; declare -F",
    "zsh": "typeset +; typeset +f",
    "ksh": "set; typeset +f",
}
# _AST_FEATURES: ksh93 sets it itself when a dump runs (`set; typeset +f`).
_VOLATILE = re.compile(r"^(_|_AST_FEATURES|RANDOM|SECONDS|LINENO|BASH_.*|PIPESTATUS|EPOCH.*|"
                       r"SRANDOM|"
                       r"\.sh\..*|COLUMNS|LINES|status|pipestatus|ERRNO|TTYIDLE|zsh_eval_context|"
                       r"funcfiletrace|funcsourcetrace|funcstack|functrace|argv|[0-9]+)$")


def _names(dump: str) -> set[str]:
    names = set()
    for line in dump.splitlines():
        m = re.match(r"^(?:declare -f |integer |array |association |export |readonly |local |"
                     r"tied |special |undefined |float |hashed )*([A-Za-z_.][A-Za-z0-9_.]*)", line)
        if m and not _VOLATILE.match(m.group(1)):
            names.add(m.group(1))
    return names


@pytest.mark.parametrize("mode", ["works", "fail", "warm"])
@pytest.mark.parametrize("shell", SH_SHELLS)
def test_no_leftover_names_in_non_interactive_shells(shim_env: Env, shell: str, mode: str
                                                     ) -> None:
    if mode == "warm":
        write_cache(shim_env)
    dump = _DUMP_SH[shell]
    r = run(shim_env, shell, f"{dump}; echo @@; {source(shell)}; {dump}",
            FAKE_MODE="works" if mode == "warm" else mode)
    before, after = r.stdout.split("@@\n")
    added = _names(after) - _names(before)
    assert added <= {"SLURM_JWT"}, added


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_interactive_bash_and_zsh_keep_only_the_documented_hook_names(shim_env: Env, shell: str
                                                                      ) -> None:
    write_cache(shim_env)
    dump = _DUMP_SH[shell]
    r = run(shim_env, shell, f"{dump}; echo @@; {source(shell)}; {dump}", interactive=True)
    before, after = r.stdout.split("@@\n")
    added = _names(after) - _names(before)
    assert added <= {"SLURM_JWT", "_slurmjwt_hook", "_slurmjwt_read", "_slurmjwt_keyid",
                     "_slurmjwt_next", "_slurmjwt_tok", "_slurmjwt_kid", "_slurmjwt_msg",
                     "PROMPT_COMMAND", "precmd_functions"}, added
    assert "_slurmjwt_hook" in added


def test_tcsh_leaves_no_leftover_names(shim_env: Env) -> None:
    write_cache(shim_env)
    r = run(shim_env, "tcsh", f"set; echo @@; {source('tcsh')}; set")
    before, after = r.stdout.split("@@\n")
    names = [{ln.split("\t")[0] for ln in part.splitlines()} - {"_"} for part in (before, after)]
    assert names[1] - names[0] <= set(), names[1] - names[0]


def test_bash_hook_keeps_the_users_prompt_command_and_is_added_once(shim_env: Env) -> None:
    write_cache(shim_env)
    r = run(shim_env, "bash", f"PROMPT_COMMAND='echo mine;'\n{source('bash')}\n"
            f"{source('bash')}\ndeclare -p PROMPT_COMMAND", interactive=True)
    assert "declare -- PROMPT_COMMAND=$'echo mine;\\n_slurmjwt_hook'\n" in r.stdout


def test_zsh_hook_is_added_once(shim_env: Env) -> None:
    write_cache(shim_env)
    r = run(shim_env, "zsh", f"precmd_functions=(mine)\n{source('zsh')}\n{source('zsh')}\n"
            "print -r -- \"[${precmd_functions[*]}]\"", interactive=True)
    assert "[mine _slurmjwt_hook]" in r.stdout


# --- the prompt hook ---------------------------------------------------------------------

def _interactive(env: Env, shell: str, **over: str) -> subprocess.Popen[str]:
    """Start an interactive shell fed through a pipe (its stderr, prompts
    included, goes to logs/stderr for post-mortems)."""
    argv = ["setpriv", f"--reuid={env.user.uid}", f"--regid={env.user.gid}", "--clear-groups",
            "--", "env", "-i", *(f"{k}={v}" for k, v in env.environ(**over).items()),
            *ARGV[shell], "-i"]
    with open(env.base / "logs" / "stderr", "w") as err:
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                text=True, cwd=str(env.base))


def _converse(proc: subprocess.Popen[str], command: str, marker: str) -> str:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{command}; echo '{marker}'\n")
    proc.stdin.flush()
    lines: list[str] = []
    while True:
        line = proc.stdout.readline()
        assert line, "shell exited"
        if line.strip() == marker:
            return "".join(lines).strip()
        lines.append(line)


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_prompt_hook_reexports_a_newer_token_after_refresh_up(shim_env: Env, shell: str) -> None:
    # Token A reaches refresh_up in 3 s; the cache then holds a fresh B that
    # another shell wrote. The hook must pick B up, from the cache, without
    # running the refresh, and only after A's refresh_up.
    write_cache(shim_env, TOKEN, life=303, margin=300)
    proc = _interactive(shim_env, shell)
    try:
        show = 'printf "%s\\n" "${SLURM_JWT-<unset>}"'
        assert _converse(proc, f"{source(shell)}; {show}", "M1") == TOKEN
        write_cache(shim_env, TOKEN2)
        assert _converse(proc, show, "M2") == TOKEN  # before refresh_up: no re-read
        assert _converse(proc, f"sleep 4; {show}", "M3") == TOKEN
        assert _converse(proc, show, "M4") == TOKEN2  # the hook ran after M3
        assert shim_env.calls() == []
        # Past refresh_up with nothing newer in the cache: the hook refreshes.
        write_cache(shim_env, TOKEN2, life=200, margin=300)
        _converse(proc, "_slurmjwt_next=0", "M5")
        assert _converse(proc, show, "M6") == TOKEN
        assert shim_env.calls() == ["--if-needed"]
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("margin", [
    9,   # refresh_up 3 s ahead: the hook's next check is at refresh_up
    30,  # inside the margin from the start: after the failed refresh it must
         # look again at expiry, not wait its usual 60 s
])
def test_prompt_hook_unsets_an_expired_token_when_refresh_fails(shim_env: Env,
                                                                margin: int) -> None:
    write_cache(shim_env, TOKEN, life=12, margin=margin)
    proc = _interactive(shim_env, "bash", FAKE_MODE="fail")
    try:
        show = 'printf "%s\\n" "${SLURM_JWT-<unset>}"'
        assert _converse(proc, f"{source('bash')}; {show}", "M1") == TOKEN
        # expire_up is 7 s away; wait past it, then let the hook run.
        assert _converse(proc, f"sleep 9; {show}", "M2") == TOKEN
        assert _converse(proc, show, "M3") == "<unset>"
    finally:
        proc.kill()
        proc.wait()


# --- the key follows the helper ----------------------------------------------------------

@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_a_cached_token_of_the_old_key_is_never_exported_after_a_switch(shim_env: Env,
                                                                          shell: str) -> None:
    # Fresh by its expiry, but signed by the key the helper no longer uses:
    # slurmctld would refuse it; the shim refreshes instead.
    write_cache(shim_env, TOKEN2)
    shim_env.publish(KEY2)
    jwt, err = jwt_after_source(shim_env, shell)
    assert (jwt, err) == (TOKEN, "")
    assert shim_env.calls() == ["--if-needed"]
    assert (shim_env.cache / "token").read_text().split()[6] == KEY2
    # And with the helper down, nothing rather than the old key's token.
    write_cache(shim_env, TOKEN2)
    jwt, _ = jwt_after_source(shim_env, shell, FAKE_MODE="fail", SLURM_JWT=TOKEN2)
    assert jwt == "<unset>"


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_no_published_key_id_means_no_cached_token_counts(shim_env: Env, shell: str) -> None:
    write_cache(shim_env)
    (shim_env.keys / "id").unlink()
    (shim_env.keys / "id.csh").unlink()
    jwt, _ = jwt_after_source(shim_env, shell, FAKE_MODE="fail")
    assert jwt == "<unset>"


@pytest.mark.parametrize("what", ["file", "directory"])
def test_tcsh_never_sources_a_key_id_others_may_write(shim_env: Env, what: str) -> None:
    """id.csh is sourced, so it runs: one that group or others may write
    (or in such a directory) is never read."""
    write_cache(shim_env)
    (shim_env.keys / "id.csh").write_text(f"set _slurmjwt_kid={KEY}; echo RAN >&2\n")
    (shim_env.keys / ("id.csh" if what == "file" else "")).chmod(0o666 if what == "file"
                                                                  else 0o777)
    jwt, err = jwt_after_source(shim_env, "tcsh", FAKE_MODE="fail")
    assert (jwt, "RAN" in err) == ("<unset>", False)


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_prompt_hook_follows_a_key_switch_at_the_next_prompt(shim_env: Env, shell: str) -> None:
    # Long before refresh_up, the helper switches keys and another shell (or
    # a wrapper) caches a token of the new key: the next prompt exports it.
    write_cache(shim_env, TOKEN)
    proc = _interactive(shim_env, shell)
    try:
        show = 'printf "%s\\n" "${SLURM_JWT-<unset>}"'
        assert _converse(proc, f"{source(shell)}; {show}", "M1") == TOKEN
        # The prompt after M1 runs its hook while this goes on: the cache is
        # written before the key id is published, so that hook sees either
        # nothing new or both, never a new key over an old cache (which
        # would rightly run the refresh).
        write_cache(shim_env, TOKEN2, kid=KEY2)
        shim_env.publish(KEY2)
        assert _converse(proc, ":", "M2") == ""  # a prompt passes: the hook runs
        assert _converse(proc, show, "M3") == TOKEN2
        assert shim_env.calls() == []
    finally:
        proc.kill()
        proc.wait()


# --- the Slurm command wrappers on PATH ---------------------------------------------------

@pytest.fixture
def wrapper_shims(shim_env: Env) -> tuple[Path, Path, Path]:
    """Shims installed with a LIBDIR that has the wrapper directory:
    (slurmjwt.sh, slurmjwt.csh, LIBDIR/bin)."""
    root = shim_env.base / "inst"
    root.mkdir(mode=0o755)
    sh, csh = install_shims(root)
    (root / "lib" / "bin").mkdir(mode=0o755)
    return sh, csh, root / "lib" / "bin"


def _path_after(env: Env, shell: str, shim: Path, twice: bool = False, **over: str | None
                ) -> str:
    src = f"source {shim}" if shell == "tcsh" else f". {shim}"
    show = "printenv PATH"
    r = run(env, shell, f"{src}; {src + '; ' if twice else ''}{show}", over=over)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.mark.parametrize("interactive", [False, True])
@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_the_wrappers_go_first_on_path_once(shim_env: Env, shell: str, interactive: bool,
                                            wrapper_shims: tuple[Path, Path, Path]) -> None:
    sh, csh, wrappers = wrapper_shims
    shim = csh if shell == "tcsh" else sh
    write_cache(shim_env)
    if interactive:
        src = f"source {shim}" if shell == "tcsh" else f". {shim}"
        r = run(shim_env, shell, f"{src}\nprintenv PATH\n", interactive=True)
        # (tcsh prints its prompt, "> ", on stdout.)
        assert re.search(rf"^(> )?{re.escape(str(wrappers))}:/usr/bin:/bin$", r.stdout,
                         re.M), r.stdout
        return
    assert _path_after(shim_env, shell, shim) == f"{wrappers}:/usr/bin:/bin"
    assert _path_after(shim_env, shell, shim, twice=True) == f"{wrappers}:/usr/bin:/bin"
    # Where PAM (or a parent) put it already, it stays where it is.
    kept = f"/usr/bin:{wrappers}:/bin"
    assert _path_after(shim_env, shell, shim, PATH=kept) == kept
    # Cold cache, refresh failing: the wrappers still go on PATH (they ask
    # the helper themselves, later).
    shutil.rmtree(shim_env.cache)
    assert _path_after(shim_env, shell, shim, FAKE_MODE="fail") == f"{wrappers}:/usr/bin:/bin"


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_path_is_left_alone_when_disabled_or_for_root(shim_env: Env, shell: str,
                                                      wrapper_shims: tuple[Path, Path, Path]
                                                      ) -> None:
    sh, csh, _wrappers = wrapper_shims
    shim = csh if shell == "tcsh" else sh
    assert _path_after(shim_env, shell, shim, SLURMJWT_DISABLE="1") == "/usr/bin:/bin"
    src = f"source {shim}" if shell == "tcsh" else f". {shim}"
    r = run(shim_env, shell, f"{src}; printenv PATH", user=TestUser("root", 0, 0, "/root"))
    assert r.stdout.strip() == "/usr/bin:/bin"


# --- fish ----------------------------------------------------------------------------------

def _fish(env: Env, script: str, *, interactive: bool = False, shim: Path | None = None,
          **over: str | None) -> subprocess.CompletedProcess[str]:
    """Run a login fish (interactive too, if asked) as the env's user, with
    the installed shim sourced as fish sources its vendor_conf.d snippets."""
    shim = shim or shims()[0].parent / "slurmjwt.fish"
    flags = ["-l", *(["-i"] if interactive else [])]
    over.setdefault("TERM", "dumb")  # or interactive fish warns on stderr
    return subprocess.run(
        ["setpriv", f"--reuid={env.user.uid}", f"--regid={env.user.gid}", "--clear-groups",
         "--", "env", "-i", *(f"{k}={v}" for k, v in env.environ(**over).items()),
         "fish", "--no-config", *flags, "-c", f"source {shim}; {script}"],
        capture_output=True, text=True, timeout=30, cwd=str(env.base), check=False)


SHOW_FISH = 'set -q SLURM_JWT; and printf "%s\\n" $SLURM_JWT; or echo "<unset>"'


@pytest.mark.parametrize("interactive", [False, True])
def test_fish_exports_the_cached_token_without_a_refresh(shim_env: Env, interactive: bool
                                                         ) -> None:
    write_cache(shim_env)
    r = _fish(shim_env, SHOW_FISH, interactive=interactive)
    assert (r.returncode, r.stdout.strip(), r.stderr) == (0, TOKEN, "")
    assert shim_env.calls() == []


@pytest.mark.parametrize("kind", ["missing", "another_key", "expired"])
def test_fish_refreshes_a_missing_or_stale_cache(shim_env: Env, kind: str) -> None:
    if kind != "missing":
        write_cache(shim_env, TOKEN2, **({"kid": KEY2} if kind == "another_key"
                                          else {"life": -10}))
    r = _fish(shim_env, SHOW_FISH)
    assert (r.returncode, r.stdout.strip()) == (0, TOKEN), r.stderr
    assert shim_env.calls() == ["--if-needed"]


def test_fish_erases_slurm_jwt_when_refresh_fails_and_says_why_only_interactively(
        shim_env: Env) -> None:
    r = _fish(shim_env, SHOW_FISH, FAKE_MODE="fail", SLURM_JWT=TOKEN2)
    assert (r.stdout.strip(), r.stderr) == ("<unset>", "")
    r = _fish(shim_env, SHOW_FISH, interactive=True, FAKE_MODE="fail")
    assert r.stdout.strip() == "<unset>"
    said = [ln for ln in r.stderr.splitlines() if "slurmjwt:" in ln]
    assert said == [f"slurmjwt: SLURM_JWT not set: {FAIL_MSG}"], r.stderr


def test_fish_leaves_a_denied_user_alone_and_asks_again_only_in_an_hour(shim_env: Env) -> None:
    r = _fish(shim_env, f"{SHOW_FISH}; emit fish_prompt; emit fish_prompt; {SHOW_FISH}",
              interactive=True, FAKE_MODE="denied", SLURM_JWT=PAM_TOKEN)
    assert (r.stdout.split(), r.stderr) == ([PAM_TOKEN, PAM_TOKEN], "")
    assert shim_env.calls() == ["--if-needed"]  # not again at every prompt


def test_fish_keeps_an_inherited_token_only_once_store_stdin_accepts_it(shim_env: Env) -> None:
    r = _fish(shim_env, SHOW_FISH, FAKE_MODE="fail", FAKE_STORE="accept", SLURM_JWT=PAM_TOKEN)
    assert r.stdout.strip() == PAM_TOKEN, r.stderr
    # Refresh first; the token travels on stdin, never in argv.
    assert shim_env.calls() == ["--if-needed", "--store-stdin", f"stdin:{PAM_TOKEN}"]
    for inherited, store in ((PAM_TOKEN, "reject"), ("not a token", "accept")):
        shim_env.log.unlink()
        r = _fish(shim_env, SHOW_FISH, FAKE_MODE="fail", FAKE_STORE=store,
                  SLURMJWT_CACHE_DIR=str(shim_env.base / "none"), SLURM_JWT=inherited)
        assert r.stdout.strip() == "<unset>", r.stderr
        assert shim_env.calls()[0] == "--if-needed"
        assert ("--store-stdin" in shim_env.calls()) == (inherited == PAM_TOKEN)


def test_fish_distrusts_a_cache_refresh_calls_unsafe(shim_env: Env) -> None:
    write_cache(shim_env, TOKEN2, life=200, margin=300)
    r = _fish(shim_env, SHOW_FISH, FAKE_MODE="unsafe", SLURM_JWT=TOKEN2)
    assert r.stdout.strip() == "<unset>", r.stderr


def test_fish_leaves_everything_alone_when_disabled(shim_env: Env) -> None:
    write_cache(shim_env)
    r = _fish(shim_env, SHOW_FISH + "; printf '%s\\n' $PATH", SLURMJWT_DISABLE="1",
              SLURM_JWT=PAM_TOKEN)
    assert r.stdout.split() == [PAM_TOKEN, "/usr/bin", "/bin"]
    assert shim_env.calls() == []


def test_fish_puts_the_wrappers_first_on_path_once(shim_env: Env,
                                                   wrapper_shims: tuple[Path, Path, Path]
                                                   ) -> None:
    _sh, _csh, wrappers = wrapper_shims
    shim = wrappers.parent.parent / "profile.d" / "slurmjwt.fish"
    write_cache(shim_env)
    r = _fish(shim_env, f"source {shim}; printf '%s\\n' $PATH", shim=shim)
    assert r.stdout.split() == [str(wrappers), "/usr/bin", "/bin"], r.stderr


def test_fish_prompt_follows_a_key_switch(shim_env: Env) -> None:
    # The cache holds a token of the key in use; then the helper switches
    # keys and a token of the new key is cached: the next prompt exports it.
    write_cache(shim_env, TOKEN2, kid=KEY2)
    (shim_env.cache / "token").rename(shim_env.base / "logs" / "next-token")
    write_cache(shim_env)
    for path in (shim_env.keys, shim_env.keys / "id"):  # alice plays the helper here
        os.chown(path, shim_env.user.uid, shim_env.user.gid)
    switch = (f"printf '%s\\n' {KEY2} > {shim_env.keys}/id; "
              f"command mv {shim_env.base}/logs/next-token {shim_env.cache}/token")
    r = _fish(shim_env, f"{SHOW_FISH}; {switch}; emit fish_prompt; {SHOW_FISH}",
              interactive=True)
    assert r.stdout.split() == [TOKEN, TOKEN2], r.stderr
    assert shim_env.calls() == []
