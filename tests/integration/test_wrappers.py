"""The Slurm command wrappers (/usr/lib/slurmjwt/bin) against the real helper
and slurmctld: every process a user starts, however long ago, gets a live
token when it runs a Slurm command (root: users, daemons, setuid).

Sessions use a copy of slurm.conf whose munge socket does not exist, so a
Slurm command that works there worked with a token alone. A fake SlurmBinDir
whose "Slurm commands" print what they were given shows exactly what a
wrapper passed on.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest

from tests.integration.fixtures.cluster import Cluster
from tests.integration.fixtures.helperd import HelperProcess, start_helper, write_config
from tests.integration.fixtures.install import Installed
from tests.integration.fixtures.users import TestUser

pytestmark = pytest.mark.root
TO_SLURMD = ("srun", "sattach", "sbcast", "sstat")  # slurmd never takes a JWT
PROBE = '#!/bin/sh\nprintf "%s JWT=%s\\n" "$(basename "$0")" "${SLURM_JWT-<unset>}"\n'


def make_dir(prefix: str, mode: int = 0o755) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(mode)
    return path


@dataclass
class Place:
    """A login node for wrapper tests: a helper, slurm.conf without munge,
    alice's cache directory, and a fake SlurmBinDir of probes."""

    installed: Installed
    cluster: Cluster
    helper: HelperProcess
    conf: Path
    work: Path
    fakebin: Path
    users: dict[str, TestUser]

    def cache(self, user: str = "alice") -> Path:
        return self.work / f"cache-{user}"

    def config(self, name: str, text: str) -> Path:
        """A slurmjwt.conf for the wrappers: the helper's, plus `text`."""
        path = self.work / name
        write_config(path, self.helper.config.read_text() + text)
        return path

    def run(self, argv: list[str], user: str = "alice", conf: Path | None = None,
            path: str | None = None, timeout: float = 60, **env: str | None
            ) -> subprocess.CompletedProcess[str]:
        u = self.users[user]
        base = {
            "PATH": path or f"{self.installed.wrappers}:/usr/bin:/bin",
            "HOME": u.home, "USER": user, "LANG": "C",
            "SLURM_CONF": str(self.conf),
            "SLURMJWT_CONF": str(conf or self.helper.config),
            "SLURMJWT_CACHE_DIR": str(self.cache(user)),
        }
        for key, value in env.items():
            if value is None:
                base.pop(key, None)
            else:
                base[key] = value
        return subprocess.run(
            ["setpriv", f"--reuid={u.uid}", f"--regid={u.gid}", "--init-groups", "--",
             "env", "-i", *(f"{k}={v}" for k, v in base.items()), *argv],
            capture_output=True, text=True, timeout=timeout, cwd=u.home, check=False)

    def claims(self, token: str) -> dict[str, object]:
        key = self.cluster.key_path.read_bytes()
        return dict(jwt.decode(token, key, algorithms=["HS256"]))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def place(installed: Installed, cluster: Cluster, test_users: dict[str, TestUser]
          ) -> Iterator[Place]:
    work = make_dir("slurmjwt-wrap-")
    conf = work / "slurm-jwt-only.conf"
    text = cluster.slurm_conf.read_text()
    munge = f"AuthInfo=socket={cluster.munge_socket}"
    conf.write_text(text.replace(munge, f"AuthInfo=socket={work}/no-munge.socket"))
    conf.chmod(0o644)
    fakebin = work / "fakebin"
    fakebin.mkdir(mode=0o755)
    for name in ("squeue", "sbatch", *TO_SLURMD):
        (fakebin / name).write_text(PROBE)
        (fakebin / name).chmod(0o755)
    (work / "helper").mkdir(mode=0o755)
    helper = start_helper(installed, cluster.slurm_conf, work / "helper",
                          extra=f"MungeSocket={work}/no-munge.socket\n")
    try:
        made = Place(installed, cluster, helper, conf, work, fakebin, test_users)
        for user in ("alice", "bob"):
            made.cache(user).mkdir(mode=0o700)
            os.chown(made.cache(user), test_users[user].uid, test_users[user].gid)
        yield made
    finally:
        helper.stop()
        shutil.rmtree(work, ignore_errors=True)


def probe(place: Place, name: str = "squeue", user: str = "alice", **env: str | None) -> str:
    """Run the wrapper `name` as `user` with SlurmBinDir = the probes; return
    what the probe was given (a token, or <unset>)."""
    conf = place.config("probe.conf", f"SlurmBinDir={place.fakebin}\n")
    r = place.run([str(place.installed.wrappers / name)], user=user, conf=conf, **env)
    assert r.returncode == 0, r.stderr
    word = r.stdout.strip()
    assert word.startswith(f"{name} JWT="), r.stdout
    return word.split("=", 1)[1]


# ---- a live token for every command --------------------------------------------------


def test_the_wrapper_list_is_the_installed_slurms_commands(place: Place) -> None:
    names = sorted(p.name for p in place.installed.wrappers.iterdir())
    assert {"squeue", "sbatch", "scancel", "scontrol", "sinfo", "sacct", "salloc",
            "srun"} <= set(names)
    for name in names:
        link = place.installed.wrappers / name
        assert os.readlink(link) == str(place.installed.wrap)
        assert Path("/usr/bin", name).is_file()


@pytest.mark.parametrize("kind", ["none", "expired", "empty", "garbage", "other-key", "bob's"])
def test_squeue_works_whatever_token_was_inherited(place: Place, kind: str) -> None:
    inherited = {
        "none": None,
        "expired": place.cluster.mint("alice", lifespan=60, now=time.time() - 3600),
        "empty": "",
        "garbage": "not.a.token",
        "other-key": place.cluster.mint("alice", key=b"another key, another cluster!!"),
        "bob's": place.cluster.mint("bob"),
    }[kind]
    r = place.run(["squeue", "--noheader"], SLURM_JWT=inherited)
    assert r.returncode == 0, r.stderr
    # What the real command got: the cache's token, not the inherited one.
    given = probe(place, SLURM_JWT=inherited)
    assert given != inherited and place.claims(given)["sun"] == "alice"
    assert given == (place.cache() / "token").read_text().split()[7]


def test_the_warm_path_neither_asks_the_helper_nor_starts_anything(place: Place) -> None:
    assert place.run(["squeue", "--noheader"]).returncode == 0  # the cache is warm
    logs = place.work / "logs-alice"
    logs.mkdir(mode=0o700, exist_ok=True)
    os.chown(logs, place.users["alice"].uid, place.users["alice"].gid)
    trace = logs / "trace"
    r = place.run(["strace", "-f", "-qq", "-o", str(trace), "-e", "trace=execve,connect",
                   str(place.installed.wrappers / "squeue"), "--version"])
    assert r.returncode == 0, r.stderr
    lines = trace.read_text().splitlines()
    execs = [x for x in lines if "execve(" in x]
    assert len(execs) == 2 and '"/usr/bin/squeue"' in execs[1], execs  # wrapper, then squeue
    assert not [x for x in lines if "connect(" in x and str(place.helper.socket) in x], lines


def grants(place: Place, user: str = "alice") -> int:
    return place.helper.log_text().count(f"grant (user {user})")


def test_a_due_or_other_key_cache_is_refreshed_through_the_helper(place: Place) -> None:
    probe(place)
    before = grants(place)
    probe(place)
    assert grants(place) == before  # warm: the helper is not asked
    lines = (place.cache() / "token").read_text().split(" ")
    # The entry rewritten as of another key: the next command asks the helper.
    (place.cache() / "token").write_text(" ".join([*lines[:6], "old-key", *lines[7:]]))
    assert place.claims(probe(place))["sun"] == "alice"
    assert grants(place) == before + 1
    assert (place.cache() / "token").read_text().split()[6] == place.helper.key_id()


def test_a_cached_token_of_another_user_name_is_replaced_never_used(place: Place) -> None:
    """A uid given to someone else within one boot finds the previous
    owner's cache: a live token of the key in use, under its uid, for
    another name. It is stale: the wrapper asks the helper for its own."""
    alice = place.users["alice"]
    assert place.claims(probe(place, user="bob"))["sun"] == "bob"  # bob's cache is warm
    line = (place.cache("bob") / "token").read_text()
    for name in ("token", "token.csh"):
        (place.cache() / name).unlink(missing_ok=True)
    token = place.cache() / "token"
    token.write_text(line)
    token.chmod(0o600)
    os.chown(token, alice.uid, alice.gid)
    before = grants(place)
    assert place.claims(probe(place))["sun"] == "alice"
    assert grants(place) == before + 1
    assert place.claims(token.read_text().split()[7])["sun"] == "alice"


def test_a_cache_path_too_long_is_said_in_a_sentence_and_the_helper_gives_the_token(
        place: Place) -> None:
    """No cache directory can be named (SLURMJWT_CACHE_DIR longer than a
    path): the command gets the helper's token, and SLURMJWT_DEBUG says why
    in a sentence. It once printed a buffer nothing had written (valgrind:
    a conditional jump on an uninitialised value), so it runs under
    valgrind where there is one."""
    argv = [str(place.installed.wrappers / "squeue")]
    if shutil.which("valgrind") is not None:
        argv = ["valgrind", "--quiet", "--error-exitcode=99", *argv]
    r = place.run(argv, conf=place.config("probe.conf", f"SlurmBinDir={place.fakebin}\n"),
                  SLURMJWT_CACHE_DIR="/" + "x" * 5000, SLURMJWT_DEBUG="1")
    assert r.returncode == 0, r.stderr
    assert "==" not in r.stderr, r.stderr  # valgrind --quiet says only errors (exec: no exit code)
    assert ("slurmjwt-wrap: no usable cached token (the token cache's path is longer than "
            "4095 bytes; set SLURMJWT_CACHE_DIR or XDG_RUNTIME_DIR to a shorter one)\n"
            in r.stderr), r.stderr
    assert place.claims(r.stdout.strip().split("=", 1)[1])["sun"] == "alice"


def test_export_never_takes_slurm_jwt_out(place: Place, installed: Installed,
                                         cluster: Cluster) -> None:
    work = make_dir("slurmjwt-wrapnever-")
    try:
        never = start_helper(installed, cluster.slurm_conf, work, extra="Export=never\n")
        conf = work / "wrap.conf"
        write_config(conf, never.config.read_text() + f"SlurmBinDir={place.fakebin}\n")
        cache = work / "cache"
        cache.mkdir(mode=0o700)
        os.chown(cache, place.users["bob"].uid, place.users["bob"].gid)
        r = place.run([str(place.installed.wrappers / "squeue")], user="bob", conf=conf,
                      SLURMJWT_CACHE_DIR=str(cache), SLURM_JWT="inherited.from.pam")
        assert r.stdout.strip() == "squeue JWT=<unset>", r.stderr
        assert (cache / "token").read_text().split()[5] == "0"  # cached, not exported
        never.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---- failures: clear, bounded, never a loop -----------------------------------------------


def test_helper_down_the_real_command_still_runs_within_the_helper_timeout(
        place: Place, installed: Installed, cluster: Cluster) -> None:
    work = make_dir("slurmjwt-wrapdown-")
    try:
        down = start_helper(installed, cluster.slurm_conf, work, extra="HelperTimeout=2\n")
        down.stop()  # its socket and key directory stay, nothing answers
        stale = place.cluster.mint("alice", lifespan=60, now=time.time() - 3600)
        start = time.monotonic()
        r = place.run(["squeue", "--noheader"], conf=down.config,
                      SLURMJWT_CACHE_DIR=str(work / "nocache"), SLURM_JWT=stale)
        elapsed = time.monotonic() - start
        # The real squeue ran, without the expired token, and failed as
        # Slurm fails without any way in (no munge here), after one line
        # from the wrapper saying why it had no token.
        assert r.returncode != 0, r.stderr
        assert r.stderr.splitlines()[0] == (
            f'slurmjwt-wrap: no Slurm token for this command: cannot connect to helper '
            f'"{down.socket}": Connection refused; is slurmjwt-helper running?'), r.stderr
        assert "Munge encode failed" in r.stderr  # no token left: it tried munge
        assert elapsed < 2 + 3, elapsed  # HelperTimeout, plus squeue's own try
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_a_missing_real_command_is_one_line_and_exit_127(place: Place) -> None:
    conf = place.config("nobin.conf", f"SlurmBinDir={place.work}/nowhere\n")
    r = place.run([str(place.installed.wrappers / "squeue"), "--version"], conf=conf)
    assert (r.returncode, r.stdout) == (127, "")
    assert r.stderr == (f"slurmjwt-wrap: no real squeue: {place.work}/nowhere/squeue: No such "
                        f"file or directory; install Slurm's squeue or set SlurmBinDir in "
                        f"/etc/slurm/slurmjwt.conf\n")


def test_no_loop_when_the_wrappers_are_on_path_twice_or_are_slurmbindir(place: Place) -> None:
    wrappers = place.installed.wrappers
    r = place.run(["squeue", "--noheader"], path=f"{wrappers}:{wrappers}:/usr/bin:/bin")
    assert r.returncode == 0, r.stderr
    conf = place.config("loop.conf", f"SlurmBinDir={wrappers}\n")
    r = place.run([str(wrappers / "squeue")], conf=conf, timeout=10)
    assert r.returncode == 127
    assert r.stderr == (f"slurmjwt-wrap: no real squeue: {wrappers}/squeue is this wrapper; "
                        f"set SlurmBinDir in /etc/slurm/slurmjwt.conf to where Slurm's commands "
                        f"are\n")


@pytest.mark.parametrize("how", ["exec squeue", "squeue", "timeout 60 squeue"])
def test_a_site_script_that_runs_its_name_through_path_is_one_line_never_a_loop(
        place: Place, how: str) -> None:
    """SlurmBinDir/squeue is a site's script that runs `squeue` through PATH,
    where the wrappers come first: in the same process, as its child, or
    through a program in between. The second entry is refused in one line."""
    sitebin = make_dir("slurmjwt-sitebin-")
    try:
        (sitebin / "squeue").write_text(f'#!/bin/sh\n{how} "$@"\n')
        (sitebin / "squeue").chmod(0o755)
        conf = place.config("site.conf", f"SlurmBinDir={sitebin}\n")
        u = place.users["alice"]
        # Its own process group, killed whole: before the fix this looped for
        # ever (a chain through `timeout`, which makes groups of its own, ends
        # when the script is removed below).
        proc = subprocess.Popen(
            ["setpriv", f"--reuid={u.uid}", f"--regid={u.gid}", "--init-groups", "--",
             "env", "-i", f"PATH={place.installed.wrappers}:/usr/bin:/bin", f"HOME={u.home}",
             f"SLURM_CONF={place.conf}", f"SLURMJWT_CONF={conf}",
             f"SLURMJWT_CACHE_DIR={place.cache()}", "squeue", "--version"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=u.home,
            start_new_session=True)
        try:
            out, err = proc.communicate(timeout=10)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
        assert (proc.returncode, out) == (127, "")
        assert err == (f"slurmjwt-wrap: no real squeue: {sitebin}/squeue runs squeue through "
                       f"PATH, which is this wrapper again; make it run Slurm's squeue by its "
                       f"full path, or set SlurmBinDir in /etc/slurm/slurmjwt.conf to where "
                       f"that is\n")
    finally:
        shutil.rmtree(sitebin, ignore_errors=True)


def test_a_command_slurms_own_binary_starts_is_a_command_of_its_own(place: Place) -> None:
    """salloc's shell running salloc again is no loop: an ancestor running the
    real SlurmBinDir/NAME (here a program that starts its command as a child,
    as salloc does) started it. The inner one gets a token like any other."""
    sitebin = make_dir("slurmjwt-nested-")
    try:
        shutil.copy("/usr/bin/timeout", sitebin / "salloc")  # salloc 60 CMD: CMD as a child
        (sitebin / "salloc").chmod(0o755)
        conf = place.config("nested.conf", f"SlurmBinDir={sitebin}\n")
        r = place.run(["salloc", "60", "sh", "-c", "salloc 60 printenv SLURM_JWT; true"],
                      conf=conf, timeout=30)
        assert (r.returncode, r.stderr) == (0, ""), r.stderr
        assert place.claims(r.stdout.strip())["sun"] == "alice"
    finally:
        shutil.rmtree(sitebin, ignore_errors=True)


def test_inside_a_job_nothing_is_added(place: Place) -> None:
    assert probe(place, SLURMD_NODENAME="node1") == "<unset>"
    token = place.cluster.mint("alice")
    assert probe(place, SLURMD_NODENAME="node1", SLURM_JWT=token) == token


def test_root_and_system_users_get_nothing_and_never_ask(place: Place) -> None:
    # MinUid in the wrapper's config: the helper is not even asked.
    seen = len(place.helper.log_text())
    conf = place.config("minuid.conf", f"SlurmBinDir={place.fakebin}\nMinUid=60000\n")
    r = place.run([str(place.installed.wrappers / "squeue")], conf=conf)
    assert r.stdout.strip() == "squeue JWT=<unset>"
    assert "(user alice)" not in place.helper.log_text()[seen:]


@pytest.mark.parametrize("name", TO_SLURMD)
def test_commands_that_reach_slurmd_never_get_the_token_where_munge_works(
        place: Place, name: str) -> None:
    token = place.cluster.mint("alice")
    munge = place.config("munge.conf", f"SlurmBinDir={place.fakebin}\n"
                                       f"MungeSocket={place.cluster.munge_socket}\n")
    r = place.run([str(place.installed.wrappers / name)], conf=munge, SLURM_JWT=token)
    assert r.stdout.strip() == f"{name} JWT=<unset>", r.stderr
    # Even inside a job, and even with SLURMJWT_DISABLE: slurmd takes no JWT.
    r = place.run([str(place.installed.wrappers / name)], conf=munge, SLURM_JWT=token,
                  SLURMD_NODENAME="node1", SLURMJWT_DISABLE="1")
    assert r.stdout.strip() == f"{name} JWT=<unset>", r.stderr
    # Without munge they are like every other command: a live token.
    assert place.claims(probe(place, name, SLURM_JWT=token))["sun"] == "alice"


def test_the_real_srun_works_where_munge_works_only_without_the_token(place: Place) -> None:
    token = place.cluster.mint("alice")
    # The real srun, on a host where munge works: the wrapper's works, the
    # bare binary given the same environment does not (slurmd refuses JWT).
    munge_real = place.config("munge-real.conf",
                              f"MungeSocket={place.cluster.munge_socket}\n")
    env = {"SLURM_CONF": str(place.cluster.slurm_conf), "SLURM_JWT": token}
    wrapped = place.run(["srun", "--quiet", "hostname"], conf=munge_real, **env)
    assert wrapped.returncode == 0, wrapped.stderr
    bare = place.run(["/usr/bin/srun", "--quiet", "hostname"], conf=munge_real, **env)
    assert bare.returncode != 0, bare.stdout


def test_an_unsafe_cache_is_named_and_never_used(place: Place) -> None:
    cache = place.cache("bob")
    shutil.rmtree(cache)
    cache.mkdir(mode=0o777)
    cache.chmod(0o777)
    os.chown(cache, place.users["bob"].uid, place.users["bob"].gid)
    try:
        r = place.run([str(place.installed.wrappers / "squeue")], user="bob",
                      conf=place.config("probe.conf", f"SlurmBinDir={place.fakebin}\n"))
        assert r.stderr == (f'slurmjwt-wrap: token cache "{cache}" has mode 0777; '
                            f'run chmod 0700 "{cache}"\n')
        token = r.stdout.strip().split("=", 1)[1]
        assert place.claims(token)["sun"] == "bob"  # from the helper, not the cache
        assert list(cache.iterdir()) == []  # nothing written into it
    finally:
        cache.chmod(0o700)


def test_a_full_cache_file_system_costs_a_line_never_a_token(place: Place) -> None:
    """The fallback tmpfs is shared by users without XDG_RUNTIME_DIR: when
    another user has filled it and a user's cache is due, Slurm commands still
    get a token (from the helper), slurmjwt-refresh says why in one line and
    still prints the new token, and the old entry stays."""
    bob = place.users["bob"]
    fs = make_dir("slurmjwt-full-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "slurmjwt-test", str(fs)],
                   check=True)
    try:
        cache = fs / "cache-bob"
        cache.mkdir(mode=0o700)
        os.chown(cache, bob.uid, bob.gid)
        conf = place.config("probe.conf", f"SlurmBinDir={place.fakebin}\n")
        old = place.run([place.installed.cmd("slurmjwt-refresh")], user="bob",
                        SLURMJWT_CACHE_DIR=str(cache))
        assert old.returncode == 0, old.stderr
        # A cache entry of another key: due, so every command asks the helper.
        fields = (cache / "token").read_text().split(" ")
        fields[6] = "an-old-key"
        before = " ".join(fields)
        (cache / "token").write_text(before)  # in place: bob's 0600 file still
        filler = fs / "filler"  # another user's junk, as much as fits
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
        os.close(fd)
        wrapped = place.run([str(place.installed.wrappers / "squeue")], user="bob", conf=conf,
                            SLURMJWT_CACHE_DIR=str(cache), SLURMJWT_DEBUG="1")
        assert wrapped.returncode == 0, wrapped.stderr
        token = wrapped.stdout.strip().split("=", 1)[1]
        assert place.claims(token)["sun"] == "bob"
        # From the helper, and said only under SLURMJWT_DEBUG: no noise in a session.
        assert (f'slurmjwt-wrap: token not cached: cannot write token cache "{cache}": No space '
                "left on device\n") in wrapped.stderr, wrapped.stderr
        refresh = place.run([place.installed.cmd("slurmjwt-refresh"), "--print-env", "sh"],
                            user="bob", SLURMJWT_CACHE_DIR=str(cache))
        assert refresh.returncode == 6
        assert refresh.stderr == (f'slurmjwt-refresh: token cache "{cache}" cannot be written '
                                  "(No space left on device); free some space there, or ask "
                                  "an admin\n")
        assert refresh.stdout.startswith("SLURM_JWT=")
        assert (cache / "token").read_text() == before
        assert sorted(p.name for p in cache.iterdir()) == [".clock", "token", "token.csh"]
    finally:
        subprocess.run(["umount", str(fs)], check=False)
        fs.rmdir()


def test_token_json_says_when_to_ask_again(place: Place) -> None:
    r = place.run([place.installed.cmd("slurmjwt"), "token", "--json"])
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == {"version", "user", "token", "expires", "expiration", "refresh_after"}
    assert doc["user"] == "alice" and place.claims(doc["token"])["exp"] == doc["expires"]
    assert time.time() < doc["refresh_after"] < doc["expires"]
    assert doc["expiration"] == time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                              time.gmtime(doc["expires"]))
