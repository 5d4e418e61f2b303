"""JupyterHub for real: PAMAuthenticator (pamela, open_sessions) and
batchspawner's SlurmSpawner, configured by packaging/jupyterhub's file,
against a real slurmctld with the shipped TaskProlog.

The hub runs as root in a mount namespace that is this host's login node:
its /etc/pam.d has the module in login's stack (as pam-auth-update's profile
puts it in common-session, not in sudo's), its /etc/shadow gives alice a
password, and the cluster's munge socket is hidden from it, so every Slurm
command the hub runs through sudo works with the wrappers' token or not at
all (slurmjwt-userdir makes alice's cache). The job,
started by slurmd outside that namespace, is the compute node: munge works
there once the TaskProlog has removed SLURM_JWT. A user logs in through the
hub's login form, starts her server, and from a terminal of that server,
after the first token has expired (Lifespan=30), runs squeue and sbatch.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.fixtures.cluster import CLIENT_PATH, Cluster
from tests.integration.fixtures.entrances import in_namespace, private_pam_d, wait_for
from tests.integration.fixtures.helperd import start_helper
from tests.integration.fixtures.install import REPO, Installed
from tests.integration.fixtures.jupyterhub import Browser, jupyterhub_env, running_hub
from tests.integration.fixtures.login import cache_base, module_lines, pam_env_line, session_env
from tests.integration.fixtures.sshd import free_port
from tests.integration.fixtures.userdir import serve_userdir
from tests.integration.fixtures.users import TestUser

LIFESPAN = 30
TASKPROLOG = REPO / "packaging" / "slurm" / "taskprolog.sh"

# Run by the hub environment's Python: open a terminal of alice's server
# (REST), type the commands into it (websocket) as a user would, print what
# the terminal shows up to the end marker. The API token comes on stdin.
TERMINAL = r"""
import json, sys, urllib.request, websocket
args = json.load(sys.stdin)
auth = {"Authorization": "token " + args["token"]}
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
req = urllib.request.Request(args["base"] + "/user/alice/api/terminals", data=b"",
                             headers=auth, method="POST")
name = json.load(opener.open(req, timeout=30))["name"]
ws = websocket.create_connection(
    args["base"].replace("http", "ws", 1) + "/user/alice/terminals/websocket/" + name,
    header=[k + ": " + v for k, v in auth.items()], timeout=120)
ws.send(json.dumps(["stdin", args["commands"] + "\r"]))
shown = ""
while "END-OF" + "-TERMINAL" not in shown:
    kind, *rest = json.loads(ws.recv())
    if kind == "stdout":
        shown += rest[0]
ws.close()
print(shown)
"""
# What alice types; the marker is split so that the echo of the line is not it.
COMMANDS = ('squeue --noheader --user=alice >/dev/null; echo "SQUEUE=$?"; '
            'sbatch --parsable --output=/dev/null --wrap=true; echo "SBATCH=$?"; '
            'echo "JWT=${SLURM_JWT:+set}."; echo END-OF"-TERMINAL"')


@pytest.fixture
def hub_world(installed: Installed, cluster_factory: Callable[..., Cluster],
              test_users: dict[str, TestUser]) -> Iterator[tuple[Cluster, Browser, str, Path]]:
    env = jupyterhub_env()
    work = Path(tempfile.mkdtemp(prefix="slurmjwt-hub-"))
    try:
        work.chmod(0o755)
        prolog = work / "taskprolog.sh"
        shutil.copy(TASKPROLOG, prolog)
        prolog.chmod(0o755)
        cluster = cluster_factory(task_prolog=str(prolog))
        (work / "helper").mkdir()
        helper = start_helper(installed, cluster.slurm_conf, work / "helper", extra=(
            f"Lifespan={LIFESPAN}\nRefreshMargin=10\nMungeSocket={work}/no-munged.socket\n"))
        try:
            lines = [pam_env_line(work / "pam_env.conf", session_env(helper, cluster.slurm_conf)),
                     *module_lines(installed, helper.root_socket)]
            # As the package's profile: the module in the interactive stacks
            # (login), not in sudo's; the wrappers get batchspawner's tokens.
            pam_d = private_pam_d(work / "pam.d", {"login": lines})
            password = secrets.token_urlsafe(12)
            shadow = work / "shadow"
            hashed = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password,
                                    capture_output=True, text=True, check=True).stdout.strip()
            entries = [line.split(":") for line in Path("/etc/shadow").read_text().splitlines()]
            shadow.write_text("".join(":".join([e[0], hashed, *e[2:]] if e[0] == "alice" else e)
                                      + "\n" for e in entries))
            shadow.chmod(0o640)
            no_munge = work / "no-munge"
            no_munge.mkdir()
            binds = [(pam_d, Path("/etc/pam.d")), (shadow, Path("/etc/shadow")),
                     (no_munge, cluster.munge_socket.parent)]
            ports = [free_port() for _ in range(3)]
            # The recipe names the wrappers where the package puts them.
            wrappers = ("for name in ('batch_submit_cmd', 'batch_query_cmd', "
                        "'batch_cancel_cmd'):\n    setattr(c.SlurmSpawner, name, getattr("
                        f"c.SlurmSpawner, name).replace('/usr/lib/slurmjwt/bin', "
                        f"{str(installed.wrappers)!r}))\n")
            # What /etc/slurm holds on a real login node, where the defaults
            # need no variable: here the hub passes them on to the spawner's
            # commands (as env_keep does for PATH).
            site = {"SLURM_CONF": str(cluster.slurm_conf), "SLURMJWT_CONF": str(helper.config)}
            wrappers += "c.Spawner.env_keep.extend(['SLURM_CONF', 'SLURMJWT_CONF'])\n"
            with cache_base(), serve_userdir(installed, helper), running_hub(
                    env, work, ports, argv_prefix=in_namespace(binds, []), extra=wrappers,
                    environ={"PATH": f"{env.bin}:{CLIENT_PATH}", "LANG": "C.UTF-8",
                             **site}) as hub:
                try:
                    yield cluster, Browser(hub.url), password, env.python
                finally:
                    print(hub.log_text()[-6000:])
        finally:
            helper.stop()
    finally:
        for log in Path(test_users["alice"].home).glob("jupyterhub_slurmspawner_*.log"):
            log.unlink()
        shutil.rmtree(work, ignore_errors=True)


def test_hub_login_spawns_a_slurm_job_whose_terminal_runs_slurm_after_the_token_expired(
        hub_world: tuple[Cluster, Browser, str, Path]) -> None:
    cluster, browser, password, python = hub_world
    # A wrong password is refused by PAM; the right one logs in.
    status, url, page = browser.login("alice", password + "x")
    assert (status, url.endswith("/hub/login?next=")) == (200, True), (status, url)
    assert "Invalid username or password" in page
    status, url, _ = browser.login("alice", password)
    assert status == 200 and "/hub/" in url and "/hub/login" not in url, (status, url)
    # As the hub's token page does: an API token for alice, with her login.
    status, made = browser.api("/users/alice/tokens", {"note": "test", "expires_in": 900},
                               method="POST")
    assert status == 201, made
    token = made["token"]  # type: ignore[index]
    spawned = time.time()
    status, _ = browser.api("/users/alice/server", {}, method="POST")
    assert status in (201, 202), status

    def ready() -> bool:
        _, user = browser.api("/users/alice")
        return bool(user["servers"].get("", {}).get("ready"))  # type: ignore[index]

    wait_for("alice's server ready", ready, 240)
    jobs = cluster.run(["squeue", "--noheader", "--user=alice", "--name=spawner-jupyterhub",
                        "--format=%i %T %N"]).stdout.split()
    assert len(jobs) == 3 and jobs[1] == "RUNNING" and jobs[2] == cluster.node, jobs
    # The token the wrapper gave sbatch is gone by now.
    time.sleep(max(0.0, spawned + LIFESPAN + 2 - time.time()))
    shown = subprocess.run([str(python), "-c", TERMINAL], text=True, capture_output=True,
                           timeout=180, input=json.dumps({
                               "base": browser.base, "token": token, "commands": COMMANDS}))
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout.replace("\r", "")
    assert "SQUEUE=0\n" in out and "SBATCH=0\n" in out, out
    assert "JWT=.\n" in out, out  # the TaskProlog took it out of the job
    submitted = [line for line in out.splitlines() if line.isdigit()]
    assert len(submitted) == 1, out
    assert cluster.wait_job(submitted[0]) == "COMPLETED"
