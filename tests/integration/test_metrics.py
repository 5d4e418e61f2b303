"""The helper's metrics scraped by Debian's Prometheus: the real helper
(installed, as root, dropping to slurm; Workers=2 beside the RootSocket
worker) with MetricsListen= on a free port; a burst of logins' requests on
RootSocket and users' on HelperSocket, some refused; Prometheus' query API
then gives the counts the test made, summed over every worker. Also
`slurmjwt metrics` (root yes, a user no) and a MetricsListen= that does not
parse (tokens still served)."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.fixtures.helperd import HelperProcess, _exchange, start_helper
from tests.integration.fixtures.install import Installed
from tests.integration.fixtures.prometheus import free_port, query, running_prometheus
from tests.integration.fixtures.users import TestUser
from tests.integration.test_tokenfile import wait_for

LOGINS = 40  # root's requests on RootSocket, as pam_slurmjwt.so makes them
USER_TOKENS = 12  # alice's on HelperSocket, spread over the users' workers


@dataclass
class Stack:
    helper: HelperProcess
    prometheus: str
    work: Path


def _keyed(work: Path) -> Path:
    """A slurm.conf (SlurmUser=slurm) with an HS256 key of slurm's."""
    key = work / "jwt_hs256.key"
    key.write_bytes(os.urandom(32))
    shutil.chown(key, "slurm", "slurm")
    key.chmod(0o600)
    conf = work / "slurm.conf"
    conf.write_text(f"SlurmUser=slurm\nAuthAltTypes=auth/jwt\nAuthAltParameters=jwt_key={key}\n")
    return conf


@pytest.fixture(scope="module")
def stack(installed: Installed, test_users: dict[str, TestUser]) -> Iterator[Stack]:
    if shutil.which("prometheus") is None:
        pytest.skip("needs Debian's prometheus package (tests/setup-deps.sh installs it)")
    work = Path(tempfile.mkdtemp(prefix="slurmjwt-metrics-"))
    work.chmod(0o755)
    helper = None
    try:
        (work / "helper").mkdir()
        port = free_port()
        helper = start_helper(installed, _keyed(work), work / "helper",
                              f"MetricsListen=127.0.0.1:{port}\nWorkers=2\n", verbose=False)
        nobody = pwd.getpwnam("nobody")
        config = ("global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n"
                  f"  - job_name: slurmjwt\n    static_configs:\n"
                  f"      - targets: ['127.0.0.1:{port}']\n")
        nogroup = grp.getgrnam("nogroup").gr_gid
        with running_prometheus(work / "prom", config, nobody.pw_uid, nogroup,
                                free_port()) as api:
            yield Stack(helper, api, work)
    finally:
        if helper is not None:
            helper.stop()
        shutil.rmtree(work, ignore_errors=True)


def _count(api: str, expr: str) -> float:
    try:
        result = query(api, expr)
    except OSError:  # Prometheus not listening yet
        return -1.0
    return float(result[0]["value"][1]) if result else 0.0  # type: ignore[index]


def test_prometheus_counts_what_the_test_did_over_every_worker(
        stack: Stack, test_users: dict[str, TestUser]) -> None:
    helper, api = stack.helper, stack.prometheus
    alice, bob = test_users["alice"], test_users["bob"]
    wait_for("Prometheus scraping the helper",
             lambda: _count(api, 'up{job="slurmjwt"}') == 1, 60)
    with ThreadPoolExecutor(16) as pool:
        logins = list(pool.map(lambda _: _exchange(str(helper.root_socket),
                                                   b"SLURMJWT/2 TOKEN alice -\n", 10),
                               range(LOGINS)))
    assert all(a.startswith(b"SLURMJWT/2 OK ") for a in logins)
    users = [helper.ask(b"SLURMJWT/2 TOKEN alice -\n", as_uid=alice.uid)
             for _ in range(USER_TOKENS)]
    assert all(a.startswith(b"SLURMJWT/2 OK ") for a in users)
    denied = [helper.ask(b"SLURMJWT/2 TOKEN alice -\n", as_uid=bob.uid) for _ in range(3)]
    assert all(a.startswith(b"SLURMJWT/2 ERR denied ") for a in denied)
    assert helper.ask(b"SLURMJWT/2 FOO\n").startswith(b"SLURMJWT/2 ERR bad-request ")
    assert helper.ask(b"SLURMJWT/2 TOKEN nosuchuser -\n").startswith(b"SLURMJWT/2 ERR no-user ")
    want = {
        'sum(slurmjwt_tokens_issued_total{job="slurmjwt",alg="HS256",caller="pam"})': LOGINS,
        'sum(slurmjwt_tokens_issued_total{job="slurmjwt",alg="HS256",caller="user"})':
            USER_TOKENS,
        'sum(slurmjwt_requests_refused_total{job="slurmjwt",reason="denied"})': 3,
        'sum(slurmjwt_requests_refused_total{job="slurmjwt",reason="bad-request"})': 1,
        'sum(slurmjwt_requests_refused_total{job="slurmjwt",reason="no-user"})': 1,
        'sum(slurmjwt_request_duration_seconds_count{job="slurmjwt",kind="token"})':
            LOGINS + USER_TOKENS + 3 + 1,
        f'slurmjwt_key_info{{job="slurmjwt",kid="{helper.key_id()}",alg="HS256"}}': 1,
    }
    got: dict[str, float] = {}

    def counted() -> bool:
        got.update({expr: _count(api, expr) for expr in want})
        return got == want

    wait_for(f"Prometheus to see the counts (last seen {got})", counted, 30)
    key_age = _count(api, 'time() - slurmjwt_key_loaded_timestamp_seconds{job="slurmjwt"}')
    assert 0 <= key_age < 3600
    assert _count(api, 'process_start_time_seconds{job="slurmjwt"}') > 0


def test_slurmjwt_metrics_prints_them_for_root_and_no_one_else(
        stack: Stack, installed: Installed, test_users: dict[str, TestUser]) -> None:
    env = {"PATH": "/usr/bin:/bin", **stack.helper.env}
    out = subprocess.run([installed.cmd("slurmjwt"), "metrics"], capture_output=True,
                         text=True, env=env, timeout=30)
    assert out.returncode == 0, out.stderr
    assert 'slurmjwt_tokens_issued_total{alg="HS256",caller="pam"}' in out.stdout
    assert "alice" not in out.stdout
    slurm = subprocess.run(["setpriv", "--reuid=slurm", "--regid=slurm", "--clear-groups",
                            installed.cmd("slurmjwt"), "metrics"], capture_output=True,
                           text=True, env=env, timeout=30)
    assert (slurm.returncode, slurm.stderr) == (0, "")
    assert "slurmjwt_key_info{" in slurm.stdout
    bob = test_users["bob"]
    out = subprocess.run(["setpriv", f"--reuid={bob.uid}", f"--regid={bob.gid}",
                          "--clear-groups", installed.cmd("slurmjwt"), "metrics"],
                         capture_output=True, text=True, env=env, timeout=30)
    assert (out.returncode, out.stdout, out.stderr) == (
        1, "", "slurmjwt: only root and SlurmUser may read the helper's metrics\n")


def test_metrics_listen_that_does_not_parse_is_logged_and_tokens_are_served(
        stack: Stack, installed: Installed) -> None:
    work = stack.work / "bad"
    work.mkdir()
    helper = start_helper(installed, stack.work / "slurm.conf", work,
                          "MetricsListen=localhost:9101\n")
    try:
        assert helper.ask(b"SLURMJWT/2 TOKEN alice -\n").startswith(b"SLURMJWT/2 OK ")
    finally:
        helper.stop()
    assert (f"slurmjwt-helper: {work}/slurmjwt.conf: MetricsListen=localhost:9101: 'localhost' "
            f"is not a numeric IPv4 address or a bracketed IPv6 one; serving tokens without "
            f"metrics\n") in helper.log_text()
    assert not (work / "key" / "metrics.sock").exists()
