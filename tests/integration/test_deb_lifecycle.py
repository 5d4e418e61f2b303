"""The Debian package's life on a login node with users logged in, in the
demo's Debian 12 cluster (systemd as PID 1, a real sshd, logind, the user
timer): 0.1.0's package (built by its own `make deb` from commit 97fa686)
installed and set up as its README said, a session running a loop of
wrapped `squeue` and the user timer, the upgrade to this tree's package,
then remove, purge and reinstall, in the sshd-only setup and in the
package's default (pam-auth-update). Every step is a real ssh login whose
exit status and SLURM_JWT are asserted.

Slow: one cluster (warm images: about 20 s to come up), two package builds.
"""

from __future__ import annotations

import glob
import io
import re
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.demo import run, steps
from tests.demo.cluster import exec_out
from tests.integration.fixtures.nodes import systemd_cluster

pytestmark = [pytest.mark.slow, pytest.mark.root]
RELEASE = "bookworm"
REPO = Path(__file__).resolve().parents[2]
PREVIOUS = "97fa686"  # the last commit of 0.1.0
VERSION = re.search(r"^version = (\S+)$", (REPO / "setup.cfg").read_text(),
                    re.M).group(1)  # type: ignore[union-attr]
CONF = "/etc/slurm/slurmjwt.conf"
DPKG = "DEBIAN_FRONTEND=noninteractive dpkg --force-confold"
SSHD_INCLUDE = "sed -i 's/^@include common-session$/&\\n@include slurmjwt/' /etc/pam.d/sshd"
POLL = 0.25
# The user's workload across the upgrade: a wrapped squeue twice a second
# until told to stop, one line per run.
LOOP = ("i=0; while [ ! -e /tmp/lifecycle-stop ]; do i=$((i+1)); "
        "if out=$(/usr/lib/slurmjwt/bin/squeue -h 2>&1); then echo \"ok $i\"; "
        "else echo \"FAIL $i $out\"; fi; sleep 0.5; done; echo done")


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(0.1.0's .deb, this tree's .deb)."""
    if subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{PREVIOUS}^{{commit}}"],
                      capture_output=True).returncode != 0:
        pytest.skip(f"commit {PREVIOUS} (0.1.0) is not in this clone's history")
    old_tree = tmp_path_factory.mktemp("previous")
    archive = subprocess.run(["git", "-C", str(REPO), "archive", PREVIOUS],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(old_tree)], input=archive, check=True)
    for tree in (old_tree, REPO):
        built = subprocess.run(["make", "-s", "-C", str(tree), "deb"], capture_output=True,
                               text=True, timeout=600)
        assert built.returncode == 0, built.stderr[-2000:]
    (old,) = glob.glob(str(old_tree / "build" / "pam-slurmjwt_0.1.0_*.deb"))
    (new,) = glob.glob(str(REPO / "build" / f"pam-slurmjwt_{VERSION}_*.deb"))
    return Path(old), Path(new)


@pytest.fixture(scope="module")
def node(debs: tuple[Path, Path]) -> Iterator[run.Shown]:
    """The bookworm cluster with both packages in the login node's /tmp and
    the image's own package purged; always removed."""
    with systemd_cluster(RELEASE) as shown:
        blob = io.BytesIO()
        with tarfile.open(fileobj=blob, mode="w") as tar:
            tar.add(debs[0], arcname="old.deb")
            tar.add(debs[1], arcname="new.deb")
        assert shown.running.login.put_archive("/tmp", blob.getvalue())
        # The image keeps the policy-rc.d its build used (no daemon may start
        # then), which would stop deb-systemd-invoke here: a login node has
        # none. The demo's configuration outlives the purges (a site's would
        # be backed up too); the image's package goes, 0.1.0 comes next.
        ok(shown, f"rm -f /usr/sbin/policy-rc.d && cp {CONF} /root/slurmjwt.conf.site && "
                  "dpkg --purge pam-slurmjwt")
        yield shown


def ok(node: run.Shown, command: str) -> str:
    code, out = exec_out(node.running.login, ["sh", "-c", command])
    assert code == 0, f"{command}: {out}"
    return out


def login(node: run.Shown, command: str = "true") -> tuple[int, bool, str]:
    """Log in over ssh as the demo user running `command`; return (exit
    status, whether the session has SLURM_JWT, output)."""
    step = steps.run_step(node.keys, node.running.ssh_port, "lifecycle",
                          f'echo "jwt=${{SLURM_JWT:+yes}}"; {command}')
    return step.status, "jwt=yes" in step.output.splitlines(), step.output


def assert_login(node: run.Shown, token: bool) -> None:
    status, has, output = login(node)
    assert (status, has) == (0, token), output


def install(node: run.Shown, deb: str) -> str:
    """Install a package the way an unattended upgrade does, the site's
    slurmjwt.conf kept (put back first after a purge)."""
    return ok(node, f"[ -e {CONF} ] || cp /root/slurmjwt.conf.site {CONF}; "
                    f"{DPKG} -i /tmp/{deb} 2>&1")


def hooks(node: run.Shown) -> list[str]:
    """The session lines of common-session pam-auth-update manages."""
    return re.findall(r"^session\s+\S+\s+(pam_\w+\.so)", ok(node, "cat /etc/pam.d/common-session"),
                      re.M)


def helper_pid(node: run.Shown) -> str:
    return ok(node, "systemctl show -p MainPID --value slurmjwt-helper.service").strip()


def wait_for(what: str, ready: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f} s")
        time.sleep(POLL)


def test_lifecycle_install_upgrade_under_load_remove_purge_reinstall_downgrade(
        node: run.Shown, tmp_path: Path) -> None:
    # -- 0.1.0, set up as its README said: the include in sshd by hand.
    install(node, "old.deb")
    ok(node, f"{SSHD_INCLUDE} && systemctl --global enable slurmjwt-refresh.timer")
    assert ok(node, "slurmjwt --version").strip() == "slurmjwt 0.1.0"
    assert_login(node, token=True)

    # -- a session with the loop and the user timer, across the upgrade.
    loop_log = tmp_path / "loop.log"
    ok(node, "rm -f /tmp/lifecycle-stop")
    with loop_log.open("w") as out:
        loop = subprocess.Popen(steps.ssh_argv(node.keys, node.running.ssh_port, LOOP),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for("3 wrapped squeue runs before the upgrade",
                 lambda: loop_log.read_text().count("ok ") >= 3)
        status, _, timer = login(node, "systemctl --user is-active slurmjwt-refresh.timer")
        assert (status, timer.splitlines()[-1]) == (0, "active"), timer
        before = helper_pid(node)
        assert before != "0"  # the logins started it

        upgrade = install(node, "new.deb")
        runs_at_upgrade = loop_log.read_text().count("ok ")
        assert f"Unpacking pam-slurmjwt ({VERSION}) over (0.1.0)" in upgrade, upgrade
        wait_for("3 wrapped squeue runs after the upgrade",
                 lambda: loop_log.read_text().count("ok ") >= runs_at_upgrade + 3)
    finally:
        ok(node, "touch /tmp/lifecycle-stop")
        loop.wait(timeout=60)
    lines = loop_log.read_text().splitlines()
    assert lines[-1] == "done" and not [line for line in lines if not line.startswith("ok ")
                                        and line != "done"], lines
    assert loop.returncode == 0

    # The new code everywhere: the commands, the restarted helper (PONG).
    assert ok(node, "slurmjwt --version").strip() == f"slurmjwt {VERSION}"
    assert ok(node, "slurmjwt-helper --version").strip() == f"slurmjwt-helper {VERSION}"
    assert helper_pid(node) != before
    assert ok(node, "slurmjwt ping").strip().endswith(VERSION)
    # The sshd-only setup is kept alone: the profile declined, one hook.
    assert "pam_slurmjwt.so" not in hooks(node)
    assert_login(node, token=True)
    status, _, timer = login(node, "systemctl --user start slurmjwt-refresh.service && "
                                   "systemctl --user show -p Result --value "
                                   "slurmjwt-refresh.service")
    assert (status, timer.splitlines()[-1]) == (0, "success"), timer

    # -- remove with sshd still including the file: the conffile stays, the
    # module is gone, the optional line is skipped.
    ok(node, f"{DPKG} -r pam-slurmjwt")
    assert ok(node, "test -e /etc/pam.d/slurmjwt && echo kept").strip() == "kept"
    assert_login(node, token=False)
    # -- purge: what sshd includes is left, empty.
    purge = ok(node, f"{DPKG} --purge pam-slurmjwt 2>&1")
    assert_login(node, token=False)
    assert "/etc/pam.d/sshd still include(s) /etc/pam.d/slurmjwt" in purge
    assert not [line for line in ok(node, "cat /etc/pam.d/slurmjwt").splitlines()
                if not line.startswith("#")]
    # -- reinstall: the package's own file replaces the empty one.
    install(node, "new.deb")
    assert ok(node, "cat /etc/pam.d/slurmjwt") == (REPO / "packaging/pam.d/slurmjwt").read_text()
    assert "pam_slurmjwt.so" not in hooks(node)
    assert_login(node, token=True)

    # -- the package's default: no include, the hook in common-session after
    # pam_systemd.
    ok(node, "sed -i '/^@include slurmjwt$/d' /etc/pam.d/sshd && "
             "DEBIAN_FRONTEND=noninteractive pam-auth-update --enable slurmjwt")
    assert hooks(node)[-2:] == ["pam_systemd.so", "pam_slurmjwt.so"]
    assert_login(node, token=True)
    ok(node, f"{DPKG} -r pam-slurmjwt")
    assert "pam_slurmjwt.so" not in hooks(node)
    assert_login(node, token=False)
    ok(node, f"{DPKG} --purge pam-slurmjwt")
    assert ok(node, "test -e /etc/pam.d/slurmjwt || echo gone").strip() == "gone"
    assert_login(node, token=False)
    # A fresh install on a node that never had it: the default is on.
    install(node, "new.deb")
    assert hooks(node)[-2:] == ["pam_systemd.so", "pam_slurmjwt.so"]
    assert ok(node, "systemctl is-enabled slurmjwt-helper.socket "
                    "slurmjwt-helper-root.socket").split() == ["enabled", "enabled"]
    assert_login(node, token=True)

    # -- a downgrade to 0.1.0 and back: logins go on through both (0.1.0's
    # module in common-session still loads; its helper speaks SLURMJWT/2).
    downgrade = install(node, "old.deb")
    assert f"Unpacking pam-slurmjwt (0.1.0) over ({VERSION})" in downgrade, downgrade
    assert ok(node, "slurmjwt --version").strip() == "slurmjwt 0.1.0"
    assert_login(node, token=True)
    install(node, "new.deb")
    assert ok(node, "slurmjwt --version").strip() == f"slurmjwt {VERSION}"
    assert hooks(node)[-2:] == ["pam_systemd.so", "pam_slurmjwt.so"]
    assert_login(node, token=True)
