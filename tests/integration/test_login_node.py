"""The login node as sites run it, in the demo's Debian 12 cluster: systemd as
PID 1 with logind, users who exist only in the directory (slapd, read
through sssd), the helper started by its shipped socket unit under the
shipped hardening, and the refresh timer in each user's own systemd. Every
user-facing check is a real ssh login; sssd is really stopped and hung.

Slow: one cluster (warm images: about 20 s to come up), and logind's own
delays (a user's manager stops 10 s after the last logout).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.demo import engine, run, steps
from tests.demo.cluster import exec_out
from tests.integration.fixtures.nodes import systemd_cluster

pytestmark = [pytest.mark.slow, pytest.mark.root]
RELEASE = "bookworm"
REPO = Path(__file__).resolve().parents[2]
UIDS = {"demo": 2000, "eve": 2001, "frank": 2002, "grace": 2003}
CONF = "/etc/slurm/slurmjwt.conf"
POLL = 0.25
# A session's shell polling for a file, at most 10 s.
POLL_FOR = "for i in $(seq 100); do [ -e {path} ] && break; sleep 0.1; done"
# One request to the helper as root (what the PAM module sends), answered
# without the token itself: status, exp and export of an OK line only.
ASK = r"""
import socket, sys, time
sock = socket.socket(socket.AF_UNIX)
sock.settimeout(float(sys.argv[2]))
start = time.monotonic()
sock.connect("/run/slurmjwt/helper.sock")
sock.sendall(("SLURMJWT/2 " + sys.argv[1] + "\n").encode())
answer = b""
while not answer.endswith(b"\n"):
    chunk = sock.recv(1024)
    if not chunk:
        break
    answer += chunk
words = answer.decode().rstrip("\n").split(" ")
print("%.2f %s" % (time.monotonic() - start, " ".join(words[:4] if words[1] == "OK" else words)))
"""
# The admin knob packaging/systemd/README.md documents for a shorter period,
# made short enough to watch: first run 1 s after the user's manager starts,
# then every 3 s.
# (An empty On*Sec= resets all of them: one reset, then both.)
FAST_TIMER = ("[Timer]\nOnStartupSec=\nOnStartupSec=1s\nOnUnitActiveSec=3s\n"
              "RandomizedDelaySec=0\nAccuracySec=1s\n")
FAST_TIMER_PATH = "/etc/systemd/user/slurmjwt-refresh.timer.d/test-fast.conf"


@pytest.fixture(scope="module")
def node() -> Iterator[run.Shown]:
    """The bookworm cluster, up with the demo's transcript run; always removed."""
    with systemd_cluster(RELEASE) as shown:
        yield shown


# -- helpers

def on_login(node: run.Shown, command: str) -> tuple[int, str]:
    """Run a shell command as root on the login node."""
    return exec_out(node.running.login, ["sh", "-c", command])


def ok(node: run.Shown, command: str) -> str:
    code, out = on_login(node, command)
    assert code == 0, f"{command}: {out}"
    return out


def ssh(node: run.Shown, command: str, user: str = "demo") -> steps.Step:
    return steps.run_step(node.keys, node.running.ssh_port, "test", command, user=user)


def ask(node: run.Shown, request: str, timeout: float = 15) -> tuple[float, str]:
    """Send one request line to the helper as root; return (seconds, answer
    without the token)."""
    out = ok(node, f"python3 -I -c {shlex.quote(ASK)} {shlex.quote(request)} {timeout}")
    seconds, answer = out.strip().split(" ", 1)
    return float(seconds), answer


def helper_log(node: run.Shown, since: float) -> str:
    """The helper's log lines (syslog, in the journal) since an epoch time."""
    return ok(node, f"journalctl -q -o cat -t slurmjwt-helper --since=@{int(since)}")


def wait_for(what: str, ready: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f} s")
        time.sleep(POLL)


def exists(node: run.Shown, path: str) -> bool:
    return on_login(node, f"test -e {path}")[0] == 0


def wait_logged_out(node: run.Shown, user: str = "demo") -> None:
    """Poll until logind has stopped the user's manager and removed their
    runtime directory (UserStopDelaySec, 10 s after the last logout)."""
    wait_for(f"removal of /run/user/{UIDS[user]}",
             lambda: not exists(node, f"/run/user/{UIDS[user]}"), timeout=90)


def doctor_lines(output: str) -> dict[str, tuple[str, str]]:
    return {m.group(2): (m.group(1), m.group(3))
            for m in re.finditer(r"^(\w+)\s+([^:]+): (.*)$", output, re.M)}


def root_doctor(node: run.Shown) -> dict[str, tuple[str, str]]:
    return doctor_lines(on_login(node, "slurmjwt doctor --user demo")[1])


# -- the helper, started by systemd only

def test_the_helper_runs_as_systemd_starts_it_from_the_shipped_units(node: run.Shown) -> None:
    for unit in ("slurmjwt-helper.socket", "slurmjwt-helper-root.socket",
                 "slurmjwt-helper.service"):
        shown = dict(line.split("=", 1) for line in ok(node, (
            f"systemctl show -p FragmentPath -p DropInPaths -p ActiveState {unit}"))
            .splitlines())
        assert shown["ActiveState"] == "active", (unit, shown)
        assert shown["DropInPaths"] == "", (unit, shown)  # nothing weakens the shipped unit
        installed = ok(node, f"cat {shown['FragmentPath']}")
        assert installed == (REPO / "packaging/systemd" / unit).read_text(), unit
    assert ok(node, "systemctl is-enabled slurmjwt-helper.socket slurmjwt-helper-root.socket"
              ).split() == ["enabled", "enabled"]
    assert set(ok(node, "systemctl show -p TriggeredBy --value slurmjwt-helper.service").split()
               ) == {"slurmjwt-helper.socket", "slurmjwt-helper-root.socket"}
    pid = ok(node, "systemctl show -p MainPID --value slurmjwt-helper.service").strip()
    status = ok(node, f"cat /proc/{pid}/status")
    assert re.search(r"^Uid:\s+64030\s+64030\s+64030\s+64030$", status, re.M)  # slurm
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M)
    assert re.search(r"^Seccomp:\s+2$", status, re.M)
    assert re.search(r"^CapEff:\s+0+$", status, re.M)
    # The namespaces are real (systemd needs CAP_SYS_ADMIN for them, or it
    # runs the service without): / read-only, no /home, a private /tmp, a
    # /proc of processes only, and only its own among them.
    mounts = {fields[4]: fields for fields in
              (line.split() for line in ok(node, f"cat /proc/{pid}/mountinfo").splitlines())}
    assert "ro" in mounts["/"][5].split(","), mounts["/"]
    assert mounts["/home"][3] == "/systemd/inaccessible/dir", mounts["/home"]
    assert "/systemd-private-" in mounts["/tmp"][3], mounts["/tmp"]
    assert "subset=pid" in mounts["/proc"][-1] and "hidepid=invisible" in mounts["/proc"][-1]
    # Every helper process (supervisor and workers) is in the unit's cgroup:
    # nothing but systemd started one.
    pids = ok(node, "pgrep -f '^/usr/bin/python3 -I /usr/sbin/slurmjwt-helper'").split()
    assert len(pids) == 4  # Workers=2, the worker for RootSocket, their supervisor
    for found in pids:
        assert "/system.slice/slurmjwt-helper.service" in ok(node, f"cat /proc/{found}/cgroup")


def test_the_package_enables_the_sockets_and_adds_the_hook_to_common_session(
        node: run.Shown) -> None:
    # Installing the package (no systemd running at build time) enabled both
    # sockets (debhelper) and put the hook after pam_systemd in
    # common-session, not into common-session-noninteractive (cron, sudo:
    # users decide how often those open; pam-auth-update);
    # /etc/pam.d/sshd is Debian's own.
    image = node.running.login.image
    client = engine.client()
    try:
        out = client.containers.run(image, ["sh", "-c", "systemctl is-enabled "
                                            "slurmjwt-helper.socket slurmjwt-helper-root.socket; "
                                            "grep -E 'pam_(systemd|slurmjwt)' "
                                            "/etc/pam.d/common-session; "
                                            "grep -c slurmjwt /etc/pam.d/sshd "
                                            "/etc/pam.d/common-session-noninteractive || true"],
                                    remove=True, entrypoint=[],
                                    labels=dict(node.running.login.labels))
    finally:
        client.close()
    assert out.decode().split("\n") == [
        "enabled", "enabled", "session\toptional\tpam_systemd.so ",
        "session\toptional\tpam_slurmjwt.so timeout=2000", "/etc/pam.d/sshd:0",
        "/etc/pam.d/common-session-noninteractive:0", ""]
    assert set(ok(node, "systemctl show -p Result -p ExecMainStatus "
                        "slurmjwt-demo-setup.service").split()) == {"Result=success",
                                                                    "ExecMainStatus=0"}
    assert ok(node, "systemctl is-enabled slurmjwt-helper.socket").strip() == "enabled"


def test_systemd_analyze_security_scores_the_helper_as_the_readme_says(node: run.Shown) -> None:
    out = ok(node, "systemd-analyze security --no-pager slurmjwt-helper.service")
    score = re.search(r"Overall exposure level for slurmjwt-helper\.service: (\d+\.\d) ", out)
    assert score, out
    assert f"`systemd-analyze security slurmjwt-helper.service`: **{score.group(1)}**" in (
        (REPO / "README.md").read_text())


def key_only_drop_in() -> str:
    text = (REPO / "packaging/systemd/README.md").read_text()
    block = text.split("<!-- key-only:begin -->\n", 1)[1].split("<!-- key-only:end -->")[0]
    return "".join(f"{line[4:]}\n" for line in block.splitlines())


@pytest.fixture
def key_only(node: run.Shown) -> Iterator[None]:
    drop_in = "/etc/systemd/system/slurmjwt-helper.service.d/key-only.conf"
    ok(node, f"mkdir -p {Path(drop_in).parent} && printf %s {shlex.quote(key_only_drop_in())} "
             f"> {drop_in} && systemctl daemon-reload && systemctl restart slurmjwt-helper")
    try:
        yield
    finally:
        ok(node, f"rm -r {Path(drop_in).parent} && systemctl daemon-reload && "
                 "systemctl restart slurmjwt-helper")


def test_the_documented_key_only_drop_in_serves_directory_users_with_no_network(
        node: run.Shown, key_only: None) -> None:
    _took, answer = ask(node, "TOKEN eve 60")
    assert answer.startswith("SLURMJWT/2 OK "), answer
    pid = ok(node, "systemctl show -p MainPID --value slurmjwt-helper.service").strip()
    # Its own network namespace: a loopback, and not the node's eth0.
    devices = {line.split(":")[0].strip() for line in
               ok(node, f"cat /proc/{pid}/net/dev").splitlines()[2:]}
    assert devices == {"lo"}
    assert "eth0" in ok(node, "cat /proc/1/net/dev")
    out = ok(node, "systemd-analyze security --no-pager slurmjwt-helper.service")
    assert "Overall exposure level for slurmjwt-helper.service: 0.7 " in out


# -- users from the directory

def test_directory_users_are_in_no_passwd_file_yet_every_host_knows_them(
        node: run.Shown) -> None:
    for host in (node.running.login, node.running.controller):
        code, out = exec_out(host, ["grep", "-cE", "^(demo|eve|frank|grace):", "/etc/passwd"])
        assert (code, out.strip()) == (1, "0"), host.name
        code, out = exec_out(host, ["getent", "-s", "sss", "passwd", "grace"])
        assert (code, out.strip()) == (0, "grace:*:2003:3001:Grace:/home/grace:/bin/bash")


def test_the_sandboxed_helper_resolves_directory_users_through_sssd(node: run.Shown) -> None:
    since = time.time()
    _took, answer = ask(node, "TOKEN eve 60")
    assert answer.startswith("SLURMJWT/2 OK "), answer
    assert "grant (user eve) uid=2001 by uid=0 " in helper_log(node, since)
    # Under systemd the line is a journal entry with fields (README, "Logs").
    fields = json.loads(ok(node, f"journalctl -q -o json -t slurmjwt-helper RESULT=grant "
                                 f"USER_ID=2001 --since=@{int(since)} -n 1"))
    assert (fields["KID"], fields["SYSLOG_FACILITY"]) == (
        ok(node, "cat /run/slurmjwt/key/id").strip(), "10")
    assert re.fullmatch(r"[0-9a-f]{16}", fields["TOKEN_FP"]), fields["TOKEN_FP"]


@pytest.fixture
def sssd_back(node: run.Shown) -> Iterator[None]:
    """Whatever a test does to sssd, it answers again afterwards."""
    yield
    on_login(node, "pkill -CONT -x sssd_nss; systemctl restart sssd")
    wait_for("sssd answering", lambda: on_login(node, "getent passwd demo")[0] == 0)


# Stopped or hung, sssd still answers from its memory cache for entries it
# holds; the test removes the cache, as if those entries had expired.
FORGET = "rm -f /var/lib/sss/mc/passwd /var/lib/sss/mc/group /var/lib/sss/mc/initgroups"


def test_sssd_stopped_is_internal_never_no_user_and_logged(node: run.Shown,
                                                          sssd_back: None) -> None:
    ok(node, f"systemctl stop sssd && {FORGET}")
    since = time.time()
    for name in ("demo", "nosuchuser"):  # with sssd down, "no such user" is unknown too
        _took, answer = ask(node, f"TOKEN {name} 60")
        assert answer == (f"SLURMJWT/2 ERR internal cannot look up user '{name}': Connection "
                          "refused; the name service (sssd?) did not answer, try again")
    assert ("reason=internal: cannot look up user 'demo': Connection refused"
            in helper_log(node, since))
    # A user asking for their own token (the timer, the shims) gets the same.
    code, out = on_login(node, "setpriv --reuid=2000 --regid=2000 --clear-groups "
                               "env XDG_RUNTIME_DIR=/nonexistent SLURMJWT_CACHE_DIR=/tmp/c2000 "
                               "slurmjwt-refresh")
    assert code == 7, out  # EXIT_MINT: try again later, not "refused"
    assert "cannot look up uid 2000: Connection refused" in out
    found = root_doctor(node)["name service"]
    assert found == ("FAIL", "cannot look up user 'demo': Connection refused (passwd: files "
                             "sss in /etc/nsswitch.conf); sssd is not answering: run systemctl "
                             "restart sssd, and see journalctl -u sssd and sssctl domain-status")
    ok(node, "systemctl start sssd")
    wait_for("a token for demo", lambda: ask(node, "TOKEN demo 60")[1].startswith(
        "SLURMJWT/2 OK "), timeout=30)


def test_sssd_hung_costs_lookup_timeout_and_blocks_nobody(node: run.Shown,
                                                         sssd_back: None) -> None:
    ok(node, f"pkill -STOP -x sssd_nss && {FORGET}")
    since = time.time()
    took, answer = ask(node, "TOKEN demo 60")
    assert answer == ("SLURMJWT/2 ERR internal the name service did not answer within 2 s "
                      "(sssd?); try again")
    assert 1.9 <= took < 4, took  # LookupTimeout=2, not libnss_sss's 300 s
    assert ("refuse (user demo) by uid=0 " in helper_log(node, since) and
            "reason=internal: the name service did not answer within 2 s" in
            helper_log(node, since))
    took, answer = ask(node, "PING")
    assert answer.startswith("SLURMJWT/2 PONG ") and took < 1, (took, answer)
    assert root_doctor(node)["name service"][1].startswith(
        "no answer for user 'demo' within 2 s (LookupTimeout; passwd: files sss")
    ok(node, "pkill -CONT -x sssd_nss")
    took, answer = ask(node, "TOKEN demo 60")
    assert answer.startswith("SLURMJWT/2 OK ") and took < 2, (took, answer)


# -- group policy, with the directory's groups, through ssh logins

def reload_helper(node: run.Shown) -> None:
    """systemctl reload: it returns once every worker serves the new
    configuration (ExecReload waits for the supervisor's verdict)."""
    since = time.time()
    ok(node, "systemctl reload slurmjwt-helper")
    assert "reloaded configuration" in helper_log(node, since - 1)


def test_systemctl_reload_fails_when_the_helper_keeps_its_old_key(node: run.Shown) -> None:
    """ExecReload reports the supervisor's verdict: a key the helper cannot
    use fails `systemctl reload`, and the helper keeps signing with the old one."""
    original = ok(node, f"cat {CONF}")
    kid = ok(node, "cat /run/slurmjwt/key/id").strip()
    ok(node, "printf x > /etc/slurm/bad.key && chown slurm: /etc/slurm/bad.key && "
             f"chmod 0644 /etc/slurm/bad.key && printf 'JwtKey=/etc/slurm/bad.key\\n' >> {CONF}")
    try:
        since = time.time()
        code, out = on_login(node, "systemctl reload slurmjwt-helper")
        assert code != 0, out
        assert "reload failed, keeping the previous configuration: " in helper_log(node, since - 1)
        _took, answer = ask(node, "TOKEN demo 60")
        assert answer.startswith("SLURMJWT/2 OK "), answer
        assert ok(node, "cat /run/slurmjwt/key/id").strip() == kid
    finally:
        ok(node, f"printf %s {shlex.quote(original)} > {CONF} && rm /etc/slurm/bad.key")
        reload_helper(node)


@pytest.fixture
def group_policy(node: run.Shown) -> Iterator[None]:
    original = ok(node, f"cat {CONF}")
    ok(node, f"printf 'AllowGroups=hpc\\nDenyGroups=contractors\\n' >> {CONF}")
    reload_helper(node)
    try:
        yield
    finally:
        ok(node, f"printf %s {shlex.quote(original)} > {CONF}")
        reload_helper(node)


@pytest.mark.parametrize(("user", "refusal"), [
    ("demo", None),                                      # in hpc
    ("eve", "eve is in DenyGroups (contractors)"),       # in hpc and contractors
    ("frank", "frank is in none of AllowGroups (hpc)"),  # in neither
    ("grace", "grace is in DenyGroups (contractors)"),   # contractors is her primary group
])
def test_group_policy_by_gid_at_ssh_login(node: run.Shown, group_policy: None, user: str,
                                          refusal: str | None) -> None:
    since = time.time()
    step = ssh(node, "if printenv SLURM_JWT >/dev/null; then slurmjwt decode --json | "
                     "tr -d '\\n'; else echo no token; fi", user=user)
    assert step.status == 0, step.output  # a refusal never blocks the login
    if refusal is None:
        assert f'"sun": "{user}"' in step.output, step.output
    else:
        assert step.output.strip() == "no token"
        assert (f"refuse (user {user}) by uid=0 " in helper_log(node, since)
                and f"reason=denied: {refusal}" in helper_log(node, since))


def test_doctor_checks_the_group_names(node: run.Shown, group_policy: None) -> None:
    assert root_doctor(node)["group policy"] == ("OK", "groups by gid: hpc=3000, "
                                                       "contractors=3001")


# A group made in the directory while the helper runs, with frank (in no
# other group) its member. slapd's admin password was thrown away: the entry
# goes in as the image's were, with slapadd, which LMDB lets run beside slapd.
LATECOMERS = ("dn: cn=latecomers,ou=groups,dc=demo,dc=test\nobjectClass: posixGroup\n"
              "cn: latecomers\ngidNumber: 3005\nmemberUid: frank\n")
SSSD_CONF = "/etc/sssd/sssd.conf"
# sssd answers "no such group" from its negative cache this long after it
# last found none (15 s by default; longer, so no step of the test outruns it).
NEGATIVE_FOR = 30


def on_directory(node: run.Shown, command: str) -> str:
    code, out = exec_out(node.running.directory, ["sh", "-c", command], user="openldap")
    assert code == 0, f"{command}: {out}"
    return out


@pytest.fixture
def late_group(node: run.Shown, sssd_back: None) -> Iterator[None]:
    """DenyGroups names a group the directory does not have yet; sssd keeps
    its negative answers for NEGATIVE_FOR seconds. Both files are put back
    after; the group stays in the directory (slapd 2.5 has no offline
    delete), which changes no other test: frank is in no group they name."""
    conf, sssd_conf = ok(node, f"cat {CONF}"), ok(node, f"cat {SSSD_CONF}")
    ok(node, f"printf '\\n[nss]\\nentry_negative_timeout = {NEGATIVE_FOR}\\n' >> {SSSD_CONF} "
             f"&& systemctl restart sssd && printf 'DenyGroups=latecomers\\n' >> {CONF}")
    wait_for("sssd answering", lambda: on_login(node, "getent passwd frank")[0] == 0)
    reload_helper(node)
    try:
        yield
    finally:
        ok(node, f"printf %s {shlex.quote(conf)} > {CONF} && "
                 f"printf %s {shlex.quote(sssd_conf)} > {SSSD_CONF}")
        reload_helper(node)  # sssd_back restarts sssd


def test_a_deny_group_created_later_and_hidden_by_sssds_negative_cache_never_grants(
        node: run.Shown, late_group: None) -> None:
    since = time.time()
    # Before the group exists nobody gets a token (a typo would look the
    # same), and sssd now caches "no such group".
    _took, answer = ask(node, "TOKEN demo 60")
    assert answer == ("SLURMJWT/2 ERR internal DenyGroups names 'latecomers', which the name "
                      "service does not know, so nobody gets a token until it does; try again "
                      "(sssd hides a new group until its negative cache expires), or fix the "
                      f"name in {CONF}")
    on_directory(node, f"printf %s {shlex.quote(LATECOMERS)} | slapadd -b dc=demo,dc=test")
    assert "gidNumber: 3005" in on_directory(
        node, "ldapsearch -x -LLL -H ldap://localhost -b dc=demo,dc=test cn=latecomers")
    # The directory has it; sssd still says there is no such group.
    assert on_login(node, "getent group latecomers")[0] == 2
    step = ssh(node, "printenv SLURM_JWT >/dev/null && echo token || echo no token",
               user="frank")
    assert (step.status, step.output.strip()) == (0, "no token"), step.output
    assert ("refuse (user frank) by uid=0 " in helper_log(node, since) and
            "reason=internal: DenyGroups names 'latecomers'" in helper_log(node, since))
    # Once sssd's negative answer expires, its member is denied and everyone
    # else gets tokens again: no reload.
    wait_for("frank denied by DenyGroups", lambda: ask(node, "TOKEN frank 60")[1] == (
        "SLURMJWT/2 ERR denied frank is in DenyGroups (latecomers)"),
        timeout=NEGATIVE_FOR + 30)
    assert on_login(node, "getent group latecomers") == (0, "latecomers:*:3005:frank\n")
    # Each worker asks on its own, ASK_AGAIN (5 s) apart at most.
    wait_for("a token for demo", lambda: ask(node, "TOKEN demo 60")[1].startswith(
        "SLURMJWT/2 OK "), timeout=15)
    assert "grant (user frank)" not in helper_log(node, since)


# -- sessions as logind makes them

def test_logind_makes_the_runtime_dir_the_hook_fills_it_the_last_logout_removes_it(
        node: run.Shown) -> None:
    wait_logged_out(node)
    # The hook hands the token to the cache writer and lets the login go on:
    # the session polls for the file.
    step = ssh(node, f"{POLL_FOR.format(path='$XDG_RUNTIME_DIR/slurmjwt/token')}; "
                     "echo XDG=$XDG_RUNTIME_DIR; stat -c '%n %U %a' $XDG_RUNTIME_DIR/slurmjwt "
                     "$XDG_RUNTIME_DIR/slurmjwt/token; test -e /run/slurmjwt/users/2000 || "
                     "echo no fallback")
    assert step.status == 0, step.output
    assert step.output.splitlines() == ["XDG=/run/user/2000", "/run/user/2000/slurmjwt demo 700",
                                        "/run/user/2000/slurmjwt/token demo 600", "no fallback"]
    wait_logged_out(node)  # and the cache with it


@pytest.fixture
def hook_before_pam_systemd(node: run.Shown) -> Iterator[None]:
    # The sshd-only setup of the README, done wrong: the profile declined,
    # the include put before common-session.
    original = ok(node, "cat /etc/pam.d/sshd")
    ok(node, "DEBIAN_FRONTEND=noninteractive pam-auth-update --disable slurmjwt && "
             "sed -i 's/^@include common-session$/@include slurmjwt\\n&/' /etc/pam.d/sshd")
    try:
        yield
    finally:
        ok(node, f"printf %s {shlex.quote(original)} > /etc/pam.d/sshd && "
                 "DEBIAN_FRONTEND=noninteractive pam-auth-update --enable slurmjwt")
        on_login(node, "rm -rf /run/slurmjwt/users/2000")


def test_a_hook_before_pam_systemd_misses_the_runtime_dir_and_doctor_says_so(
        node: run.Shown, hook_before_pam_systemd: None) -> None:
    wait_logged_out(node)
    # Once the hook's cache writer is done (the fallback has the token), the
    # session's runtime directory still has none: shells look there.
    step = ssh(node, f"{POLL_FOR.format(path='/run/slurmjwt/users/2000/token')}; "
                     "echo XDG=$XDG_RUNTIME_DIR; test -e /run/slurmjwt/users/2000/token && "
                     "echo in the fallback; test -e $XDG_RUNTIME_DIR/slurmjwt/token || "
                     "echo none in the runtime dir")
    assert step.output.splitlines() == ["XDG=/run/user/2000", "in the fallback",
                                        "none in the runtime dir"]
    assert root_doctor(node)["sshd pam"] == (
        "FAIL", "in /etc/pam.d/sshd the hook comes before pam_systemd (brought in by `@include "
                "common-session`): move `@include slurmjwt` after that line, so the session's "
                "XDG_RUNTIME_DIR exists when the cache is written")


def test_the_shipped_timer_is_active_in_each_users_systemd(node: run.Shown) -> None:
    step = ssh(node, "systemctl --user show -p ActiveState -p FragmentPath -p DropInPaths "
                     "-p TimersMonotonic slurmjwt-refresh.timer")
    lines = step.output.splitlines()
    assert "ActiveState=active" in lines, step.output
    assert "FragmentPath=/usr/lib/systemd/user/slurmjwt-refresh.timer" in lines
    assert "DropInPaths=" in lines
    timers = [line for line in lines if line.startswith("TimersMonotonic=")]
    assert len(timers) == 2, step.output  # the shipped schedule, nothing else
    assert "OnStartupUSec=30s" in timers[0] + timers[1], step.output
    assert "OnUnitActiveUSec=4min" in timers[0] + timers[1], step.output


@pytest.fixture
def fast_timer(node: run.Shown) -> Iterator[None]:
    """The documented drop-in for a shorter period, in place before the
    user's manager starts (the next login, or enable-linger)."""
    wait_logged_out(node)
    ok(node, f"mkdir -p {Path(FAST_TIMER_PATH).parent} && "
             f"printf %s {shlex.quote(FAST_TIMER)} > {FAST_TIMER_PATH}")
    try:
        yield
    finally:
        ok(node, f"rm -f {FAST_TIMER_PATH}")


TOKEN = "/run/user/2000/slurmjwt/token"


def assert_timer_refills_the_cache(node: run.Shown) -> None:
    """Remove demo's cached token as demo and poll until the timer's refresh
    (nothing else runs in the session) has written a fresh one."""
    wait_for("the hook's cache", lambda: exists(node, TOKEN), timeout=15)
    ok(node, f"setpriv --reuid=2000 --regid=2000 --clear-groups rm {TOKEN}")
    since = time.time()
    wait_for("the timer's refresh", lambda: exists(node, TOKEN), timeout=30)
    line = ok(node, f"cat {TOKEN}").split()
    assert line[0] == "slurmjwt2" and int(line[4]) > since + 1700  # a fresh 1800 s token
    assert "grant (user demo) uid=2000 by uid=2000 " in helper_log(node, since)


def test_the_timer_keeps_the_cache_fresh_during_a_session(node: run.Shown,
                                                          fast_timer: None) -> None:
    session = subprocess.Popen(steps.ssh_argv(node.keys, node.running.ssh_port, "sleep 120"),
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        assert_timer_refills_the_cache(node)
    finally:
        session.kill()
        session.wait()
        # The remote `sleep` outlives the ssh client (no terminal to hang up).
        on_login(node, "pkill -u 2000 -x sleep")


@pytest.fixture
def linger(node: run.Shown) -> Iterator[None]:
    ok(node, "loginctl enable-linger demo")
    try:
        yield
    finally:
        ok(node, "loginctl disable-linger demo")
        wait_logged_out(node)


def test_with_linger_the_timer_keeps_the_cache_fresh_after_logout(
        node: run.Shown, fast_timer: None, linger: None) -> None:
    assert ssh(node, "true").status == 0
    wait_for("demo's logout", lambda: "demo" not in ok(node, "loginctl list-sessions "
                                                             "--no-legend"))
    assert ok(node, "systemctl is-active user@2000.service").strip() == "active"
    assert_timer_refills_the_cache(node)


# -- doctor on this node

def test_doctor_is_ok_everywhere_as_root_and_as_the_user(node: run.Shown) -> None:
    found = root_doctor(node)
    assert {status for status, _ in found.values()} == {"OK"}, found
    assert found["helper unit"] == (
        "OK", "slurmjwt-helper.socket and slurmjwt-helper-root.socket enabled and listening on "
              "/run/slurmjwt/helper.sock and /run/slurmjwt/root.sock: systemd starts the helper "
              "on the first connection")
    assert found["sshd pam"] == ("OK", "/etc/pam.d/sshd includes the hook after pam_systemd "
                                       "(`@include common-session`)")
    assert found["user timer"] == ("OK", "slurmjwt-refresh.timer is enabled for every user's "
                                          "systemd")
    assert found["name service"][1].startswith("demo is uid 2000 (passwd: files sss in ")
    step = ssh(node, "slurmjwt doctor")
    found = doctor_lines(step.output)
    assert step.status == 0 and {status for status, _ in found.values()} == {"OK"}, step.output
    assert found["timer"] == ("OK", "slurmjwt-refresh.timer is active in your systemd")
    assert found["cache"][1].startswith("/run/user/2000/slurmjwt: token valid for ")


def test_doctor_names_a_socket_unit_that_is_not_enabled(node: run.Shown) -> None:
    ok(node, "systemctl disable slurmjwt-helper-root.socket")
    try:
        assert root_doctor(node)["helper unit"] == (
            "FAIL", "slurmjwt-helper-root.socket is disabled, so nothing will listen on "
                    "/run/slurmjwt/root.sock after a reboot; run systemctl enable --now "
                    "slurmjwt-helper.socket slurmjwt-helper-root.socket")
    finally:
        ok(node, "systemctl enable --now slurmjwt-helper-root.socket")


def test_doctor_names_a_timer_not_enabled_globally(node: run.Shown) -> None:
    ok(node, "systemctl --global disable slurmjwt-refresh.timer")
    try:
        assert root_doctor(node)["user timer"] == (
            "WARN", "slurmjwt-refresh.timer is disabled for users: tokens in long sessions and "
                    "tmux stay fresh only while a shell prompts; run systemctl --global enable "
                    "slurmjwt-refresh.timer")
    finally:
        ok(node, "systemctl --global enable slurmjwt-refresh.timer")


# -- entrances without a session

def test_a_service_of_a_directory_user_runs_slurm_through_slurmjwt_exec(node: run.Shown) -> None:
    """The README's recipe for a service (User=, ExecStart=slurmjwt exec --
    ...): no PAM session, no runtime directory. The package enabled
    slurmjwt-userdir.socket; its per-connection service, as systemd runs
    it, makes the user's /run cache, and the commands get live tokens."""
    uid = UIDS["eve"]
    ok(node, f"rm -rf /run/slurmjwt/users/{uid}")
    assert ok(node, "systemctl is-enabled slurmjwt-userdir.socket").strip() == "enabled"
    # A script, as a service runs one (systemd would expand ${...} on ExecStart).
    probe = ('#!/bin/sh\nsqueue -h >/dev/null && sbatch -Q -o /dev/null --wrap=true >/dev/null '
             '&& command -v squeue && echo "runtime=${XDG_RUNTIME_DIR-none}"\n')
    ok(node, f"printf %s {shlex.quote(probe)} > /usr/local/bin/workflow && "
             "chmod 0755 /usr/local/bin/workflow")
    out = ok(node, "systemd-run --quiet --wait --pipe --collect -p User=eve "
                   "/usr/bin/slurmjwt exec -- /usr/local/bin/workflow")
    assert out.split() == ["/usr/lib/slurmjwt/bin/squeue", "runtime=none"], out
    assert ok(node, f"stat -c '%U %a' /run/slurmjwt/users/{uid}").split() == ["eve", "700"]
    assert ok(node, f"cat /run/slurmjwt/users/{uid}/token").split()[0] == "slurmjwt2"
    # Made by slurmjwt-userdir as systemd runs it, hardening and all.
    assert "Slurm JWT per-user cache directory" in ok(
        node, "journalctl -q -o cat --no-pager -u 'slurmjwt-userdir@*'")
