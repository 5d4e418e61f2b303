"""The demo cluster's containers: one bridge network, a shared /home volume, the
directory (slapd), the controller and the login node (systemd as PID 1
where the host lets it), their keys put in before they start, and the polls
that say when each is ready. Everything carries the label LABEL, which is
how `down` finds what to remove.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
from docker.models.containers import Container

from tests.demo.errors import DemoError, Say
from tests.demo.images import Images
from tests.demo.names import LABEL, Names
from tests.demo.releases import Release

CONTROLLER = "controller"  # host name, network alias and Slurm NodeName
LOGIN = "login"
DIRECTORY = "directory"  # slapd; sssd.conf's ldap_uri names it
DEMO_USER = "demo"
# The demo user for `docker exec`, which reads only the image's /etc/passwd,
# not sssd: by number (directory.ldif).
DEMO_EXEC_USER = "2000:2000"
# The users of packaging/docker/directory.ldif (in no /etc/passwd); each may
# log in to the login node with the demo's ssh key.
DIRECTORY_USERS = (DEMO_USER, "eve", "frank", "grace")
LDAP_BASE = "dc=demo,dc=test"
SYSTEMD = "/lib/systemd/systemd"
FALLBACK_TMPFS = "mode=0711,size=4m,nr_inodes=16384,nosuid,nodev,noexec"
ENTRYPOINT = "/usr/local/sbin/demo-entrypoint"
RESTD_PORT = 6820
READY_TIMEOUT = 90.0
POLL_INTERVAL = 0.25
JWT_KEY = "/etc/slurm/jwt_hs256.key"
# Made by demo-accounting once slurmdbd answers and the users' associations
# are in (the entrypoint starts slurmctld after that).
ACCOUNTING_READY = "/var/lib/slurm/accounting.ready"
SLURM_CONF = "/etc/slurm/slurm.conf"
SLURM_CONF_SOURCE = Path(__file__).resolve().parents[2] / "packaging" / "docker" / "slurm.conf"
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
# auth/slurm (releases with sackd, 23.11+; tests/demo/sackd.py): the cluster's
# key, on the controller and the sackd login node, never on the JWT-only one.
SLURM_KEY = "/etc/slurm/slurm.key"
SLURM_KEY_BYTES = 64
AUTH_SLURM = ((b"AuthType=auth/munge\n", b"AuthType=auth/slurm\n"),
              (b"CredType=cred/munge\n", b"CredType=auth/slurm\n"))
AUTHORIZED_KEYS = "/etc/ssh/authorized_keys/{user}"
# Log files whose tails explain a container that did not come up.
LOGS = {
    CONTROLLER: ("/var/log/slurm/slurmctld.log", "/var/log/slurm/slurmd.log",
                 "/var/log/slurm/slurmrestd.log", "/var/log/slurm/slurmdbd.log",
                 "/var/log/mysql/demo.log"),
    LOGIN: ("/var/log/slurmjwt-helper.log",),
    "sackd": ("/var/log/slurmjwt-helper.log", "/var/log/sackd.log"),
}


@dataclass(frozen=True)
class Secrets:
    """What is put into the containers before they start (file contents)."""

    jwt_key: bytes
    host_key: bytes
    authorized_keys: bytes


@dataclass(frozen=True)
class Running:
    """A started demo: the login node's sshd is at 127.0.0.1:ssh_port; its
    PID 1 is systemd when `systemd` is true, the demo entrypoint otherwise."""

    names: Names
    directory: Container
    controller: Container
    login: Container
    ssh_port: int
    systemd: bool


def start(client: docker.DockerClient, rel: Release, images: Images, secrets: Secrets,
          say: Say) -> Running:
    """Create and start the release's network, home volume and the three
    containers, and wait until slapd answers, the controller knows the demo
    user through sssd, slurmctld sees the node idle, slurmrestd answers, the
    login node's systemd is up, the helper answers and sshd greets; raise
    DemoError with the daemons' log tails when something does not come up
    (what was started is left for `remove`)."""
    names = Names(rel.codename)
    labels = {LABEL: rel.codename}
    systemd = boots_systemd(client, rel)
    say(f"starting network {names.network}, directory, controller and login containers"
        f"{'' if systemd else ' (login node without systemd: see releases.py, cgroup2_only)'}")
    client.networks.create(names.network, driver="bridge", labels=labels)
    client.volumes.create(names.home, labels=labels)
    home = {names.home: {"bind": "/home", "mode": "rw"}}

    def endpoint(alias: str) -> dict[str, object]:
        return {names.network: client.api.create_endpoint_config(aliases=[alias])}

    directory = client.containers.create(
        images.directory, name=names.container(DIRECTORY), hostname=DIRECTORY, labels=labels,
        init=True, detach=True, network=names.network, networking_config=endpoint(DIRECTORY))
    controller = client.containers.create(
        images.controller, name=names.container(CONTROLLER), hostname=CONTROLLER,
        labels=labels, volumes=home, init=True, detach=True,
        # slurmd runs `sbatch --get-user-env` jobs' `su -` in new pid and mount
        # namespaces (seen on 23.11, in the source of 23.11 to 25.11); without
        # this capability that clone() fails and slurmd exits ("fatal: clone:
        # Operation not permitted").
        cap_add=["SYS_ADMIN"],
        environment={"DEMO_RESTD_PLUGINS": rel.restd_plugins},
        network=names.network, networking_config=endpoint(CONTROLLER))
    login = client.containers.create(
        images.login, name=names.container(LOGIN), hostname=LOGIN, labels=labels,
        detach=True, ports={"22/tcp": ("127.0.0.1",)}, network=names.network,
        networking_config=endpoint(LOGIN), **login_options(systemd, home))
    conf = slurm_conf(rel)
    for container in (controller, login):
        put_file(container, SLURM_CONF, conf, 0o644)
    put_file(controller, JWT_KEY, secrets.jwt_key, 0o600)
    if rel.auth_slurm:
        put_file(controller, SLURM_KEY, os.urandom(SLURM_KEY_BYTES), 0o600)
    put_file(login, JWT_KEY, secrets.jwt_key, 0o600)
    put_file(login, HOST_KEY, secrets.host_key, 0o600)
    for user in DIRECTORY_USERS:
        put_file(login, AUTHORIZED_KEYS.format(user=user), secrets.authorized_keys, 0o644)
    for container in (directory, controller, login):
        container.start()
    deadline = time.monotonic() + READY_TIMEOUT
    wait_until(directory, "slapd answering", lambda: ldap_answers(directory), deadline,
               daemons=("slapd",))
    wait_until(controller, f"{DEMO_USER} known through sssd",
               lambda: exec_ok(controller, ["getent", "passwd", DEMO_USER]), deadline,
               daemons=("sssd",))
    # slurmctld starts once this is done; a failure ends the container.
    wait_until(controller, "slurmdbd answering, the users' associations in",
               lambda: exec_ok(controller, ["test", "-e", ACCOUNTING_READY]), deadline)
    wait_until(controller, "the node idle in sinfo", lambda: node_idle(controller), deadline,
               daemons=("slurmctld", "slurmd", "munged"))
    wait_until(controller, "slurmrestd answering", lambda: restd_answers(controller, rel),
               deadline, daemons=("slurmrestd",))
    if systemd:
        wait_until(login, "systemd running", lambda: system_running(login), deadline)
    # With systemd, the first ping is what starts the helper (socket activation).
    wait_until(login, "slurmjwt-helper answering",
               lambda: exec_ok(login, ["slurmjwt", "ping"]), deadline,
               daemons=() if systemd else ("slurmjwt-helper", "sssd"))
    port = published_port(login)
    wait_until(login, f"sshd greeting on 127.0.0.1:{port}", lambda: sshd_greets(port), deadline)
    return Running(names, directory, controller, login, port, systemd)


def boots_systemd(client: docker.DockerClient, rel: Release) -> bool:
    """Whether the login node can boot systemd as PID 1 on this host: always,
    but for a release whose systemd needs cgroup v2 on a cgroup v1 host."""
    return not rel.cgroup2_only or str(client.info().get("CgroupVersion")) == "2"


def login_options(systemd: bool, home: dict[str, dict[str, str]]) -> dict[str, object]:
    """Return the container options of the login node. systemd as PID 1 runs
    without --privileged: in the host's cgroup namespace with /sys/fs/cgroup
    writable, tmpfs on /run and /run/lock, no tini in front of it, and
    CAP_SYS_ADMIN, without which it starts services without the mount,
    network and UTS namespaces their units ask for (ProtectSystem=,
    PrivateTmp=, PrivateNetwork=...), silently: the helper's hardening would
    look applied and not be."""
    if not systemd:
        # The fallback caches' own small tmpfs, as run-slurmjwt-users.mount
        # makes it where systemd runs (sessions here have no XDG_RUNTIME_DIR).
        return {"command": [ENTRYPOINT], "init": True, "volumes": home,
                "tmpfs": {"/run/slurmjwt/users": FALLBACK_TMPFS}}
    return {"command": [SYSTEMD], "init": False, "cgroupns": "host", "cap_add": ["SYS_ADMIN"],
            "tmpfs": {"/run": "", "/run/lock": ""},
            "volumes": {**home, "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}}}


def slurm_conf(rel: Release) -> bytes:
    """Return the demo's slurm.conf with the release's Slurm-side lines added
    (the same file goes to every host), and AuthType and CredType auth/slurm
    where the release has it."""
    lines = "".join(f"{line}\n" for line in rel.slurm_side.conf)
    conf = SLURM_CONF_SOURCE.read_bytes()
    if rel.auth_slurm:
        for munge, slurm in AUTH_SLURM:
            if munge not in conf:
                raise DemoError(f"{SLURM_CONF_SOURCE} has no line {munge.decode().strip()}")
            conf = conf.replace(munge, slurm)
    return conf + lines.encode()


def put_file(container: Container, path: str, data: bytes, mode: int) -> None:
    """Put `data` at `path` in a created (not necessarily started) container,
    owned by root with `mode`; the entrypoints hand files to their daemons."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(os.path.basename(path))
        info.size, info.mode, info.mtime = len(data), mode, int(time.time())
        tar.addfile(info, io.BytesIO(data))
    if not container.put_archive(os.path.dirname(path), buf.getvalue()):
        raise DemoError(f"could not put {path} into {container.name}")


def get_file(container: Container, path: str) -> bytes:
    """Return the contents of the regular file `path` in the container; raise
    DemoError when there is none (binary-safe, unlike the output of exec)."""
    try:
        stream, _ = container.get_archive(path)
    except docker.errors.NotFound:
        raise DemoError(f"{container.name} has no {path}") from None
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.next()
        data = tar.extractfile(member) if member is not None and member.isfile() else None
        if data is None:
            raise DemoError(f"{container.name}: {path} is not a regular file")
        return data.read()


def exec_out(container: Container, argv: list[str], user: str = "root") -> tuple[int, str]:
    """Run argv in the container; return (exit status, stdout and stderr)."""
    result = container.exec_run(argv, user=user, demux=False)
    return int(result.exit_code), (result.output or b"").decode(errors="replace")


def exec_ok(container: Container, argv: list[str]) -> bool:
    return exec_out(container, argv)[0] == 0


def ldap_answers(directory: Container) -> bool:
    code, out = exec_out(directory, ["ldapsearch", "-x", "-LLL", "-H", "ldap://localhost",
                                     "-b", LDAP_BASE, f"(uid={DEMO_USER})", "dn"])
    return code == 0 and out.startswith("dn: ")


def system_running(login: Container) -> bool:
    """True once systemd has booted with every unit up; raise DemoError when
    it has booted with a unit failed (`degraded`) or cannot boot."""
    out = exec_out(login, ["systemctl", "is-system-running"])[1].strip()
    if out in ("degraded", "maintenance", "stopping", "offline"):
        failed = exec_out(login, ["systemctl", "--failed", "--no-pager", "--no-legend"])[1]
        raise DemoError(f"{login.name}: systemd is {out}; failed units:\n{failed.rstrip()}\n"
                        f"{explain(login)}")
    return out == "running"


def node_idle(controller: Container) -> bool:
    code, out = exec_out(controller, ["sinfo", "--noheader", "--Node", "--format=%t"])
    return code == 0 and out.strip() == "idle"


def restd_answers(controller: Container, rel: Release) -> bool:
    # Any HTTP status (401 without a token) means it listens; 000 means no answer.
    url = f"http://localhost:{RESTD_PORT}{rel.restd_ping}"
    code, out = exec_out(controller, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                      url])
    return code == 0 and out.strip() not in ("", "000")


def published_port(login: Container) -> int:
    login.reload()
    bindings = login.attrs["NetworkSettings"]["Ports"].get("22/tcp") or []
    for binding in bindings:
        if binding.get("HostIp") == "127.0.0.1":
            return int(binding["HostPort"])
    raise DemoError(f"{login.name}: sshd's port 22 is not published on 127.0.0.1")


def sshd_greets(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def wait_until(container: Container, what: str, ready: Callable[[], bool],
               deadline: float, daemons: tuple[str, ...] = ()) -> None:
    """Poll `ready` until true; raise DemoError with the container's logs as
    soon as it has exited or one of `daemons` (process names) is gone, or at
    `deadline`."""
    while True:
        container.reload()
        if container.status != "running":
            raise DemoError(f"{container.name} stopped ({container.status}) while waiting "
                            f"for {what}:\n{explain(container)}")
        if ready():
            return
        for daemon in daemons:
            # -f: the helper is a Python script, its process name is python3, its
            # command line `/usr/bin/python3 -I /usr/sbin/slurmjwt-helper ...`.
            if not exec_ok(container, ["pgrep", "-f", f"^[^ ]*{daemon}( |$)"]) \
                    and not exec_ok(container, ["pgrep", "-f",
                                                f"^[^ ]+ (-[^ ]+ )*[^ ]*{daemon}( |$)"]):
                raise DemoError(f"{container.name}: {daemon} is not running (waiting for "
                                f"{what}):\n{explain(container)}")
        if time.monotonic() > deadline:
            raise DemoError(f"{container.name}: no {what} within {READY_TIMEOUT:.0f} s:\n"
                            f"{explain(container)}")
        time.sleep(POLL_INTERVAL)


def explain(container: Container, lines: int = 15) -> str:
    """Return the tails of the container's output and its daemons' log files
    (the journal's, where systemd runs)."""
    parts = [f"--- {container.name} output ---",
             container.logs(tail=lines).decode(errors="replace").rstrip()]
    role = container.name.rsplit("-", 1)[-1]
    if container.status == "running":
        if exec_ok(container, ["test", "-d", "/run/systemd/system"]):
            parts.append("--- journal ---")
            parts.append(exec_out(container, ["journalctl", "-b", "--no-pager", "-q", "-n",
                                              str(3 * lines)])[1].rstrip())
        for log in LOGS.get(role, ()):
            code, tail = exec_out(container, ["tail", "-n", str(lines), log])
            if code == 0:
                parts += [f"--- {log} ---", tail.rstrip()]
    return "\n".join(parts)


def find(client: docker.DockerClient, release: str | None) -> dict[str, list[str]]:
    """Return the names of the demo's containers, networks and volumes (of one
    release, or of all when `release` is None)."""
    label = LABEL if release is None else f"{LABEL}={release}"
    filters = {"label": label}
    return {
        "containers": [c.name for c in client.containers.list(all=True, filters=filters)],
        "networks": [n.name for n in client.networks.list(filters=filters)],
        "volumes": [v.name for v in client.volumes.list(filters=filters)],
    }


def remove(client: docker.DockerClient, release: str | None, say: Say) -> None:
    """Remove the demo's containers (killed, not stopped: nothing in them needs
    a clean shutdown), then its networks and volumes; keep the images."""
    label = LABEL if release is None else f"{LABEL}={release}"
    filters = {"label": label}
    for container in client.containers.list(all=True, filters=filters):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
            say(f"removed container {container.name}")
    for network in client.networks.list(filters=filters):
        with contextlib.suppress(docker.errors.NotFound):
            network.remove()
            say(f"removed network {network.name}")
    for volume in client.volumes.list(filters=filters):
        with contextlib.suppress(docker.errors.NotFound):
            volume.remove(force=True)
            say(f"removed volume {volume.name}")


