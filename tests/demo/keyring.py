"""The key layout on a running demo cluster, shown step by step: each login
node its own RSA key (the demo's helper, and a second helper on the login
container with its own key, socket and slurmjwt.conf, standing in for a
second login node), the controller's JWKS holding both public keys, a key
switched by SIGHUP while the user's cache follows, slurmdbd without and
with the JWKS (it reads keys only at start), one node's key revoked,
and on Slurm 26.05 identity claims for a user the controller cannot resolve.

Run it with `python -m tests.demo keys [--release CODENAME]`; the
compatibility matrix runs the same scenario and asserts what it recorded
(tests/integration/test_matrix_keys.py). Tokens are fetched as the users
with `slurmjwt-refresh` and `slurmjwt token` (docker exec, a private cache)
and always reach Slurm in the environment, never on a command line.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from docker.models.containers import Container

from tests.demo import accounting, cluster, engine, images, keys, lock
from tests.demo.errors import DemoError, Say
from tests.demo.releases import Release

DEMO = cluster.DEMO_USER
GHOST = "ghost"  # a user the login node knows and the controller does not
GHOST_UID = 3000
LOGIN2_CONF = "/etc/slurm/login2/slurmjwt.conf"
LOGIN2_SOCKET = "/run/slurmjwt-login2/helper.sock"
CACHE = "/tmp/slurmjwt-cache-{user}"
JWKS = "/etc/slurm/jwks.json"
DEMO_CONF = "/etc/slurm/slurmjwt.conf"
POLL = 0.25
TIMEOUT = 90.0
UNFINISHED = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING")


@dataclass
class Seen:
    """What one Slurm did with the keys, step by step (True: the command
    that needed slurmctld to accept the token succeeded), and the story."""

    release: Release
    say: Say = print
    kids: dict[str, str] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    accepted: dict[str, bool] = field(default_factory=dict)
    said: dict[str, str] = field(default_factory=dict)

    def check(self, what: str, ok: bool) -> None:
        """Record whether slurmctld accepted `what`, and tell it."""
        self.accepted[what] = ok
        self.say(f"  {what}: {'accepted' if ok else 'REFUSED'}")


# ----------------------------------------------------------------- in the containers

def sh(container: Container, script: str, user: str = "root",
       env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run a shell script in the container; return (status, stdout+stderr).
    Users are switched to by setpriv, not by docker exec's user=, which reads
    only the image's /etc/passwd: the demo's users are in the directory."""
    argv = ["sh", "-euc", script]
    if user != "root":
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *argv]
    result = container.exec_run(argv, environment=env or {})
    return int(result.exit_code), (result.output or b"").decode(errors="replace")


def must(container: Container, script: str, user: str = "root",
         env: dict[str, str] | None = None) -> str:
    code, out = sh(container, script, user, env)
    if code != 0:
        raise DemoError(f"{container.name}: `{script}` failed ({code}): {out}")
    return out


def as_user(login: Container, user: str, script: str, conf: str = DEMO_CONF) -> tuple[int, str]:
    """Run `script` as `user` on the login node with its own token cache and
    the given slurmjwt.conf (the demo's helper, or login2's)."""
    return sh(login, script, user=user, env={
        "SLURMJWT_CONF": conf, "SLURMJWT_CACHE_DIR": CACHE.format(user=user),
        "HOME": f"/home/{user}", "PATH": "/usr/local/bin:/usr/bin:/bin"})


def fetch(login: Container, user: str, save_as: str, conf: str = DEMO_CONF) -> dict[str, str]:
    """As `user`: refresh the cache if needed, save the token to a 0600 file of
    the user's (/tmp/<save_as>.jwt) and return its header, unverified."""
    must(login, f"slurmjwt-refresh --if-needed && umask 077 && slurmjwt token > "
                f"/tmp/{save_as}.jwt", user=user,
         env={"SLURMJWT_CONF": conf, "SLURMJWT_CACHE_DIR": CACHE.format(user=user),
              "PATH": "/usr/bin:/bin"})
    out = must(login, f"python3 -I -c 'import jwt, sys; print(__import__(\"json\").dumps("
                      f"jwt.get_unverified_header(open(\"/tmp/{save_as}.jwt\").read().strip())))'",
               user=user)
    header: dict[str, str] = json.loads(out)
    return header


def with_token(login: Container, user: str, saved: str, command: str) -> tuple[int, str]:
    """Run a Slurm command as `user` with the saved token in SLURM_JWT (never
    on a command line)."""
    return sh(login, f'SLURM_JWT=$(cat /tmp/{saved}.jwt); export SLURM_JWT; {command}',
              user=user, env={"HOME": f"/home/{user}", "PATH": "/usr/bin:/bin"})


def reload_demo_helper(login: Container) -> None:
    """systemctl reload slurmjwt-helper where systemd runs it, else SIGHUP to
    the demo entrypoint's helper (the oldest one started with --stderr only)."""
    if sh(login, "systemctl is-active --quiet slurmjwt-helper")[0] == 0:
        must(login, "systemctl reload slurmjwt-helper")
        return
    must(login, "kill -HUP $(pgrep -o -f 'slurmjwt-helper --stderr$')")


def wait_for(what: str, check: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise DemoError(f"not within {timeout:.0f} s: {what}")
        time.sleep(POLL)


# Ten grants in a row from the demo's helper, as root: (kid, whether the
# token carries a uid claim) each, as JSON.
GRANTS = """
import json, sys
sys.path.insert(0, "/usr/lib/slurmjwt")
from pam_slurmjwt import protocol
from pam_slurmjwt.token import inspect
out = []
for _ in range(10):
    grant = protocol.request_token("/run/slurmjwt/helper.sock", sys.argv[1], 60, 5)
    out.append([grant.kid, "uid" in inspect(grant.token)[1]])
print(json.dumps(out))
"""


def every_worker_grants(login: Container, user: str, kid: str, ids: bool) -> bool:
    """After a reload each helper worker switches on its own: True when ten
    grants in a row come from key `kid`, with (ids) or without the user's ids."""
    code, out = sh(login, f"python3 -I -c '{GRANTS}' {user}")
    return code == 0 and all(k == kid and u == ids for k, u in json.loads(out))


def published_kid(login: Container, key_dir: str = "/run/slurmjwt/key") -> str:
    return sh(login, f"cat {key_dir}/id")[1].strip()


def set_auth_alt(running: cluster.Running, params: str) -> None:
    """AuthAltParameters in slurm.conf, the same on both hosts."""
    for host in (running.controller, running.login):
        must(host, f"sed -i 's|^AuthAltParameters=.*|AuthAltParameters={params}|' "
                   f"{cluster.SLURM_CONF}")


def reread(running: cluster.Running, rel: Release, restart: bool) -> None:
    """Make slurmctld read slurm.conf and the JWKS again: `scontrol
    reconfigure`, or (restart) restart it, as a site would with systemctl:
    here the controller container, whose main process slurmctld is."""
    controller = running.controller
    if restart:
        controller.restart(timeout=30)
        controller.reload()
        if controller.status == "exited":
            raise AssertionError("the controller container stopped at its restart: "
                                 + controller.logs(tail=20).decode(errors="replace"))
    else:
        must(controller, "scontrol reconfigure")
    deadline = time.monotonic() + cluster.READY_TIMEOUT
    cluster.wait_until(controller, "the node idle in sinfo", lambda: cluster.node_idle(controller),
                       deadline, daemons=("slurmctld",))


def install_jwks(running: cluster.Running, key_files: list[str]) -> list[str]:
    """Build the JWKS of `key_files` on the login node with `slurmjwt jwks` and
    put it on the controller (0644, root's); return its kids."""
    text = must(running.login, f"slurmjwt jwks {' '.join(key_files)}")
    cluster.put_file(running.controller, JWKS, text.encode(), 0o644)
    return [entry["kid"] for entry in json.loads(text)["keys"]]


def job_state(controller: Container, job: str) -> str:
    out = sh(controller, f"scontrol --oneliner show job {job}")[1]
    found = re.search(r"JobState=(\S+)", out)
    return found.group(1) if found else ""


def wait_job(controller: Container, job: str) -> str:
    deadline = time.monotonic() + TIMEOUT
    while (state := job_state(controller, job)) in UNFINISHED:
        if time.monotonic() > deadline:
            break
        time.sleep(POLL)
    return state


def sbatch(login: Container, user: str, saved: str) -> tuple[str, str]:
    """Submit a one-line job as `user` with the saved token; return (job id or
    "", what sbatch said)."""
    code, out = with_token(login, user, saved, "cd /tmp && sbatch --parsable --wrap 'id -u'")
    found = re.match(r"(\d+)", out.strip())
    return (found.group(1) if code == 0 and found else ""), out


# ----------------------------------------------------------------- the scenario

def scenario(running: cluster.Running, rel: Release, say: Say = print) -> Seen:
    """Run the key scenario on a started demo cluster; return what Slurm did."""
    seen = Seen(rel, say)
    login, controller = running.login, running.controller
    modern = rel.version >= (23, 11)

    def ok(user: str, saved: str) -> bool:
        return with_token(login, user, saved, "squeue")[0] == 0

    say("HS256, as the demo starts: the token names its key in its header (kid)")
    seen.headers["hs256"] = fetch(login, DEMO, "hs256")
    seen.check("hs256", ok(DEMO, "hs256"))

    say("each login node makes its own RSA key (slurmjwt keygen); the controller gets "
        "the JWKS of both (slurmjwt jwks) beside its HS256 key")
    for node in ("login1", "login2"):
        said = must(login, f"slurmjwt keygen /etc/slurm/{node}.pem")
        found = re.search(r"kid ([A-Za-z0-9_-]{43})", said)
        assert found, said
        seen.kids[node] = found.group(1)
        say(f"  {node}: kid {seen.kids[node]}")
    seen.said["jwks"] = must(login, "slurmjwt jwks /etc/slurm/login1.pem /etc/slurm/login2.pem")
    install_jwks(running, ["/etc/slurm/login1.pem", "/etc/slurm/login2.pem"])
    set_auth_alt(running, f"jwt_key={cluster.JWT_KEY},jwks={JWKS},disable_token_creation")
    say(f"  AuthAltParameters=jwt_key=...,jwks={JWKS},disable_token_creation; slurmctld "
        + ("reconfigured" if modern else "restarted (before 23.11 only a restart reads it)"))
    reread(running, rel, restart=not modern)
    seen.check("hs256 after adding the jwks", ok(DEMO, "hs256"))

    say("the demo's helper switches to login1's key: JwtKey= and SIGHUP")
    must(login, f"sed -i 's|^JwtKey=.*|JwtKey=/etc/slurm/login1.pem|' {DEMO_CONF}")
    reload_demo_helper(login)
    wait_for("the demo helper publishes login1's kid",
             lambda: published_kid(login) == seen.kids["login1"])
    wait_for("every worker signs with login1's key",
             lambda: every_worker_grants(login, DEMO, seen.kids["login1"], ids=False))
    seen.said["status"] = as_user(login, DEMO, "slurmjwt-refresh --if-needed && "
                                               "slurmjwt status --json")[1]
    say(f"  the demo user's next slurmjwt-refresh --if-needed follows it: cache kid "
        f"{json.loads(seen.said['status'][seen.said['status'].find('{'):] or '{}').get('kid')}")
    seen.headers["login1"] = fetch(login, DEMO, "login1")
    seen.check("login1", ok(DEMO, "login1"))
    job, seen.said["sbatch login1"] = sbatch(login, DEMO, "login1")
    seen.said["job login1"] = wait_job(controller, job) if job else ""
    say(f"  sbatch with login1's token: job {job or 'refused'} {seen.said['job login1']}")
    seen.check("hs256 after the switch", ok(DEMO, "hs256"))
    slurmdbd_and_the_jwks(running, seen, job)

    say("a second login node: its own helper, socket, slurmjwt.conf and key (login2)")
    must(login, "install -d -m 0755 /etc/slurm/login2")
    cluster.put_file(login, LOGIN2_CONF, (
        f"JwtKey=/etc/slurm/login2.pem\nBackend=key\nHelperSocket={LOGIN2_SOCKET}\n"
        f"RootSocket=/run/slurmjwt-login2/root.sock\n").encode(), 0o644)
    login.exec_run(["sh", "-c", f"slurmjwt-helper --stderr -c {LOGIN2_CONF} "
                                f">> /var/log/slurmjwt-login2.log 2>&1"], detach=True)
    wait_for("login2's helper answers",
             lambda: sh(login, f"slurmjwt -c {LOGIN2_CONF} ping")[0] == 0)
    seen.headers["login2"] = fetch(login, DEMO, "login2", conf=LOGIN2_CONF)
    seen.check("login2", ok(DEMO, "login2"))

    say("revoke login2: its key leaves the JWKS; scontrol reconfigure")
    install_jwks(running, ["/etc/slurm/login1.pem"])
    reread(running, rel, restart=False)
    seen.check("login2 after reconfigure", ok(DEMO, "login2"))
    if not modern:
        say("  before 23.11 reconfigure does not read the JWKS: restart slurmctld")
        reread(running, rel, restart=True)
    seen.check("login2 revoked", ok(DEMO, "login2"))
    seen.check("login1 after revoking login2", ok(DEMO, "login1"))
    seen.said["doctor login2"] = sh(login, f"slurmjwt -c {LOGIN2_CONF} doctor --user {DEMO}")[1]
    for line in seen.said["doctor login2"].splitlines():
        if line.startswith("FAIL"):
            say(f"  doctor on login2: {line}")

    if rel.version >= (26, 5):
        identity_claims(running, seen)
    return seen


def accounting_with(running: cluster.Running, seen: Seen, what: str, saved: str,
                    job: str) -> None:
    """Run sacct, sacctmgr, sreport and sshare as the demo user with a saved
    token; record each as `what: command` and the output as said[what]."""
    _, seen.said[what] = with_token(running.login, DEMO, saved,
                                       accounting.script(DEMO, job or "0"))
    for name, ok in accounting.worked(seen.said[what]).items():
        seen.check(f"{what}: {name}", ok)


def slurmdbd_and_the_jwks(running: cluster.Running, seen: Seen, job: str) -> None:
    """slurmdbd takes a token only with its own key settings, read at its
    start. As it runs since the controller started (22.05: restarted with
    slurmctld for the JWKS; later: not restarted at all), then with a
    slurmdbd.conf that names the HS256 key only while slurmctld has the JWKS
    (doctor's view), then restarted with the JWKS."""
    login, controller = running.login, running.controller
    say = seen.say
    say("accounting with login1's RS256 token: slurmdbd as it runs")
    accounting_with(running, seen, "slurmdbd as started", "login1", job)
    say("slurmdbd.conf naming the HS256 key only (AuthAltParameters=jwt_key=...), "
        "slurmdbd restarted: slurmctld has the JWKS, slurmdbd does not")
    must(controller, f"{accounting.RESTART_SLURMDBD} jwt_key={cluster.JWT_KEY}")
    accounting_with(running, seen, "slurmdbd without the jwks", "login1", job)
    seen.said["doctor dbd"] = sh(login, f"slurmjwt doctor --user {DEMO}")[1]
    for line in seen.said["doctor dbd"].splitlines():
        if line.startswith("FAIL"):
            say(f"  doctor: {line}")
    say("slurmdbd.conf with slurm.conf's AuthAltParameters (the JWKS), slurmdbd restarted")
    must(controller, accounting.RESTART_SLURMDBD)
    accounting_with(running, seen, "slurmdbd with the jwks", "login1", job)
    seen.said["doctor dbd fixed"] = sh(login, f"slurmjwt doctor --user {DEMO}")[1]


def identity_claims(running: cluster.Running, seen: Seen) -> None:
    """26.05: a user only the login node knows, with and without the ids in
    the token, slurmctld told to take them (use_jwt_client_ids)."""
    login, controller = running.login, running.controller
    say = seen.say
    say(f"Slurm 26.05: {GHOST} (uid {GHOST_UID}) exists on the login node only; slurmctld "
        f"gets AuthAltParameters=...,use_jwt_client_ids")
    must(login, f"id {GHOST} >/dev/null 2>&1 || useradd --uid {GHOST_UID} --user-group "
                f"--create-home --shell /bin/bash {GHOST}")
    seen.said["ghost on the controller"] = sh(controller, f"id {GHOST}")[1]
    set_auth_alt(running, f"jwt_key={cluster.JWT_KEY},jwks={JWKS},disable_token_creation,"
                             f"use_jwt_client_ids")
    reread(running, seen.release, restart=False)
    fetch(login, GHOST, "ghost-plain")
    job, seen.said["ghost sbatch without ids"] = sbatch(login, GHOST, "ghost-plain")
    seen.check("ghost sbatch without ids", bool(job))
    say("  IdentityClaims=yes in the demo's slurmjwt.conf, SIGHUP")
    must(login, f"echo IdentityClaims=yes >> {DEMO_CONF}")
    reload_demo_helper(login)
    wait_for("every worker puts the ids in",
             lambda: every_worker_grants(login, GHOST, seen.kids["login1"], ids=True))
    must(login, f"rm -rf {CACHE.format(user=GHOST)}", user=GHOST)
    fetch(login, GHOST, "ghost-ids")
    seen.said["ghost claims"] = must(login, "python3 -I -c 'import jwt; print(__import__(\"json\")"
                                            ".dumps(jwt.decode(open(\"/tmp/ghost-ids.jwt\").read()"
                                            ".strip(), options={\"verify_signature\": False})))'",
                                     user=GHOST)
    code, seen.said["ghost squeue"] = with_token(login, GHOST, "ghost-ids", "squeue")
    seen.check("ghost squeue with ids", code == 0)
    job, seen.said["ghost sbatch"] = sbatch(login, GHOST, "ghost-ids")
    seen.check("ghost sbatch with ids", bool(job))
    seen.said["ghost job"] = wait_job(controller, job) if job else ""
    say(f"  job {job or '-'}: {seen.said['ghost job']}")


def bring_up(rel: Release, say: Say) -> cluster.Running:
    """Start the release's demo cluster without the ssh transcript (an old one
    is removed first); hold the demo lock until run.down."""
    lock.acquire(say)
    client = engine.ensure_engine(say)
    cluster.remove(client, rel.codename, say)
    built = images.ensure_images(client, rel, say)
    host_keys = keys.ensure_keys(rel.codename, say)
    return cluster.start(client, rel, built, keys.secrets(host_keys), say)
