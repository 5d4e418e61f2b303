"""Keys on every Slurm of the compatibility matrix (tests/demo/releases.py:
22.05, 24.11, 26.05), in the demo's two-host Docker cluster.

Per release, one scenario is run and what each Slurm did is recorded; the
tests below assert it. On the login node: keys made with `slurmjwt keygen`,
the JWKS with `slurmjwt jwks` (copied to the controller, which has no
pam-slurmjwt), the demo's helper switched by SIGHUP from the HS256 key to
login1's RSA key, and a second helper with login2's key, its own socket
and slurmjwt.conf: a second "login node". Tokens are fetched as the demo
user with `slurmjwt-refresh` and `slurmjwt token` (docker exec, a private
cache), never through ssh, and always reach Slurm in the environment.

Slow like the matrix (a cluster per release). Skipped only when no Docker
engine can run on the machine at all.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from docker.models.containers import Container

from tests.demo import cluster, engine, images, keys, lock, run
from tests.demo.errors import DemoError
from tests.demo.releases import RELEASES, Release

pytestmark = [pytest.mark.slow, pytest.mark.root]

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
    that needed slurmctld to accept the token succeeded)."""

    release: Release
    kids: dict[str, str] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    accepted: dict[str, bool] = field(default_factory=dict)
    said: dict[str, str] = field(default_factory=dict)


# ----------------------------------------------------------------- in the containers

def sh(container: Container, script: str, user: str = "root",
       env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run a shell script in the container; return (status, stdout+stderr)."""
    result = container.exec_run(["sh", "-euc", script], user=user, environment=env or {})
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


def wait_for(what: str, check: object, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
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


def set_auth_alt(controller: Container, params: str) -> None:
    must(controller, f"sed -i 's|^AuthAltParameters=.*|AuthAltParameters={params}|' "
                     f"{cluster.SLURM_CONF}")


def reread(running: cluster.Running, rel: Release, restart: bool) -> None:
    """Make slurmctld read slurm.conf and the JWKS again: `scontrol
    reconfigure`, or (restart) restart it, as a site would with systemctl:
    here the controller container, whose main process slurmctld is."""
    controller = running.controller
    if restart:
        controller.restart(timeout=30)
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

def scenario(running: cluster.Running, rel: Release) -> Seen:
    seen = Seen(rel)
    login, controller = running.login, running.controller
    modern = rel.version >= (23, 11)

    # HS256 as the demo runs it: the token names its key (kid) in its header.
    seen.headers["hs256"] = fetch(login, DEMO, "hs256")
    seen.accepted["hs256"] = with_token(login, DEMO, "hs256", "squeue")[0] == 0

    # Two login nodes' keys, made on the login node; the controller gets the
    # JWKS of both beside its HS256 key.
    for node in ("login1", "login2"):
        said = must(login, f"slurmjwt keygen /etc/slurm/{node}.pem")
        seen.kids[node] = re.search(r"kid ([A-Za-z0-9_-]{43})", said).group(1)  # type: ignore[union-attr]
    seen.said["jwks"] = must(login, "slurmjwt jwks /etc/slurm/login1.pem /etc/slurm/login2.pem")
    install_jwks(running, ["/etc/slurm/login1.pem", "/etc/slurm/login2.pem"])
    set_auth_alt(controller, f"jwt_key={cluster.JWT_KEY},jwks={JWKS},disable_token_creation")
    reread(running, rel, restart=not modern)
    seen.accepted["hs256 after adding the jwks"] = \
        with_token(login, DEMO, "hs256", "squeue")[0] == 0

    # The demo's helper switches to login1's key on SIGHUP.
    must(login, f"sed -i 's|^JwtKey=.*|JwtKey=/etc/slurm/login1.pem|' {DEMO_CONF}")
    reload_demo_helper(login)
    wait_for("the demo helper publishes login1's kid",
             lambda: published_kid(login) == seen.kids["login1"])
    wait_for("every worker signs with login1's key",
             lambda: every_worker_grants(login, DEMO, seen.kids["login1"], ids=False))
    seen.said["status"] = as_user(login, DEMO, "slurmjwt-refresh --if-needed && "
                                               "slurmjwt status --json")[1]
    seen.headers["login1"] = fetch(login, DEMO, "login1")
    seen.accepted["login1"] = with_token(login, DEMO, "login1", "squeue")[0] == 0
    job, seen.said["sbatch login1"] = sbatch(login, DEMO, "login1")
    seen.said["job login1"] = wait_job(controller, job) if job else ""
    seen.accepted["hs256 after the switch"] = with_token(login, DEMO, "hs256", "squeue")[0] == 0

    # The second login node: its own helper, socket, slurmjwt.conf and key.
    must(login, f"""
        install -d -m 0755 /etc/slurm/login2
        printf 'JwtKey=/etc/slurm/login2.pem\\nBackend=key\\nHelperSocket={LOGIN2_SOCKET}\\n\\
RootSocket=/run/slurmjwt-login2/root.sock\\n' > {LOGIN2_CONF}
        chmod 0644 {LOGIN2_CONF}""")
    login.exec_run(["sh", "-c", f"slurmjwt-helper --stderr -c {LOGIN2_CONF} "
                                f">> /var/log/slurmjwt-login2.log 2>&1"], detach=True)
    wait_for("login2's helper answers",
             lambda: sh(login, f"slurmjwt -c {LOGIN2_CONF} ping")[0] == 0)
    seen.headers["login2"] = fetch(login, DEMO, "login2", conf=LOGIN2_CONF)
    seen.accepted["login2"] = with_token(login, DEMO, "login2", "squeue")[0] == 0

    # Revoke login2: the JWKS without its key, then reconfigure (and restart).
    install_jwks(running, ["/etc/slurm/login1.pem"])
    reread(running, rel, restart=False)
    seen.accepted["login2 after reconfigure"] = \
        with_token(login, DEMO, "login2", "squeue")[0] == 0
    if not modern:
        reread(running, rel, restart=True)
    seen.accepted["login2 revoked"] = with_token(login, DEMO, "login2", "squeue")[0] == 0
    seen.accepted["login1 after revoking login2"] = \
        with_token(login, DEMO, "login1", "squeue")[0] == 0
    seen.said["doctor login2"] = sh(login, f"slurmjwt -c {LOGIN2_CONF} doctor --user {DEMO}")[1]

    if rel.version >= (26, 5):
        identity_claims(running, seen)
    return seen


def identity_claims(running: cluster.Running, seen: Seen) -> None:
    """26.05: a user only the login node knows, with and without the ids in
    the token, slurmctld told to take them (use_jwt_client_ids)."""
    login, controller = running.login, running.controller
    must(login, f"id {GHOST} >/dev/null 2>&1 || useradd --uid {GHOST_UID} --user-group "
                f"--create-home --shell /bin/bash {GHOST}")
    seen.said["ghost on the controller"] = sh(controller, f"id {GHOST}")[1]
    set_auth_alt(controller, f"jwt_key={cluster.JWT_KEY},jwks={JWKS},disable_token_creation,"
                             f"use_jwt_client_ids")
    reread(running, seen.release, restart=False)
    fetch(login, GHOST, "ghost-plain")
    job, seen.said["ghost sbatch without ids"] = sbatch(login, GHOST, "ghost-plain")
    seen.accepted["ghost sbatch without ids"] = bool(job)
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
    seen.accepted["ghost with ids"] = code == 0
    job, seen.said["ghost sbatch"] = sbatch(login, GHOST, "ghost-ids")
    seen.accepted["ghost sbatch"] = bool(job)
    seen.said["ghost job"] = wait_job(controller, job) if job else ""


@pytest.fixture(scope="module", params=list(RELEASES), ids=lambda c: f"{c}-{RELEASES[c].slurm}")
def seen(request: pytest.FixtureRequest) -> Iterator[Seen]:
    """One release's cluster, up without the demo's transcript, with the key
    scenario run; always removed."""
    why = engine.unavailable()
    if why is not None:
        pytest.skip(f"the compatibility matrix needs Docker: {why}")
    rel = RELEASES[request.param]
    said: list[str] = []
    lock.acquire(said.append)
    try:
        client = engine.ensure_engine(said.append)
        cluster.remove(client, rel.codename, said.append)
        built = images.ensure_images(client, rel, said.append)
        host_keys = keys.ensure_keys(rel.codename, said.append)
        running = cluster.start(client, rel, built, keys.secrets(host_keys), said.append)
        yield scenario(running, rel)
    finally:
        run.down(rel.codename, said.append)


# ----------------------------------------------------------------- what each Slurm did

def test_hs256_tokens_naming_their_key_are_accepted(seen: Seen) -> None:
    assert seen.headers["hs256"]["alg"] == "HS256" and len(seen.headers["hs256"]["kid"]) == 22
    assert seen.accepted["hs256"]
    assert seen.accepted["hs256 after adding the jwks"]  # jwks= beside jwt_key=: both taken


def test_rs256_tokens_are_accepted_by_squeue_and_sbatch(seen: Seen) -> None:
    assert seen.headers["login1"] == {"alg": "RS256", "kid": seen.kids["login1"], "typ": "JWT"}
    assert seen.accepted["login1"]
    assert seen.said["job login1"] == "COMPLETED", seen.said["sbatch login1"]
    jwks = json.loads(seen.said["jwks"])
    assert [e["kid"] for e in jwks["keys"]] == [seen.kids["login1"], seen.kids["login2"]]
    assert all(set(e) == {"kty", "kid", "alg", "use", "n", "e"} for e in jwks["keys"])


def test_a_token_minted_before_the_key_switch_keeps_working(seen: Seen) -> None:
    assert seen.accepted["hs256 after the switch"]


def test_the_users_cache_follows_the_key_at_once(seen: Seen) -> None:
    report = json.loads(seen.said["status"][seen.said["status"].index("{"):])
    assert (report["valid"], report["kid"], report["key_in_use"]) == (
        True, seen.kids["login1"], seen.kids["login1"])


def test_two_login_nodes_and_one_revoked(seen: Seen) -> None:
    assert seen.headers["login2"]["kid"] == seen.kids["login2"]
    assert seen.accepted["login2"]
    # From 23.11 on, scontrol reconfigure re-reads the JWKS; before, only a restart.
    assert seen.accepted["login2 after reconfigure"] == (seen.release.version < (23, 11))
    assert not seen.accepted["login2 revoked"]
    assert seen.accepted["login1 after revoking login2"]


def test_doctor_on_the_revoked_node_names_its_key(seen: Seen) -> None:
    how = ("run scontrol reconfigure" if seen.release.version >= (23, 11)
           else "restart slurmctld (Slurm before 23.11 reads the JWKS only at start)")
    assert (f"this node's key (/etc/slurm/login2.pem), kid {seen.kids['login2']}, is not in "
            f"slurmctld's JWKS") in seen.said["doctor login2"], seen.said["doctor login2"]
    assert how in seen.said["doctor login2"]


def test_identity_claims_let_a_user_the_controller_cannot_resolve_in(seen: Seen) -> None:
    if seen.release.version < (26, 5):
        pytest.skip(f"use_jwt_client_ids is new in Slurm 26.05 (this is {seen.release.slurm})")
    assert "no such user" in seen.said["ghost on the controller"]
    # Without the ids slurmctld cannot tell who ghost is: the request counts as nobody's.
    assert not seen.accepted["ghost sbatch without ids"]
    assert "nobody" in seen.said["ghost sbatch without ids"]
    claims = json.loads(seen.said["ghost claims"])
    assert (claims["uid"], claims["id"]["name"], claims["id"]["dir"]) == (
        GHOST_UID, GHOST, f"/home/{GHOST}")
    assert seen.accepted["ghost with ids"], seen.said["ghost squeue"]
    assert seen.accepted["ghost sbatch"], seen.said["ghost sbatch"]
    # The job ran too, on a node that cannot resolve ghost either.
    assert seen.said["ghost job"] == "COMPLETED"
