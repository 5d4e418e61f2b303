"""Keys against the real slurmctld (22.05 on this machine; the Docker matrix
repeats the Slurm side on 24.11 and 26.05): RS256 tokens checked against
a JWKS, one key per login node (here: one helper per "node", each with its
own socket and key), revoking one node's key, rotating a key with the
README's steps while the caches follow it, HS256 rotation, and bad keys
on reload. Every key is made and every JWKS built with the installed
`slurmjwt keygen` and `slurmjwt jwks`, as the README says.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.integration.fixtures.cluster import Cluster
from tests.integration.fixtures.helperd import HelperProcess, start_helper, write_config
from tests.integration.fixtures.install import Installed
from tests.integration.fixtures.users import TestUser
from tests.integration.test_helper import as_user, fetch

REPO = Path(__file__).resolve().parents[2]
POLL = 0.05
RELOAD_TIMEOUT = 20.0
REFUSED_KID = "could not find matching kid"  # slurmctld's log, auth/jwt


class Keys:
    """A root-owned 0755 directory of keys and JWKS files, made with the
    installed commands, and the helpers ("login nodes") that use them."""

    def __init__(self, installed: Installed, root: Path) -> None:
        self.installed = installed
        self.root = root
        self.helpers: list[tuple[HelperProcess, Path]] = []

    def slurmjwt(self, *argv: str, slurm_conf: Path | None = None) -> str:
        env = {"PATH": "/usr/bin:/bin"}
        if slurm_conf is not None:
            env["SLURM_CONF"] = str(slurm_conf)
        out = subprocess.run([self.installed.cmd("slurmjwt"), *argv], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def keygen(self, name: str, slurm_conf: Path) -> tuple[Path, str]:
        """README: `slurmjwt keygen FILE` on the login node; return (path, kid)."""
        path = self.root / f"{name}.pem"
        said = self.slurmjwt("keygen", str(path), slurm_conf=slurm_conf)
        match = re.search(r"kid ([A-Za-z0-9_-]{43});", said)
        assert match, said
        assert path.stat().st_uid == _uid("slurm") and path.stat().st_mode & 0o777 == 0o600
        return path, match.group(1)

    def public_half(self, key: Path, out: Path) -> None:
        """README: `slurmjwt jwks KEY > NODE.jwks`, safe to copy to the controller."""
        out.write_text(self.slurmjwt("jwks", str(key)))

    def build_jwks(self, jwks_d: Path, jwks: Path) -> list[str]:
        """README: `slurmjwt jwks /etc/slurm/jwks.d/* > jwks.json.new && mv ...`;
        return the kids it holds."""
        inputs = sorted(str(p) for p in jwks_d.iterdir())
        new = jwks.with_name(jwks.name + ".new")
        new.write_text(self.slurmjwt("jwks", *inputs))
        new.chmod(0o644)
        new.rename(jwks)
        return [entry["kid"] for entry in json.loads(jwks.read_text())["keys"]]

    def helper(self, cluster: Cluster, key: Path, extra: str = "") -> HelperProcess:
        work = Path(tempfile.mkdtemp(prefix="slurmjwt-node-"))
        proc = start_helper(self.installed, cluster.slurm_conf, work,
                            extra=f"JwtKey={key}\n{extra}")
        self.helpers.append((proc, work))
        return proc

    def stop(self) -> None:
        for proc, work in self.helpers:
            proc.stop()
            shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def keys(installed: Installed) -> Iterator[Keys]:
    root = Path(tempfile.mkdtemp(prefix="slurmjwt-keys-"))
    root.chmod(0o755)
    made = Keys(installed, root)
    try:
        yield made
    finally:
        made.stop()
        shutil.rmtree(root, ignore_errors=True)


def _uid(name: str) -> int:
    import pwd

    return pwd.getpwnam(name).pw_uid


def _slurm_version(cluster: Cluster) -> tuple[int, int]:
    out = cluster.run(["scontrol", "--version"]).stdout
    match = re.search(r"(\d+)\.(\d+)", out)
    assert match, out
    return int(match.group(1)), int(match.group(2))


def make_slurmctld_read_the_jwks(cluster: Cluster) -> None:
    """README step: 23.11 and later re-read the JWKS on `scontrol reconfigure`;
    before 23.11 only a restart does (proven below on 22.05)."""
    if _slurm_version(cluster) >= (23, 11):
        cluster.reconfigure()
    else:
        cluster.restart_slurmctld()


def accepted(cluster: Cluster, user: str, token: str) -> bool:
    return cluster.run(["squeue", "--noheader"], user=user,
                       env_extra={"SLURM_JWT": token}).returncode == 0


def key_id_file(helper: HelperProcess) -> Path:
    return helper.socket.parent / "key" / "id"


def wait_for_kid(helper: HelperProcess, kid: str) -> None:
    """Poll the key id the helper publishes until it is `kid`."""
    deadline = time.monotonic() + RELOAD_TIMEOUT
    path = key_id_file(helper)
    while time.monotonic() < deadline:
        if path.exists() and path.read_text() == f"{kid}\n":
            return
        time.sleep(POLL)
    raise AssertionError(f"the helper never published kid {kid}: {helper.log_text()}")


def wait_for_every_worker(helper: HelperProcess, kid: str, tries: int = 10) -> None:
    """After a reload each worker switches on its own: poll until `tries`
    grants in a row name `kid`, so that no worker still signs with the old key."""
    deadline = time.monotonic() + RELOAD_TIMEOUT
    in_a_row = 0
    while in_a_row < tries:
        assert time.monotonic() < deadline, helper.log_text()
        answer = helper.ask(b"SLURMJWT/2 TOKEN carol 60\n").split()
        in_a_row = in_a_row + 1 if answer[1] == b"OK" and answer[5].decode() == kid else 0
        if not in_a_row:
            time.sleep(POLL)


def wait_for_log(helper: HelperProcess, text: str, count: int = 1) -> None:
    deadline = time.monotonic() + RELOAD_TIMEOUT
    while time.monotonic() < deadline:
        if helper.log_text().count(text) >= count:
            return
        time.sleep(POLL)
    raise AssertionError(f"never logged {text!r}: {helper.log_text()}")


def header(token: str) -> dict[str, str]:
    return dict(jwt.get_unverified_header(token))


def rs256_cluster(cluster_factory: Callable[..., Cluster], keys: Keys,
                  node_keys: list[Path], names: list[str] | None = None) -> Cluster:
    """A cluster whose slurmctld holds only the nodes' public keys: a JWKS
    built from jwks.d/ (one file per node key, NAME.jwks; default: the key's
    name), no HS256 key."""
    def write_jwks(root: Path) -> None:
        jwks_d = root / "jwks.d"
        jwks_d.mkdir(mode=0o755)
        for key, name in zip(node_keys, names or [key.stem for key in node_keys]):
            keys.public_half(key, jwks_d / f"{name}.jwks")
        keys.build_jwks(jwks_d, root / "jwks.json")

    return cluster_factory(auth_alt="jwks={root}/jwks.json", before_start=write_jwks)


def _bootstrap_conf(keys: Keys) -> Path:
    """A slurm.conf for keygen before any cluster exists: only SlurmUser."""
    conf = keys.root / "keygen-slurm.conf"
    conf.write_text("SlurmUser=slurm\n")
    return conf


# ----------------------------------------------------------------- RS256


def test_rs256_tokens_are_accepted_by_squeue_sbatch_slurmrestd_and_doctor(
        installed: Installed, cluster_factory: Callable[..., Cluster], keys: Keys,
        test_users: dict[str, TestUser], cache_root: Path) -> None:
    key, kid = keys.keygen("login1", _bootstrap_conf(keys))
    cluster = rs256_cluster(cluster_factory, keys, [key])
    helper = keys.helper(cluster, key)
    assert key_id_file(helper).read_text() == f"{kid}\n"
    token = fetch(installed, helper, cache_root, "alice")
    assert header(token) == {"alg": "RS256", "kid": kid, "typ": "JWT"}

    assert accepted(cluster, "alice", token)
    cluster.batch_and_rest_take("alice", token)

    env = {"PATH": "/usr/bin:/bin", **helper.env, "SLURM_CONF": str(cluster.slurm_conf)}
    # The admin's slurmjwt mint signs with the same key.
    out = subprocess.run([installed.cmd("slurmjwt"), "mint", "username=carol", "lifespan=120"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    minted = out.stdout.strip().split("=", 1)[1]
    assert header(minted) == {"alg": "RS256", "kid": kid, "typ": "JWT"}
    assert accepted(cluster, "carol", minted)

    out = subprocess.run([installed.cmd("slurmjwt"), "doctor", "--user", "alice"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert f"OK   key: {key}: RS256 key (kid {kid}), owner and mode safe" in out.stdout
    assert ("OK   slurmctld accepts: a token for alice from the helper works with squeue: "
            f"this node's key (RS256, kid {kid}) is in slurmctld's JWKS") in out.stdout, out.stdout
    assert ("OK   token creation: slurmctld has a JWKS and no HS256 key: scontrol token "
            "cannot make tokens") in out.stdout
    # The private key never leaves the login node: nothing private in the JWKS.
    assert not {"d", "p", "q"} & set(json.loads((cluster.root / "jwks.json").read_text())
                                     ["keys"][0])


def test_two_login_nodes_with_their_own_keys_and_one_revoked(
        installed: Installed, cluster_factory: Callable[..., Cluster], keys: Keys,
        test_users: dict[str, TestUser], cache_root: Path) -> None:
    conf = _bootstrap_conf(keys)
    (key1, kid1), (key2, kid2) = keys.keygen("login1", conf), keys.keygen("login2", conf)
    cluster = rs256_cluster(cluster_factory, keys, [key1, key2])
    node1, node2 = keys.helper(cluster, key1), keys.helper(cluster, key2)
    token1 = fetch(installed, node1, cache_root, "alice")
    token2 = fetch(installed, node2, cache_root, "bob")
    assert (header(token1)["kid"], header(token2)["kid"]) == (kid1, kid2)
    assert accepted(cluster, "alice", token1) and accepted(cluster, "bob", token2)

    # Revoke login2: drop its public key from jwks.d and rebuild the JWKS.
    (cluster.root / "jwks.d" / "login2.jwks").unlink()
    assert keys.build_jwks(cluster.root / "jwks.d", cluster.root / "jwks.json") == [kid1]
    if _slurm_version(cluster) < (23, 11):
        cluster.reconfigure()  # 22.05: reconfigure does not re-read the JWKS ...
        assert accepted(cluster, "bob", token2)
        cluster.restart_slurmctld()  # ... only a restart does
    else:
        cluster.reconfigure()
    assert not accepted(cluster, "bob", token2)
    assert REFUSED_KID in cluster.slurmctld_log.read_text()
    assert accepted(cluster, "alice", token1)  # login1's tokens in flight keep working
    again = node1.ask(b"SLURMJWT/2 TOKEN carol 60\n").split()[-1].decode()
    assert accepted(cluster, "carol", again)

    # On login2, doctor says which node key slurmctld lacks and how to fix it.
    env = {"PATH": "/usr/bin:/bin", **node2.env, "SLURM_CONF": str(cluster.slurm_conf)}
    out = subprocess.run([installed.cmd("slurmjwt"), "doctor", "--user", "bob"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    fix = ("restart slurmctld (Slurm before 23.11 reads the JWKS only at start)"
           if _slurm_version(cluster) < (23, 11) else "run scontrol reconfigure")
    assert (f"this node's key ({key2}), kid {kid2}, is not in slurmctld's JWKS "
            f"{cluster.root}/jwks.json (it holds {kid1}); add it (slurmjwt jwks {key2} gives "
            f"its entry) and {fix}") in out.stdout, out.stdout


def readme_rotation() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The rotation steps the README and slurmjwt.conf(5) show (generated from
    packaging/man/generate.py's ROTATION, checked by tests/unit/test_manual.py)."""
    spec = importlib.util.spec_from_file_location("slurmjwt_manual", REPO / "packaging" / "man"
                                                  / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    steps: tuple[tuple[str, tuple[str, ...]], ...] = module.ROTATION
    return steps


class Site:
    """Runs the README's command lines here, as root: /etc/slurm/... becomes
    the test's own files, and the two service commands become the fixtures'
    (systemctl reload slurmjwt-helper: SIGHUP; systemctl restart slurmctld:
    a restart). A line for another Slurm version than this one is skipped."""

    def __init__(self, installed: Installed, cluster: Cluster, node: HelperProcess,
                 keys: Keys) -> None:
        self.installed, self.cluster, self.node, self.keys = installed, cluster, node, keys
        self.version = _slurm_version(cluster)
        self.paths = (("/etc/slurm/slurmjwt.conf", str(node.config)),
                      ("/etc/slurm/jwks.d", str(cluster.root / "jwks.d")),
                      ("/etc/slurm/jwks.json", str(cluster.root / "jwks.json")),
                      ("/etc/slurm/", f"{keys.root}/"))
        self.ran: list[str] = []

    def run(self, line: str) -> None:
        command, _, note = (part.strip() for part in line.partition("#"))
        if "23.11 and later" in note and self.version < (23, 11):
            return
        if "before 23.11" in note and self.version >= (23, 11):
            return
        self.ran.append(command)
        if command == "systemctl reload slurmjwt-helper":
            self.node.reload()
            return
        if command == "systemctl restart slurmctld":
            self.cluster.restart_slurmctld()
            return
        for path, here in self.paths:
            command = command.replace(path, here)
        env = {"PATH": f"{self.installed.bin}:/usr/bin:/bin",
               "SLURM_CONF": str(self.cluster.slurm_conf), "SLURMJWT_CONF": str(self.node.config)}
        out = subprocess.run(["sh", "-c", command], cwd=self.keys.root, env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, (line, out.stderr)


def test_rotation_by_the_readme_steps_and_the_cache_follows_the_key(
        installed: Installed, cluster_factory: Callable[..., Cluster], keys: Keys,
        test_users: dict[str, TestUser], cache_root: Path) -> None:
    """The README's "Rotating a key" steps, line by line, on one login node,
    with a user's cache checked after the switch."""
    old, old_kid = keys.keygen("slurmjwt-2026", _bootstrap_conf(keys))
    cluster = rs256_cluster(cluster_factory, keys, [old], names=["login1-2026"])
    node = keys.helper(cluster, old)
    alice = {**node.env, "SLURMJWT_CACHE_DIR": str(cache_root / "alice")}
    token_old = fetch(installed, node, cache_root, "alice")
    assert header(token_old)["kid"] == old_kid
    site = Site(installed, cluster, node, keys)
    steps = readme_rotation()
    assert len(steps) == 6

    for line in (*steps[0][1], *steps[1][1], *steps[2][1]):  # new key, JWKS, slurmctld
        site.run(line)
    new = keys.root / "slurmjwt-2027.pem"
    new_kid = signer_kid(new)
    assert [e["kid"] for e in json.loads((cluster.root / "jwks.json").read_text())["keys"]] == [
        old_kid, new_kid]
    assert accepted(cluster, "alice", token_old)
    for line in steps[3][1]:  # the helper switches
        site.run(line)
    wait_for_kid(node, new_kid)
    wait_for_every_worker(node, new_kid)

    # The very next refresh follows the key, although the cached token is fresh.
    out = as_user("alice", [installed.cmd("slurmjwt-refresh"), "--if-needed"], alice)
    assert out.returncode == 0, out.stderr
    status = as_user("alice", [installed.cmd("slurmjwt"), "status", "--json"], alice)
    report = json.loads(status.stdout)
    assert (report["valid"], report["kid"], report["key_in_use"]) == (True, new_kid, new_kid)
    token_new = as_user("alice", [installed.cmd("slurmjwt"), "token"], alice).stdout.strip()
    assert header(token_new)["kid"] == new_kid and token_new != token_old
    assert accepted(cluster, "alice", token_new)
    assert accepted(cluster, "alice", token_old)  # minted before the switch: still good

    assert steps[4][1] == ()  # 5: wait MaxLifespan; not waited here
    for line in steps[5][1]:  # 6: drop the old key
        site.run(line)
    assert not old.exists()
    assert [e["kid"] for e in json.loads((cluster.root / "jwks.json").read_text())["keys"]] == [
        new_kid]
    assert not accepted(cluster, "alice", token_old)
    assert accepted(cluster, "alice", token_new)
    reload = ("scontrol reconfigure" if site.version >= (23, 11)
              else "systemctl restart slurmctld")
    assert site.ran.count(reload) == 2 and "systemctl reload slurmjwt-helper" in site.ran


def signer_kid(key: Path) -> str:
    from pam_slurmjwt.signing import signer_of_pem

    return signer_of_pem(str(key), key.read_bytes()).kid


def test_hs256_rotation_the_cache_follows_and_tokens_in_flight_die(
        installed: Installed, cluster_factory: Callable[..., Cluster], keys: Keys,
        test_users: dict[str, TestUser], cache_root: Path) -> None:
    """Sites that stay on HS256: one key, so a change cuts off every token in
    flight; the caches and the wrappers follow the key, so the next command
    gets a good one, even in a process that holds the dead token."""
    cluster = cluster_factory()
    no_munge = keys.root / "no-munge.socket"
    node = keys.helper(cluster, cluster.key_path, extra=f"MungeSocket={no_munge}\n")
    alice = {**node.env, "SLURMJWT_CACHE_DIR": str(cache_root / "alice")}
    token_old = fetch(installed, node, cache_root, "alice")
    old_kid = header(token_old)["kid"]
    assert accepted(cluster, "alice", token_old)

    new = keys.root / "jwt_hs256.key.new"
    fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, os.urandom(32))
    os.close(fd)
    shutil.chown(new, "slurm", "slurm")
    text = cluster.slurm_conf.read_text()
    cluster.slurm_conf.write_text(text.replace(f"jwt_key={cluster.key_path}", f"jwt_key={new}"))
    cluster.restart_slurmctld()
    assert not accepted(cluster, "alice", token_old)  # what HS256 cannot avoid

    write_config(node.config, node.config.read_text().replace(f"JwtKey={cluster.key_path}",
                                                              f"JwtKey={new}"))
    node.reload()
    new_kid = key_id_file(node).read_text().strip()
    deadline = time.monotonic() + RELOAD_TIMEOUT
    while new_kid == old_kid and time.monotonic() < deadline:
        time.sleep(POLL)
        new_kid = key_id_file(node).read_text().strip()
    assert new_kid != old_kid, node.log_text()
    wait_for_every_worker(node, new_kid)

    # A process started before the switch (an IDE's terminal, a workflow
    # manager) still holds the dead token, and the cache holds it too: its
    # very next Slurm command, through the wrapper, works. A slurm.conf whose
    # munge socket does not exist proves it worked with a token.
    jwt_only = keys.root / "slurm-jwt-only.conf"
    jwt_only.write_text(cluster.slurm_conf.read_text().replace(
        f"AuthInfo=socket={cluster.munge_socket}", f"AuthInfo=socket={no_munge}"))
    jwt_only.chmod(0o644)
    session = {**alice, "SLURM_CONF": str(jwt_only), "SLURM_JWT": token_old}
    bare = as_user("alice", ["squeue", "--noheader"], session)
    assert bare.returncode != 0, bare.stdout
    wrapped = as_user("alice", [str(installed.wrappers / "squeue"), "--noheader"], session)
    assert wrapped.returncode == 0, wrapped.stderr

    out = as_user("alice", [installed.cmd("slurmjwt-refresh"), "--if-needed"], alice)
    assert out.returncode == 0, out.stderr
    token_new = as_user("alice", [installed.cmd("slurmjwt"), "token"], alice).stdout.strip()
    assert header(token_new) == {"alg": "HS256", "kid": new_kid, "typ": "JWT"}
    assert accepted(cluster, "alice", token_new)


# ----------------------------------------------------------------- bad keys


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
         encryption: serialization.KeySerializationEncryption | None = None) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption or serialization.NoEncryption())


BAD_KEYS: dict[str, tuple[Callable[[], bytes], str]] = {
    "malformed": (lambda: b"-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n",
                  "not a PEM private key that can be read; make a new one with: slurmjwt "
                  "keygen NEWFILE"),
    "encrypted": (lambda: _pem(rsa.generate_private_key(65537, 2048),
                               serialization.BestAvailableEncryption(b"pass")),
                  "it is encrypted, and the helper cannot ask for a passphrase; make a new "
                  "one with: slurmjwt keygen NEWFILE"),
    "small": (lambda: _pem(rsa.generate_private_key(65537, 1024)),  # noqa: S505
              "an RSA key of 1024 bits, fewer than 2048; make a new one with: slurmjwt keygen "
              "NEWFILE"),
    "ec": (lambda: _pem(ec.generate_private_key(ec.SECP256R1())),
           "an EC key, not RSA; Slurm verifies RS256 (RSA) keys only: make a new one with: "
           "slurmjwt keygen NEWFILE"),
    "public": (lambda: rsa.generate_private_key(65537, 2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
               "it is a public key; JwtKey needs the private key (its public half goes into "
               "slurmctld's JWKS)"),
}


def test_bad_keys_stop_a_start_and_a_reload_keeps_the_last_good_key(
        installed: Installed, cluster: Cluster, keys: Keys,
        test_users: dict[str, TestUser]) -> None:
    good, kid = keys.keygen("good", cluster.slurm_conf)
    node = keys.helper(cluster, good)
    for name, (make, problem) in BAD_KEYS.items():
        bad = keys.root / f"{name}.pem"
        fd = os.open(bad, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, make())
        os.close(fd)
        shutil.chown(bad, "slurm", "slurm")
        message = f'cannot use key "{bad}": {problem}'
        # At start: refused, exit 3, one line naming the file and the fix.
        conf = keys.root / f"{name}.conf"
        write_config(conf, f"SlurmConf={cluster.slurm_conf}\nJwtKey={bad}\n")
        out = subprocess.run([installed.cmd("slurmjwt-helper"), "-c", str(conf), "--check"],
                             capture_output=True, text=True, timeout=60)
        assert (out.returncode, out.stderr) == (3, f"slurmjwt-helper: {message}\n"), name
        # On reload: logged, and the last good key keeps serving.
        write_config(node.config, re.sub(r"JwtKey=\S+", f"JwtKey={bad}",
                                         node.config.read_text()))
        node.reload()
        # Workers=2: the supervisor decides, and logs the failed reload.
        wait_for_log(node, f"reload failed, keeping the previous configuration: {message}")
        answer = node.ask(b"SLURMJWT/2 TOKEN alice 60\n")
        assert answer.startswith(b"SLURMJWT/2 OK "), (name, answer)
        assert header(answer.split()[-1].decode())["kid"] == kid
        assert key_id_file(node).read_text() == f"{kid}\n"
    assert node.proc.poll() is None and "exited" not in node.log_text()


def workers(node: HelperProcess) -> set[int]:
    """The processes serving the sockets: the supervisor's children."""
    out = subprocess.run(["pgrep", "-P", str(node.proc.pid)], capture_output=True, text=True)
    return {int(pid) for pid in out.stdout.split()}


def kids_granted(node: HelperProcess, requests: int = 40) -> set[str]:
    """The key ids of `requests` grants asked 8 at a time, so that every
    worker (two by default) answers some of them."""
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: node.ask(b"SLURMJWT/2 TOKEN carol 60\n").split(),
                                range(requests)))
    assert all(answer[1] == b"OK" for answer in answers), answers
    return {answer[5].decode() for answer in answers}


def reload_command(node: HelperProcess) -> subprocess.CompletedProcess[str]:
    """What systemd's ExecReload runs: `slurmjwt-helper --reload $MAINPID`."""
    return subprocess.run([str(node.proc.args[0]), "-c", str(node.config),  # type: ignore[index]
                           "--reload", str(node.proc.pid)],
                          capture_output=True, text=True, timeout=90)


def test_a_reload_switches_every_worker_or_none_and_the_reload_command_says_which(
        installed: Installed, cluster: Cluster, keys: Keys,
        test_users: dict[str, TestUser]) -> None:
    old, old_kid = keys.keygen("old", cluster.slurm_conf)
    new, new_kid = keys.keygen("new", cluster.slurm_conf)
    node = keys.helper(cluster, old)
    before = workers(node)  # Workers=2 (the default) for HelperSocket, one for RootSocket
    assert len(before) == 3 and kids_granted(node) == {old_kid}

    # A key the helper cannot use: the command fails and says why; no
    # worker was touched, every one signs with the old key.
    bad = keys.root / "bad.pem"
    fd = os.open(bad, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, BAD_KEYS["malformed"][0]())
    os.close(fd)
    shutil.chown(bad, "slurm", "slurm")
    write_config(node.config, node.config.read_text().replace(f"JwtKey={old}", f"JwtKey={bad}"))
    out = reload_command(node)
    assert (out.returncode, out.stderr) == (
        1, f'slurmjwt-helper: reload failed, keeping the previous configuration: cannot use key '
           f'"{bad}": {BAD_KEYS["malformed"][1]}\n')
    assert workers(node) == before and kids_granted(node) == {old_kid}
    assert key_id_file(node).read_text() == f"{old_kid}\n"

    # A good key: when the command returns, new workers serve, all with it.
    write_config(node.config, node.config.read_text().replace(f"JwtKey={bad}", f"JwtKey={new}"))
    out = reload_command(node)
    assert (out.returncode, out.stderr) == (0, ""), node.log_text()
    after = workers(node)
    assert len(after) == 3 and not after & before
    assert kids_granted(node) == {new_kid}
    assert key_id_file(node).read_text() == f"{new_kid}\n"
    assert node.log_text().count("reloaded configuration") == 1


def test_a_killed_worker_is_replaced_and_the_key_id_published_again(
        installed: Installed, cluster: Cluster, keys: Keys,
        test_users: dict[str, TestUser]) -> None:
    key, kid = keys.keygen("node", cluster.slurm_conf)
    node = keys.helper(cluster, key)
    before = workers(node)
    key_id_file(node).unlink()  # lost meanwhile (a cleaner, an admin)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + RELOAD_TIMEOUT
    while not (len(workers(node)) == 3 and victim not in workers(node)
               and key_id_file(node).exists()):
        assert time.monotonic() < deadline, node.log_text()
        time.sleep(POLL)
    assert key_id_file(node).read_text() == f"{kid}\n"
    assert kids_granted(node) == {kid}
    assert f"worker {victim} exited (0x9); starting another" in node.log_text()


def test_identity_claims_are_harmless_before_slurm_26_05(
        installed: Installed, cluster: Cluster, keys: Keys,
        test_users: dict[str, TestUser]) -> None:
    node = keys.helper(cluster, cluster.key_path, extra="IdentityClaims=yes\n")
    token = node.ask(b"SLURMJWT/2 TOKEN alice 60\n").split()[-1].decode()
    claims = jwt.decode(token, cluster.key_path.read_bytes(), algorithms=["HS256"])
    alice = test_users["alice"]
    assert (claims["uid"], claims["gid"], claims["id"]["dir"]) == (alice.uid, alice.gid,
                                                                   alice.home)
    assert alice.gid in claims["id"]["gids"]
    assert accepted(cluster, "alice", token)  # 22.05 ignores claims it does not know
