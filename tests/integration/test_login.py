"""End to end: real sshd, su, helper, slurmctld, slurmd and slurmrestd.

Every login here goes through a private PAM stack generated from the shipped
packaging/pam.d/slurmjwt, talks to the real slurmjwt-helper and writes the
user's token cache as the user; what the user then does (squeue, sbatch
with srun, curl to slurmrestd) runs against a real cluster. Slurm clients in
the sessions use a copy of slurm.conf whose munge socket does not exist, so a
command that works there worked with the token alone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pam_slurmjwt.token import fingerprint
from tests.integration.fixtures.cluster import Cluster
from tests.integration.fixtures.install import REPO, Installed
from tests.integration.fixtures.login import (
    CACHE_BASE,
    LIFESPAN,
    SITE_PATH,
    HangingHelper,
    World,
    cache_base,
    login_sshd,
    login_world,
    module_lines,
    pam_env_line,
    session_env,
    snippet_lines,
    token_claims,
)
from tests.integration.fixtures.users import TestUser

USERS = ("alice", "bob", "carol", "sysjwt", "root")
TIMEOUT_MS = 1000
# A login may take this much longer than a normal one when the module waits
# its full timeout (scheduling noise on a 2-core machine under test load).
SLACK = 1.0
TASKPROLOG = REPO / "packaging" / "slurm" / "taskprolog.sh"
API = "v0.0.38"


@pytest.fixture(scope="module")
def run_cache(test_users: dict[str, TestUser]) -> Iterator[Path]:
    """/run/slurmjwt/users as tmpfiles.d makes it, for sessions without XDG_RUNTIME_DIR."""
    with cache_base() as base:
        yield base
        for user in test_users.values():
            shutil.rmtree(base / str(user.uid), ignore_errors=True)


@pytest.fixture(scope="module")
def world(installed: Installed, cluster: Cluster, run_cache: Path,
          test_users: dict[str, TestUser]) -> Iterator[World]:
    """The session cluster's login node: helper + sshd with the shipped stack."""
    with login_world(installed, cluster, USERS) as made:
        yield made


@pytest.fixture
def scratch() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="slurmjwt-logintest-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def owned_dir(path: Path, user: TestUser, mode: int = 0o700) -> Path:
    path.mkdir(exist_ok=True)
    os.chown(path, user.uid, user.gid)
    path.chmod(mode)
    return path


def session_token(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


# ---- the shipped snippet ---------------------------------------------------------


def test_shipped_snippet_is_one_optional_session_line_with_the_bare_module_name() -> None:
    (line,) = snippet_lines()
    words = line.split()
    assert words[:3] == ["session", "optional", "pam_slurmjwt.so"]
    assert all("=" in w and w.split("=")[0] in ("timeout",) for w in words[3:]), words


def test_generated_stack_keeps_the_snippet_and_points_at_the_test_helper(world: World) -> None:
    module = [x for x in world.stack if "pam_slurmjwt" in x]
    assert module == [
        f"session optional {world.installed.pam_module} timeout=2000 "
        f"socket={world.helper.root_socket} wrappers={world.installed.wrappers}"
    ]


# ---- what a login gets ---------------------------------------------------------------


@pytest.mark.parametrize("user", ["alice", "bob"])
def test_ssh_command_gets_a_token_for_the_user_with_the_configured_lifespan(
    world: World, user: str
) -> None:
    before = int(time.time())
    token = session_token(world.sshd.ssh(user, "printenv SLURM_JWT"))
    claims = world.claims(token, user)  # signature checked with the cluster's key
    assert claims["exp"] - claims["iat"] == LIFESPAN  # type: ignore[operator]
    assert before - 1 <= claims["iat"] <= time.time() + 1  # type: ignore[operator]


def test_squeue_over_ssh_works_with_the_token_and_only_with_it(world: World) -> None:
    ok = world.sshd.ssh("alice", 'echo "conf=$SLURM_CONF"; squeue')
    assert ok.returncode == 0, ok.stderr
    assert f"conf={world.jwt_only_conf}\n" in ok.stdout
    assert "JOBID" in ok.stdout and "PARTITION" in ok.stdout
    # Same session, same slurm.conf, no token: munge is the only other way in,
    # and its socket does not exist.
    without = world.sshd.ssh("alice", "unset SLURM_JWT; /usr/bin/squeue")
    assert without.returncode != 0, without.stdout
    # squeue on PATH is the wrapper: it brings its own token.
    wrapped = world.sshd.ssh("alice", "unset SLURM_JWT; command -v squeue; squeue")
    assert wrapped.returncode == 0, wrapped.stderr
    assert wrapped.stdout.startswith(f"{world.installed.wrappers}/squeue\n"), wrapped.stdout
    assert "JOBID" not in without.stdout
    assert "munge" in without.stderr.lower(), without.stderr


def test_interactive_ssh_login_shell_gets_the_token(world: World) -> None:
    proc = subprocess.Popen(world.sshd.argv("alice", None, tty=True), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Typed into the remote terminal; $- proves the shell was interactive.
    out, err = proc.communicate("printf 'JWT:%s:%s:\\n' \"$SLURM_JWT\" \"$-\"; exit\n",
                                timeout=60)
    assert proc.returncode == 0, err
    found = re.search(r"JWT:([A-Za-z0-9_.-]+):([a-zA-Z]*):", out)
    assert found, out
    assert "i" in found.group(2)
    token_claims(world.cluster, found.group(1), "alice")


@pytest.mark.parametrize("login", [True, False], ids=["su -", "su"])
def test_su_gets_the_token_and_the_wrappers(world: World, scratch: Path, login: bool) -> None:
    """`su [-] alice` as root, with a private su stack bind-mounted over
    /etc/pam.d/su and su-l, and the installed shim as /etc/profile.d (a login
    shell's /etc/profile resets PATH; the shim puts the wrappers back),
    inside a mount namespace that dies with the command."""
    stack = scratch / "su"
    stack.write_text("\n".join([
        "auth sufficient pam_rootok.so",
        "auth required pam_deny.so",
        "account required pam_unix.so",
        "password required pam_deny.so",
        "session required pam_unix.so",
        pam_env_line(scratch / "pam_env.conf",
                     {**session_env(world.helper, world.jwt_only_conf), "PATH": SITE_PATH}),
        *module_lines(world.installed, world.helper.root_socket),
    ]) + "\n")
    stack.chmod(0o644)
    profile = scratch / "profile.d"
    profile.mkdir(mode=0o755)
    shutil.copy(world.installed.root / "profile.d" / "slurmjwt.sh", profile / "slurmjwt.sh")
    (profile / "slurmjwt.sh").chmod(0o644)
    su = ["su", "-", "alice"] if login else ["su", "alice"]
    script = ('mount --bind "$1" /etc/pam.d/su && mount --bind "$1" /etc/pam.d/su-l '
              '&& mount --bind "$2" /etc/profile.d && shift 2 && exec "$@"')
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
         str(stack), str(profile), *su, "-c", "command -v squeue; printenv SLURM_JWT"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, cwd="/", check=False)
    where, token = session_token(result).splitlines()
    assert where == f"{world.installed.wrappers}/squeue", result.stdout
    token_claims(world.cluster, token, "alice")


# ---- the session's PATH: the application's, with the wrappers in front ------------

CALLER_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # what su's caller has


def su_session_path(world: World, scratch: Path, how: str, module: bool,
                    pam_path: str | None) -> str:
    """The PATH `su` (`su -l`; with an ENV_PATH of its own in login.defs)
    gives alice's session: a private su stack (pam_env, with PATH when
    pam_path is given, then the module when `module`), bind-mounted over
    /etc/pam.d/su, su-l and (for the ENV_PATH case) a copy of /etc/login.defs
    inside a mount namespace that dies with the command. The "shell" prints
    its PATH and reads no profile."""
    tag = f"{how.replace(' ', '_')}-{module}-{pam_path is not None}"
    variables = {**session_env(world.helper, world.jwt_only_conf),
                 **({"PATH": pam_path} if pam_path else {})}
    stack = scratch / f"su-{tag}"
    stack.write_text("\n".join([
        "auth sufficient pam_rootok.so", "auth required pam_deny.so",
        "account required pam_unix.so", "password required pam_deny.so",
        "session required pam_unix.so",
        pam_env_line(scratch / f"pam_env-{tag}.conf", variables),
        *(module_lines(world.installed, world.helper.root_socket) if module else []),
    ]) + "\n")
    stack.chmod(0o644)
    defs = scratch / f"login.defs-{tag}"
    text = Path("/etc/login.defs").read_text()
    if how == "su -l ENV_PATH":
        text = re.sub(r"(?m)^ENV_PATH\s.*$", f"ENV_PATH\tPATH={ENV_PATH}", text)
    defs.write_text(text)
    defs.chmod(0o644)
    shell = scratch / "printpath"
    shell.write_text("#!/bin/sh\nprintenv PATH\n")
    shell.chmod(0o755)
    su = ["su", *(["-l"] if how.startswith("su -l") else []), "-s", str(shell), "alice"]
    script = ('mount --bind "$1" /etc/pam.d/su && mount --bind "$1" /etc/pam.d/su-l '
              '&& mount --bind "$2" /etc/login.defs && shift 2 && exec "$@"')
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
         str(stack), str(defs), *su],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        env={"PATH": CALLER_PATH}, cwd="/", check=False)
    return session_token(result)


ENV_PATH = "/opt/envpath/bin:/usr/bin:/bin"


@pytest.mark.parametrize("pam_path", [None, SITE_PATH], ids=["no PAM PATH", "pam_env PATH"])
@pytest.mark.parametrize("how", ["su", "su -l", "su -l ENV_PATH"])
def test_su_session_path_is_sus_own_with_the_wrappers_in_front_of_a_pam_path(
        world: World, scratch: Path, how: str, pam_path: str | None) -> None:
    without = su_session_path(world, scratch, how, False, pam_path)
    expected = {"su": CALLER_PATH, "su -l ENV_PATH": ENV_PATH}.get(how)
    if pam_path is not None:
        assert without == pam_path  # pam_env's PATH wins over su's, module or not
    elif expected is not None:
        assert without == expected  # the caller's, or login.defs' ENV_PATH
    wrappers = str(world.installed.wrappers)
    with_module = su_session_path(world, scratch, how, True, pam_path)
    assert with_module == (f"{wrappers}:{without}" if pam_path else without)


@pytest.mark.parametrize("pam_path", [None, SITE_PATH], ids=["no PAM PATH", "pam_env PATH"])
def test_sshd_session_path_is_sshds_own_with_the_wrappers_in_front_of_a_pam_path(
        world: World, pam_path: str | None) -> None:
    """`ssh host CMD` (no profile) through sshd's PAM service "sshd", without
    and with the module: with it, the PATH is the one without it (sshd's
    compiled default, or pam_env's, which wins over it) with the wrappers in
    front; the module's built-in sshd_path= is this sshd's default."""
    paths = {}
    for module in (False, True):
        variables = {**session_env(world.helper, world.jwt_only_conf),
                     **({"PATH": pam_path} if pam_path else {})}
        with tempfile.TemporaryDirectory(prefix="slurmjwt-sshpath-") as tmp:
            Path(tmp).chmod(0o755)
            stack = [pam_env_line(Path(tmp) / "pam_env.conf", variables),
                     *(module_lines(world.installed, world.helper.root_socket)
                       if module else [])]
            with login_sshd(stack, ["alice"]) as sshd:
                paths[module] = session_token(sshd.ssh("alice", "printenv PATH"))
    wrappers = str(world.installed.wrappers)
    assert paths[False] == (pam_path or paths[False]) and wrappers not in paths[False]
    assert paths[True] == f"{wrappers}:{paths[False]}"


def test_slurmjwt_token_header_reaches_slurmrestd(world: World) -> None:
    url = f"{world.cluster.restd_url}/slurm/{API}/jobs"
    slurmjwt = world.installed.cmd("slurmjwt")
    # The token travels on a pipe, never on a command line.
    ok = world.sshd.ssh(
        "alice", f"{slurmjwt} token --header | curl -sS -w '\\nHTTP:%{{http_code}}' -H @- {url}")
    assert ok.returncode == 0, ok.stderr
    body, _, code = ok.stdout.rpartition("\nHTTP:")
    assert code == "200", ok.stdout
    data = json.loads(body)
    assert "jobs" in data and not data.get("errors"), data
    # The same request without the token header is refused.
    bare = world.sshd.ssh(
        "alice", f"curl -sS -o /dev/null -w '%{{http_code}}' -H 'X-SLURM-USER-NAME: alice' {url}")
    assert bare.stdout.startswith("4") or bare.stdout.startswith("5"), bare.stdout


def test_fifty_simultaneous_logins_all_get_a_token_for_their_user(world: World) -> None:
    users = [("alice", "bob", "carol")[i % 3] for i in range(50)]
    start = threading.Barrier(len(users))

    def login(user: str) -> tuple[str, subprocess.CompletedProcess[str]]:
        start.wait()
        return user, world.sshd.ssh(user, 'echo "$SSH_CONNECTION"; printenv SLURM_JWT',
                                    timeout=180)

    with ThreadPoolExecutor(len(users)) as pool:
        results = list(pool.map(login, users))
    client_ports = set()
    for user, result in results:
        assert result.returncode == 0, (user, result.stderr)
        connection, token = result.stdout.splitlines()
        client_ports.add(connection.split()[1])
        token_claims(world.cluster, token, user)
    assert len(client_ports) == len(users)  # 50 distinct sessions


# ---- root and system accounts ---------------------------------------------------------


@pytest.mark.parametrize("user", ["root", "sysjwt"])
def test_root_and_system_users_log_in_normally_without_a_token(world: World, user: str) -> None:
    seen = len(world.helper.log_text())
    result = world.sshd.ssh(user, 'echo "in as $(id -un)"; printenv SLURM_JWT || echo no-token')
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"in as {user}\nno-token\n"
    # The module skipped them below minuid: the helper was not even asked.
    assert f"(user {user})" not in world.helper.log_text()[seen:]


# ---- the cache hand-off ------------------------------------------------------------------


def test_login_fills_the_users_cache_with_the_session_token(
    world: World, test_users: dict[str, TestUser]
) -> None:
    alice = test_users["alice"]
    cache = CACHE_BASE / str(alice.uid)
    shutil.rmtree(cache, ignore_errors=True)
    token = session_token(world.sshd.ssh("alice", "printenv SLURM_JWT"))
    # Written before the login went on: no waiting for anything.
    path = cache / "token"
    for item, mode in ((cache, 0o700), (path, 0o600), (cache / "token.csh", 0o600)):
        st = os.lstat(item)
        assert (st.st_uid, st.st_gid) == (alice.uid, alice.gid), item
        assert stat.S_IMODE(st.st_mode) == mode, (item, oct(st.st_mode))
    words = path.read_text().split()
    assert words[0] == "slurmjwt2" and words[-4:] == ["1", world.helper.key_id(), token, "end"]
    status = world.cluster.run(
        [world.installed.cmd("slurmjwt"), "status", "--json"], user="alice",
        env_extra={"SLURMJWT_CONF": str(world.helper.config)})
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["valid"] is True and report["cache"] == str(cache)
    assert report["fingerprint"] == fingerprint(token)
    assert LIFESPAN - 60 < report["seconds_left"] <= LIFESPAN


# ---- links planted by the user ------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple[int, int, int, bytes]]:
    """Return every entry under `root` (itself included) with mode, owner,
    mtime in ns and contents of regular files."""
    out = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = os.lstat(path)
        data = path.read_bytes() if stat.S_ISREG(st.st_mode) else b""
        out[str(path)] = (st.st_mode, st.st_uid, st.st_mtime_ns, data)
    return out


def root_target(scratch: Path) -> Path:
    """A root-owned directory holding a root-owned file, with old mtimes."""
    target = scratch / "root-owned"
    target.mkdir(mode=0o755)
    keep = target / "keep"
    keep.write_bytes(b"root's file, not the user's\n")
    keep.chmod(0o644)
    for path in (keep, target):
        os.utime(path, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    return target


def test_no_user_can_claim_another_users_fallback_cache(
    world: World, test_users: dict[str, TestUser]
) -> None:
    alice, bob = test_users["alice"], test_users["bob"]
    cache = CACHE_BASE / str(alice.uid)
    shutil.rmtree(cache, ignore_errors=True)
    squat = subprocess.run(["setpriv", "--reuid", "bob", "--regid", "bob", "--init-groups",
                            "mkdir", str(cache)], capture_output=True, text=True)
    assert squat.returncode != 0 and "Permission denied" in squat.stderr
    assert not cache.exists()
    # At login, root makes it for alice (there is no XDG_RUNTIME_DIR here).
    session_token(world.sshd.ssh("alice", "printenv SLURM_JWT"))
    st = os.lstat(cache)
    assert stat.S_ISDIR(st.st_mode) and (st.st_uid, st.st_gid) == (alice.uid, alice.gid)
    assert stat.S_IMODE(st.st_mode) == 0o700
    assert bob.uid != alice.uid


@pytest.mark.parametrize("where", ["xdg", "run"])
@pytest.mark.parametrize("what", ["directory", "files"])
def test_links_planted_in_the_cache_never_make_root_write_elsewhere(
    world: World, scratch: Path, test_users: dict[str, TestUser], where: str, what: str
) -> None:
    alice = test_users["alice"]
    target = root_target(scratch)
    before = snapshot(target)
    if where == "xdg":
        runtime = owned_dir(scratch / "xdg", alice)
        cache = runtime / "slurmjwt"
    else:
        cache = CACHE_BASE / str(alice.uid)
        shutil.rmtree(cache, ignore_errors=True)
    if what == "directory":
        cache.symlink_to(target)
    else:
        owned_dir(cache, alice)
        for name in ("token", "token.csh", ".clock"):
            (cache / name).symlink_to(target / "keep")
    # Owned by alice as if she planted them (fs.protected_symlinks looks at that).
    for link in [cache] if what == "directory" else list(cache.iterdir()):
        os.chown(link, alice.uid, alice.gid, follow_symlinks=False)
    try:
        if where == "xdg":
            stack = [pam_env_line(scratch / "pam_env.conf", {"XDG_RUNTIME_DIR": str(runtime)}),
                     *module_lines(world.installed, world.helper.root_socket)]
            with login_sshd(stack, ["alice"]) as sshd:
                result = sshd.ssh("alice", "printenv SLURM_JWT")
        else:
            result = world.sshd.ssh("alice", "printenv SLURM_JWT")
        # The login itself is unaffected.
        token_claims(world.cluster, session_token(result), "alice")
        assert snapshot(target) == before
        if what == "directory":
            assert cache.is_symlink()  # refused, not followed
        else:
            # Replaced by rename, never written through: the cache works.
            st = os.lstat(cache / "token")
            assert stat.S_ISREG(st.st_mode) and st.st_uid == alice.uid
            assert stat.S_IMODE(st.st_mode) == 0o600
    finally:
        if where == "run":
            if cache.is_symlink():
                cache.unlink()
            shutil.rmtree(cache, ignore_errors=True)


# ---- logins are bounded whatever the helper or slurmctld do ------------------------------


def baseline(sshd_login: Callable[[], tuple[float, subprocess.CompletedProcess[str]]]) -> float:
    """Median of three ordinary logins."""
    times = sorted(sshd_login()[0] for _ in range(3))
    return times[1]


def test_logins_succeed_at_once_when_the_helper_is_stopped(
    installed: Installed, cluster: Cluster, run_cache: Path, world: World
) -> None:
    normal = baseline(lambda: world.sshd.timed("alice", "true"))
    with login_world(installed, cluster, ["alice"],
                     module_args={"timeout": str(TIMEOUT_MS)}) as down:
        assert session_token(down.sshd.ssh("alice", "printenv SLURM_JWT"))
        down.helper.stop()
        elapsed, result = down.sshd.timed("alice", "printenv SLURM_JWT || echo no-token")
    assert result.returncode == 0 and result.stdout == "no-token\n", result
    assert elapsed < normal + SLACK, (elapsed, normal)


def test_logins_succeed_within_the_timeout_when_the_helper_never_answers(
    installed: Installed, world: World, scratch: Path
) -> None:
    normal = baseline(lambda: world.sshd.timed("alice", "true"))
    with HangingHelper(scratch / "hang.sock") as hang:
        stack = module_lines(installed, hang.path, timeout=str(TIMEOUT_MS))
        with login_sshd(stack, ["alice", "bob"]) as sshd:
            for user in ("alice", "bob"):
                elapsed, result = sshd.timed(user, "printenv SLURM_JWT || echo no-token")
                assert result.returncode == 0 and result.stdout == "no-token\n", result
                # It did wait on the helper, and no longer than timeout=.
                assert TIMEOUT_MS / 1000 <= elapsed < normal + TIMEOUT_MS / 1000 + SLACK, (
                    elapsed, normal)
        assert hang.accepted == 2


def stop_slurmctld(cluster: Cluster) -> None:
    (ctld,) = [d for d in cluster.daemons if d.name == "slurmctld"]
    os.killpg(ctld.proc.pid, signal.SIGTERM)
    ctld.proc.wait(30)


def test_logins_succeed_within_the_timeout_when_slurmctld_is_down(
    installed: Installed, cluster_factory: Callable[..., Cluster], run_cache: Path,
    world: World
) -> None:
    normal = baseline(lambda: world.sshd.timed("alice", "true"))
    private = cluster_factory()
    stop_slurmctld(private)
    args = {"timeout": str(TIMEOUT_MS)}
    # The key backend signs locally: slurmctld is not needed for a token.
    with login_world(installed, private, ["alice"], module_args=args) as keyed:
        elapsed, result = keyed.sshd.timed("alice", "printenv SLURM_JWT")
        token_claims(private, session_token(result), "alice")
        assert elapsed < normal + SLACK, (elapsed, normal)
    # scontrol token needs slurmctld: no token, and the login is still bounded.
    with login_world(installed, private, ["alice"], module_args=args,
                     helper_extra="Backend=scontrol\n") as asking:
        elapsed, result = asking.sshd.timed("alice", "printenv SLURM_JWT || echo no-token")
        assert result.returncode == 0 and result.stdout == "no-token\n", result
        assert elapsed < normal + TIMEOUT_MS / 1000 + SLACK, (elapsed, normal)


# ---- batch jobs: srun inside needs the TaskProlog ------------------------------------------

JOB = """#!/bin/sh
echo "batch-jwt=${SLURM_JWT:+set}"
echo "chained=${SLURMJWT_TEST_CHAINED:-no}"
srun sh -c 'echo "task-jwt=${SLURM_JWT:+set} on $(hostname -s)"'
"""


def submit_over_ssh(world: World, jobdir: Path) -> str:
    """As alice, logged in over ssh, submit JOB with sbatch; return the job id.
    SLURM_CONF is the real one here: the job's srun needs munge, as on a
    compute node; sbatch itself authenticates with SLURM_JWT from PAM."""
    script = jobdir / "job.sh"
    script.write_text(JOB)
    script.chmod(0o755)
    result = world.sshd.ssh("alice", (
        f"export SLURM_CONF={world.cluster.slurm_conf}; test -n \"$SLURM_JWT\" && "
        f"sbatch --parsable --output={jobdir}/job-%j.out {script}"))
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().split(";")[0]


def job_output(cluster: Cluster, jobdir: Path, job: str) -> tuple[str, str]:
    state = cluster.wait_job(job)
    shown = cluster.run(["scontrol", "--oneliner", "show", "job", job]).stdout
    assert re.search(r"\bUserId=alice\(", shown), shown
    return state, (jobdir / f"job-{job}.out").read_text()


def test_batch_job_running_srun_fails_without_the_taskprolog(
    world: World, scratch: Path, test_users: dict[str, TestUser]
) -> None:
    jobdir = owned_dir(scratch / "job", test_users["alice"], 0o755)
    state, out = job_output(world.cluster, jobdir, submit_over_ssh(world, jobdir))
    assert "batch-jwt=set" in out, out  # sbatch copied the token into the job
    assert "task-jwt=" not in out, out
    assert state == "FAILED", (state, out)


def test_batch_job_running_srun_succeeds_with_the_shipped_taskprolog(
    installed: Installed, cluster_factory: Callable[..., Cluster], run_cache: Path,
    scratch: Path, test_users: dict[str, TestUser]
) -> None:
    # The shipped script, with only its chain directory moved into the test's.
    prologs = scratch / "prolog"
    prologs.mkdir(mode=0o755)
    chained = prologs / "taskprolog.d"
    chained.mkdir(mode=0o755)
    (chained / "10-site").write_text("#!/bin/sh\necho export SLURMJWT_TEST_CHAINED=yes\n")
    (chained / "10-site").chmod(0o755)
    text = TASKPROLOG.read_text()
    assert text.count("\ndir=/etc/slurm/taskprolog.d\n") == 1
    prolog = prologs / "taskprolog.sh"
    prolog.write_text(text.replace("\ndir=/etc/slurm/taskprolog.d\n", f"\ndir={chained}\n"))
    prolog.chmod(0o755)
    private = cluster_factory(task_prolog=str(prolog))
    jobdir = owned_dir(scratch / "job", test_users["alice"], 0o755)
    with login_world(installed, private, ["alice"]) as node:
        state, out = job_output(private, jobdir, submit_over_ssh(node, jobdir))
    assert state == "COMPLETED", (state, out)
    assert out == (f"batch-jwt=\nchained=yes\ntask-jwt= on {private.node}\n"), out


