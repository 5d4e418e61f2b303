"""Entrances without an ssh session: a real cron daemon and real sudo, each
with the host's own PAM stack plus the module's lines with the
`noninteractive` argument (the admin's opt-in: without it the module skips
cron and sudo, as the default line of the package does), in a private mount
namespace; the real helper (Lifespan=30) and the real slurmctld.

Slurm clients here use a copy of slurm.conf whose munge socket does not
exist, handed to the session by pam_env as on the login tests: a command
that works there worked with a token alone. The cron daemon starts with
the module's fixture and the cron tests come last: cron runs jobs only at
minute boundaries, and the sudo tests use that time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from tests.integration.fixtures.cluster import CLIENT_PATH, Cluster
from tests.integration.fixtures.entrances import (
    Cron,
    in_namespace,
    private_pam_d,
    running_cron,
    wait_for,
)
from tests.integration.fixtures.helperd import HelperProcess, start_helper
from tests.integration.fixtures.install import Installed
from tests.integration.fixtures.login import (
    HangingHelper,
    cache_base,
    jwt_only_copy,
    module_lines,
    pam_env_line,
    session_env,
)
from tests.integration.fixtures.users import TestUser
from tests.integration.test_pam_module import DRIVER, Syslog, syslog  # noqa: F401

LIFESPAN = 30
# The cron loop runs for longer than two lifetimes, a call every PAUSE s.
LOOP_SECONDS = 2 * LIFESPAN + 5
PAUSE = 3
SUDO_SECURE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# batchspawner's SlurmSpawner, verbatim (batchspawner 1.3.0, SlurmSpawner).
BATCH_SUBMIT = "sudo -E -u {username} sbatch --parsable"
BATCH_QUERY = "sudo -E -u {username} squeue -h -j {job_id} -o '%T %B'"


@dataclass(frozen=True)
class Entrance:
    """The login node's side: the helper, the JWT-only slurm.conf, the
    session lines (pam_env, then the shipped snippet) and three copies of
    /etc/pam.d: `pam_d` with them (and `noninteractive`) in cron, sudo,
    sudo-i and su, `default` with the snippet's line as it is, `plain`
    with only the pam_env line (the same host without the module)."""

    cluster: Cluster
    installed: Installed
    helper: HelperProcess
    work: Path
    conf: Path
    out: Path
    pam_d: Path
    plain: Path
    default: Path

    def run(self, argv: Sequence[str], pam_d: Optional[Path] = None,
            env: Optional[Mapping[str, str]] = None, input: Optional[str] = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run argv as root in a mount namespace whose /etc/pam.d is pam_d
        (default: the one with the module), with exactly `env`."""
        return subprocess.run(in_namespace([(pam_d or self.pam_d, Path("/etc/pam.d"))], argv),
                              env=dict(env or {"PATH": CLIENT_PATH}), input=input, text=True,
                              capture_output=True, timeout=timeout, check=False, cwd="/")


SERVICES = ("cron", "sudo", "sudo-i", "su", "systemd-user")


@pytest.fixture(scope="module")
def entrance(installed: Installed, cluster: Cluster,
             test_users: dict[str, TestUser]) -> Iterator[Entrance]:
    work = Path(tempfile.mkdtemp(prefix="slurmjwt-entrance-"))
    helper: Optional[HelperProcess] = None
    try:
        work.chmod(0o755)
        conf = jwt_only_copy(cluster, work / "slurm-jwt-only.conf")
        (work / "helper").mkdir()
        helper = start_helper(installed, cluster.slurm_conf, work / "helper",
                              extra=f"Lifespan={LIFESPAN}\nRefreshMargin=10\nMungeSocket={work}/no-munged.socket\n")
        env_line = pam_env_line(work / "pam_env.conf", session_env(helper, conf))
        lines = [env_line, *module_lines(installed, helper.root_socket, noninteractive=None)]
        pam_d = private_pam_d(work / "pam.d", {s: lines for s in SERVICES})
        as_shipped = [env_line, *module_lines(installed, helper.root_socket)]
        default = private_pam_d(work / "pam.d-default", {s: as_shipped for s in SERVICES})
        plain = private_pam_d(work / "pam.d-plain", {s: [env_line] for s in SERVICES})
        out = work / "out"
        out.mkdir(mode=0o700)
        os.chown(out, test_users["alice"].uid, test_users["alice"].gid)
        with cache_base():
            yield Entrance(cluster, installed, helper, work, conf, out, pam_d, plain, default)
    finally:
        if helper is not None:
            helper.stop()
        shutil.rmtree(work, ignore_errors=True)


# ---- cron: the daemon starts first, its tests come last ------------------------

LOOP = f"""#!/bin/sh
# One cron run: squeue and sbatch through PATH every {PAUSE} s for {LOOP_SECONDS} s.
log="$1/loop.$(date +%s).$$"
echo "squeue=$(command -v squeue) sbatch=$(command -v sbatch)" > "$log"
end=$(( $(date +%s) + {LOOP_SECONDS} ))
while [ "$(date +%s)" -lt "$end" ]; do
    for cmd in "squeue --noheader --user=alice" "sbatch --quiet --output=/dev/null --wrap=true"; do
        if $cmd >/dev/null 2>>"$log.err"; then echo "ok $(date +%s) $cmd"
        else echo "FAIL $? $(date +%s) $cmd"; fi
    done >> "$log"
    sleep {PAUSE}
done
echo done >> "$log"
"""


@pytest.fixture(scope="module")
def cron(entrance: Entrance) -> Iterator[Cron]:
    """Debian's cron with the module in its stack, and alice's crontab: every
    minute, squeue through cron's own PATH (with and without the session's
    SLURM_JWT), and the loop under `slurmjwt exec`."""
    loop = entrance.work / "loop.sh"
    loop.write_text(LOOP)
    loop.chmod(0o755)
    out = entrance.out
    probe = (f"squeue --noheader --user=alice >{out}/squeue.out 2>&1; "
             f'echo "rc=$? jwt=${{SLURM_JWT:+set}} conf=$SLURM_CONF path=$PATH" >{out}/squeue.rc; '
             f'env -u SLURM_JWT squeue >/dev/null 2>&1; echo "rc=$?" >{out}/nojwt.rc')
    exec_loop = f"{entrance.installed.cmd('slurmjwt')} exec -- {loop} {out}"
    with running_cron({"alice": [f"* * * * * {probe}", f"* * * * * {exec_loop}"]},
                      entrance.pam_d) as daemon:
        yield daemon


def test_cron_is_running(cron: Cron) -> None:
    # Started here, so that the sudo tests below run while cron waits for
    # the next minute.
    assert cron.proc.poll() is None


# ---- sudo ------------------------------------------------------------------------


def test_sudo_u_user_squeue_runs_with_the_sessions_token(entrance: Entrance) -> None:
    # Root's environment is reset by sudo (env_reset): SLURM_CONF, the
    # JWT-only copy, comes from the session's pam_env, the token from the
    # module; squeue is the real one on secure_path.
    argv = ["sudo", "-u", "alice", "sh", "-c",
            'command -v squeue; echo "jwt=${SLURM_JWT:+set}"; squeue --noheader --user=alice']
    ran = entrance.run(argv)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[:2] == ["/usr/bin/squeue", "jwt=set"], ran.stdout
    without = entrance.run(argv, pam_d=entrance.plain)
    assert without.returncode != 0 and "jwt=\n" in without.stdout, without


def test_sudo_E_u_user_sbatch_as_batchspawner_runs_it(entrance: Entrance) -> None:
    # The hub's environment (sudo -E keeps it): the JWT-only slurm.conf, no token.
    hub_env = {"PATH": CLIENT_PATH, "SLURM_CONF": str(entrance.conf),
               "JUPYTERHUB_API_TOKEN": "not-a-slurm-token", "LANG": "C.UTF-8"}
    script = "#!/bin/sh\n#SBATCH --output=/dev/null\nid -un\n"
    submit = BATCH_SUBMIT.format(username="alice")
    sbatch = entrance.run(["sh", "-c", submit], env=hub_env, input=script)
    assert sbatch.returncode == 0, sbatch.stderr
    job = sbatch.stdout.strip().split(";")[0]
    assert job.isdigit(), sbatch.stdout
    query = entrance.run(["sh", "-c", BATCH_QUERY.format(username="alice", job_id=job)],
                         env=hub_env)
    assert query.returncode == 0, query.stderr
    assert re.fullmatch(r"(PENDING|CONFIGURING|RUNNING|COMPLETING|COMPLETED) \S+\n",
                        query.stdout), query.stdout
    assert entrance.cluster.wait_job(job) == "COMPLETED"
    shown = entrance.cluster.run(["scontrol", "--oneliner", "show", "job", job]).stdout
    assert "UserId=alice(" in shown, shown
    # Without the module in sudo's stack the same submission has no token.
    refused = entrance.run(["sh", "-c", submit], pam_d=entrance.plain, env=hub_env,
                           input=script)
    assert refused.returncode != 0, refused


def sudo_env(entrance: Entrance, argv: Sequence[str], pam_d: Path) -> tuple[float, dict[str, str]]:
    start = time.monotonic()
    ran = entrance.run(["sudo", *argv, "env", "-0"], pam_d=pam_d,
                       env={"PATH": CLIENT_PATH, "HOME": "/root", "TERM": "dumb"})
    elapsed = time.monotonic() - start
    assert ran.returncode == 0, ran.stderr
    return elapsed, dict(kv.split("=", 1) for kv in ran.stdout.split("\0") if kv)


def test_roots_own_sudo_and_su_are_unchanged_quiet_and_do_not_wait_for_the_helper(
        entrance: Entrance, installed: Installed, syslog: Syslog) -> None:  # noqa: F811
    # The module in sudo's, sudo-i's and su's stacks pointed at a helper
    # that never answers: root is skipped before it is asked, so root's
    # sudo and su take no longer than without it, print and log nothing,
    # and get the same environment; alice, asked for, waits the timeout.
    hang = entrance.work / "hang"
    hang.mkdir()
    lines = [f"session optional {installed.pam_module} socket={hang}/root.sock timeout=2000 "
             "noninteractive"]
    hung = private_pam_d(hang / "pam.d", {s: lines for s in ("sudo", "sudo-i", "su")})
    with HangingHelper(hang / "root.sock") as helper:
        syslog.take()
        for how in (["-u", "root"], ["-i"]):
            _, base_env = sudo_env(entrance, how, Path("/etc/pam.d"))
            took, env = sudo_env(entrance, how, hung)
            base_env.pop("SUDO_COMMAND", None), env.pop("SUDO_COMMAND", None)
            assert env == base_env, how
            assert "SLURM_JWT" not in env and str(installed.wrappers) not in env["PATH"], env
            assert took < 1.0, (how, took)
        start = time.monotonic()
        su = entrance.run(["su", "-l", "root", "-c", "echo ${SLURM_JWT:-none}"], pam_d=hung)
        assert (su.returncode, su.stdout, su.stderr) == (0, "none\n", "")
        assert time.monotonic() - start < 1.0
        assert helper.accepted == 0
        # (cron's jobs for alice may log meanwhile: only root's lines count)
        assert [line for line in syslog.take() if "(user root)" in line] == []
        # The control: for alice the same stack asks, and waits.
        start = time.monotonic()
        assert entrance.run(["sudo", "-u", "alice", "true"], pam_d=hung).returncode == 0
        assert time.monotonic() - start >= 2.0
        assert helper.accepted == 1


# ---- systemd's user manager ---------------------------------------------------------


def pam_session(entrance: Entrance, service: str, user: str,
                pam_d: Optional[Path] = None) -> dict[str, str]:
    """Open and close one PAM session of `service` for `user` in python3-pam
    (the driver of test_pam_module); return its PAM environment."""
    ran = entrance.run(["/usr/bin/python3", "-c", DRIVER, service, user], pam_d=pam_d)
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout.strip().splitlines()[-1])
    assert result["rc"] == 0, result
    return dict(kv.split("=", 1) for kv in result["env"])


def test_systemd_user_manager_gets_no_token_and_no_path_from_the_same_stack(
        entrance: Entrance, installed: Installed, syslog: Syslog) -> None:  # noqa: F811
    # The same lines in cron's and systemd-user's stacks: cron's session
    # has the token, the user manager's nothing (it would hand it to every
    # user service for hours).
    cron_env = pam_session(entrance, "cron", "alice")
    assert "SLURM_JWT" in cron_env
    syslog.take()
    manager = pam_session(entrance, "systemd-user", "alice")
    assert "SLURM_JWT" not in manager, sorted(manager)
    assert manager.get("SLURM_CONF") == str(entrance.conf)  # pam_env ran: the stack did
    assert all(str(installed.wrappers) not in v for v in manager.values())
    assert [line for line in syslog.take() if "systemd-user" in line] == []


def test_without_noninteractive_cron_and_sudo_sessions_get_nothing_and_ask_nothing(
        entrance: Entrance) -> None:
    """The snippet's line as the package ships it: cron's and sudo's
    sessions get no token and the helper is not asked (users decide how
    often they open; a sudoers rule must not hand over another's token);
    su's session, interactive, still gets one."""
    grants = entrance.helper.log_text().count("grant (user alice)")
    for service in ("cron", "sudo"):
        env = pam_session(entrance, service, "alice", entrance.default)
        assert "SLURM_JWT" not in env and env.get("SLURM_CONF") == str(entrance.conf), service
    assert entrance.helper.log_text().count("grant (user alice)") == grants
    assert "SLURM_JWT" in pam_session(entrance, "su", "alice", entrance.default)


# ---- cron, at last --------------------------------------------------------------------


def test_cron_job_runs_squeue_through_path_with_the_sessions_token(
        entrance: Entrance, cron: Cron) -> None:
    rc = entrance.out / "squeue.rc"
    wait_for("cron run of the squeue job", rc.exists, 75)
    wait_for("its last line", lambda: rc.read_text().endswith("\n"), 10)
    # cron copied the PAM environment (SLURM_CONF, SLURM_JWT) into the job
    # and kept its own PATH; the JWT-only squeue worked with the token, and
    # without it fails.
    assert rc.read_text() == f"rc=0 jwt=set conf={entrance.conf} path=/usr/bin:/bin\n", (
        rc.read_text(), (entrance.out / "squeue.out").read_text())
    wait_for("the run without the token", (entrance.out / "nojwt.rc").exists, 30)
    assert (entrance.out / "nojwt.rc").read_text() != "rc=0\n"


def finished_loops(out: Path) -> list[list[str]]:
    runs = []
    for log in sorted(out.glob("loop.*")):
        if log.suffix == ".err":
            continue
        lines = log.read_text().splitlines()
        if lines and lines[-1] == "done":
            runs.append(lines)
    return runs


def test_cron_job_under_slurmjwt_exec_keeps_slurm_working_past_two_lifetimes_in_two_runs(
        entrance: Entrance, cron: Cron) -> None:
    wait_for("two finished cron runs of the loop", lambda: len(finished_loops(entrance.out)) >= 2,
             2 * 60 + LOOP_SECONDS + 30)
    wrappers = entrance.installed.wrappers
    for lines in finished_loops(entrance.out)[:2]:
        assert lines[0] == f"squeue={wrappers}/squeue sbatch={wrappers}/sbatch", lines[0]
        calls = lines[1:-1]
        assert calls and all(line.startswith("ok ") for line in calls), (
            [line for line in calls if not line.startswith("ok ")], sorted(entrance.out.iterdir()))
        times = [int(line.split()[1]) for line in calls]
        assert times[-1] - times[0] >= 2 * LIFESPAN, times
        assert sum("squeue" in line for line in calls) >= LOOP_SECONDS // (PAUSE + 2)
        assert sum("sbatch" in line for line in calls) >= LOOP_SECONDS // (PAUSE + 2)
