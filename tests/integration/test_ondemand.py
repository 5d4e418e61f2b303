"""Open OnDemand's per-user servers: root starts alice's per-user nginx
(PUN) as nginx_stage does, with no PAM session and no XDG_RUNTIME_DIR, and an
app under it runs Slurm's commands as ood_core's Slurm adapter does, by the
paths packaging/ondemand/cluster.yml gives in `bin_overrides`: the wrappers.
Against the real slurmctld, with 30-second tokens and a slurm.conf whose
munge socket does not exist, so what works, worked with a token (root).

A reproduction of nginx_stage's launch with Debian's nginx and fcgiwrap, not
Open OnDemand (no Apache front end, no Passenger, no Ruby). What it copies:
- nginx_stage, run by root through sudo, replaces its environment
  (NginxStage.clean_nginx_env: USER, LOGNAME, ONDEMAND_*, OOD_*... and the
  PATH and LANG sudo left it), declares each variable with `env` in the PUN's
  config and runs `nginx -c PUN.conf` as root; the config's `user` line makes
  the workers alice (nginx_stage/templates/pun.conf.erb).
- Passenger starts the user's app as the user, with that environment plus
  USER, LOGNAME, SHELL and HOME from passwd (SpawnEnvSetupper's switchUser),
  through no PAM: here fcgiwrap, started so, runs the app for each request.
- The app runs a command as ood_core's Slurm::Batch#call does: the path from
  `bin_overrides`, its own environment plus SLURM_CONF from `conf`, the job
  script on stdin.
A private mount namespace puts the test's slurm.conf and slurmjwt.conf in
/etc/slurm, where the cluster file and the wrappers look on a real node:
nothing is added to nginx_stage's environment for them.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.fixtures.cluster import Cluster
from tests.integration.fixtures.helperd import HelperProcess, start_helper, write_config
from tests.integration.fixtures.install import REPO, Installed
from tests.integration.fixtures.login import cache_base, jwt_only_copy, token_claims
from tests.integration.fixtures.userdir import serve_userdir
from tests.integration.fixtures.users import TestUser
from tests.integration.test_wrappers import grants  # reads only .helper: a Pun will do

pytestmark = [pytest.mark.root, pytest.mark.slow]
RECIPE = REPO / "packaging" / "ondemand" / "cluster.yml"
LIBDIR = "/usr/lib/slurmjwt"  # what the recipe names; the test's installed tree stands in
LIFESPAN = 30
# Every command ood_core's Slurm adapter runs (lib/ood_core/job/adapters/slurm.rb).
ADAPTER_COMMANDS = {"sacct", "sacctmgr", "sbatch", "scancel", "scontrol", "sinfo", "squeue"}
# Debian sudo's secure_path: nginx_stage's PATH, which it keeps for the PUN.
SUDO_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
URL = "/pun/sys/slurm"

PUN_CONF = """\
user        {user} '{group}';
error_log   {pun}/error.log;
pid         {pun}/nginx.pid;
worker_processes 1;

{env}

events {{
  worker_connections 1024;
}}

http {{
  client_body_temp_path   {tmp}/client_body;
  proxy_temp_path         {tmp}/proxy_temp;
  fastcgi_temp_path       {tmp}/fastcgi_temp;
  uwsgi_temp_path         {tmp}/uwsgi_temp;
  scgi_temp_path          {tmp}/scgi_temp;
  access_log              {pun}/access.log;

  server {{
    listen      unix:{pun}/passenger.sock;
    server_name localhost;

    location {url}/ {{
      include /etc/nginx/fastcgi_params;
      fastcgi_param SCRIPT_FILENAME {app};
      fastcgi_param OOD_CLUSTERS {clusters};
      fastcgi_pass unix:{fcgi};
    }}
  }}
}}
"""

# The app: one Slurm command per request, run as Slurm::Batch#call runs it.
# GET URL/squeue or URL/sbatch; ?plain: as a cluster file without
# bin_overrides would (ood_core's default: the name, found through PATH).
APP = r'''#!/usr/bin/python3 -I
import json, os, pathlib, subprocess, yaml

ARGS = {
    # Slurm::Batch#get_jobs (squeue_args) with a few fields.
    "squeue": ["--all", "--states=all", "--noconvert", "-h", "-O", "JobID,UserName",
               "-u", os.environ["USER"]],
    # Slurm#submit: --export NONE (no job environment), an output path; then
    # Slurm::Batch#submit_string: --parsable, the script on stdin.
    "sbatch": ["--export", "NONE", "-o", "/dev/null", "--parsable"],
}
name = os.environ["DOCUMENT_URI"].rsplit("/", 1)[-1]
clusters = pathlib.Path(os.environ["OOD_CLUSTERS"])
job = yaml.safe_load((clusters / "cluster.yml").read_text())["v2"]["job"]
overrides = {} if os.environ.get("QUERY_STRING") == "plain" else job["bin_overrides"]
cmd = overrides.get(name, name)
env = {**os.environ, "SLURM_CONF": job["conf"]}
r = subprocess.run([cmd, *ARGS[name]], env=env, input="#!/bin/sh\ntrue\n",
                   capture_output=True, text=True)
print("Content-Type: application/json\n")
print(json.dumps({"uid": os.getuid(), "env": sorted(os.environ), "PATH": os.environ["PATH"],
                  "cmd": cmd, "returncode": r.returncode, "stdout": r.stdout,
                  "stderr": r.stderr}))
'''


def recipe() -> dict[str, Any]:
    """The `job` section of the shipped cluster file."""
    job: dict[str, Any] = yaml.safe_load(RECIPE.read_text())["v2"]["job"]
    return job


def clean_nginx_env(user: TestUser) -> dict[str, str]:
    """The environment nginx_stage gives the PUN (NginxStage.clean_nginx_env
    with nginx_stage.yml's defaults; its unset OOD_* left out, as Ruby drops
    a nil), and PATH and LANG as sudo left them to nginx_stage."""
    return {
        "USER": user.name, "LOGNAME": user.name,
        "ONDEMAND_VERSION": "4.0.0", "ONDEMAND_PORTAL": "ondemand",
        "ONDEMAND_TITLE": "Open OnDemand", "SECRET_KEY_BASE": secrets.token_hex(64),
        "NGINX_FILE_UPLOAD_MAX": "10737420000",
        "OOD_DEV_APPS_ROOT": f"{user.home}/ondemand/dev",
        "OOD_FILES_URL": "/pun/sys/dashboard/files", "OOD_EDITOR_URL": "/pun/sys/dashboard/files",
        "RAILS_LOG_TO_STDOUT": "true",
        "PATH": SUDO_PATH, "LANG": "C",
    }  # fmt: skip


def wait_for(check: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.02)


@contextlib.contextmanager
def private_etc_slurm(etc: Path) -> Iterator[list[str]]:
    """A private mount namespace whose /etc/slurm is `etc` (the host's stays
    as it was, even if the test is killed); yield the argv prefix that runs
    a program in it."""
    holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private",
                               "sleep", "infinity"])
    try:
        ours = os.readlink("/proc/self/ns/mnt")
        wait_for(lambda: os.readlink(f"/proc/{holder.pid}/ns/mnt") != ours, "unshare")
        enter = ["nsenter", f"--target={holder.pid}", "--mount", "--"]
        subprocess.run([*enter, "mount", "--bind", str(etc), "/etc/slurm"], check=True)
        yield enter
    finally:
        holder.kill()
        holder.wait()


@dataclass
class Pun:
    """Alice's per-user nginx and what it talks to."""

    installed: Installed
    helper: HelperProcess
    cluster: Cluster
    socket: Path
    cache: Path  # /run/slurmjwt/users/UID, which only root can make
    logs: tuple[Path, ...]  # nginx's, fcgiwrap's: what explains a failed request

    def get(self, name: str, plain: bool = False) -> dict[str, Any]:
        """Ask the app to run `name` (as the portal's front end would, over
        the PUN's socket); return what it reports."""
        url = f"http://localhost{URL}/{name}" + ("?plain" if plain else "")
        r = subprocess.run(["curl", "-sS", "--fail-with-body", "--unix-socket", str(self.socket),
                            url], capture_output=True, text=True, timeout=60, check=False)
        assert r.returncode == 0, "\n".join(
            [r.stdout + r.stderr, *(p.read_text(errors="replace")[-3000:] for p in self.logs)])
        report: dict[str, Any] = json.loads(r.stdout)
        return report

    def cached(self) -> list[str]:
        """The fields of alice's cache entry (docs/internals.md, the cache format)."""
        return (self.cache / "token").read_text().split(" ")


def start_pun(enter: list[str], work: Path, user: TestUser, app: Path, clusters: Path,
              fcgi: Path) -> Path:
    """Write the PUN's config as nginx_stage generates it and run nginx as
    nginx_stage does (as root, its clean environment only); return the
    PUN's socket once nginx has daemonized."""
    pun, tmp = work / "pun", work / "pun-tmp"
    pun.mkdir(mode=0o755)
    tmp.mkdir(mode=0o700)
    os.chown(tmp, user.uid, user.gid)
    env = clean_nginx_env(user)
    conf = pun / f"{user.name}.conf"
    conf.write_text(PUN_CONF.format(
        user=user.name, group=grp.getgrgid(user.gid).gr_name, pun=pun, tmp=tmp, url=URL,
        env="\n".join(f"env {name};" for name in sorted(env)), app=app, clusters=clusters,
        fcgi=fcgi))
    r = subprocess.run([*enter, "/usr/sbin/nginx", "-c", str(conf)], env=env,
                       capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    return pun / "passenger.sock"


def stop_pun(pun: Path) -> None:
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        master = int((pun / "nginx.pid").read_text())
        os.kill(master, 15)
        wait_for(lambda: not Path(f"/proc/{master}").exists(), "nginx's exit")


@pytest.fixture(scope="module")
def pun(installed: Installed, cluster: Cluster, test_users: dict[str, TestUser]
        ) -> Iterator[Pun]:
    """Alice's PUN on a node whose helper mints 30-second tokens; her
    fallback cache absent at the start."""
    alice = test_users["alice"]
    work = Path(tempfile.mkdtemp(prefix="slurmjwt-ood-"))
    work.chmod(0o755)
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, True)
        (work / "helper").mkdir()
        helper = start_helper(installed, cluster.slurm_conf, work / "helper", extra=(
            f"Lifespan={LIFESPAN}\nRefreshMargin=15\nMungeSocket={work}/no-munged.socket\n"))
        stack.callback(helper.stop)
        # /etc/slurm in the PUN's namespace: slurm.conf without munge, the helper's config.
        etc = work / "etc-slurm"
        etc.mkdir(mode=0o755)
        jwt_only_copy(cluster, etc / "slurm.conf")
        write_config(etc / "slurmjwt.conf", helper.config.read_text())
        # The cluster file, the wrappers where the installed tree has them.
        clusters = work / "clusters.d"
        clusters.mkdir(mode=0o755)
        text = RECIPE.read_text()
        assert f"{LIBDIR}/bin/" in text
        (clusters / "cluster.yml").write_text(text.replace(f"{LIBDIR}/", f"{installed.lib}/"))
        app = work / "app" / "slurm.cgi"
        app.parent.mkdir(mode=0o755)
        app.write_text(APP)
        app.chmod(0o755)
        base = stack.enter_context(cache_base())
        cache = base / str(alice.uid)
        shutil.rmtree(cache, ignore_errors=True)
        stack.callback(shutil.rmtree, cache, True)
        enter = stack.enter_context(private_etc_slurm(etc))
        # The app as Passenger spawns it: alice (setgroups, setgid, setuid;
        # no PAM), the PUN's environment plus passwd's USER LOGNAME SHELL HOME.
        fcgi_dir = work / "fcgi"
        fcgi_dir.mkdir(mode=0o700)
        os.chown(fcgi_dir, alice.uid, alice.gid)
        fcgi = fcgi_dir / "app.sock"
        app_env = {**clean_nginx_env(alice), "SHELL": pwd.getpwuid(alice.uid).pw_shell,
                   "HOME": alice.home}
        wrap = subprocess.Popen(
            [*enter, "setpriv", f"--reuid={alice.uid}", f"--regid={alice.gid}", "--init-groups",
             "--", "/usr/sbin/fcgiwrap", "-f", "-p", str(app), "-s", f"unix:{fcgi}"],
            env=app_env, cwd=app.parent, stdout=subprocess.DEVNULL,
            stderr=stack.enter_context(open(work / "fcgiwrap.log", "wb")))
        stack.callback(wrap.wait, 10)
        stack.callback(wrap.terminate)
        wait_for(fcgi.is_socket, "fcgiwrap's socket")
        stack.callback(stop_pun, work / "pun")
        sock = start_pun(enter, work, alice, app, clusters, fcgi)
        wait_for(sock.is_socket, "the PUN's socket")
        yield Pun(installed, helper, cluster, sock, cache,
                  (work / "pun" / "error.log", work / "fcgiwrap.log"))


def test_the_recipe_sends_every_command_of_the_slurm_adapter_to_its_wrapper(
        installed: Installed) -> None:
    """The README's cluster file is packaging/ondemand/cluster.yml (which
    the other test runs), without its comments; it names a wrapper for each
    command the adapter runs."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("<!-- ondemand:begin -->\n", 1)[1].split("<!-- ondemand:end -->")[0]
    shipped = [line for line in RECIPE.read_text().splitlines()
               if not line.lstrip().startswith("#") and line != "---"]
    assert [line.removeprefix("    ") for line in block.splitlines()] == shipped
    job = recipe()
    assert job["adapter"] == "slurm" and job["conf"] == "/etc/slurm/slurm.conf"
    assert set(job["bin_overrides"]) == ADAPTER_COMMANDS
    for name, path in job["bin_overrides"].items():
        assert path == f"{LIBDIR}/bin/{name}"
        link = installed.wrappers / name
        assert os.readlink(link) == str(installed.wrap), f"no wrapper for {name}"


def test_a_pun_started_as_nginx_stage_does_keeps_live_tokens_from_a_cache(
        pun: Pun, test_users: dict[str, TestUser]) -> None:
    alice = test_users["alice"]

    def ok(name: str) -> dict[str, Any]:
        report = pun.get(name)
        assert report["returncode"] == 0 and report["stderr"] == "", report
        # The app is alice's, with no session: no runtime directory, and
        # nothing of pam-slurmjwt's in its environment or on its PATH.
        assert report["uid"] == alice.uid
        assert {*clean_nginx_env(alice), "SHELL", "HOME"} <= set(report["env"]), report["env"]
        assert "XDG_RUNTIME_DIR" not in report["env"], report["env"]
        assert not [k for k in report["env"] if k.startswith("SLURM")], report["env"]
        assert report["PATH"] == SUDO_PATH
        return report

    # Without the wrappers (a cluster file with no bin_overrides), Slurm refuses.
    plain = pun.get("squeue", plain=True)
    assert plain["cmd"] == "squeue" and plain["returncode"] == 1, plain
    assert plain["stderr"].endswith("slurm_load_jobs error: Protocol authentication error\n")
    assert grants(pun) == 0

    # No slurmjwt-userdir: the wrapper gets a token from the helper, and
    # alice, who cannot make her cache directory, has none.
    assert ok("squeue")["cmd"] == str(pun.installed.wrappers / "squeue")
    assert grants(pun) == 1
    assert not pun.cache.exists()

    with serve_userdir(pun.installed, pun.helper):
        job = ok("sbatch")["stdout"].strip()
        assert job.isdigit(), job
        assert grants(pun) == 2
        # slurmjwt-userdir made alice's cache directory: hers alone.
        st = pun.cache.lstat()
        assert stat.S_ISDIR(st.st_mode) and (st.st_uid, st.st_gid) == (alice.uid, alice.gid)
        assert stat.S_IMODE(st.st_mode) == 0o700
        first = pun.cached()
        assert token_claims(pun.cluster, first[7], "alice")["exp"] == int(first[4])

        # Warm: the next commands read the cache; the helper is not asked.
        for name in ("squeue", "sbatch"):
            ok(name)
        assert [job, "alice"] in jobs(ok("squeue"))
        assert grants(pun) == 2

        # The cached token expired: the first command gets a new one, once.
        while time.time() <= int(first[4]) + 1:
            time.sleep(0.5)
        later = ok("sbatch")["stdout"].strip()
        assert [later, "alice"] in jobs(ok("squeue"))
        assert grants(pun) == 3
        assert int(pun.cached()[4]) > int(first[4])


def jobs(report: dict[str, Any]) -> list[list[str]]:
    """The (job id, user) rows of the app's squeue."""
    return [line.split() for line in report["stdout"].splitlines()]
