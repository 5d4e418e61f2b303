"""Python 3.9, RHEL 9's /usr/bin/python3 and the oldest the project supports:
the unit tests, and the installed helper end to end, run under Debian 11's
python3 (3.9) in a container, with Debian 11's python3-cryptography
(older than EL9's) and EL9's PyJWT.

The image (slurmjwt-demo/python39:bullseye, on a debootstrap'd bullseye
base when no registry answers) is built once and cached like the demo's:
about a minute the first time, seconds after."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.models.containers
import pytest

from tests.demo import engine, images

pytestmark = [pytest.mark.slow, pytest.mark.root]
CODENAME = "bullseye"
BASE = f"{images.REPOSITORY}/base:{CODENAME}"
IMAGE = f"{images.REPOSITORY}/python39:{CODENAME}"
# PyJWT 2.4.0 is EL9's (python3-jwt in AppStream); bullseye's python3-jwt is
# 1.7, which the project does not take (PyJWT>=2.0). The wheel is fetched on
# the host (pip download), whose PyPI access the container may not share.
PYJWT = "PyJWT==2.4.0"
# What the unit tests need (the C harness tests build with gcc and ASan, the
# manual pages render with man; the shim tests take the shells they find),
# and what `make install` needs.
DOCKERFILE = """\
ARG BASE
FROM ${BASE} AS python39
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \\
      --no-install-recommends python3 python3-pip python3-cryptography python3-pytest \\
      python3-yaml gcc libc6-dev make libpam0g-dev man-db groff-base bash dash \\
    && rm -rf /var/lib/apt/lists/*
COPY wheels /wheels
RUN python3 -m pip install -q --no-deps --no-index /wheels/*.whl
"""
# The installed helper (make install: /usr/sbin/slurmjwt-helper runs
# /usr/bin/python3 -I, 3.9 here) with Backend=scontrol, and a burst of 8
# logins (root's requests: 4 slots): every one gets its token. The fake
# scontrol holds its slot until 4 are running, so later requests must wait
# for a slot (what failed on 3.9: "attached to a different loop").
BURST = r"""
set -eu
useradd -r slurm; useradd -m -u 2000 alice
w=$(mktemp -d /tmp/py39.XXXXXX); chmod 0755 "$w"; mkdir "$w/in"; chown slurm "$w/in"
python3 -I - "$w" <<'PY'
import sys
sys.path.insert(0, "/usr/lib/slurmjwt")
from pam_slurmjwt.signing import HS256Signer
from pam_slurmjwt.token import make_claims
w = sys.argv[1]
token = HS256Signer(b"k" * 32, "kid").sign(make_claims("alice", 600))
open(w + "/scontrol", "w").write(
    "#!/bin/sh\ntouch %s/in/$$\n"
    "while [ $(ls %s/in | wc -l) -lt 4 ]; do sleep 0.05; done\n"
    "echo SLURM_JWT=%s\n" % (w, w, token))
open(w + "/slurm.conf", "w").write("SlurmUser=slurm\nAuthAltTypes=auth/jwt\n")
open(w + "/slurmjwt.conf", "w").write(
    "SlurmConf=%s/slurm.conf\nHelperSocket=%s/helper.sock\nRootSocket=%s/root.sock\n"
    "Backend=scontrol\nScontrol=%s/scontrol\nWorkers=1\n" % (w, w, w, w))
PY
chmod 0755 "$w/scontrol"
/usr/sbin/slurmjwt-helper -c "$w/slurmjwt.conf" --stderr > "$w/log" 2>&1 &
python3 -I - "$w" <<'PY'
import sys, time
from concurrent.futures import ThreadPoolExecutor
sys.path.insert(0, "/usr/lib/slurmjwt")
from pam_slurmjwt import protocol
from pam_slurmjwt.errors import HelperUnreachable
w = sys.argv[1]
deadline = time.monotonic() + 20
while True:
    try:
        protocol.ping(w + "/root.sock")
        break
    except HelperUnreachable:
        if time.monotonic() > deadline:
            sys.exit("helper never answered: " + open(w + "/log").read())
        time.sleep(0.05)
def mint(_):
    try:
        return "ok %d" % protocol.request_token(w + "/root.sock", "alice", timeout=20).exp
    except Exception as err:
        return "%s: %s" % (type(err).__name__, err)
with ThreadPoolExecutor(8) as pool:
    got = list(pool.map(mint, range(8)))
print(sys.version.split()[0], " ".join(sorted(set(g.split()[0] for g in got))))
if any(not g.startswith("ok") for g in got):
    sys.exit("\n".join(got) + "\n" + open(w + "/log").read())
PY
"""


@pytest.fixture(scope="module")
def python39() -> Iterator[docker.models.containers.Container]:
    """A bullseye container with the project's files (tests included) in /src."""
    why = engine.unavailable()
    if why is not None:
        pytest.skip(f"the Python 3.9 image needs Docker: {why}")
    client = engine.ensure_engine(print)
    if not images.has_image(client, BASE):
        official = f"debian:{CODENAME}"
        if images.has_image(client, official) or images.pull(client, official, print):
            client.images.get(official).tag(BASE)
        else:
            images.debootstrap_import(client, CODENAME, BASE, print)
    with tempfile.TemporaryDirectory(prefix="slurmjwt-py39-") as ctx:
        (Path(ctx) / "Dockerfile").write_text(DOCKERFILE)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--disable-pip-version-check", "-d", f"{ctx}/wheels", PYJWT],
                       check=True)
        images.build(client, Path(ctx), "python39", IMAGE, BASE)
    container = client.containers.run(IMAGE, ["sleep", "infinity"], detach=True,
                                      remove=True, network_mode="none")
    try:
        with tempfile.TemporaryDirectory(prefix="slurmjwt-py39-src-") as src:
            images.stage_project(Path(src), skip=(".ci/", "build/"))
            Path(src).chmod(0o755)  # the shim tests read it as nobody
            archive = io.BytesIO()
            with tarfile.open(fileobj=archive, mode="w") as tar:
                tar.add(src, arcname="src")
            assert container.put_archive("/", archive.getvalue())
        yield container
    finally:
        container.kill()


def run(container: docker.models.containers.Container, script: str) -> tuple[int, str]:
    code, out = container.exec_run(["sh", "-c", script], workdir="/src")
    return code, out.decode(errors="replace")


def test_the_package_compiles_and_the_unit_tests_pass_under_python_3_9(
        python39: docker.models.containers.Container) -> None:
    code, out = run(python39, "python3 -c 'import sys; print(sys.version_info[:2])' && "
                              "python3 -m compileall -q pam_slurmjwt && "
                              "python3 -m pytest -q -p no:cacheprovider tests/unit 2>&1")
    assert code == 0, out[-6000:]
    assert out.startswith("(3, 9)"), out[:200]


def test_the_installed_helper_serves_a_scontrol_burst_under_python_3_9(
        python39: docker.models.containers.Container) -> None:
    code, out = run(python39, "make -s install >/dev/null 2>&1 || make install; "
                              "/usr/sbin/slurmjwt-helper --version")
    assert code == 0, out[-4000:]
    code, out = run(python39, BURST)
    assert code == 0, out[-6000:]
    assert out.splitlines()[-1].startswith("3.9.") and out.splitlines()[-1].endswith(" ok"), out

