"""A user's session end to end with the real programs: the profile.d shims in
real shells, the installed slurmjwt-refresh and slurmjwt, the real helper,
and slurmctld/slurmrestd as the judges (root: users, setuid, daemons).

Slurm commands here read a copy of the cluster's slurm.conf whose munge
socket does not exist, so a Slurm command succeeds only through SLURM_JWT:
a shim that lost its token cannot hide behind munge.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest

from pam_slurmjwt.token import fingerprint
from tests.integration.fixtures.cluster import Cluster
from tests.integration.fixtures.helperd import HelperProcess, start_helper, write_config
from tests.integration.fixtures.install import Installed, shims
from tests.integration.fixtures.users import TestUser

REPO = Path(__file__).resolve().parents[2]
SHELLS = {
    "bash": ["bash", "--noprofile", "--norc"],
    "dash": ["dash"],
    "zsh": ["zsh", "-f"],
    "ksh": ["ksh"],
    "tcsh": ["tcsh", "-f"],
}
REFRESH = "slurmjwt-refresh"
CACHE_FILES = {"token", "token.csh", ".clock"}


# --- the world a session lives in ------------------------------------------------

def make_dir(prefix: str, mode: int = 0o755) -> Path:
    # Not pytest's tmp_path: its 0700 root would lock alice and bob out.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(mode)
    return path


@pytest.fixture(scope="module")
def jwt_only_conf(cluster: Cluster) -> Iterator[Path]:
    """The cluster's slurm.conf with a munge socket that does not exist."""
    work = make_dir("jwtonly-conf-")  # a name no message here contains
    conf = work / "slurm.conf"
    text = cluster.slurm_conf.read_text()
    munge = f"AuthInfo=socket={cluster.munge_socket}"
    assert munge in text
    conf.write_text(text.replace(munge, f"AuthInfo=socket={work}/no-munge.socket"))
    conf.chmod(0o644)
    try:
        yield conf
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _helper(installed: Installed, cluster: Cluster, extra: str) -> Iterator[HelperProcess]:
    work = make_dir("slurmjwt-shelper-")
    proc = start_helper(installed, cluster.slurm_conf, work, extra=f"Export=always\n{extra}")
    try:
        yield proc
    finally:
        proc.stop()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def live(installed: Installed, cluster: Cluster) -> Iterator[HelperProcess]:
    """A helper with the default Lifespan 1800 and RefreshMargin 600."""
    yield from _helper(installed, cluster, "")


@pytest.fixture(scope="module")
def down(installed: Installed, cluster: Cluster) -> Iterator[HelperProcess]:
    """A helper that was started and stopped: its config and stale socket remain."""
    for proc in _helper(installed, cluster, ""):
        proc.stop()
        yield proc


@dataclass
class World:
    """One test's caches (a fresh 1777 root) and how to run things as a user."""

    installed: Installed
    cluster: Cluster
    conf: Path
    helper: HelperProcess
    root: Path
    users: dict[str, TestUser]

    def cache(self, user: str = "alice") -> Path:
        return self.root / user

    def env(self, user: str = "alice", helper: HelperProcess | None = None,
            **over: str) -> dict[str, str]:
        env = {
            "PATH": f"{self.installed.bin}:/usr/bin:/bin",
            "HOME": self.users[user].home,
            "USER": user,
            "LANG": "C",
            "SLURM_CONF": str(self.conf),
            "SLURMJWT_CONF": str((helper or self.helper).config),
            "SLURMJWT_KEY_DIR": str((helper or self.helper).key_dir),
            "SLURMJWT_CACHE_DIR": str(self.cache(user)),
        }
        env.update(over)
        return env

    def argv(self, user: str, argv: list[str], env: dict[str, str]) -> list[str]:
        u = self.users[user]
        return ["setpriv", f"--reuid={u.uid}", f"--regid={u.gid}", "--init-groups", "--",
                "env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv]

    def run(self, argv: list[str], user: str = "alice", helper: HelperProcess | None = None,
            stdin: str = "", over: dict[str, str] | None = None, **more: str
            ) -> subprocess.CompletedProcess[str]:
        env = self.env(user, helper, **(over or {}), **more)
        return subprocess.run(self.argv(user, argv, env), input=stdin, capture_output=True,
                              text=True, timeout=60, cwd=self.users[user].home, check=False)

    def shell(self, shell: str, script: str, user: str = "alice",
              helper: HelperProcess | None = None, interactive: bool = False, **over: str
              ) -> subprocess.CompletedProcess[str]:
        """Run script in a real shell: with -c, or interactive (-i) on stdin."""
        if interactive:
            return self.run([*SHELLS[shell], "-i"], user, helper, f"{script}\nexit\n", over)
        return self.run([*SHELLS[shell], "-c", script], user, helper, over=over)

    def cached(self, user: str = "alice") -> list[str]:
        """The cache's token line, split into its 9 fields (format 2:
        [6] the key id, [7] the token, [8] "end")."""
        return (self.cache(user) / "token").read_text().split()

    def claims(self, token: str) -> dict[str, object]:
        """Claims of a token whose signature the cluster's key verifies."""
        key = self.cluster.key_path.read_bytes()
        return dict(jwt.decode(token, key, algorithms=["HS256"]))  # type: ignore[arg-type]

    def squeue(self, token: str, user: str = "alice") -> subprocess.CompletedProcess[str]:
        return self.cluster.run(["squeue", "--noheader"], user=user,
                                env_extra={"SLURM_CONF": str(self.conf), "SLURM_JWT": token})

    def expired(self, user: str = "alice") -> str:
        return self.cluster.mint(user, lifespan=60, now=time.time() - 3600)


@pytest.fixture
def world(installed: Installed, cluster: Cluster, jwt_only_conf: Path, live: HelperProcess,
          test_users: dict[str, TestUser]) -> Iterator[World]:
    root = make_dir("slurmjwt-session-", 0o1777)
    try:
        yield World(installed, cluster, jwt_only_conf, live, root, test_users)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def source(shell: str) -> str:
    sh, csh = shims()
    return f"source {csh}" if shell == "tcsh" else f". {sh}"


def show(shell: str) -> str:
    """Commands printing SQUEUE=ok|fail (the real squeue with this shell's
    environment: not the wrapper the shim put on PATH, which would bring its
    own token) and JWT=<SLURM_JWT or <unset>>, as a child process sees it."""
    probe = "/usr/bin/squeue -h >/dev/null && echo SQUEUE=ok || echo SQUEUE=fail"
    child = "sh -c 'printf \"JWT=%s\\n\" \"${SLURM_JWT-<unset>}\"'"
    return f"{probe}; {child}"


def shown(out: str) -> tuple[str, str]:
    squeue = re.findall(r"^SQUEUE=(\w+)$", out, re.M)
    jwts = re.findall(r"^JWT=(.*)$", out, re.M)
    assert len(squeue) == 1 and len(jwts) == 1, out
    return squeue[0], jwts[0]


def oracle_holds(world: World) -> None:
    """Without SLURM_JWT, the test's slurm.conf cannot reach slurmctld."""
    out = world.cluster.run(["squeue", "--noheader"], user="alice",
                            env_extra={"SLURM_CONF": str(world.conf)})
    assert out.returncode != 0 and "Munge encode failed" in out.stderr, out.stderr


# --- shims with the real refresh ------------------------------------------------------

@pytest.mark.parametrize("shell", SHELLS)
def test_shim_with_no_cache_fetches_a_token_that_slurmctld_accepts(world: World, shell: str
                                                                   ) -> None:
    oracle_holds(world)
    assert not world.cache().exists()
    r = world.shell(shell, f"{source(shell)}; {show(shell)}")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    squeue, token = shown(r.stdout)
    assert squeue == "ok"
    claims = world.claims(token)
    assert claims["sun"] == "alice" and claims["exp"] - claims["iat"] == 1800  # type: ignore[operator]
    fields = world.cached()
    assert fields[0] == "slurmjwt2" and fields[7] == token and fields[5] == "1"
    assert fields[6] == world.helper.key_id() and fields[8] == "end"
    st = world.cache().stat()
    assert (st.st_uid, st.st_mode & 0o777) == (world.users["alice"].uid, 0o700)


@pytest.mark.parametrize("shell", SHELLS)
def test_shim_with_helper_down_unsets_slurm_jwt_and_only_tells_a_person(
        world: World, down: HelperProcess, shell: str) -> None:
    stale = world.expired()
    # Sourced alone: nothing at all on stdout or stderr.
    quiet = world.shell(shell, source(shell), helper=down, SLURM_JWT=stale)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    r = world.shell(shell, f"{source(shell)}; {show(shell)}", helper=down, SLURM_JWT=stale)
    assert "slurmjwt:" not in r.stderr and REFRESH not in r.stderr, r.stderr
    assert shown(r.stdout) == ("fail", "<unset>")
    # Interactive: exactly one line, on stderr, saying why.
    i = world.shell(shell, f"{source(shell)}\n{show(shell)}", helper=down, interactive=True,
                    SLURM_JWT=stale)
    said = [ln for ln in i.stderr.splitlines() if "slurmjwt: " in ln]
    assert len(said) == 1, i.stderr
    assert said[0].endswith("slurmjwt: SLURM_JWT not set: slurmjwt-refresh: cannot reach the "
                            f"helper at {down.socket}: Connection refused")
    assert "slurmjwt" not in i.stdout and stale not in i.stdout
    assert "JWT=<unset>" in i.stdout
    assert not (world.cache() / "token").exists()


def _hostile(world: World, kind: str) -> str:
    """Make alice's cache hostile; return refresh's exact complaint."""
    alice, bob = world.users["alice"], world.users["bob"]
    d = world.cache()
    d.mkdir(mode=0o700)
    os.chown(d, alice.uid, alice.gid)
    good = world.cluster.mint("alice", lifespan=1800)
    up = int(float(Path("/proc/uptime").read_text().split()[0]))
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    line = (f"slurmjwt2 {boot} {up + 1200} {up + 1795} {int(time.time()) + 1800} 1 "
            f"{world.helper.key_id()} {good} end\n")
    if kind == "dir_0777":
        # Empty, so the POSIX shims (which cannot see modes) must ask refresh.
        d.chmod(0o777)
        return f'token cache "{d}" has mode 0777; run chmod 0700 "{d}"'
    if kind == "symlinked_token":
        target = world.root / "elsewhere"
        target.write_text(line)
        os.chown(target, alice.uid, alice.gid)
        target.chmod(0o600)
        (d / "token").symlink_to(target)
        os.lchown(d / "token", alice.uid, alice.gid)
        return f'token cache "{d}" holds a symlink named token; remove it: rm "{d}/token"'
    if kind == "token_owned_by_bob":
        (d / "token").write_text(line)
        (d / "token").chmod(0o600)
        os.chown(d / "token", bob.uid, bob.gid)
        return (f'token cache "{d}/token" is owned by uid {bob.uid}, not by you (uid '
                f'{alice.uid}); remove it or ask an admin to: rm -r "{d}/token"')
    raise AssertionError(kind)


HOSTILE = ("dir_0777", "symlinked_token", "token_owned_by_bob")


@pytest.mark.parametrize("kind", HOSTILE)
def test_refresh_refuses_a_hostile_cache_with_exit_6_naming_path_and_fix(world: World, kind: str
                                                                         ) -> None:
    message = _hostile(world, kind)
    before = {p.name: p.read_bytes() for p in world.root.rglob("*") if p.is_file()}
    r = world.run([REFRESH, "--if-needed"])
    assert (r.returncode, r.stdout, r.stderr) == (6, "", f"{REFRESH}: {message}\n")
    after = {p.name: p.read_bytes() for p in world.root.rglob("*") if p.is_file()}
    assert after == before  # nothing written, nothing followed


@pytest.mark.parametrize("kind", HOSTILE)
@pytest.mark.parametrize("shell", SHELLS)
def test_shim_exports_nothing_from_a_hostile_cache(world: World, shell: str, kind: str) -> None:
    _hostile(world, kind)
    inherited = world.cluster.mint("alice", lifespan=1800)
    r = world.shell(shell, f"{source(shell)}; {show(shell)}", SLURM_JWT=inherited)
    assert "slurmjwt" not in r.stderr, r.stderr  # squeue's munge errors only
    assert shown(r.stdout) == ("fail", "<unset>")


# --- the long session ------------------------------------------------------------------

class Pty:
    """An interactive shell on a pseudo-terminal, read without blocking."""

    def __init__(self, argv: list[str]) -> None:
        self.master, slave = os.openpty()
        # setsid -c: a session of its own with the pty as controlling terminal.
        self.proc = subprocess.Popen(["setsid", "-w", "-c", *argv], stdin=slave, stdout=slave,
                                     stderr=slave, close_fds=True)
        os.close(slave)
        self.seen = ""

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def expect(self, pattern: str, timeout: float) -> re.Match[str]:
        """Return the first match of pattern in output not yet consumed."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.seen)
            if m:
                self.seen = self.seen[m.end():]
                return m
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise AssertionError(f"no {pattern!r} within {timeout} s; output: {self.seen!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    self.seen += os.read(self.master, 65536).decode(errors="replace")
                except OSError:  # EIO: the shell is gone
                    pass

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        os.close(self.master)


@pytest.fixture
def short(installed: Installed, cluster: Cluster) -> Iterator[HelperProcess]:
    yield from _helper(installed, cluster, "Lifespan=20\nRefreshMargin=10\n")


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_a_minute_of_squeue_every_second_with_20_s_tokens_never_fails(
        world: World, short: HelperProcess, shell: str) -> None:
    """The issue's long session: the prompt hook refreshes inside the margin,
    so each command runs with a valid token, and tokens do change."""
    expired_before = world.cluster.slurmctld_log.read_text().count("token expired")
    grants_before = short.log_text().count("grant (user alice)")
    env = world.env(helper=short, TERM="dumb", PS1="$ ")
    pty = Pty(world.argv("alice", [*SHELLS[shell], "-i"], env))
    try:
        # The quotes split each marker in the echoed input, not in the output.
        pty.send(f'{source(shell)}; echo "RE""ADY"')
        pty.expect(r"READY", 30)
        start = time.monotonic()
        results = []
        for i in range(60):
            pty.send(f'squeue -h >/dev/null && echo "RES""ULT OK {i} ${{SLURM_JWT##*.}}" '
                     f'|| echo "RES""ULT FAIL {i} ${{SLURM_JWT##*.}}"')
            m = pty.expect(rf"RESULT (OK|FAIL) {i} ([A-Za-z0-9_-]*)\r?\n", 30)
            results.append((m.group(1), m.group(2)))
            # Pacing: one command per second on a monotonic schedule.
            pause = start + i + 1 - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        pty.send("exit")
    finally:
        pty.close()
    failed = [i for i, (status, _fp) in enumerate(results) if status != "OK"]
    assert failed == [], results
    assert all(fp for _s, fp in results)
    distinct = list(dict.fromkeys(fp for _s, fp in results))
    assert len(distinct) >= 3, distinct
    # Each token was used for a stretch, not re-fetched on every prompt.
    assert len(distinct) <= 12, distinct
    assert short.log_text().count("grant (user alice)") - grants_before >= len(distinct)
    assert world.cluster.slurmctld_log.read_text().count("token expired") == expired_before


def test_shims_never_see_the_margin_before_refresh_does(world: World, short: HelperProcess
                                                       ) -> None:
    """The cache's uptime fields, read as the shims read them (whole seconds),
    must not put a token in the margin before `--if-needed` agrees (it would
    decline, and the prompt hook wait 60 s with a token expiring in 10), nor
    expire it later than exp - 5. Half of all tokens broke this when the
    fields were rounded from truncated uptime and epoch separately."""
    for _ in range(20):
        assert world.run([REFRESH], helper=short).returncode == 0
        up = float(Path("/proc/uptime").read_text().split()[0])
        offset = time.time() - up  # epoch = uptime + offset
        _v, _b, rup, eup, exp, *_ = world.cached()
        assert int(rup) + offset >= int(exp) - 10 - 0.01, (rup, eup, exp, offset)
        assert int(eup) + offset <= int(exp) - 5 + 0.01, (rup, eup, exp, offset)


# --- many refreshes at once ----------------------------------------------------------------

READER = r"""
import base64, json, os, sys, time
path, stop = sys.argv[1], sys.argv[2]
reads, bad = 0, []
while not os.path.exists(stop):
    with open(path, "rb") as fh:
        data = fh.read()
    reads += 1
    text = data.decode("ascii", "replace")
    words = text.split(" ")
    ok = text.endswith(" end\n") and text.count("\n") == 1 and len(words) == 9 \
        and words[0] == "slurmjwt2" and words[7].count(".") == 2
    if ok:
        try:
            body = words[7].split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            ok = claims["sun"] == "alice" and claims["exp"] > time.time() \
                and int(words[4]) == claims["exp"]
        except Exception:
            ok = False
    if not ok and len(bad) < 5:
        bad.append(text)
print(json.dumps({"reads": reads, "bad": bad}))
"""


def test_100_simultaneous_refreshes_never_expose_a_partial_cache(world: World) -> None:
    first = world.run([REFRESH])
    assert first.returncode == 0, first.stderr
    stop = world.root / "stop"
    reader = subprocess.Popen(
        world.argv("alice", ["/usr/bin/python3", "-I", "-c", READER,
                             str(world.cache() / "token"), str(stop)], world.env()),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # A gate: every refresh waits on a pipe whose write end closes when all
    # 100 have been started, so they are released at the same instant.
    gate_r, gate_w = os.pipe()
    procs = []
    try:
        for _ in range(100):
            procs.append(subprocess.Popen(
                world.argv("alice", ["sh", "-c", 'read _; exec "$@" </dev/null', "sh", REFRESH],
                           world.env()),
                stdin=gate_r, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        os.close(gate_w)
        gate_w = -1
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        if gate_w >= 0:
            os.close(gate_w)
        os.close(gate_r)
        stop.touch()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        report, err = reader.communicate(timeout=30)
    assert err == ""
    codes = [p.returncode for p in procs]
    assert codes == [0] * 100, (codes, [o for c, o in zip(codes, outs) if c][:5])
    assert all(o == ("", "") for o in outs)
    seen = json.loads(report)
    assert seen["bad"] == [], seen["bad"]
    assert seen["reads"] > 100, seen
    assert {p.name for p in world.cache().iterdir()} == CACHE_FILES
    fields = world.cached()
    assert world.claims(fields[7])["sun"] == "alice"
    assert world.squeue(fields[7]).returncode == 0


# --- slurmjwt status / token / exec ----------------------------------------------------------

def test_status_text_and_json_describe_the_cache(world: World) -> None:
    empty = world.run(["slurmjwt", "status", "--json"])
    assert empty.returncode == 1
    assert json.loads(empty.stdout)["valid"] is False
    assert world.run([REFRESH]).returncode == 0
    token = world.cached()[7]
    text = world.run(["slurmjwt", "status"])
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == "user:        alice"
    assert lines[1] == f"cache:       {world.cache()}"
    assert re.fullmatch(r"expires:     \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC "
                        r"\((29m [45]\d|30m 00)s left\)", lines[2]), lines[2]
    assert lines[3:] == ["exported:    yes", f"key:         {world.helper.key_id()} (the "
                         "helper's key)", f"fingerprint: {fingerprint(token)}",
                         "SLURM_JWT:   unset"]
    js = world.run(["slurmjwt", "status", "--json"], SLURM_JWT=token)
    report = json.loads(js.stdout)
    assert js.returncode == 0
    assert report["valid"] is True and report["cache"] == str(world.cache())
    assert 1790 <= report["seconds_left"] <= 1800
    assert report["refresh_due"] is False and report["environment"] == "same as cache"
    assert report["fingerprint"] == fingerprint(token) and token not in js.stdout


def make_due(world: World) -> None:
    """Rewrite alice's cached entry as due for refresh (its refresh time has
    passed), as alice, with the installed cache module."""
    code = ("import sys, time; sys.path.insert(0, sys.argv[1])\n"
            "from pam_slurmjwt.cache import Cache\n"
            "c = Cache(sys.argv[2], sys.argv[3]); e = c.load()[0]\n"
            "e.refresh = int(time.time()) - 1; c.store(e)\n")
    r = world.run(["/usr/bin/python3", "-I", "-c", code, str(world.installed.lib),
                   str(world.cache()), str(world.helper.key_dir)])
    assert r.returncode == 0, r.stderr


def test_token_prints_the_cached_token_and_refreshes_it_when_due(world: World) -> None:
    assert world.run([REFRESH]).returncode == 0
    cached = world.cached()[7]
    r = world.run(["slurmjwt", "token"])
    assert (r.returncode, r.stdout, r.stderr) == (0, cached + "\n", "")
    # A 300 s token of one's own is due halfway (it lives less than twice
    # RefreshMargin); here it is made due at once.
    assert world.run([REFRESH, "--lifespan", "300"]).returncode == 0
    short = world.cached()[7]
    assert short != cached
    r = world.run(["slurmjwt", "token"])
    assert (r.returncode, r.stdout.strip()) == (0, short)  # not due yet: kept
    make_due(world)
    r = world.run(["slurmjwt", "token"])
    fresh = r.stdout.strip()
    # (Not compared with `cached`: minted in the same second, it may be the same.)
    assert r.returncode == 0 and fresh != short
    claims = world.claims(fresh)
    assert claims["exp"] - claims["iat"] == 1800  # type: ignore[operator]
    assert world.cached()[7] == fresh
    assert world.squeue(fresh).returncode == 0


def test_token_header_piped_to_curl_reaches_slurmrestd(world: World) -> None:
    url = f"{world.cluster.restd_url}/slurm/{world.cluster.restd_api}/jobs"
    curl = f"curl -sS -o /dev/null -w '%{{http_code}}\\n' -H @- {url}"
    r = world.run(["sh", "-c", f"slurmjwt token --header | {curl}"])
    assert (r.stdout, r.stderr) == ("200\n", "")
    # The same request without the headers is refused: the token did it.
    r = world.run(["sh", "-c", f": | {curl}"])
    assert r.stdout != "200\n"


def test_exec_runs_the_command_with_a_fresh_token_despite_an_expired_one(world: World) -> None:
    stale = world.expired()
    assert world.squeue(stale).returncode != 0  # the stale token alone fails
    assert not world.cache().exists()
    r = world.run(["slurmjwt", "exec", "--", "sh", "-c",
                   'squeue -h && printf "%s\\n" "$SLURM_JWT"'], SLURM_JWT=stale)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert token != stale and token == world.cached()[7]
    assert world.claims(token)["sun"] == "alice"


# --- slurmjwt-refresh on its own --------------------------------------------------------------

def test_refresh_ignores_an_expired_slurm_jwt_in_its_environment(world: World) -> None:
    stale = world.expired()
    r = world.run([REFRESH], SLURM_JWT=stale)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    token = world.cached()[7]
    assert token != stale
    assert world.squeue(token).returncode == 0


def test_if_needed_with_a_fresh_cache_does_not_contact_the_helper(
        world: World, installed: Installed, cluster: Cluster) -> None:
    for private in _helper(installed, cluster, ""):
        assert world.run([REFRESH], helper=private).returncode == 0
        private.stop()  # from here on, any contact would fail with exit 4
        before = (world.cache() / "token").read_bytes()
        r = world.run([REFRESH, "--if-needed"], helper=private)
        assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
        assert (world.cache() / "token").read_bytes() == before
        # Without --if-needed it does go to the helper, and says so.
        r = world.run([REFRESH], helper=private)
        assert (r.returncode, r.stdout, r.stderr) == (
            4, "", f"{REFRESH}: cannot reach the helper at {private.socket}: "
                   "Connection refused\n")
        assert (world.cache() / "token").read_bytes() == before


def test_refresh_with_the_helper_stopped_exits_4(world: World, down: HelperProcess) -> None:
    r = world.run([REFRESH, "--if-needed"], helper=down)
    assert (r.returncode, r.stdout, r.stderr) == (
        4, "", f"{REFRESH}: cannot reach the helper at {down.socket}: Connection refused\n")
    q = world.run([REFRESH, "--if-needed", "--quiet"], helper=down)
    assert (q.returncode, q.stdout, q.stderr) == (4, "", "")


@pytest.fixture
def mute_helper() -> Iterator[Path]:
    """A socket that accepts connections and never answers; yields its
    slurmjwt.conf (HelperTimeout=2)."""
    work = make_dir("slurmjwt-mute-")
    path = work / "helper.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    path.chmod(0o666)
    server.listen(16)
    held: list[socket.socket] = []
    done = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not done.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    conf = work / "slurmjwt.conf"
    write_config(conf, f"HelperSocket={path}\nHelperTimeout=2\n")
    try:
        yield conf
    finally:
        done.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()
        shutil.rmtree(work, ignore_errors=True)


def test_refresh_gives_up_on_a_mute_helper_within_its_timeout(world: World, mute_helper: Path
                                                              ) -> None:
    start = time.monotonic()
    r = world.run([REFRESH], SLURMJWT_CONF=str(mute_helper))
    took = time.monotonic() - start
    assert (r.returncode, r.stdout, r.stderr) == (
        4, "", f"{REFRESH}: the helper did not answer in time\n")
    assert 2.0 <= took < 3.0, took


def test_refresh_refused_by_policy_exits_5(world: World, installed: Installed,
                                           cluster: Cluster) -> None:
    for denying in _helper(installed, cluster, "DenyUsers=bob\n"):
        r = world.run([REFRESH], user="bob", helper=denying)
        assert (r.returncode, r.stdout, r.stderr) == (5, "", f"{REFRESH}: bob is in DenyUsers\n")
        assert not (world.cache("bob") / "token").exists()
        # The shim leaves a denied user's environment alone, silently.
        mine = "my.own.token"
        s = world.shell("bash", f". {shims()[0]}; printf '%s\\n' \"$SLURM_JWT\"", user="bob",
                        helper=denying, interactive=True, SLURM_JWT=mine)
        assert mine in s.stdout and "slurmjwt: " not in s.stderr
        assert world.run([REFRESH], helper=denying).returncode == 0  # alice is fine


# --- --print-env -----------------------------------------------------------------------------

CHILD = "sh -c 'printf \"JWT=%s\\n\" \"${SLURM_JWT-<unset>}\"'"
EVAL = {
    "dash": ["dash", "-c", f'eval "$({REFRESH} --print-env sh)"; {CHILD}'],
    "bash": ["bash", "--norc", "-c", f'eval "$({REFRESH} --print-env sh)"; {CHILD}'],
    "tcsh": ["tcsh", "-f", "-c", f'eval "`{REFRESH} --print-env csh`"; {CHILD}'],
    "fish": ["fish", "--no-config", "-c", f"{REFRESH} --print-env fish | source; {CHILD}"],
}


@pytest.mark.parametrize("shell", EVAL)
def test_print_env_output_exports_the_token_in_its_shell(world: World, shell: str) -> None:
    r = world.run(EVAL[shell], SLURM_JWT="old.stale.value")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    token = r.stdout.strip().removeprefix("JWT=")
    assert token == world.cached()[7]
    assert world.squeue(token).returncode == 0


@pytest.mark.parametrize("shell", EVAL)
def test_print_env_output_unsets_slurm_jwt_when_refresh_fails(world: World, down: HelperProcess,
                                                              shell: str) -> None:
    r = world.run(EVAL[shell], helper=down, SLURM_JWT=world.expired())
    assert r.stdout == "JWT=<unset>\n"
    assert r.stderr.endswith("Connection refused\n")
