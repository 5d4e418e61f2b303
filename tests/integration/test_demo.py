"""`make demo` end to end: build and start the container cluster (directory,
controller, login node with systemd as PID 1), log in over ssh as the demo
user (a directory user), check every step of the transcript, then check
that `down` leaves no container, network or volume behind.

Slow (a cold run builds images, about 2 minutes; a warm one about 15 s).
Skipped only when no Docker engine can run on the machine at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.demo import cluster, engine, run, steps
from tests.demo.releases import release

pytestmark = [pytest.mark.slow, pytest.mark.root]
RELEASE = "bookworm"


@pytest.fixture(scope="module")
def shown() -> Iterator[run.Shown]:
    why = engine.unavailable()
    if why is not None:
        pytest.skip(f"the demo needs Docker: {why}")
    said: list[str] = []
    try:
        up = run.up(release(RELEASE), said.append)
    except BaseException:
        run.down(RELEASE, said.append)
        raise
    yield up
    run.down(RELEASE, said.append)


def test_the_helper_is_socket_activated_by_systemd(shown: run.Shown) -> None:
    assert shown.running.systemd
    step = shown.transcript["helper"]
    assert step.status == 0, step.output
    units = dict(re.findall(r"^● (\S+) - .*\n((?:(?!● ).*\n?)*)", step.output, re.M))
    for name, path in (("slurmjwt-helper.socket", "/run/slurmjwt/helper.sock"),
                       ("slurmjwt-helper-root.socket", "/run/slurmjwt/root.sock")):
        assert re.search(rf"Loaded: loaded \(/lib/systemd/system/{re.escape(name)}; enabled;",
                         units[name]), step.output
        assert f"Listen: {path} (Stream)" in units[name], step.output
    service = units["slurmjwt-helper.service"]
    assert re.search(r"Active: active \(running\)", service), step.output
    triggers = re.search(r"TriggeredBy: ● (\S+)\n\s+● (\S+)\n", service)
    assert triggers and set(triggers.groups()) == {"slurmjwt-helper.socket",
                                                   "slurmjwt-helper-root.socket"}, step.output
    assert re.search(r"Main PID: \d+ \(slurmjwt-helper\)", service), step.output


def test_the_demo_user_comes_from_the_directory(shown: run.Shown) -> None:
    step = shown.transcript["directory"]
    assert step.status == 0, step.output
    lines = step.output.splitlines()
    assert lines[0] == "demo:*:2000:2000:Demo User:/home/demo:/bin/bash"
    assert lines[1] == "uid=2000(demo) gid=2000(demo) groups=2000(demo),3000(hpc)"
    assert lines[2] == "0"  # lines for demo in the login node's /etc/passwd


def test_the_cache_is_in_the_logind_runtime_directory(shown: run.Shown) -> None:
    step = shown.transcript["cache"]
    assert step.status == 0, step.output
    assert re.search(r"^cache:\s+/run/user/2000/slurmjwt$", step.output, re.M), step.output
    assert re.search(r"^SLURM_JWT:\s+same as cache$", step.output, re.M), step.output


def test_the_refresh_timer_runs_in_the_users_systemd(shown: run.Shown) -> None:
    step = shown.transcript["timer"]
    assert step.status == 0, step.output
    assert re.search(r"slurmjwt-refresh\.timer\s+slurmjwt-refresh\.service$", step.output,
                     re.M), step.output


def test_token_in_the_ssh_session_is_the_demo_users(shown: run.Shown) -> None:
    step = shown.transcript["token"]
    assert step.status == 0, step.output
    assert re.search(r"^user:\s+demo$", step.output, re.M), step.output
    left = re.search(r"\((\d+)m \d+s left\)", step.output)
    assert left and int(left.group(1)) >= 25, step.output


def test_squeue_works_with_the_directory_users_token(shown: run.Shown) -> None:
    # slurmctld resolves demo through sssd too: no /etc/passwd knows it there either.
    code, out = cluster.exec_out(shown.running.controller, ["grep", "-c", "^demo:",
                                                            "/etc/passwd"])
    assert (code, out.strip()) == (1, "0")
    step = shown.transcript["squeue"]
    assert step.status == 0, step.output
    assert "JOBID" in step.output


def test_batch_job_with_srun_completes(shown: run.Shown) -> None:
    sbatch = shown.transcript["sbatch"]
    assert sbatch.status == 0, sbatch.output
    assert re.search(r"Submitted batch job \d+", sbatch.output)
    state = shown.transcript["state"]
    assert state.status == 0, state.output
    assert re.search(rf"^{shown.transcript.job_id} hello COMPLETED$", state.output, re.M), (
        state.output)
    output = shown.transcript["output"]
    assert output.status == 0, output.output
    # Written by the job step that srun started on the controller, with the token gone.
    assert "step 0 ran on controller as demo; SLURM_JWT unset" in output.output


def test_accounting_answers_the_user_with_the_token(shown: run.Shown) -> None:
    """sacct and sacctmgr reach slurmdbd from the login node (no munge)."""
    step = shown.transcript["accounting"]
    assert step.status == 0, step.output
    assert re.search(rf"^\s*{shown.transcript.job_id}\s+hello\s+demo\s", step.output, re.M), (
        step.output)
    assert re.search(r"^\s*demo\s+demo\s+demo\s*$", step.output, re.M), step.output


def test_slurmrestd_accepts_the_token_headers(shown: run.Shown) -> None:
    step = shown.transcript["rest"]
    assert step.status == 0, step.output
    assert steps.http_status(step) == 200, step.output
    assert '"name": "hello"' in step.output  # the demo's own job, listed for its token


def test_without_the_token_the_login_node_cannot_reach_slurm(shown: run.Shown) -> None:
    step = shown.transcript["no-token"]
    assert step.status != 0
    assert "munge" in step.output.lower(), step.output


def test_the_wrapper_on_path_brings_its_own_token(shown: run.Shown) -> None:
    step = shown.transcript["wrapper"]
    assert step.status == 0, step.output
    assert step.output.splitlines()[0] == "/usr/lib/slurmjwt/bin/squeue"
    assert "hello" in step.output  # the job list, for a live token despite the stale one


def test_the_key_id_is_published_and_recorded(shown: run.Shown) -> None:
    step = shown.transcript["key-id"]
    kid, recorded = step.output.splitlines()[:2]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22,43}", kid), step.output
    assert recorded == f"key:         {kid} (the helper's key)", step.output


def test_transcript_never_shows_a_token(shown: run.Shown) -> None:
    text = shown.transcript.render()
    assert not re.search(r"eyJ[A-Za-z0-9_-]{10,}\.", text), text
    assert shown.transcript.ok


def test_down_removes_containers_network_and_volume(shown: run.Shown) -> None:
    said: list[str] = []
    run.down(RELEASE, said.append)
    if engine.answers():
        assert cluster.find(engine.client(), None) == {
            "containers": [], "networks": [], "volumes": []}
    assert not cluster.sshd_greets(shown.running.ssh_port)
