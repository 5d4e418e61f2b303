"""Proof that the cluster fixture is a real Slurm that checks JWTs.

Good tokens work through squeue, sbatch and slurmrestd; tokens with another key
or past their exp are refused, visibly in slurmctld's log; teardown leaves nothing.
"""

from __future__ import annotations

import json
import os
import pwd
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable

import pytest

from tests.integration.fixtures.cluster import MARKER, Cluster, running_cluster

pytestmark = pytest.mark.root

OTHER_KEY = bytes(range(32))
REFUSED = "Zero Bytes were transmitted or received"


def jwt_env(token: str) -> dict[str, str]:
    return {"SLURM_JWT": token}


def restd_headers(user: str, token: str) -> dict[str, str]:
    return {"X-SLURM-USER-NAME": user, "X-SLURM-USER-TOKEN": token}


def log_size(cluster: Cluster) -> int:
    return cluster.slurmctld_log.stat().st_size


def wait_for_log(cluster: Cluster, offset: int, text: str, timeout: float = 10) -> str:
    """Given a log offset, return the slurmctld log written since, once it holds
    `text`; fail the test with what was written when it never does."""
    deadline = time.monotonic() + timeout
    while True:
        with cluster.slurmctld_log.open(errors="replace") as log:
            log.seek(offset)
            new = log.read()
        if text in new or time.monotonic() > deadline:
            assert text in new, f"{text!r} not in slurmctld log since offset {offset}:\n{new}"
            return new
        time.sleep(0.05)


def submit(cluster: Cluster, user: str, token: str, script: str, *options: str) -> tuple[str, Path]:
    """Submit `script` with sbatch as `user` authenticating with `token`; return the
    job id and the job's output file (unique, in the user's home)."""
    output = Path(pwd.getpwnam(user).pw_dir) / f"test-cluster-{uuid.uuid4().hex}.out"
    result = cluster.run(
        ["sbatch", "--parsable", f"--output={output}", *options, "--wrap", script],
        user=user,
        env_extra=jwt_env(token),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().split(";")[0], output


def read_and_remove(output: Path) -> str:
    try:
        return output.read_text().strip()
    finally:
        output.unlink(missing_ok=True)


def test_squeue_accepts_a_token_minted_for_alice(cluster: Cluster) -> None:
    result = cluster.run(["squeue"], user="alice", env_extra=jwt_env(cluster.mint("alice")))

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:2] == ["JOBID", "PARTITION"]


def test_sbatch_with_alices_token_runs_her_job(cluster: Cluster) -> None:
    job_id, output = submit(cluster, "alice", cluster.mint("alice"), "hostname")

    state = cluster.wait_job(job_id)
    assert (state, read_and_remove(output)) == ("COMPLETED", cluster.node)
    shown = cluster.run(["scontrol", "--oneliner", "show", "job", job_id]).stdout
    assert f"UserId=alice({pwd.getpwnam('alice').pw_uid})" in shown


def test_the_token_not_the_unix_uid_decides_who_you_are(cluster: Cluster) -> None:
    # bob's process with alice's token is alice to slurmctld, who then refuses a
    # job description that says bob: proof the token, not munge, authenticated.
    offset = log_size(cluster)

    result = cluster.run(
        ["sbatch", "--wrap", "true"], user="bob", env_extra=jwt_env(cluster.mint("alice"))
    )

    assert result.returncode != 0
    assert "Invalid user id" in result.stderr
    bob, alice = pwd.getpwnam("bob").pw_uid, pwd.getpwnam("alice").pw_uid
    wait_for_log(cluster, offset, f"Requested UID={bob} doesn't match user UID={alice}")


def test_slurmrestd_accepts_alices_token_in_headers(cluster: Cluster) -> None:
    token = cluster.mint("alice")

    status, body = cluster.restd_get(
        f"/slurm/{cluster.restd_api}/jobs", restd_headers("alice", token)
    )

    assert status == 200, body
    answer = json.loads(body)
    assert answer["errors"] == []
    assert isinstance(answer["jobs"], list)


def test_slurmrestd_ping_reports_the_controller_up(cluster: Cluster) -> None:
    token = cluster.mint("alice")

    status, body = cluster.restd_get(
        f"/slurm/{cluster.restd_api}/ping", restd_headers("alice", token)
    )

    assert status == 200, body
    assert [p["ping"] for p in json.loads(body)["pings"]] == ["UP"]


@pytest.mark.parametrize("argv", [["squeue"], ["sbatch", "--wrap", "true"]])
def test_a_token_signed_with_another_key_is_refused(cluster: Cluster, argv: list[str]) -> None:
    offset = log_size(cluster)

    forged = cluster.mint("alice", key=OTHER_KEY)

    result = cluster.run(argv, user="alice", env_extra=jwt_env(forged))

    assert result.returncode != 0
    assert REFUSED in result.stderr
    wait_for_log(cluster, offset, "auth_p_verify: jwt_decode failure")


@pytest.mark.parametrize("argv", [["squeue"], ["sbatch", "--wrap", "true"]])
def test_an_expired_token_is_refused(cluster: Cluster, argv: list[str]) -> None:
    offset = log_size(cluster)
    expired = cluster.mint("alice", lifespan=60, now=time.time() - 3600)

    result = cluster.run(argv, user="alice", env_extra=jwt_env(expired))

    assert result.returncode != 0
    assert REFUSED in result.stderr
    wait_for_log(cluster, offset, "auth_p_verify: token expired")


@pytest.mark.parametrize("token_kind", ["other-key", "expired"], ids=["another key", "expired"])
def test_slurmrestd_refuses_a_bad_token(cluster: Cluster, token_kind: str) -> None:
    if token_kind == "other-key":
        token = cluster.mint("alice", key=OTHER_KEY)
    else:
        token = cluster.mint("alice", now=time.time() - 3600)

    status, body = cluster.restd_get(
        f"/slurm/{cluster.restd_api}/jobs", restd_headers("alice", token)
    )

    assert status != 200
    assert json.loads(body)["errors"], body


def test_the_client_environment_carries_no_token(cluster: Cluster) -> None:
    assert "SLURM_JWT" not in cluster.env
    assert cluster.env["SLURM_CONF"] == str(cluster.slurm_conf)


def test_the_key_is_readable_by_slurm_alone(cluster: Cluster) -> None:
    st = cluster.key_path.stat()

    assert (st.st_uid, st.st_mode & 0o777) == (pwd.getpwnam("slurm").pw_uid, 0o600)
    assert st.st_size >= 32


def test_a_second_cluster_runs_beside_the_first_with_a_task_prolog(
    cluster: Cluster, cluster_factory: Callable[..., Cluster]
) -> None:
    # slurmstepd runs the TaskProlog as the job's user: it must reach the file.
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        Path(tmp).chmod(0o755)
        prolog = Path(tmp) / "prolog.sh"
        prolog.write_text("#!/bin/sh\necho export FROM_PROLOG=yes\n")
        prolog.chmod(0o755)
        check_second_cluster(cluster, cluster_factory(str(prolog), "MaxJobCount=500"))


def check_second_cluster(cluster: Cluster, second: Cluster) -> None:
    job_id, output = submit(second, "alice", second.mint("alice"), "echo prolog=$FROM_PROLOG")

    assert second.restd_url != cluster.restd_url
    state = second.wait_job(job_id)
    assert (state, read_and_remove(output)) == ("COMPLETED", "prolog=yes")
    config = second.run(["scontrol", "show", "config"]).stdout
    assert "MaxJobCount             = 500" in config
    # The first cluster's key does not open the second one.
    refused = second.run(["squeue"], user="alice", env_extra=jwt_env(cluster.mint("alice")))
    assert refused.returncode != 0


def processes_with(entries: set[bytes]) -> list[int]:
    """Return the pids whose environment holds all of `entries` (zombies have none)."""
    found = []
    for name in os.listdir("/proc"):
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if entries.issubset(environ):
            found.append(int(name))
    return found


def wait_for_processes(entries: set[bytes], timeout: float = 10) -> list[int]:
    # RUNNING comes before slurmstepd has started the script: poll for it.
    deadline = time.monotonic() + timeout
    while not processes_with(entries) and time.monotonic() < deadline:
        time.sleep(0.05)
    return processes_with(entries)


def wait_running(cluster: Cluster, job_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while cluster.job_state(job_id) != "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cluster.job_state(job_id) == "RUNNING"


def test_teardown_leaves_no_process_and_no_directory(test_users: object) -> None:
    with running_cluster() as started:
        # --export=NONE: the job does not inherit the fixture's marker variable.
        token = started.mint("alice")
        job_id, output = submit(started, "alice", token, "sleep 300", "--export=NONE")
        wait_running(started, job_id)
        daemons = [d.proc.pid for d in started.daemons]
        marker = f"{MARKER}={started.root}".encode()
        job = {f"SLURM_JOB_ID={job_id}".encode(), f"SLURM_CLUSTER_NAME={started.name}".encode()}
        assert wait_for_processes(job), "the job's processes were not found"
        assert processes_with({marker}), "the daemons carry no marker"

    output.unlink(missing_ok=True)
    assert not started.root.exists()
    assert processes_with(job) == []
    assert processes_with({marker}) == []
    for pid in daemons:
        assert not Path(f"/proc/{pid}").exists(), f"daemon pid {pid} still exists"
