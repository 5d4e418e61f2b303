"""Slurm's own metrics scraped with a token that never dies: slurmctld 26.05
(Debian sid's, in the demo's controller image) with MetricsType=
metrics/openmetrics and MetricsAuthUsers=sysjwt (a system account); the real
helper on this host; `slurmjwt tokenfile --if-needed` as the timer runs it
(every 2 s here, as a drop-in OnUnitActiveSec=2s would); and Debian's
Prometheus, running as sysjwt and reading the token file as its
authorization credentials_file, scrapes slurmctld's five /metrics/
endpoints across more than three token lifetimes (Lifespan=20) without a
single failed scrape.

What 26.05 needs besides MetricsType and MetricsAuthUsers, found here: its
HTTP server checks tokens with the key of SlurmctldHttpAuthParameters=
jwt_key=PATH (or jwks=), not AuthAltParameters'; without it every token is
refused ("Invalid authentication credential").
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pam_slurmjwt.token import fingerprint, slurm_claims
from tests.integration.fixtures.helperd import HelperProcess, start_helper
from tests.integration.fixtures.install import Installed
from tests.integration.fixtures.prometheus import free_port, query, running_prometheus
from tests.integration.fixtures.users import TestUser

pytestmark = [pytest.mark.slow, pytest.mark.root]

ACCOUNT = "sysjwt"  # the test users' system account (uid < 1000)
LIFESPAN = 20
MARGIN = 10  # RefreshMargin: a new token 10 s before the old one expires
TICK = 2.0  # the timer's period here
LIFETIMES = 3
ENDPOINTS = ("jobs", "nodes", "partitions", "scheduler", "jobs-users-accts")
NAME = "slurmjwt-tokenfile-it"
IMAGE_RELEASE = "sid"  # Slurm 26.05.5

SLURM_CONF = """\
ClusterName=tokenfile
SlurmctldHost=ctl
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=/etc/slurm/jwt_hs256.key,disable_token_creation
SlurmctldHttpAuthParameters=jwt_key=/etc/slurm/jwt_hs256.key
MetricsType=metrics/openmetrics
MetricsAuthUsers={account}
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
MailProg=/bin/true
NodeName=ctl CPUs=1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES State=UP
"""

# The account with this host's uid and gid (slurmctld resolves `sun` itself),
# munged, the key as Slurm >= 23.11 wants it, slurmctld in the foreground.
RUN_CONTROLLER = """\
set -eu
groupadd -g {gid} {account}
useradd -u {uid} -g {gid} -M -s /usr/sbin/nologin {account}
install -d -o munge -g munge -m 0700 /etc/munge
install -d -o munge -g munge -m 0755 /run/munge
dd if=/dev/urandom bs=1024 count=1 status=none > /etc/munge/munge.key
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
setpriv --reuid=munge --regid=munge --clear-groups munged
cp /x/slurm.conf /etc/slurm/slurm.conf
install -o slurm -g slurm -m 0600 /x/jwt_hs256.key /etc/slurm/jwt_hs256.key
install -d -o slurm -g slurm -m 0755 /var/lib/slurm /var/log/slurm
install -d -o slurm -g slurm -m 0700 /var/lib/slurm/slurmctld
exec slurmctld -D -i
"""


@dataclass
class Stack:
    """Everything the test runs: the controller's address, the helper, the
    token file and what the refresher saw, Prometheus' API."""

    ctl: str
    helper: HelperProcess
    tokenfile: Path
    prometheus: str
    written: list[tuple[float, str, int, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def http_status(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as err:
        return err.code


def wait_for(what: str, check: object, timeout: float, poll: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@contextlib.contextmanager
def controller(work: Path, account: TestUser, key: bytes) -> Iterator[str]:
    """Start slurmctld 26.05 in a container on its own network; yield its
    address; always remove it."""
    from tests.demo import engine, images
    from tests.demo.errors import DemoError
    from tests.demo.releases import release

    why = engine.unavailable()
    if why is not None:
        pytest.skip(f"slurmctld 26.05 runs in Docker here: {why}")
    said: list[str] = []
    try:
        client = engine.ensure_engine(said.append)
        rel = release(IMAGE_RELEASE)
        base = images.ensure_base(client, rel, said.append)
        with tempfile.TemporaryDirectory(prefix="slurmjwt-ctx-") as ctx:
            images.stage_context(Path(ctx))
            images.build(client, Path(ctx), "controller", images.tag("controller", rel), base,
                         rel.slurm_side.packages)
    except DemoError as err:
        raise AssertionError(f"cannot build the {IMAGE_RELEASE} controller image: {err}; "
                             f"{said[-3:]}") from None
    mount = work / "ctl"
    mount.mkdir(mode=0o755)
    (mount / "slurm.conf").write_text(SLURM_CONF.format(account=account.name))
    (mount / "jwt_hs256.key").write_bytes(key)
    (mount / "run.sh").write_text(RUN_CONTROLLER.format(account=account.name, uid=account.uid,
                                                        gid=account.gid))
    # What a run that was killed may have left.
    subprocess.run(["docker", "rm", "-f", NAME], capture_output=True, check=False)
    subprocess.run(["docker", "network", "rm", NAME], capture_output=True, check=False)
    subprocess.run(["docker", "network", "create", NAME], capture_output=True, check=True)
    try:
        subprocess.run(["docker", "run", "-d", "--name", NAME, "--hostname", "ctl",
                        "--network", NAME, "-v", f"{mount}:/x:ro",
                        images.tag("controller", rel), "sh", "/x/run.sh"],
                       capture_output=True, check=True)
        address = subprocess.run(
            ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}"
             "{{end}}", NAME], capture_output=True, text=True, check=True).stdout.strip()
        url = f"http://{address}:6817/metrics/nodes"

        def up() -> bool:
            try:
                return http_status(url) == 401
            except OSError:
                return False
        try:
            wait_for("slurmctld's HTTP server", up, 60)
        except AssertionError:
            logs = subprocess.run(["docker", "logs", "--tail", "30", NAME], capture_output=True,
                                  text=True, check=False)
            raise AssertionError(f"slurmctld never answered: {logs.stdout}{logs.stderr}"
                                 ) from None
        yield address
    finally:
        subprocess.run(["docker", "rm", "-f", NAME], capture_output=True, check=False)
        subprocess.run(["docker", "network", "rm", NAME], capture_output=True, check=False)


def refresher(stack: Stack, installed: Installed, stop: threading.Event) -> None:
    """What the timer does: slurmjwt tokenfile --if-needed every TICK; note
    each new file (time, fingerprint, exp, inode). Never logs a token."""
    argv = [installed.cmd("slurmjwt"), "-c", str(stack.helper.config), "tokenfile",
            "--if-needed", "--user", ACCOUNT, "--output", str(stack.tokenfile)]
    while not stop.is_set():
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            stack.errors.append(f"exit {done.returncode}: {done.stderr.strip()}")
        elif done.stdout:
            token = stack.tokenfile.read_text().strip()
            stack.written.append((time.time(), fingerprint(token), slurm_claims(token).exp,
                                  stack.tokenfile.stat().st_ino))
        stop.wait(TICK)


def prometheus_config(ctl: str, tokenfile: Path) -> str:
    jobs = []
    for endpoint in ENDPOINTS:
        jobs.append(f"""  - job_name: slurmctld-{endpoint}
    metrics_path: /metrics/{endpoint}
    authorization:
      type: Bearer
      credentials_file: {tokenfile}
    static_configs:
      - targets: ["{ctl}:6817"]
""")
    return ("global:\n  scrape_interval: 2s\n  scrape_timeout: 1500ms\n"
            "scrape_configs:\n" + "".join(jobs))


@pytest.fixture(scope="module")
def stack(installed: Installed, test_users: dict[str, TestUser]) -> Iterator[Stack]:
    if shutil.which("prometheus") is None:
        pytest.skip("needs Debian's prometheus package (tests/setup-deps.sh installs it)")
    account = test_users[ACCOUNT]
    work = Path(tempfile.mkdtemp(prefix="slurmjwt-tokenfile-"))
    work.chmod(0o755)
    helper = None
    try:
        key = secrets.token_bytes(32)
        keydir = work / "key"
        keydir.mkdir(mode=0o755)
        key_path = keydir / "jwt_hs256.key"
        key_path.write_bytes(key)
        shutil.chown(key_path, "slurm", "slurm")
        key_path.chmod(0o600)
        slurm_conf = work / "slurm.conf"
        slurm_conf.write_text(f"SlurmUser=slurm\nAuthAltTypes=auth/jwt\n"
                              f"AuthAltParameters=jwt_key={key_path}\n")
        hwork = work / "helper"
        hwork.mkdir()
        helper = start_helper(installed, slurm_conf, hwork,
                              f"Lifespan={LIFESPAN}\nRefreshMargin={MARGIN}\n"
                              f"AllowPrivileged={ACCOUNT}\n", verbose=False)
        tokens = work / "tokens"
        tokens.mkdir(mode=0o755)
        with controller(work, account, key) as ctl:
            port = free_port()
            st = Stack(ctl, helper, tokens / ACCOUNT, f"http://127.0.0.1:{port}")
            stop = threading.Event()
            thread = threading.Thread(target=refresher, args=(st, installed, stop), daemon=True)
            thread.start()
            try:
                wait_for("the first token file", lambda: bool(st.written or st.errors), 30)
                assert not st.errors, st.errors
                with running_prometheus(work / "prometheus",
                                        prometheus_config(ctl, tokens / ACCOUNT),
                                        account.uid, account.gid, port):
                    yield st
            finally:
                stop.set()
                thread.join(30)
    finally:
        if helper is not None:
            helper.stop()
        shutil.rmtree(work, ignore_errors=True)


def test_prometheus_scrapes_every_endpoint_across_three_token_lifetimes_without_a_failure(
        stack: Stack) -> None:
    first = stack.tokenfile.read_text().strip()
    api = stack.prometheus

    def scraping() -> bool:
        try:
            return len(query(api, 'up{job=~"slurmctld-.*"} == 1')) == len(ENDPOINTS)
        except OSError:
            return False
    wait_for("Prometheus' first successful scrape of every endpoint", scraping, 60)
    started = time.time()
    wait_for(f"{LIFETIMES} token lifetimes",
             lambda: time.time() - started > LIFETIMES * LIFESPAN + 4, LIFETIMES * LIFESPAN + 30,
             poll=1.0)
    window = int(time.time() - started)
    assert not stack.errors, stack.errors
    for endpoint in ENDPOINTS:
        job = f'job="slurmctld-{endpoint}"'
        count = query(api, f"count_over_time(up{{{job}}}[{window}s])")
        lowest = query(api, f"min_over_time(up{{{job}}}[{window}s])")
        # Every 2 s for the whole window; a scrape never failed (up never 0).
        assert count and int(count[0]["value"][1]) >= window // 2 - 3, (endpoint, count)  # type: ignore[index]
        assert lowest and lowest[0]["value"][1] == "1", (endpoint, lowest)  # type: ignore[index]
        if endpoint != "jobs-users-accts":  # per user and account: empty without jobs
            samples = query(api, f"min_over_time(scrape_samples_scraped{{{job}}}[{window}s])")
            assert samples and int(samples[0]["value"][1]) > 0, (endpoint, samples)  # type: ignore[index]
    # slurmctld's own metrics, as it serves them.
    assert query(api, 'slurm_nodes_unknown{job="slurmctld-nodes"}')
    # The tokens the scrapes used: one per lifetime at least, each written
    # before the previous one expired, each a new file renamed into place.
    tokens = [w for w in stack.written if w[0] >= started - LIFESPAN]
    assert len({w[1] for w in tokens}) >= LIFETIMES + 1, tokens
    for (_t0, _fp0, exp0, ino0), (t1, _fp1, _exp1, ino1) in zip(stack.written,
                                                                 stack.written[1:]):
        assert t1 < exp0 - MARGIN / 2, (t1, exp0)
        assert ino1 != ino0
    # The first token has expired: slurmctld refuses it, and a scrape
    # without a token; the fresh one in the file passes.
    assert slurm_claims(first).exp < time.time()
    url = f"http://{stack.ctl}:6817/metrics/nodes"
    assert http_status(url, first) == 401
    assert http_status(url) == 401
    assert http_status(url, stack.tokenfile.read_text().strip()) == 200


def test_the_file_is_the_accounts_alone_in_a_directory_only_root_changes(stack: Stack) -> None:
    st = stack.tokenfile.stat()
    entry = pwd.getpwnam(ACCOUNT)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (entry.pw_uid, entry.pw_gid,
                                                                0o600)
    assert sorted(os.listdir(stack.tokenfile.parent)) == [ACCOUNT]


def test_the_real_helper_refuses_root_and_a_system_account_without_allow_privileged(
        stack: Stack, installed: Installed, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir(mode=0o755)
    out.chmod(0o755)
    for user, line in (
            ("root", "slurmjwt: refused: root is root; tokens for root are off "
                     "(AllowPrivileged)"),
            ("daemon", f"slurmjwt: refused: daemon is a system account (uid "
                       f"{pwd.getpwnam('daemon').pw_uid} < MinUid 1000)")):
        done = subprocess.run([installed.cmd("slurmjwt"), "-c", str(stack.helper.config),
                               "tokenfile", "--user", user, "--output", str(out / user)],
                              capture_output=True, text=True, timeout=30, check=False)
        assert (done.returncode, done.stdout, done.stderr) == (5, "", line + "\n")
    assert os.listdir(out) == []
