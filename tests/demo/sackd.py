"""The sackd login node of a release with auth/slurm (Slurm 23.11+): a second
login container in the release's demo cluster, from the same login image (the
project installed as the README says: sshd, the PAM hook, the helper with the
cluster's JWT key, the wrappers), which also runs sackd with the cluster's
slurm.key. Slurm's own commands there authenticate through sackd's socket
and need neither munge nor a token; `slurmjwt token` still serves slurmrestd.

Started on demand, by the tests that use it (tests/integration/test_matrix.py,
"auth/slurm and sackd"), into a cluster `run.up` brought up, so it costs only
the runs that use it; `run.down` removes it with the rest (its label).
sackd runs as Debian's (or Slurm's) sackd.service runs it, where systemd is
PID 1 (`systemctl enable --now sackd`); the login entrypoint starts it by
hand otherwise (DEMO_SACKD=1).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import docker
from docker.models.containers import Container

from tests.demo import cluster, images, keys, run
from tests.demo.errors import DemoError, Say
from tests.demo.names import LABEL, Names

SACKD = "sackd"  # host name, network alias and container role
# Where sackd listens: its RuntimeDirectory (sackd.service: RuntimeDirectory=slurm).
SACK_SOCKET = "/run/slurm/sack.socket"
SACKD_LOG = "/var/log/sackd.log"  # without systemd; the journal's otherwise


@dataclass(frozen=True)
class SackdNode:
    """The sackd login node: sshd at 127.0.0.1:ssh_port (the demo's host key,
    pinned in the demo's known_hosts beside the login node's)."""

    container: Container
    ssh_port: int
    systemd: bool


def start(shown: run.Shown, say: Say) -> SackdNode:
    """Create and start the sackd login node in `shown`'s cluster and wait
    until sackd's socket is there, the helper answers, sshd greets and
    `squeue` works there without a token; raise DemoError with the node's log
    tails when something does not come up."""
    rel = shown.release
    if not rel.auth_slurm:
        raise DemoError(f"Slurm {rel.slurm} has no auth/slurm (23.11+): no sackd node")
    client = docker.from_env(timeout=600)
    names = Names(rel.codename)
    systemd = cluster.boots_systemd(client, rel)
    say(f"starting the sackd login node{'' if systemd else ' (without systemd)'}")
    running = shown.running
    node = client.containers.create(
        images.tag("login", rel), name=names.container(SACKD), hostname=SACKD,
        labels={LABEL: rel.codename}, detach=True, ports={"22/tcp": ("127.0.0.1",)},
        environment={"DEMO_SACKD": "1"}, network=names.network,
        networking_config={names.network: client.api.create_endpoint_config(aliases=[SACKD])},
        **cluster.login_options(systemd, {names.home: {"bind": "/home", "mode": "rw"}}))
    # The login node's files: the same slurm.conf, JWT key and host key; and the
    # controller's slurm.key.
    secrets = dataclasses.replace(keys.secrets(shown.keys),
                                  jwt_key=cluster.get_file(running.login, cluster.JWT_KEY))
    cluster.put_file(node, cluster.SLURM_CONF,
                     cluster.get_file(running.login, cluster.SLURM_CONF), 0o644)
    cluster.put_file(node, cluster.SLURM_KEY,
                     cluster.get_file(running.controller, cluster.SLURM_KEY), 0o600)
    cluster.put_file(node, cluster.JWT_KEY, secrets.jwt_key, 0o600)
    cluster.put_file(node, cluster.HOST_KEY, secrets.host_key, 0o600)
    for user in cluster.DIRECTORY_USERS:
        cluster.put_file(node, cluster.AUTHORIZED_KEYS.format(user=user),
                         secrets.authorized_keys, 0o644)
    node.start()
    deadline = time.monotonic() + cluster.READY_TIMEOUT
    if systemd:
        cluster.wait_until(node, "systemd running", lambda: cluster.system_running(node),
                           deadline)
        enable(node)
    # No daemon check: without systemd the entrypoint may not have reached
    # sackd yet; its log is in the error's tails.
    cluster.wait_until(node, f"sackd's socket {SACK_SOCKET}", lambda: sack_socket(node),
                       deadline)
    cluster.wait_until(node, "squeue through sackd", lambda: slurm_works(node), deadline)
    cluster.wait_until(node, "slurmjwt-helper answering",
                       lambda: cluster.exec_ok(node, ["slurmjwt", "ping"]), deadline)
    port = cluster.published_port(node)
    cluster.wait_until(node, "sshd greeting", lambda: cluster.sshd_greets(port), deadline)
    keys.add_known_host(shown.keys, port)
    return SackdNode(node, port, systemd)


def enable(node: Container) -> None:
    """What a site does on a login node with systemd: sackd's key SlurmUser's,
    then `systemctl enable --now sackd`; raise DemoError when it fails."""
    code, out = cluster.exec_out(node, ["sh", "-euc", f"""
        chown slurm: {cluster.SLURM_KEY}
        chmod 0600 {cluster.SLURM_KEY}
        systemctl enable --now sackd.service"""])
    if code != 0:
        raise DemoError(f"{node.name}: systemctl enable --now sackd failed:\n{out}\n"
                        f"{cluster.explain(node)}")


def sack_socket(node: Container) -> bool:
    return cluster.exec_ok(node, ["test", "-S", SACK_SOCKET])


# Stop the sackd running without systemd, and return once it has exited.
KILL_SACKD = "pid=$(pgrep -x sackd); kill $pid; while kill -0 $pid 2>/dev/null; do sleep 0.1; done"


def spawn_sackd(node: Container, runtime: str = "") -> None:
    """Start sackd as SlurmUser in the background, without systemd; with
    `runtime`, in that RuntimeDirectory (a sackd for one cluster)."""
    env = f"RUNTIME_DIRECTORY={runtime} " if runtime else ""
    node.exec_run(["sh", "-c", f"{env}setpriv --reuid=slurm --regid=slurm --clear-groups "
                   f"sackd -D >> {SACKD_LOG} 2>&1"], detach=True)


def stop_sackd(sackd: SackdNode) -> None:
    """Stop sackd as a site would: `systemctl stop sackd` (its
    RuntimeDirectory, the socket with it, goes), or without systemd a SIGTERM
    to its process; return once it has exited."""
    if sackd.systemd:
        argv = ["systemctl", "stop", "sackd.service"]
    else:
        argv = ["sh", "-euc", KILL_SACKD]
    code, out = cluster.exec_out(sackd.container, argv)
    if code != 0:
        raise DemoError(f"{sackd.container.name}: cannot stop sackd: {out}")


def start_sackd(sackd: SackdNode) -> None:
    """Start sackd again (stop_sackd's inverse) and wait for its socket."""
    node = sackd.container
    if sackd.systemd:
        code, out = cluster.exec_out(node, ["systemctl", "start", "sackd.service"])
        if code != 0:
            raise DemoError(f"{node.name}: systemctl start sackd failed: {out}")
    else:
        spawn_sackd(node)
    # Without systemd the old socket is still there: wait until sackd answers.
    cluster.wait_until(node, "squeue through sackd", lambda: slurm_works(node),
                       time.monotonic() + cluster.READY_TIMEOUT)


def start_cluster_sackd(sackd: SackdNode, cluster_name: str) -> str:
    """With sackd stopped, start one for the cluster alone as a 25.05+ site
    would (a unit with RuntimeDirectory=slurm-NAME: sackd listens in
    $RUNTIME_DIRECTORY), the socket of the stopped one removed; wait until
    squeue works through it and return its socket's path."""
    node = sackd.container
    runtime = f"/run/slurm-{cluster_name}"
    code, out = cluster.exec_out(node, ["sh", "-euc", f"""
        rm -f {SACK_SOCKET}
        install -d -o slurm -g slurm -m 0755 {runtime}"""])
    if code != 0:
        raise DemoError(f"{node.name}: cannot prepare {runtime}: {out}")
    spawn_sackd(node, runtime)
    cluster.wait_until(node, "squeue through the cluster's sackd", lambda: slurm_works(node),
                       time.monotonic() + cluster.READY_TIMEOUT)
    return f"{runtime}/sack.socket"


def stop_cluster_sackd(sackd: SackdNode, cluster_name: str) -> None:
    """Stop what start_cluster_sackd started and remove its directory."""
    script = f"{KILL_SACKD}; rm -rf /run/slurm-{cluster_name}"
    code, out = cluster.exec_out(sackd.container, ["sh", "-euc", script])
    if code != 0:
        raise DemoError(f"{sackd.container.name}: cannot stop the cluster's sackd: {out}")


def slurm_works(node: Container) -> bool:
    """True when Slurm's own squeue works on the node as root without a token."""
    return cluster.exec_ok(node, ["env", "-u", "SLURM_JWT", "/usr/bin/squeue", "--noheader"])
