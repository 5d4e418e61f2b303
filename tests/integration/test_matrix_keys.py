"""Keys on every Slurm of the compatibility matrix, in the demo's two-host
Docker cluster. Which releases is SLURMJWT_MATRIX's choice, as for
test_matrix.py: Debian's three (22.05, 24.11, 26.05) in `make test`, the
four built from source in `make test-releases`.

Per release, the demo's key scenario (tests/demo/keyring.py, also shown by
`python -m tests.demo keys`) runs once and records what that Slurm did; the
tests below assert it. On the login node: keys made with `slurmjwt keygen`,
the JWKS with `slurmjwt jwks` (copied to the controller, which has no
pam-slurmjwt), the demo's helper switched by SIGHUP from the HS256 key to
login1's RSA key, and a second helper with login2's key, its own socket
and slurmjwt.conf: a second "login node".

Slow like the matrix (a cluster per release). Skipped only when no Docker
engine can run on the machine at all.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator

import pytest

from tests.demo import accounting, engine, run
from tests.demo.keyring import GHOST, GHOST_UID, Seen, bring_up, scenario
from tests.demo.releases import RELEASES, matrix

pytestmark = [pytest.mark.slow, pytest.mark.root]
MATRIX = matrix(os.environ.get("SLURMJWT_MATRIX", "debian"))


@pytest.fixture(scope="module", params=MATRIX, ids=lambda c: f"{c}-{RELEASES[c].slurm}")
def seen(request: pytest.FixtureRequest) -> Iterator[Seen]:
    """One release's cluster, up without the demo's transcript, with the key
    scenario run; always removed."""
    why = engine.unavailable()
    if why is not None:
        pytest.skip(f"the compatibility matrix needs Docker: {why}")
    rel = RELEASES[request.param]
    said: list[str] = []
    try:
        yield scenario(bring_up(rel, said.append), rel, said.append)
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


ACCOUNTING = list(accounting.COMMANDS)


def test_slurmdbd_takes_rs256_tokens_once_it_has_the_jwks(seen: Seen) -> None:
    """sacct, sacctmgr, sreport and sshare from the login node (no munge)
    with login1's RS256 token, slurmdbd reading the JWKS."""
    found = {name: seen.accepted[f"slurmdbd with the jwks: {name}"] for name in ACCOUNTING}
    assert all(found.values()), (found, seen.said["slurmdbd with the jwks"])
    assert re.search(r"^OK\s+slurmdbd accepts: ", seen.said["doctor dbd fixed"], re.M), (
        seen.said["doctor dbd fixed"])


def test_slurmdbd_reads_keys_only_at_start(seen: Seen) -> None:
    """As it has run since the controller started: 22.05's controller was
    restarted for the JWKS (slurmctld reads it only at start), slurmdbd with
    it, so it takes the token; from 23.11 on slurmctld was only reconfigured,
    and slurmdbd, never restarted, refuses it."""
    restarted = seen.release.version < (23, 11)
    for name in ("sacct", "sacctmgr", "sreport"):
        assert seen.accepted[f"slurmdbd as started: {name}"] == restarted, (
            name, seen.said["slurmdbd as started"])
    # sshare asks slurmctld, which has the JWKS.
    assert seen.accepted["slurmdbd as started: sshare"], seen.said["slurmdbd as started"]


def test_a_jwks_on_slurmctld_but_not_on_slurmdbd_doctor_names_slurmdbd_and_the_fix(
        seen: Seen) -> None:
    assert seen.accepted["login1"]  # slurmctld takes the token
    for name in ("sacct", "sacctmgr", "sreport"):
        assert not seen.accepted[f"slurmdbd without the jwks: {name}"], (
            name, seen.said["slurmdbd without the jwks"])
    assert seen.accepted["slurmdbd without the jwks: sshare"], (
        seen.said["slurmdbd without the jwks"])
    said = seen.said["doctor dbd"]
    assert re.search(r"^FAIL\s+slurmdbd accepts: ", said, re.M), said
    assert "slurmdbd (controller:6819) refuses this node's tokens" in said, said
    assert (f"AuthAltTypes=auth/jwt and AuthAltParameters=jwks=/etc/slurm/jwks.json (a JWKS "
            f"with this node's key, kid {seen.kids['login1']}), then restart slurmdbd") in said, (
        said)


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
    assert seen.accepted["ghost squeue with ids"], seen.said["ghost squeue"]
    assert seen.accepted["ghost sbatch with ids"], seen.said["ghost sbatch"]
    # The job ran too, on a node that cannot resolve ghost either.
    assert seen.said["ghost job"] == "COMPLETED"
