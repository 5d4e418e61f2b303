"""Accounting with the project's tokens (root: users, daemons): the session's
cluster runs slurmdbd on MariaDB, and a login node without munge (a slurm.conf
whose munge socket does not exist) reaches it with the helper's token only.

sacct, sacctmgr, sreport and sshare work with the token and fail without it;
slurmrestd's /slurmdb endpoints answer with it; slurmdbd down fails
accounting as Slurm fails and nothing else; what slurmdbd keeps of SLURM_JWT
with AccountingStoreFlags=job_env is observed (Slurm 22.05 here); doctor
names a slurmdbd that refuses tokens, and the fix.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.fixtures.cluster import Cluster
from tests.integration.fixtures.helperd import HelperProcess, start_helper
from tests.integration.fixtures.install import REPO, Installed
from tests.integration.fixtures.login import TOKEN_RE, jwt_only_copy, token_claims
from tests.integration.fixtures.users import TestUser

pytestmark = pytest.mark.root

CLI_FILTER = REPO / "packaging" / "slurm" / "cli_filter.lua"
OTHER_KEY = bytes(range(32))
# What a client without munge says when it has no token (auth/munge cannot
# reach its socket).
NO_MUNGE = "Munge encode failed"


@dataclass(frozen=True)
class Login:
    """A login node's view of the cluster: the JWT-only slurm.conf, a helper
    for the cluster, the users' caches, and the installed project."""

    cluster: Cluster
    installed: Installed
    helper: HelperProcess
    conf: Path
    caches: Path

    def env(self, user: str, conf: Path | None = None) -> dict[str, str]:
        return {"SLURM_CONF": str(conf or self.conf), "SLURMJWT_CONF": str(self.helper.config),
                "SLURMJWT_CACHE_DIR": str(self.caches / user)}

    def with_token(self, user: str, argv: Sequence[str],
                   conf: Path | None = None) -> subprocess.CompletedProcess[str]:
        """As `user`: slurmjwt exec -- argv (the helper's token in SLURM_JWT)."""
        return self.cluster.run([self.installed.cmd("slurmjwt"), "exec", "--", *argv],
                                user=user, env_extra=self.env(user, conf))

    def without_token(self, user: str, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """As `user`: argv itself, no SLURM_JWT: munge is all it could use."""
        return self.cluster.run(list(argv), user=user, env_extra={"SLURM_CONF": str(self.conf)})

    def token(self, user: str) -> str:
        """As `user`: slurmjwt token; return the token it printed."""
        out = self.cluster.run([self.installed.cmd("slurmjwt"), "token"], user=user,
                               env_extra=self.env(user))
        assert out.returncode == 0, out.stderr
        token = out.stdout.strip()
        assert TOKEN_RE.fullmatch(token), "slurmjwt token printed no token"
        return token


@pytest.fixture(scope="module")
def login(installed: Installed, cluster: Cluster,
          test_users: dict[str, TestUser]) -> Iterator[Login]:
    assert cluster.slurmdbd_conf is not None, "the session's cluster runs no slurmdbd"
    work = Path(tempfile.mkdtemp(prefix="slurmjwt-acct-"))
    helper: HelperProcess | None = None
    try:
        work.chmod(0o755)
        conf = jwt_only_copy(cluster, work / "slurm.conf")
        (work / "helper").mkdir()
        # No munge here: Export=auto exports the token, as on a munge-less login node.
        helper = start_helper(installed, cluster.slurm_conf, work / "helper",
                              extra=f"MungeSocket={work}/no-munged.socket\n")
        caches = work / "caches"
        caches.mkdir()
        caches.chmod(0o1777)
        yield Login(cluster, installed, helper, conf, caches)
    finally:
        if helper is not None:
            helper.stop()
        shutil.rmtree(work, ignore_errors=True)


def submit(login: Login, user: str, conf: Path | None = None) -> str:
    """As `user`, with the helper's token, sbatch a job that ends COMPLETED;
    return its id once slurmdbd's record of it is whole. slurmctld sends it
    asynchronously: for a job that starts within a second, slurmdbd first
    holds a placeholder (JobName "allocation", UID 0, no eligible time, so
    sacct without -j leaves it out) that is completed within seconds (seen on
    22.05)."""
    out = login.with_token(user, ["sbatch", "--parsable", "--output=/dev/null",
                                  "--wrap", "true"], conf)
    assert out.returncode == 0, out.stderr
    job = out.stdout.strip().split(";")[0]
    assert login.cluster.wait_job(job) == "COMPLETED"
    deadline = time.monotonic() + 30
    while True:
        # As root, by munge: slurmdbd's record, not the token's doing.
        record = login.cluster.run(["sacct", "-n", "-X", "-P", "-j", job,
                                    "-o", "JobName,User,State"])
        whole = record.stdout.strip() == f"wrap|{user}|COMPLETED"
        if whole or time.monotonic() > deadline:
            assert whole, (record.stdout, record.stderr)
            return job
        time.sleep(0.1)


@pytest.fixture(scope="module")
def alices_job(login: Login) -> str:
    return submit(login, "alice")


# command -> (argv, text its output holds; "{cluster}", "{account}", "{job}" filled in)
COMMANDS = {
    "sacct": (["sacct", "-n", "-X", "-P", "-o", "JobID,User,State"], "{job}|alice|COMPLETED"),
    "sacctmgr show assoc": (["sacctmgr", "-n", "-P", "show", "assoc", "user=alice",
                             "format=Cluster,Account,User"], "{cluster}|{account}|alice"),
    "sacctmgr show user": (["sacctmgr", "-n", "-P", "show", "user", "alice",
                            "format=User,DefaultAccount"], "alice|{account}"),
    "sreport cluster utilization": (["sreport", "-P", "cluster", "utilization"],
                                    "Cluster Utilization"),
    "sshare": (["sshare", "-n", "-P", "-u", "alice", "-o", "Account,User"], "{account}|alice"),
}


@pytest.mark.parametrize("command", COMMANDS)
def test_accounting_commands_work_with_the_token_and_fail_without_it(
        login: Login, alices_job: str, command: str) -> None:
    argv, expected = COMMANDS[command]
    cluster = login.cluster
    wanted = expected.format(cluster=cluster.name, account=cluster.account, job=alices_job)

    with_token = login.with_token("alice", argv)
    without = login.without_token("alice", argv)

    assert with_token.returncode == 0, with_token.stderr
    assert wanted in with_token.stdout, with_token.stdout
    assert without.returncode != 0, without.stdout
    assert NO_MUNGE in without.stderr, without.stderr


def test_slurmrestd_accounting_endpoints_answer_with_the_token(
        login: Login, alices_job: str) -> None:
    cluster = login.cluster
    api = f"/slurmdb/{cluster.restd_db_api}"
    token = login.token("alice")
    headers = {"X-SLURM-USER-NAME": "alice", "X-SLURM-USER-TOKEN": token}

    job_status, job_body = cluster.restd_get(f"{api}/job/{alices_job}", headers)
    assoc_status, assoc_body = cluster.restd_get(f"{api}/associations", headers)
    forged = {**headers, "X-SLURM-USER-TOKEN": cluster.mint("alice", key=OTHER_KEY)}
    refused_status, refused_body = cluster.restd_get(f"{api}/job/{alices_job}", forged)

    assert job_status == 200, job_body
    assert json.loads(job_body)["errors"] == []
    jobs = json.loads(job_body)["jobs"]
    assert [(j["job_id"], j["user"], j["state"]["current"]) for j in jobs] == \
        [(int(alices_job), "alice", "COMPLETED")]
    assert assoc_status == 200, assoc_body
    assert {"cluster": cluster.name, "account": cluster.account, "user": "alice"} in [
        {k: a[k] for k in ("cluster", "account", "user")}
        for a in json.loads(assoc_body)["associations"]]
    # 22.05's dbv0.0.38 answers a refused token with HTTP 200 and an error.
    refused = json.loads(refused_body)
    assert (refused_status, refused.get("jobs", [])) == (200, []), refused_body
    assert refused["errors"], refused_body


def test_with_slurmdbd_down_sacct_fails_and_tokens_and_squeue_do_not(login: Login) -> None:
    sacct = ["sacct", "-n", "-X"]
    with login.cluster.slurmdbd_stopped():
        down = login.with_token("alice", sacct)
        token = login.token("alice")
        squeue = login.with_token("alice", ["squeue", "--noheader"])
    back = login.with_token("alice", sacct)

    assert down.returncode != 0, down.stdout
    assert "Connection refused" in down.stderr, down.stderr
    token_claims(login.cluster, token, "alice")
    assert squeue.returncode == 0, squeue.stderr
    assert back.returncode == 0, back.stderr


def env_var(text: str, name: str) -> list[str]:
    """Given `sacct --env-vars` output, return the values of `name` in it."""
    return [line.partition("=")[2] for line in text.splitlines()
            if line.startswith(f"{name}=")]


@contextlib.contextmanager
def filtered_conf(login: Login) -> Iterator[Path]:
    """The login node's slurm.conf with the project's cli_filter loaded
    (CliFilterPlugins=cli_filter/lua, cli_filter.lua beside it)."""
    work = Path(tempfile.mkdtemp(prefix="slurmjwt-filter-"))
    try:
        work.chmod(0o755)
        conf = work / "slurm.conf"
        conf.write_text(login.conf.read_text() + "CliFilterPlugins=cli_filter/lua\n")
        conf.chmod(0o644)
        shutil.copy(CLI_FILTER, work / "cli_filter.lua")
        (work / "cli_filter.lua").chmod(0o644)
        yield conf
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.parametrize("cli_filter", [False, True], ids=["plain", "cli-filter"])
def test_slurmdbd_keeps_the_submitters_live_token_on_22_05(login: Login,
                                                           cli_filter: bool) -> None:
    """Observed on Slurm 22.05 with AccountingStoreFlags=job_env: sbatch with
    SLURM_JWT stores it in the job's environment, and slurmdbd keeps that
    (sacct --env-vars, the job_env table), with or without the project's
    cli_filter (22.05's sbatch reads the token only when it submits, so the
    filter leaves it). The stored value is the submitter's token, signed with
    the cluster's key and not expired."""
    cluster = login.cluster
    with contextlib.ExitStack() as stack:
        conf = stack.enter_context(filtered_conf(login)) if cli_filter else None
        if conf is not None:
            # The plugin is loaded: without its script, sbatch cannot start.
            os.rename(conf.parent / "cli_filter.lua", conf.parent / "away.lua")
            broken = login.with_token("alice", ["sbatch", "--wrap", "true"], conf)
            os.rename(conf.parent / "away.lua", conf.parent / "cli_filter.lua")
            assert broken.returncode != 0 and "cli_filter" in broken.stderr, broken.stderr
        job = submit(login, "alice", conf)
        shown = login.with_token("alice", ["sacct", "-j", job, "--env-vars"])
        # Names from the fixture, an int: nothing to inject.
        tables = (f"slurm_acct_db.{cluster.name}_job_env_table e JOIN "
                  f"slurm_acct_db.{cluster.name}_job_table j ON j.env_hash_inx = e.hash_inx")
        sql = f"SELECT e.env_vars FROM {tables} WHERE j.id_job = {int(job)}"  # noqa: S608
        query = cluster.run([
            "mariadb", "--no-defaults", f"--socket={cluster.db_socket}",
            "--user=root", "--batch", "--skip-column-names", "--execute", sql])

    assert shown.returncode == 0, shown.stderr
    stored = env_var(shown.stdout, "SLURM_JWT")
    assert len(stored) == 1, "sacct --env-vars shows no SLURM_JWT"
    token_claims(cluster, stored[0], "alice")
    assert query.returncode == 0, query.stderr
    assert f"SLURM_JWT={stored[0]}" in query.stdout.replace("\\n", "\n").splitlines()


@contextlib.contextmanager
def slurmdbd_without_jwt(cluster: Cluster) -> Iterator[None]:
    """Restart slurmdbd with AuthAltTypes and AuthAltParameters gone from
    slurmdbd.conf (slurmctld keeps taking tokens); afterwards restart it with
    its own configuration again, whatever happened."""
    assert cluster.slurmdbd_conf is not None
    conf = cluster.slurmdbd_conf
    text = conf.read_text()
    cluster.stop_slurmdbd()
    try:
        # Written in place: the file keeps its owner (SlurmUser) and mode 0600.
        conf.write_text("".join(line for line in text.splitlines(keepends=True)
                                if not line.startswith("AuthAlt")))
        cluster.start_slurmdbd()
        yield
    finally:
        cluster.stop_slurmdbd()
        conf.write_text(text)
        cluster.start_slurmdbd()


def doctor(login: Login) -> subprocess.CompletedProcess[str]:
    """slurmjwt doctor --user alice, as root, on the login node's configuration."""
    return login.cluster.run([login.installed.cmd("slurmjwt"), "doctor", "--user", "alice"],
                             env_extra={"SLURMJWT_CONF": str(login.helper.config),
                                        "SLURM_CONF": str(login.conf)}, timeout=120)


def report_line(report: str, name: str) -> str:
    lines = [line for line in report.splitlines() if line[5:].startswith(f"{name}: ")]
    assert len(lines) == 1, report
    return lines[0]


def test_doctor_names_a_slurmdbd_that_refuses_tokens_and_the_fix(login: Login) -> None:
    cluster = login.cluster
    taking = doctor(login)
    with slurmdbd_without_jwt(cluster):
        refusing = doctor(login)
        sacct = login.with_token("alice", ["sacct", "-n", "-X"])

    assert report_line(taking.stdout, "slurmdbd accepts") == (
        f"OK   slurmdbd accepts: a token for alice from the helper works with sacctmgr: "
        f"slurmdbd (127.0.0.1:{cluster.dbd_port}) takes this node's tokens (it reads its key "
        "only at start: restart it after every change of key)")
    assert sacct.returncode != 0
    assert refusing.returncode == 1, refusing.stdout
    assert report_line(refusing.stdout, "slurmctld accepts").startswith("OK   ")
    line = report_line(refusing.stdout, "slurmdbd accepts")
    assert line.startswith("FAIL slurmdbd accepts: sacctmgr with a fresh helper token for "
                           "alice failed ("), line
    assert line.endswith(
        f"while slurmctld accepts that token: slurmdbd (127.0.0.1:{cluster.dbd_port}) refuses "
        "this node's tokens: in slurmdbd.conf on the slurmdbd host set AuthAltTypes=auth/jwt "
        f"and AuthAltParameters=jwt_key={cluster.key_path} (the same key, byte for byte), then "
        "restart slurmdbd (it reads its key only at start)"), line
