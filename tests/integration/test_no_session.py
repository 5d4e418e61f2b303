"""Entrances without a session (a cron job, a service, runuser, env -i): no
XDG_RUNTIME_DIR, no login through pam_slurmjwt.so. `slurmjwt token`,
`token --json` and `exec` work there with the real helper and slurmctld as
the judge; the cache is /run/slurmjwt/users/UID, made by slurmjwt-userdir
(served as its socket unit serves it); and each fault gets one line and an
exit code. Needs root (users, setpriv, mount namespaces, /run).

Slurm commands read a slurm.conf whose munge socket does not exist: they
succeed through SLURM_JWT or not at all.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.fixtures.cluster import Cluster
from tests.integration.fixtures.helperd import HelperProcess, start_helper
from tests.integration.fixtures.install import Installed
from tests.integration.fixtures.login import (
    CACHE_BASE,
    HangingHelper,
    cache_base,
    jwt_only_copy,
    token_claims,
)
from tests.integration.fixtures.userdir import serve_userdir, userdir_socket
from tests.integration.fixtures.users import TestUser

# Short, so that a loop outlives several tokens within a test.
LIFESPAN = 20
HELPER_TIMEOUT = 2
# Every helper here: short tokens, refreshed in their last third.
TOKENS = f"Lifespan={LIFESPAN}\nRefreshMargin=10\n"
# What a cron job has: cron's PATH, and the project's programs.
BASE_PATH = "/usr/bin:/bin"


@dataclass
class Node:
    installed: Installed
    cluster: Cluster
    helper: HelperProcess
    conf: Path  # the JWT-only slurm.conf
    work: Path
    users: dict[str, TestUser]

    def cache(self, user: str = "alice") -> Path:
        return CACHE_BASE / str(self.users[user].uid)

    def forget(self, user: str = "alice") -> None:
        shutil.rmtree(self.cache(user), ignore_errors=True)

    def env(self, user: str, config: Path | None = None, **over: str) -> list[str]:
        u = self.users[user]
        env = {"PATH": f"{self.installed.bin}:{BASE_PATH}", "HOME": u.home, "USER": user,
               "LOGNAME": user, "LANG": "C", "SLURM_CONF": str(self.conf),
               "SLURMJWT_CONF": str(config or self.helper.config)}
        env.update(over)
        return [f"{k}={v}" for k, v in env.items()]

    def argv(self, argv: list[str], user: str = "alice", config: Path | None = None,
             **over: str) -> list[str]:
        """argv as the user with nothing of a session: setpriv and env -i (no
        PAM, no XDG_RUNTIME_DIR, no SLURMJWT_CACHE_DIR)."""
        u = self.users[user]
        return ["setpriv", f"--reuid={u.uid}", f"--regid={u.gid}", "--init-groups", "--",
                "env", "-i", *self.env(user, config, **over), *argv]

    def run(self, argv: list[str], user: str = "alice", config: Path | None = None,
            timeout: float = 60, **over: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(argv, user, config, **over), capture_output=True,
                              text=True, timeout=timeout, cwd="/", check=False)

    def in_namespace(self, setup: str, argv: list[str], user: str = "alice",
                     config: Path | None = None) -> subprocess.CompletedProcess[str]:
        """argv as the user, in a private mount namespace where root first ran
        the shell commands `setup` (the host's mounts stay as they were)."""
        inner = " ".join(f"'{a}'" for a in self.argv(argv, user, config))
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-ec",
                               f"{setup}\nexec {inner}"], capture_output=True, text=True,
                              timeout=60, cwd="/", check=False)

    def grants(self, user: str = "alice") -> int:
        return self.helper.log_text().count(f"grant (user {user})")

    def accepted(self, token: str, user: str = "alice") -> None:
        """slurmctld takes the token: squeue with it alone succeeds."""
        token_claims(self.cluster, token, user)
        r = self.cluster.run(["squeue", "--noheader"], user=user,
                             env_extra={"SLURM_CONF": str(self.conf), "SLURM_JWT": token})
        assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def node(installed: Installed, cluster: Cluster, test_users: dict[str, TestUser]
         ) -> Iterator[Node]:
    work = Path(tempfile.mkdtemp(prefix="slurmjwt-nosession-"))
    work.chmod(0o755)
    helper = None
    try:
        conf = jwt_only_copy(cluster, work / "slurm.conf")
        (work / "helper").mkdir()
        helper = start_helper(installed, cluster.slurm_conf, work / "helper",
                              extra=f"{TOKENS}HelperTimeout={HELPER_TIMEOUT}\n"
                                    f"MungeSocket={work}/no-munged.socket\n")
        with cache_base(), serve_userdir(installed, helper):
            yield Node(installed, cluster, helper, conf, work, test_users)
    finally:
        if helper is not None:
            helper.stop()
        for user in test_users.values():
            shutil.rmtree(CACHE_BASE / str(user.uid), ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def fresh(node: Node) -> Node:
    """The node with no cache of alice's: as on a node she never logged in to."""
    node.forget()
    return node


def other_config(node: Node, name: str, text: str) -> Path:
    """A slurmjwt.conf for the node's cluster with other settings."""
    path = node.work / name
    path.write_text(f"SlurmConf={node.cluster.slurm_conf}\n{TOKENS}"
                    f"MungeSocket={node.work}/no-munged.socket\n{text}")
    path.chmod(0o644)
    return path


# --- tokens with no session --------------------------------------------------------------

def test_token_json_and_exec_work_with_no_session_and_slurmctld_takes_them(fresh: Node) -> None:
    r = fresh.run(["slurmjwt", "token"])
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    token = r.stdout.strip()
    fresh.accepted(token)
    # slurmjwt-userdir made the cache, the user's alone; the token is in it.
    st = fresh.cache().stat()
    assert (st.st_uid, st.st_mode & 0o7777) == (fresh.users["alice"].uid, 0o700)
    assert (fresh.cache() / "token").read_text().split()[7] == token

    r = fresh.run(["slurmjwt", "token", "--json"])
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert (doc["token"], doc["user"]) == (token, "alice")  # from the cache
    assert doc["refresh_after"] < doc["expires"] <= time.time() + LIFESPAN

    # slurmjwt-refresh, whose job is to store, has a place to store too.
    r = fresh.run(["slurmjwt-refresh"])
    assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), r.stderr
    token = (fresh.cache() / "token").read_text().split()[7]
    fresh.accepted(token)

    r = fresh.run(["slurmjwt", "token", "--bearer"])
    assert (r.returncode, r.stdout) == (0, f"Authorization: Bearer {token}\n"), r.stderr

    probe = 'squeue -h >/dev/null && command -v squeue && printf "%s\\n" "$SLURM_JWT"'
    r = fresh.run(["slurmjwt", "exec", "--", "sh", "-c", probe])
    assert r.returncode == 0, r.stderr
    where, given = r.stdout.split()
    assert where == str(fresh.installed.wrappers / "squeue")  # the wrappers come first
    fresh.accepted(given)


def test_after_the_first_command_the_wrappers_read_the_cache(fresh: Node) -> None:
    squeue = str(fresh.installed.wrappers / "squeue")
    before = fresh.grants()
    for _ in range(3):
        r = fresh.run([squeue, "--noheader"])
        assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert fresh.grants() == before + 1  # one helper round trip, then the cache
    assert fresh.cache().stat().st_uid == fresh.users["alice"].uid


def test_without_slurmjwt_userdir_the_token_comes_straight_from_the_helper(
        node: Node, installed: Installed) -> None:
    """A node where slurmjwt-userdir.socket is not enabled: no cache can be
    made outside a session, and the commands work all the same."""
    node.forget()
    work = node.work / "no-userdir"
    work.mkdir(mode=0o755)
    helper = start_helper(installed, node.cluster.slurm_conf, work,
                          extra=f"{TOKENS}MungeSocket={node.work}/no-munged.socket\n")
    try:
        r = node.run(["slurmjwt", "token"], config=helper.config)
        assert (r.returncode, r.stderr) == (0, ""), r.stderr
        node.accepted(r.stdout.strip())
        r = node.run(["slurmjwt", "exec", "--", "squeue", "--noheader"], config=helper.config)
        assert (r.returncode, r.stderr) == (0, ""), r.stderr
        assert not node.cache().exists()
    finally:
        helper.stop()


def test_an_exec_loop_keeps_live_tokens_for_three_lifetimes(fresh: Node) -> None:
    """What a cron job or a service started by `slurmjwt exec` does for
    hours: the SLURM_JWT exec gave it expires after LIFESPAN, and every
    squeue and sbatch it runs later still succeeds, through the wrappers."""
    loop = (f'end=$(( $(date +%s) + {3 * LIFESPAN + 5} )); first="$SLURM_JWT"; n=0\n'
            'while [ "$(date +%s)" -lt "$end" ]; do\n'
            '  squeue -h >/dev/null || { echo "squeue failed at $n"; exit 1; }\n'
            '  sbatch -Q -o /dev/null --wrap=true >/dev/null \\\n'
            '    || { echo "sbatch failed at $n"; exit 2; }\n'
            '  n=$((n + 1)); sleep 3\n'
            'done\n'
            '[ "$SLURM_JWT" = "$first" ] && echo "calls=$n"')
    start = time.time()
    r = fresh.run(["slurmjwt", "exec", "--", "sh", "-c", loop], timeout=3 * LIFESPAN + 60)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stdout.startswith("calls=") and int(r.stdout.strip()[6:]) >= 20, r.stdout
    # The loop's own SLURM_JWT died long before its end: the wrappers did it.
    assert time.time() - start > 3 * LIFESPAN
    cached = (fresh.cache() / "token").read_text().split()[7]
    assert token_claims(fresh.cluster, cached, "alice")["iat"] > start + LIFESPAN  # type: ignore[operator]


def test_exec_follows_export_where_munge_works(node: Node) -> None:
    """Where Export says another authentication works, exec asks no token,
    and takes away an inherited one (it would stop srun)."""
    config = other_config(node, "export-never.conf", f"HelperSocket={node.helper.socket}\n"
                                                      "Export=never\n")
    before = node.grants()
    r = node.run(["slurmjwt", "-c", str(config), "exec", "--", "sh", "-c",
                  'printf "%s|%s|%s\\n" "${SLURM_JWT-unset}" "$SLURMJWT_CONF" "${PATH%%:*}"'],
                 SLURM_JWT="inherited.x.y")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"unset|{config}|{node.installed.wrappers}"
    assert node.grants() == before


# --- faults ------------------------------------------------------------------------------

def test_a_helper_that_is_down_is_one_line_and_exit_4_everywhere(node: Node) -> None:
    config = other_config(node, "down.conf", f"HelperSocket={node.work}/down/helper.sock\n")
    for argv in (["slurmjwt", "token"], ["slurmjwt", "token", "--json"],
                 ["slurmjwt", "exec", "--", "touch", str(node.work / "ran")]):
        r = node.run(argv, config=config)
        assert (r.returncode, r.stdout) == (4, ""), r
        assert r.stderr == (f"slurmjwt: no helper socket at {node.work}/down/helper.sock; "
                            "is slurmjwt-helper running?\n")
    assert not (node.work / "ran").exists()  # exec ran nothing
    r = node.run([str(node.installed.wrappers / "squeue"), "--noheader"], config=config)
    assert r.returncode != 0
    assert r.stderr.splitlines()[0] == (
        f'slurmjwt-wrap: no Slurm token for this command: cannot connect to helper '
        f'"{node.work}/down/helper.sock": No such file or directory; is slurmjwt-helper running?')


def test_a_hung_helper_costs_its_timeout_once_not_on_every_command(node: Node) -> None:
    """A loop of commands against a helper that accepts and never answers:
    the first waits HelperTimeout, the next ones within 30 s do not."""
    hung_dir = node.work / "hung"
    hung_dir.mkdir(mode=0o755)
    config = other_config(node, "hung.conf", f"HelperSocket={hung_dir}/helper.sock\n"
                                             f"HelperTimeout={HELPER_TIMEOUT}\n")
    assert node.run(["slurmjwt", "token"]).returncode == 0  # alice's cache exists
    squeue = str(node.installed.wrappers / "squeue")
    with HangingHelper(hung_dir / "helper.sock") as hung:
        # (squeue --version: the wrapper does all it does, and squeue itself
        # then spends no time failing without munge.)
        for argv, said in ((["slurmjwt", "token"], "slurmjwt: "),
                           ([squeue, "--version"], "slurmjwt-wrap: no Slurm token for this "
                                                   "command: ")):
            (node.cache() / ".helper-late").unlink(missing_ok=True)
            took = []
            for _ in range(3):
                start = time.monotonic()
                r = node.run(argv, config=config)
                took.append(time.monotonic() - start)
                assert r.stderr.startswith(said), r.stderr
            assert took[0] >= HELPER_TIMEOUT, took
            assert max(took[1:]) < HELPER_TIMEOUT, took  # not asked again
            assert r.stderr.startswith(f"{said}the helper did not answer within "
                                       "HelperTimeout"), r.stderr
        assert hung.accepted == 2  # one per program, not one per command
    # The helper answers again: the next token replaces the marker.
    (node.cache() / ".helper-late").unlink(missing_ok=True)


def test_a_user_the_policy_denies_gets_one_line_and_exit_5(fresh: Node) -> None:
    node = fresh
    work = node.work / "deny"
    work.mkdir(mode=0o755)
    helper = start_helper(node.installed, node.cluster.slurm_conf, work,
                          extra=f"MungeSocket={node.work}/no-munged.socket\nDenyUsers=alice\n")
    try:
        for argv in (["slurmjwt", "token"], ["slurmjwt", "exec", "--", "true"]):
            r = node.run(argv, config=helper.config)
            assert (r.returncode, r.stdout) == (5, ""), r
            assert r.stderr.startswith("slurmjwt: refused: ") and r.stderr.count("\n") == 1, r
        r = node.run([str(node.installed.wrappers / "squeue"), "--version"], config=helper.config)
        assert r.stderr.startswith("slurmjwt-wrap: no Slurm token for this command: the helper "
                                   "said denied: "), r.stderr
    finally:
        helper.stop()


@pytest.mark.parametrize("setup", [
    pytest.param("mount -t tmpfs -o ro,mode=0711 none {base}", id="read-only"),
    # Her directory made, then the file system filled: every write fails.
    pytest.param("mount -t tmpfs -o size=64k,mode=0711 none {base}\n"
                 "mkdir -m 0700 {dir} && chown {uid}:{gid} {dir}\n"
                 "dd if=/dev/zero of={base}/filler bs=4k 2>/dev/null || :", id="full"),
])
def test_a_read_only_or_full_run_still_gives_a_token(fresh: Node, setup: str) -> None:
    """Nowhere to keep it: the token comes straight from the helper, and
    nothing is said (a cron job would mail it every run)."""
    alice = fresh.users["alice"]
    setup = setup.format(base=CACHE_BASE, dir=fresh.cache(), uid=alice.uid, gid=alice.gid)
    r = fresh.in_namespace(setup, ["slurmjwt", "token"])
    assert (r.returncode, r.stderr) == (0, ""), r
    fresh.accepted(r.stdout.strip())
    r = fresh.in_namespace(setup, ["slurmjwt", "exec", "--", "squeue", "--noheader"])
    assert (r.returncode, r.stderr) == (0, ""), r
    r = fresh.in_namespace(setup, [str(fresh.installed.wrappers / "squeue"), "--noheader"])
    assert (r.returncode, r.stderr) == (0, ""), r


@pytest.mark.parametrize("home", ["/nonexistent/alice", "/"])
def test_a_missing_or_unwritable_home_changes_nothing(fresh: Node, home: str) -> None:
    for argv in (["slurmjwt", "token"], ["slurmjwt", "exec", "--", "squeue", "-h"],
                 [str(fresh.installed.wrappers / "squeue"), "-h"]):
        r = fresh.run(argv, HOME=home)
        assert (r.returncode, r.stderr) == (0, ""), (argv, r)


# --- slurmjwt-userdir itself -------------------------------------------------------------

def ask(path: Path, uid: int, gid: int, send: bytes = b"mkdir\n") -> bytes:
    """Connect to slurmjwt-userdir as uid:gid (a forked child), send bytes,
    return its answer."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(10)
                sock.connect(str(path))
                sock.sendall(send)
                os.write(wfd, sock.recv(512))
        finally:
            os._exit(0)
    os.close(wfd)
    out = b""
    while chunk := os.read(rfd, 512):
        out += chunk
    os.close(rfd)
    os.waitpid(pid, 0)
    return out


def test_slurmjwt_userdir_makes_the_callers_directory_only(node: Node) -> None:
    sock = userdir_socket(node.helper)
    alice, bob = node.users["alice"], node.users["bob"]
    node.forget("alice")
    node.forget("bob")
    # Whatever it is sent (nothing useful, junk, another uid, a flood), it
    # makes the caller's directory and no other.
    for junk in (b"mkdir\n", b"mkdir 0\n", str(bob.uid).encode() + b"\n", b"\x00" * 4096):
        assert ask(sock, alice.uid, alice.gid, junk) == b"ok\n"
    st = node.cache("alice").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (alice.uid, alice.gid, 0o700)
    assert not node.cache("bob").exists()
    assert sorted(os.listdir(CACHE_BASE)) == [str(alice.uid)]
    # Root needs no help, and gets none.
    assert ask(sock, 0, 0) == b"error root makes its own\n"
    assert not (CACHE_BASE / "0").exists()


def test_slurmjwt_userdir_leaves_another_owners_directory_alone(node: Node) -> None:
    """A uid reused within one boot: the directory is still the previous
    owner's. It is not given away; its readers refuse it, by name."""
    alice, bob = node.users["alice"], node.users["bob"]
    node.forget("alice")
    node.cache("alice").mkdir(mode=0o700)
    os.chown(node.cache("alice"), bob.uid, bob.gid)
    assert ask(userdir_socket(node.helper), alice.uid, alice.gid) == b"ok\n"
    assert node.cache("alice").stat().st_uid == bob.uid
    r = node.run(["slurmjwt", "token"])
    assert r.returncode == 6 and f"is owned by uid {bob.uid}, not by you" in r.stderr, r
    r = node.run([str(node.installed.wrappers / "squeue"), "--version"])
    assert r.stderr.startswith(f'slurmjwt-wrap: token cache "{node.cache()}" is owned by uid '
                               f"{bob.uid}, not by you"), r.stderr
    node.forget("alice")


def test_a_stalled_client_holds_nobody_up(node: Node) -> None:
    """A client that connects and sends nothing gets its answer after at most
    0.2 s (the program drops it); meanwhile others are served."""
    sock_path = userdir_socket(node.helper)
    bob = node.users["bob"]
    with socket.socket(socket.AF_UNIX) as stalled:
        stalled.connect(str(sock_path))
        node.forget("bob")
        assert ask(sock_path, bob.uid, bob.gid) == b"ok\n"
        stalled.settimeout(5)
        assert stalled.recv(64) == b"error root makes its own\n"
    node.forget("bob")
