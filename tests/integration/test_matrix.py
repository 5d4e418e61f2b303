"""The compatibility matrix: the demo's two-host cluster (controller; login
node with sshd, the hook and the helper, no munge) once per Slurm version,
each from Debian's own packages (tests/demo/releases.py: bookworm 22.05,
trixie 24.11, sid 26.05), with that version's Slurm side configured as the
README says. Every user-facing check goes through a real ssh login.

Slow: one cluster per release, brought up, checked and torn down before the
next (a cold release builds its images, about 2 minutes; a warm one about
30 s). Skipped only when no Docker engine can run on the machine at all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.demo import cluster, engine, keyproof, run, steps
from tests.demo.cluster import exec_out
from tests.demo.releases import RELEASES, Release

pytestmark = [pytest.mark.slow, pytest.mark.root]
LIFESPAN = 1800  # the helper's default Lifespan; the demo's slurmjwt.conf keeps it
EXPIRED = "/home/demo/expired.jwt"
HELPER_REFUSES = ('slurmjwt-helper: cannot use key "{key}": mode 0604 allows group or '
                  'others; run chmod 0600 "{key}"')
CTLD_REFUSES = "fatal: auth/jwt: key file is insecure"


@pytest.fixture(scope="module", params=list(RELEASES), ids=lambda c: f"{c}-{RELEASES[c].slurm}")
def shown(request: pytest.FixtureRequest) -> Iterator[run.Shown]:
    """One release's cluster, up with the demo's transcript run; always removed."""
    why = engine.unavailable()
    if why is not None:
        pytest.skip(f"the compatibility matrix needs Docker: {why}")
    codename: str = request.param
    said: list[str] = []
    try:
        yield run.up(RELEASES[codename], said.append)
    finally:
        run.down(codename, said.append)


def ssh(shown: run.Shown, key: str, command: str) -> steps.Step:
    return steps.run_step(shown.keys, shown.running.ssh_port, key, command)


def claims(output: str) -> dict[str, Any]:
    """Given output holding `slurmjwt decode --json` on one line, return the claims."""
    for line in output.splitlines():
        if line.startswith("{"):
            decoded: dict[str, Any] = json.loads(line)
            return dict(decoded["claims"])
    raise AssertionError(f"no decoded token in:\n{output}")


def assert_fresh_token_of_demo(found: dict[str, Any]) -> None:
    assert found["sun"] == cluster.DEMO_USER
    assert found["exp"] - found["iat"] == LIFESPAN


# -- the token in sessions

def test_non_interactive_ssh_has_a_token_for_the_user(shown: run.Shown) -> None:
    step = ssh(shown, "decode", "printenv SLURM_JWT >/dev/null && echo present; "
               "slurmjwt decode --json | tr -d '\\n'; echo")
    assert step.status == 0, step.output
    assert "present" in step.output.splitlines()
    assert_fresh_token_of_demo(claims(step.output))


def test_interactive_login_shell_has_a_token_for_the_user(shown: run.Shown) -> None:
    # The terminal echoes what is typed: each marker is printed in a form that
    # differs from how it was typed.
    step = steps.run_interactive(shown.keys, shown.running.ssh_port, "interactive", (
        "case $- in *i*) echo \"shell=inter\"\"active\" ;; esac\n"
        "printenv SLURM_JWT >/dev/null && echo \"token=pre\"\"sent\"\n"
        "slurmjwt decode --json | tr -d '\\n'; echo\n"
        "squeue --noheader >/dev/null && echo \"squeue=o\"\"k\"\n"
        "exit\n"))
    assert step.status == 0, step.output
    lines = step.output.splitlines()
    for marker in ("shell=interactive", "token=present", "squeue=ok"):
        assert marker in lines, step.output
    assert_fresh_token_of_demo(claims(step.output))


def test_an_expired_token_never_reaches_slurm_from_a_shell_with_the_shim(
        shown: run.Shown) -> None:
    # Minted as root on the login node with the cluster's key, expired 10
    # minutes ago; handed over in a file, never on a command line.
    code, out = exec_out(shown.running.login, ["python3", "-I", "-c", f"""
import jwt, os, time
now = int(time.time())
token = jwt.encode({{"sun": "demo", "iat": now - 2400, "exp": now - 600}},
                   open("{cluster.JWT_KEY}", "rb").read(), algorithm="HS256")
fd = os.open("{EXPIRED}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, token.encode() + b"\\n")
os.fchown(fd, 2000, 2000)
"""])
    assert code == 0, out
    step = ssh(shown, "expired", f"""
        SLURM_JWT=$(cat {EXPIRED}); export SLURM_JWT
        if /usr/bin/squeue >/dev/null 2>&1; then echo "before: accepted"
        else echo "before: refused"; fi
        . /etc/profile.d/slurmjwt.sh
        if [ "$SLURM_JWT" = "$(cat {EXPIRED})" ]; then echo "after: the expired one"; fi
        slurmjwt decode --json | tr -d '\\n'; echo
        /usr/bin/squeue --noheader >/dev/null && echo "after: squeue ok"
    """)
    lines = step.output.splitlines()
    assert "before: refused" in lines, step.output  # it really is expired for slurmctld
    assert "after: the expired one" not in lines, step.output
    found = claims(step.output)
    assert_fresh_token_of_demo(found)
    assert "after: squeue ok" in lines, step.output


# -- Slurm commands and jobs

def test_squeue_works_with_the_token(shown: run.Shown) -> None:
    step = shown.transcript["squeue"]
    assert step.status == 0, step.output
    assert "JOBID" in step.output


def test_batch_job_calling_srun_completes(shown: run.Shown) -> None:
    sbatch = shown.transcript["sbatch"]
    assert sbatch.status == 0, sbatch.output
    state = shown.transcript["state"]
    assert re.search(rf"^{shown.transcript.job_id} hello COMPLETED$", state.output, re.M), (
        state.output)
    # Written by the step srun started on the controller, with the token gone.
    assert "step 0 ran on controller as demo; SLURM_JWT unset" in shown.transcript["output"].output


def test_stored_job_environment_has_the_token_only_where_documented(shown: run.Shown) -> None:
    """24.11 with the cli_filter, and 26.05 by itself, keep SLURM_JWT out of the
    job slurmctld stores; 22.05 with only the TaskProlog still stores it (the
    documented limit: the TaskProlog cleans tasks, not the stored job)."""
    rel: Release = shown.release
    job = shown.transcript.job_id
    # Kept until MinJobAge (300 s) after the job ended; a missing file must fail.
    stored_env = f"/var/lib/slurm/slurmctld/hash.*/job.{job}/environment"
    code, out = exec_out(shown.running.controller, ["sh", "-c",
                         f"test -s {stored_env} && {{ grep -ac SLURM_JWT= {stored_env}; true; }}"])
    count = out.strip()
    assert code == 0 and count.isdigit(), out
    stored = int(count) > 0
    assert stored == (not (rel.slurm_side.cli_filter or rel.scrubs_jwt)), (rel.codename, out)


# -- slurmrestd

def rest(shown: run.Shown, key: str, headers: str) -> steps.Step:
    url = f"http://{cluster.CONTROLLER}:{cluster.RESTD_PORT}{shown.release.restd_jobs}"
    return ssh(shown, key, f"{headers} | curl -sS -H @- -w '\\nHTTP %{{http_code}}\\n' {url}")


def test_slurmrestd_accepts_the_token_as_x_slurm_headers(shown: run.Shown) -> None:
    step = rest(shown, "rest-x", "slurmjwt token --header")
    assert steps.http_status(step) == 200, step.output
    assert re.search(r'"user_name": "demo"', step.output), step.output
    forged = rest(shown, "rest-forged",
                  "printf 'X-SLURM-USER-NAME: demo\\nX-SLURM-USER-TOKEN: a.b.c\\n'")
    assert steps.http_status(forged) not in (0, 200), forged.output


def test_slurmrestd_bearer_where_supported(shown: run.Shown) -> None:
    step = rest(shown, "rest-bearer", "slurmjwt token --bearer")
    if shown.release.bearer:
        assert steps.http_status(step) == 200, step.output
        assert re.search(r'"user_name": "demo"', step.output), step.output
    else:  # 22.05: the README says 23.02+; it answers "Authentication failure"
        assert steps.http_status(step) == 401, step.output


# -- slurmjwt doctor

def doctor_lines(output: str) -> dict[str, str]:
    return {m.group(2): m.group(1) for m in re.finditer(r"^(\w+)\s+([^:]+): ", output, re.M)}


def test_doctor_passes_as_root_for_the_user(shown: run.Shown) -> None:
    code, out = exec_out(shown.running.login, ["slurmjwt", "doctor", "--user", "demo"])
    assert code == 0, out
    found = doctor_lines(out)
    assert found.get("slurmctld accepts") == "OK", out
    assert found.get("key") == "OK", out
    # Nothing but OK: the Slurm side is configured as this version needs.
    assert set(found.values()) == {"OK"}, out
    rel: Release = shown.release
    if rel.scrubs_jwt:
        assert "Slurm >= 26.05 keeps SLURM_JWT out of jobs itself" in out
    else:
        assert "task prolog: TaskProlog=/usr/lib/slurmjwt/taskprolog.sh unsets" in out
    if rel.slurm_side.cli_filter:
        assert "cli filter: /etc/slurm/cli_filter.lua keeps SLURM_JWT out of stored jobs" in out


def test_doctor_passes_as_the_user(shown: run.Shown) -> None:
    step = ssh(shown, "doctor", "slurmjwt doctor")
    assert step.status == 0, step.output
    found = doctor_lines(step.output)
    assert set(found.values()) == {"OK"}, step.output
    assert "key" not in found


def test_doctor_asks_for_the_cli_filter_only_where_it_is_needed(shown: run.Shown) -> None:
    """The same doctor, with slurm.conf lacking CliFilterPlugins: a WARN with
    the fix on 24.11 only."""
    code, out = exec_out(shown.running.login, ["sh", "-c",
                         "grep -v '^CliFilterPlugins=' /etc/slurm/slurm.conf > /tmp/nofilter.conf"
                         " && SLURM_CONF=/tmp/nofilter.conf slurmjwt doctor --user demo"])
    found = doctor_lines(out)
    rel: Release = shown.release
    if rel.slurm_side.cli_filter:
        assert found.get("cli filter") == "WARN", out
        assert "add CliFilterPlugins=cli_filter/lua" in out
    else:
        assert found.get("cli filter") == "OK", out
        assert code == 0, out


# -- the key's mode: never laxer than slurmctld

def test_helper_refuses_a_key_others_can_read_with_its_documented_message(
        shown: run.Shown) -> None:
    good = keyproof.helper(shown.running.login, 0o600)
    assert good.started, good.said  # the same setup with a safe key starts
    bad = keyproof.helper(shown.running.login, 0o604)
    assert not bad.started, bad.said
    assert bad.status == 3, bad.said  # EXIT_CONFIG
    assert HELPER_REFUSES.format(key=f"{keyproof.PROOF_DIR}/jwt.key") in bad.said


def test_slurmctld_and_the_helper_agree_on_a_key_others_can_read(shown: run.Shown) -> None:
    """23.11+ slurmctld refuses a 0604 key, like the helper; 22.05 starts with
    it, and the helper is then the stricter of the two."""
    good = keyproof.slurmctld(shown.running.controller, 0o600)
    assert good.started, good.said
    bad = keyproof.slurmctld(shown.running.controller, 0o604)
    if shown.release.refuses_open_key:
        assert not bad.started, bad.said
        assert CTLD_REFUSES in bad.said, bad.said
    else:
        assert bad.started, bad.said
    helper = keyproof.helper(shown.running.login, 0o604)
    assert not helper.started  # never laxer than slurmctld
