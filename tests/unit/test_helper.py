"""The helper's policy and its server loop, in process, on a real unix socket."""

from __future__ import annotations

import asyncio
import pwd
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jwt
import pytest

from pam_slurmjwt import helper, nss, protocol, supervisor
from pam_slurmjwt.config import parse_config
from pam_slurmjwt.errors import Refused
from pam_slurmjwt.helper import LOOKUP_THREADS, MAX_ABANDONED, ROOT_LOOKUP_THREADS, STUCK_AFTER
from pam_slurmjwt.policy import Policy
from tests.unit.fakenss import USERS, FakeDirectory
from tests.unit.inprocess import KEY, ME, Running, exchange

# ----------------------------------------------------------------- policy

def _policy(text: str = "", slurm_user: str = "nobody") -> Policy:
    return Policy(parse_config(text, "/c"), slurm_user)


def _refusal(policy: Policy, caller: int, name: str) -> tuple[str, str]:
    with pytest.raises(Refused) as err:
        policy.resolve(caller, name)
    return err.value.code, str(err.value)


def test_root_may_ask_for_an_ordinary_user() -> None:
    policy = _policy("MinUid=0\nDenyUsers=", slurm_user="daemon")
    assert policy.resolve(0, "nobody").pw_name == "nobody"
    # nobody is denied by default: a service account, whatever its uid.
    assert _refusal(_policy("MinUid=0", slurm_user="daemon"), 0, "nobody")[0] == "denied"


def test_a_user_gets_only_their_own_token() -> None:
    assert _refusal(_policy("MinUid=0"), 65534, "root") == (
        "denied", "uid 65534 may only ask for its own token")


def test_a_user_naming_anyone_else_is_refused_before_any_name_lookup(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream of made-up names must not reach a slow directory: only root's
    requests name another user; a user may name itself, or nothing."""
    looked_up: list[str] = []
    real = nss.user_by_name

    def counting(name: str) -> pwd.struct_passwd | None:
        looked_up.append(name)
        return real(name)

    policy = _policy("MinUid=0", slurm_user="daemon")
    policy.names()  # SlurmUser and DenyUsers, resolved once per load
    monkeypatch.setattr(nss, "user_by_name", counting)
    assert _refusal(policy, 65534, "zz-made-up-4711") == (
        "denied", "uid 65534 may only ask for its own token")
    assert _refusal(policy, 65534, "daemon")[0] == "denied"
    assert looked_up == []
    assert _refusal(policy, 65534, "nobody")[1] == "nobody is in DenyUsers"  # itself: resolved
    assert looked_up == []


def test_nobody_gets_a_token_for_root_or_slurm_user() -> None:
    assert _refusal(_policy(), 0, "root") == (
        "denied", "root is root; tokens for root are off (AllowPrivileged)")
    assert _refusal(_policy(), 0, "-") == (
        "denied", "root is root; tokens for root are off (AllowPrivileged)")
    code, why = _refusal(_policy("MinUid=0", slurm_user="daemon"), 0, "daemon")
    assert code == "denied" and "SlurmUser" in why


def test_system_accounts_and_deny_users_are_refused() -> None:
    assert _refusal(_policy(), 0, "daemon")[1].startswith("daemon is a system account (uid")
    assert _refusal(_policy("MinUid=0\nDenyUsers=nobody", slurm_user="daemon"), 0, "nobody") == (
        "denied", "nobody is in DenyUsers")


def test_the_cap_is_max_lifespan_unless_a_rule_names_the_user_or_a_group() -> None:
    import grp
    import os
    import pwd

    me = pwd.getpwuid(os.getuid())
    group = grp.getgrgid(me.pw_gid).gr_name
    assert _policy("MinUid=0").cap(me) == 3600
    assert _policy(f"MaxLifespanFor={me.pw_name}:7200").cap(me) == 7200
    assert _policy(f"MaxLifespanFor=@{group}:9000,{me.pw_name}:7200").cap(me) == 9000
    # Names that do not exist grant nothing; a shorter rule never shortens.
    assert _policy("MaxLifespanFor=no-such-user:99999,@no-such-group:99999").cap(me) == 3600
    assert _policy(f"MaxLifespanFor={me.pw_name}:60").cap(me) == 3600


@pytest.mark.parametrize("name", ["0", "65534", "1", "-rf", "no such", "root\n"])
def test_numeric_and_odd_names_are_never_resolved(name: str) -> None:
    assert _refusal(_policy("MinUid=0\nAllowPrivileged=root"), 0, name)[0] == "no-user"


def test_unknown_user_is_no_user() -> None:
    assert _refusal(_policy(), 0, "nosuchuser4711") == ("no-user", "no such user 'nosuchuser4711'")


def test_allow_privileged_is_the_explicit_opt_in() -> None:
    assert _policy("AllowPrivileged=root").resolve(0, "root").pw_uid == 0


# ----------------------------------------------------------------- server

def test_grant_is_a_token_slurmctld_would_accept(running: Running) -> None:
    before = int(time.time())
    grant = protocol.request_token(running.path, lifespan=120)
    claims = jwt.decode(grant.token, KEY, algorithms=["HS256"])
    assert claims["sun"] == ME
    assert before + 120 <= claims["exp"] <= int(time.time()) + 120 == claims["iat"] + 120
    assert grant.exp == claims["exp"]


@pytest.mark.parametrize("running", ["Lifespan=300\nMaxLifespan=300\nRefreshMargin=60"],
                         indirect=True)
def test_lifespan_is_capped_by_max_lifespan(running: Running) -> None:
    grant = protocol.request_token(running.path, lifespan=99999)
    claims = jwt.decode(grant.token, KEY, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 300


def test_malformed_and_oversized_requests_get_reasons(running: Running) -> None:
    assert exchange(running.path, b"hello\n").startswith(b"SLURMJWT/2 ERR bad-version ")
    assert exchange(running.path, b"SLURMJWT/2 TOKEN\n").startswith(b"SLURMJWT/2 ERR bad-request ")
    assert exchange(running.path, b"x" * 100_000).startswith(b"SLURMJWT/2 ERR too-long ")
    assert exchange(running.path, b"SLURMJWT/2 TOKEN - 60", half_close=True).startswith(
        b"SLURMJWT/2 ERR bad-request ")  # EOF before the newline
    assert protocol.request_token(running.path).token  # and it still serves


def test_stalled_clients_do_not_delay_others(running: Running) -> None:
    stalled = []
    for i in range(40):
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(running.path)
        if i % 2:
            sock.sendall(b"SLURMJWT/2 TOK")  # a slow-loris half line
        stalled.append(sock)
    try:
        start = time.monotonic()
        assert protocol.request_token(running.path, timeout=10).token
        # ReadTimeout is 3 s: being served sooner proves nobody waited on them.
        assert time.monotonic() - start < 2.5
        stalled[0].settimeout(10)
        assert stalled[0].recv(1024).startswith(b"SLURMJWT/2 ERR timeout ")
    finally:
        for sock in stalled:
            sock.close()


@pytest.mark.parametrize("running", ["MaxConnections=4"], indirect=True)
def test_connections_beyond_the_limit_are_told_busy(running: Running) -> None:
    held = [socket.socket(socket.AF_UNIX) for _ in range(4)]
    for sock in held:
        sock.connect(running.path)
    try:
        # The accept of the 4 is asynchronous: poll until the server counts them.
        deadline = time.monotonic() + 5
        while sum(running.server.slots.held.values()) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert exchange(running.path, b"SLURMJWT/2 PING\n").startswith(b"SLURMJWT/2 ERR busy ")
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 5
    while running.server.slots.held and time.monotonic() < deadline:
        time.sleep(0.01)
    assert running.server.slots.active == 0 and running.server.slots.held == {}


def test_many_concurrent_callers_all_get_tokens(running: Running) -> None:
    with ThreadPoolExecutor(64) as pool:
        grants = list(pool.map(lambda _: protocol.request_token(running.path, timeout=10),
                               range(300)))
    assert len({g.token for g in grants}) >= 1
    assert all(jwt.decode(g.token, KEY, algorithms=["HS256"])["sun"] == ME for g in grants)


def test_a_reload_that_cannot_load_keeps_every_worker_and_says_so(running: Running,
                                                                 tmp_path: Path) -> None:
    """The supervisor decides: a new configuration it cannot load changes
    nothing (no worker started or stopped, the same State) and its verdict
    says why, for `slurmjwt-helper --reload`."""
    bad = tmp_path / "bad.conf"
    bad.write_text("Lifespan=ten\n")
    started: list[object] = []
    old = running.server.state
    boss = supervisor.Supervisor(old, running.server.log, str(bad), started.append,
                                 running.key_dir)
    boss.children = {4711: (0, "all")}  # a worker (not signalled: nothing may be)
    boss.reload()
    assert (boss.state, boss.children, started) == (old, {4711: (0, "all")}, [])
    began, verdict = (Path(running.key_dir) / "reload-status").read_text().split(" ", 1)
    assert int(began) <= time.monotonic_ns()
    assert verdict == (f"failed reload failed, keeping the previous configuration: "
                       f"{bad}:1: Lifespan=ten is not a whole number\n")
    assert protocol.request_token(running.path).token


# ----------------------------------------------------------------- a hung name service

def test_a_hung_name_service_is_internal_in_time_and_blocks_nobody(tmp_path: Path) -> None:
    directory = FakeDirectory()
    directory.release.clear()  # every lookup hangs, as with sssd_nss stopped
    running = Running(tmp_path, "LookupTimeout=1\nHelperTimeout=5", directory)
    try:
        with ThreadPoolExecutor(8) as pool:
            start = time.monotonic()
            # More callers than lookup threads: those queued behind are
            # answered at their deadline too.
            asked = [pool.submit(exchange, running.path, b"SLURMJWT/2 TOKEN demo -\n")
                     for _ in range(LOOKUP_THREADS + 2)]
            time.sleep(0.2)
            assert protocol.ping(running.path, 5)  # the loop still serves
            assert time.monotonic() - start < 0.9
            answers = [future.result(10) for future in asked]
        assert set(answers) == {b"SLURMJWT/2 ERR internal the name service did not answer "
                                b"within 1 s (sssd?); try again\n"}
        assert time.monotonic() - start < 2.5
        directory.release.set()  # sssd answers again: so does the helper
        # A real answer: a token when the tests run as root, else "not yours".
        assert exchange(running.path, b"SLURMJWT/2 TOKEN demo -\n").startswith(
            (b"SLURMJWT/2 OK ", b"SLURMJWT/2 ERR denied uid "))
    finally:
        directory.release.set()
        running.stop()


def _until(count: Callable[[], int], want: int, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while count() != want:
        assert time.monotonic() < deadline, f"{count.__name__}: {count()}, not {want}"
        time.sleep(0.005)


def test_a_user_whose_lookups_hang_cannot_make_a_login_wait(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Root's requests (logins) have lookup threads of their own: a user
    whose own lookups hang (eve, slow in the directory) and who keeps asking
    fills every thread users have, and a login is still answered at once."""
    directory = FakeDirectory()
    directory.hang_for = {"eve"}
    directory.release.clear()
    eve = USERS["eve"][0]
    callers = [eve] * (LOOKUP_THREADS + 1)  # the kernel's answer, connection by connection;
    real = helper.peer_credentials          # root's once these are used up

    def peer(sock: socket.socket) -> tuple[int, int, int]:
        pid, _uid, gid = real(sock)
        return pid, callers.pop(0) if callers else 0, gid

    monkeypatch.setattr(helper, "peer_credentials", peer)
    running = Running(tmp_path, "LookupTimeout=3\nHelperTimeout=5", directory)
    try:
        def accepted() -> int:
            return LOOKUP_THREADS + 1 - len(callers)

        def begun() -> int:
            return directory.asked.count(f"uid {eve}")

        with ThreadPoolExecutor(LOOKUP_THREADS + 1) as pool:
            stuck = []
            for n in range(1, LOOKUP_THREADS + 2):
                stuck.append(pool.submit(exchange, running.path, b"SLURMJWT/2 TOKEN - -\n"))
                _until(accepted, n)  # accepted as eve's...
                _until(begun, min(n, LOOKUP_THREADS))  # ...its lookup begun (the fifth waits)...
                time.sleep(2 * STUCK_AFTER)  # ...and counting as stuck: the next gets a thread
            start = time.monotonic()
            answer = exchange(running.path, b"SLURMJWT/2 TOKEN demo -\n")
            assert time.monotonic() - start < 1, answer  # not eve's 3 s LookupTimeout
            assert answer.startswith(b"SLURMJWT/2 OK "), answer
            assert directory.asked.count(f"uid {eve}") == LOOKUP_THREADS  # eve's fifth waits
            directory.release.set()
            assert all(f.result(10).startswith(b"SLURMJWT/2 OK ") for f in stuck)
    finally:
        directory.release.set()
        running.stop()


def test_a_lookup_stuck_on_one_user_does_not_hold_up_the_next(tmp_path: Path) -> None:
    directory = FakeDirectory()
    directory.hang_for = {"eve"}
    directory.release.clear()  # eve's lookup hangs; demo's answers at once
    running = Running(tmp_path, "LookupTimeout=3\nHelperTimeout=5", directory)
    try:
        with ThreadPoolExecutor(1) as pool:
            stuck = pool.submit(exchange, running.path, b"SLURMJWT/2 TOKEN eve -\n")
            time.sleep(2 * STUCK_AFTER)  # eve's thread now counts as stuck
            start = time.monotonic()
            answer = exchange(running.path, b"SLURMJWT/2 TOKEN demo -\n")
            # A second thread took demo's lookup: a real answer, well before
            # eve's LookupTimeout.
            assert time.monotonic() - start < 1
            assert answer.startswith((b"SLURMJWT/2 OK ", b"SLURMJWT/2 ERR denied uid "))
            assert stuck.result(10).startswith(b"SLURMJWT/2 ERR internal ")
    finally:
        directory.release.set()
        running.stop()


def test_logins_whose_lookups_hang_free_their_threads_for_the_next_login(
        tmp_path: Path) -> None:
    """More logins than root has lookup threads hang in the directory (eve's
    entry, sssd stuck on it): once each has had its LookupTimeout, its
    thread is abandoned and a new one serves the next login, which gets
    its token before its own LookupTimeout."""
    directory = FakeDirectory()
    directory.hang_for = {"eve"}
    directory.release.clear()
    running = Running(tmp_path, "LookupTimeout=1\nHelperTimeout=5", directory)
    hung = 2 * ROOT_LOOKUP_THREADS  # logins as root: the tests' own uid is root's here
    try:
        with ThreadPoolExecutor(hung) as pool:
            stuck = []
            for n in range(1, hung + 1):
                stuck.append(pool.submit(exchange, running.path, b"SLURMJWT/2 TOKEN eve -\n"))
                # Begun (the third and fourth wait for a thread)...
                _until(lambda: directory.asked.count("user 'eve'"), min(n, ROOT_LOOKUP_THREADS))
                time.sleep(2 * STUCK_AFTER)  # ...and counting as stuck: the next gets a thread
            time.sleep(0.2)  # the next login comes while every thread is stuck on eve
            start = time.monotonic()
            answer = exchange(running.path, b"SLURMJWT/2 TOKEN demo -\n")
            # Answered once eve's first lookups had their second, before its own.
            assert time.monotonic() - start < 0.9, answer
            assert answer.startswith(b"SLURMJWT/2 OK "), answer
            assert {f.result(10) for f in stuck} == {
                b"SLURMJWT/2 ERR internal the name service did not answer within 1 s "
                b"(sssd?); try again\n"}
    finally:
        directory.release.set()
        running.stop()


def test_abandoned_lookup_threads_are_capped_and_leave_when_answered() -> None:
    """A directory that never answers strands at most MAX_ABANDONED threads
    per pool beside the pool's own; once it answers they leave."""
    release = threading.Event()
    answers: list[BaseException | None] = []
    rounds = ROOT_LOOKUP_THREADS + MAX_ABANDONED + 3

    async def main() -> helper.Lookups:
        lookups = helper.Lookups(ROOT_LOOKUP_THREADS)
        for _ in range(rounds):  # one at a time, each past its deadline before the next
            lookups.submit(release.wait, (), 0.1, lambda _result, error: answers.append(error))
            await asyncio.sleep(0.15)
        return lookups

    try:
        lookups = asyncio.run(main())
        assert len(answers) == rounds and all(isinstance(e, Refused) for e in answers)
        assert lookups.started == ROOT_LOOKUP_THREADS + MAX_ABANDONED
    finally:
        release.set()
    _until(lambda: lookups.started, ROOT_LOOKUP_THREADS)
