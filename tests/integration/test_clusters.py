"""One login node, several clusters (root: users, daemons), with the rule the
README's "Several clusters" states: the node signs RS256 with one key, whose
public half is in every cluster's JWKS and in slurmdbd's, so one token serves
every cluster; slurmjwt.conf's Clusters= names them, and the wrapper stops a
command bound for another cluster in one line.

Three clusters share one slurmdbd (Slurm's multi-cluster operation asks it
where each cluster is): `a` runs it (MariaDB, slurmdbd with the JWKS), `b`
registers with it, both with an HS256 key of their own and a JWKS holding the
node's key; `c` registers too, but its JWKS holds another node's key only.
Started once for the module. Users run the installed wrappers on a slurm.conf
whose munge socket does not exist: the token is the only way in.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest

from tests.integration.fixtures.cluster import Cluster, running_cluster
from tests.integration.fixtures.helperd import start_helper
from tests.integration.fixtures.install import Installed
from tests.integration.fixtures.login import jwt_only_copy
from tests.integration.fixtures.users import TestUser
from tests.integration.test_accounting import report_line
from tests.integration.test_keys import Keys
from tests.integration.test_wrappers import PROBE, Place, make_dir

pytestmark = pytest.mark.root

# Each slurmctld: its own HS256 key and the JWKS; slurmdbd (a's) the same.
AUTH_ALT = "jwt_key={key},jwks={root}/jwks.json"
# What a 22.05 client says when a slurmctld refuses its token.
ZERO_BYTES = "Zero Bytes were transmitted or received"
POLL = 0.1


@dataclass
class Site:
    """Clusters a, b (they take the node's key) and c (it does not), the
    login node (`place`: helper, wrappers) and each cluster's JWT-only slurm.conf."""

    a: Cluster
    b: Cluster
    c: Cluster
    place: Place
    confs: dict[str, Path]
    key: Path
    kid: str

    def clusters_conf(self, clusters: str | None, text: str = "") -> Path:
        """The login node's slurmjwt.conf with Clusters=`clusters` (None: unset)."""
        line = "" if clusters is None else f"Clusters={clusters}\n"
        return self.place.config("clusters.conf", line + text)

    def run(self, argv: list[str], clusters: str | None = None, text: str = "",
            **env: str | None) -> subprocess.CompletedProcess[str]:
        """As alice, argv[0] through the installed wrappers, with Clusters=."""
        return self.place.run([str(self.place.installed.wrappers / argv[0]), *argv[1:]],
                              conf=self.clusters_conf(clusters, text), **env)

    def refusal(self, cluster: str, clusters: str) -> str:
        conf = self.place.work / "clusters.conf"
        return (f"slurmjwt-wrap: cluster {cluster} does not take this login node's token "
                f"(Clusters={clusters} in {conf}); ask your admins\n")


def _jwks_of(keys: Keys, key: Path) -> Callable[[Path], None]:
    """before_start: a JWKS in the cluster's directory holding `key`'s public half."""
    def write(root: Path) -> None:
        jwks_d = root / "jwks.d"
        jwks_d.mkdir(mode=0o755)
        keys.public_half(key, jwks_d / "node.jwks")
        keys.build_jwks(jwks_d, root / "jwks.json")
    return write


def _jwt_only(cluster: Cluster, dbd_of: Cluster, dest: Path) -> Path:
    """jwt_only_copy, with the munge socket that reaches slurmdbd (a's) gone too."""
    conf = jwt_only_copy(cluster, dest)
    conf.write_text(conf.read_text().replace(str(dbd_of.munge_socket),
                                             f"{dest.parent}/no-munged.socket"))
    return conf


@pytest.fixture(scope="module")
def site(installed: Installed, test_users: dict[str, TestUser]) -> Iterator[Site]:
    work = make_dir("slurmjwt-clusters-")
    keys = Keys(installed, work)
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        keygen_conf = work / "keygen-slurm.conf"
        keygen_conf.write_text("SlurmUser=slurm\n")
        node, kid = keys.keygen("node", keygen_conf)
        other, _ = keys.keygen("other", keygen_conf)
        a = stack.enter_context(running_cluster(
            auth_alt=AUTH_ALT, before_start=_jwks_of(keys, node), accounting=True))
        b = stack.enter_context(running_cluster(
            auth_alt=AUTH_ALT, before_start=_jwks_of(keys, node), accounting_of=a))
        c = stack.enter_context(running_cluster(
            auth_alt=AUTH_ALT, before_start=_jwks_of(keys, other), accounting_of=a))
        confs = {x.name: _jwt_only(x, a, work / f"{x.name}-jwt-only.conf") for x in (a, b, c)}
        fakebin = work / "fakebin"
        fakebin.mkdir(mode=0o755)
        for probe in ("squeue", "srun"):
            (fakebin / probe).write_text(PROBE)
            (fakebin / probe).chmod(0o755)
        (work / "helper").mkdir(mode=0o755)
        helper = start_helper(installed, a.slurm_conf, work / "helper",
                              extra=f"JwtKey={node}\nMungeSocket={work}/no-munged.socket\n")
        stack.callback(helper.stop)
        place = Place(installed, a, helper, confs[a.name], work, fakebin, test_users)
        cache = place.cache("alice")
        cache.mkdir(mode=0o700)
        os.chown(cache, test_users["alice"].uid, test_users["alice"].gid)
        yield Site(a, b, c, place, confs, node, kid)


def _ok(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 0, out.stderr
    assert "slurmjwt-wrap" not in out.stderr, out.stderr
    return out.stdout


def test_one_rs256_token_serves_both_clusters_and_their_slurmdbd(site: Site) -> None:
    a, b = site.a.name, site.b.name
    token = _ok(site.place.run([site.place.installed.cmd("slurmjwt"), "token"])).strip()
    header = jwt.get_unverified_header(token)

    one = _ok(site.run(["squeue", "-M", a], clusters=f"{a},{b}"))
    both = _ok(site.run(["squeue", f"--clusters={a},{b}"], clusters=f"{a},{b}"))
    # Job names tell the clusters' jobs apart: each cluster counts its ids from 1.
    on_a = _ok(site.run(["sbatch", "--parsable", "-J", "on-a", "--wrap", "sleep 2"],
                        clusters=f"{a},{b}")).strip().split(";")[0]
    submitted = _ok(site.run(["sbatch", "-M", b, "--parsable", "-J", "via-M", "--wrap",
                              "id -un"], clusters=f"{a},{b}"))
    on_b = submitted.strip().split(";")[0]
    under_b = _ok(site.run(["sbatch", "--parsable", "-J", "via-conf", "--wrap", "sleep 2"],
                           clusters=f"{a},{b}", SLURM_CONF=str(site.confs[b]))).split(";")[0]
    queue_b = _ok(site.run(["squeue", "--noheader", "--format=%j"], clusters=f"{a},{b}",
                           SLURM_CONF=str(site.confs[b])))
    clusters = _ok(site.run(["sacctmgr", "--noheader", "--parsable2", "show", "cluster",
                             "format=Cluster"], clusters=f"{a},{b}"))

    assert header["alg"] == "RS256" and header["kid"] == site.kid
    assert f"CLUSTER: {a}" in one and f"CLUSTER: {b}" not in one, one
    assert f"CLUSTER: {a}" in both and f"CLUSTER: {b}" in both, both
    assert submitted.strip() == f"{on_b};{b}"
    assert site.b.wait_job(on_b) == "COMPLETED"
    # Under b's own slurm.conf, no -M: squeue and sbatch go to b, not a.
    assert "via-conf" in queue_b.split() and "on-a" not in queue_b.split(), queue_b
    assert site.b.wait_job(under_b.strip()) == "COMPLETED"
    assert set(clusters.split()) == {a, b, site.c.name}
    assert site.a.wait_job(on_a) == "COMPLETED"
    # slurmdbd has the job once slurmctld has sent it: poll sacct -M a for it.
    deadline = time.monotonic() + 30
    while True:
        listed = _ok(site.run(["sacct", "-M", a, "-X", "--noheader", "-j", on_a,
                               "--format=JobID,State"], clusters=f"{a},{b}"))
        if "COMPLETED" in listed or time.monotonic() > deadline:
            break
        time.sleep(POLL)
    assert listed.split() == [on_a, "COMPLETED"], listed


def test_a_cluster_outside_clusters_stops_in_one_line_before_slurm_runs(site: Site) -> None:
    a, b, c = site.a.name, site.b.name, site.c.name
    allowed = f"{a.upper()}, {b}"      # trimmed and lowered, as Slurm lowers names
    said = site.refusal(c, f"{a},{b}")
    forms = {
        "-M c": (["squeue", "-M", c], {}),
        "-Mc": (["squeue", f"-M{c}"], {}),
        "--clusters=a,c": (["squeue", f"--clusters={a},{c}"], {}),
        "--clusters c": (["squeue", "--clusters", c], {}),
        "sbatch -M c": (["sbatch", "-M", c, "--wrap", "true"], {}),
        "SLURM_CLUSTERS": (["squeue"], {"SLURM_CLUSTERS": c}),
        "SBATCH_CLUSTERS": (["sbatch", "--wrap", "true"], {"SBATCH_CLUSTERS": c}),
        "c's SLURM_CONF": (["squeue"], {"SLURM_CONF": str(site.confs[c])}),
    }
    for what, (argv, env) in forms.items():
        out = site.run(argv, clusters=allowed, **env)
        assert (out.returncode, out.stdout, out.stderr) == (1, "", said), what

    probe = f"SlurmBinDir={site.place.fakebin}\n"
    refused = site.run(["squeue", "-M", c], clusters=allowed, text=probe)
    taken = site.run(["squeue", "-M", b], clusters=allowed, text=probe)
    every = site.run(["squeue", "-M", "all"], clusters=allowed, text=probe)
    # munged's socket here (a's): srun, which reaches slurmd, goes without the token.
    munge = f"{probe}MungeSocket={site.a.munge_socket}\n"
    untokened = site.run(["srun", "-M", c, "hostname"], clusters=allowed, text=munge)
    sacct = site.run(["sacct", "-M", c, "-X", "--noheader"], clusters=allowed)

    assert (refused.returncode, refused.stdout) == (1, ""), "Slurm's squeue ran"
    assert taken.returncode == 0 and taken.stdout.startswith("squeue JWT=ey"), taken
    assert every.returncode == 0 and every.stdout.startswith("squeue JWT=ey"), every
    # No token: nothing to protect, nothing checked.
    assert untokened.returncode == 0 and untokened.stdout == "srun JWT=<unset>\n", untokened
    # sacct asks slurmdbd alone, which takes the token: -M only picks the jobs.
    assert sacct.returncode == 0 and sacct.stderr == "", sacct.stderr


def test_without_clusters_slurm_fails_its_own_way(site: Site) -> None:
    c = site.c.name
    out = site.run(["squeue", "-M", c])

    assert out.returncode != 0
    assert "slurmjwt-wrap" not in out.stderr and ZERO_BYTES in out.stderr, out.stderr


def test_doctor_asks_every_listed_cluster_and_names_the_one_that_refuses(site: Site) -> None:
    a, b, c = site.a.name, site.b.name, site.c.name

    def doctor(clusters: str) -> subprocess.CompletedProcess[str]:
        return site.a.run([site.place.installed.cmd("slurmjwt"), "doctor", "--user", "alice"],
                          env_extra={"SLURMJWT_CONF": str(site.clusters_conf(clusters)),
                                     "SLURM_CONF": str(site.confs[a])}, timeout=120)

    good = doctor(f"{a},{b}")
    bad = doctor(f"{a},{b},{c}")

    assert report_line(good.stdout, "clusters accept") == (
        f"OK   clusters accept: a token for alice from the helper works with squeue -M on "
        f"every cluster of Clusters={a},{b}")
    line = report_line(bad.stdout, "clusters accept")
    assert bad.returncode == 1
    assert line.startswith(f"FAIL clusters accept: squeue -M with a fresh helper token for "
                           f"alice failed for {c} ("), line
    assert f" {a} (" not in line and f" {b} (" not in line, line
    assert line.endswith(
        f"add this node's key (kid {site.kid}; slurmjwt jwks {site.key} gives its entry) to the "
        "JWKS of that cluster's slurmctld (AuthAltParameters=jwks=FILE) and restart slurmctld "
        "(Slurm before 23.11 reads the JWKS only at start)"), line
