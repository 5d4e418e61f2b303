"""The compatibility matrix: the demo's cluster (directory; controller; login
node with sshd, the hook and the helper, no munge) once per Slurm release,
with that release's Slurm side configured as the README says. Every
user-facing check goes through a real ssh login. From 23.11 the cluster runs
auth/slurm (JWT-only login node unchanged: no sackd, no slurm.key there), and
the tests at the end add a second login node with sackd to it
(tests/demo/sackd.py).

Which releases (tests/demo/releases.py) is SLURMJWT_MATRIX's choice: `debian`
(the default, what `make test` runs: bookworm 22.05, trixie 24.11, sid 26.05,
from Debian's own packages), `source` (what `make test-releases` runs: 23.11,
24.05, 25.05, 25.11, built from SchedMD's tarballs), `all`, or names.

Slow: one cluster per release, brought up, checked and torn down before the
next (a cold release builds its images, about 2 minutes; a warm one about
30 s). Skipped only when no Docker engine can run on the machine at all.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from pam_slurmjwt import slurmside
from tests.demo import accounting, cluster, engine, keyproof, run, sackd, steps
from tests.demo.cluster import exec_out
from tests.demo.releases import RELEASES, Release, matrix

pytestmark = [pytest.mark.slow, pytest.mark.root]
LIFESPAN = 1800  # the helper's default Lifespan; the demo's slurmjwt.conf keeps it
EXPIRED = "/home/demo/expired.jwt"
HELPER_REFUSES = ('slurmjwt-helper: cannot use key "{key}": mode 0604 allows group or '
                  'others; run chmod 0600 "{key}"')
CTLD_REFUSES = "fatal: auth/jwt: key file is insecure"


MATRIX = matrix(os.environ.get("SLURMJWT_MATRIX", "debian"))


@pytest.fixture(scope="module", params=MATRIX, ids=lambda c: f"{c}-{RELEASES[c].slurm}")
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


def stored_environment(shown: run.Shown, job: str) -> str:
    """Return the environment slurmctld stored with `job` (what slurmdbd keeps
    with AccountingStoreFlags=job_env), NUL-separated; kept until MinJobAge
    (300 s) after the job ended, and a missing file fails the test."""
    stored_env = f"/var/lib/slurm/slurmctld/hash.{int(job) % 10}/job.{job}/environment"
    data = cluster.get_file(shown.running.controller, stored_env)
    assert data, stored_env
    return data.decode(errors="replace")


def test_stored_job_environment_has_the_token_only_where_documented(shown: run.Shown) -> None:
    """With the TaskProlog and the cli_filter, only 22.05 still stores SLURM_JWT
    with the demo's job (its sbatch reads the token after the filter ran; the
    TaskProlog cleans tasks, not the stored job)."""
    rel: Release = shown.release
    stored = "\0SLURM_JWT=" in "\0" + stored_environment(shown, shown.transcript.job_id)
    assert stored == rel.stores_token, rel.codename


# -- every way sbatch and salloc pass the environment

EXPORT_SCRIPT = """#!/bin/sh
#SBATCH --output=export-%j.out{directive}
echo "batch SLURM_JWT=${{SLURM_JWT+set}} SLURMJWT_VAR=${{SLURMJWT_VAR-}}"
srun /bin/sh -c 'echo "step SLURM_JWT=${{SLURM_JWT+set}}"'
echo "srun exit $?"
"""
# How each form is submitted: what goes before sbatch, its options, the script.
EXPORT_FORMS = {
    "default": ("", "", "export.sh"),
    "#SBATCH --export=ALL": ("", "", "export-all.sh"),
    "SBATCH_EXPORT=ALL": ("SBATCH_EXPORT=ALL", "", "export.sh"),
    "--export=ALL,VAR=x": ("", "--export=ALL,SLURMJWT_VAR=x", "export.sh"),
    "--export=NONE": ("", "--export=NONE", "export.sh"),
    "--get-user-env": ("", "--get-user-env", "export.sh"),
    # The file holds the whole environment, the token included.
    "--export-file": ("env -0 > export.env &&", "--export-file=export.env", "export.sh"),
}
# The same with a slurm.conf that lacks CliFilterPlugins: the token reaches
# the job, and only the TaskProlog keeps it out of the tasks.
UNFILTERED = "--export=ALL without the cli_filter"
STORED = "/home/demo/stored.jwt"
NOFILTER = "/tmp/nofilter.conf"
JWT_PATTERN = re.compile(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


@pytest.fixture(scope="module")
def exported(shown: run.Shown) -> dict[str, steps.Step]:
    """Submit the export script once per form with `sbatch --wait` as demo over
    ssh; each Step's output has the session token's claims (one JSON line),
    `job=ID rc=STATUS`, sbatch's errors and the job's output."""
    setup = ssh(shown, "export-setup", f"""
        cat > export.sh <<'EOF'
{EXPORT_SCRIPT.format(directive="")}EOF
        cat > export-all.sh <<'EOF'
{EXPORT_SCRIPT.format(directive=chr(10) + "#SBATCH --export=ALL")}EOF
        grep -v '^CliFilterPlugins=' /etc/slurm/slurm.conf > nofilter.conf""")
    assert setup.status == 0, setup.output
    forms = dict(EXPORT_FORMS)
    forms[UNFILTERED] = ("SLURM_CONF=$HOME/nofilter.conf", "--export=ALL", "export.sh")

    def submit(form: str) -> steps.Step:
        before, options, script = forms[form]
        return ssh(shown, "export", f"""
            slurmjwt decode --json | tr -d '\\n'; echo
            err=$(mktemp); id=$({before} sbatch --parsable --wait {options} {script} 2>"$err")
            echo "job=$id rc=$?"; cat "$err"; rm -f "$err"; cat "export-$id.out" 2>/dev/null""")

    # All at once, each in its own ssh login: the jobs still run one after the
    # other (one CPU), but no sbatch --wait sleeps while the next could start.
    with ThreadPoolExecutor(max_workers=len(forms)) as pool:
        return dict(zip(forms, pool.map(submit, forms)))


def job_of(step: steps.Step) -> str:
    found = re.search(r"^job=(\d+)(;\S*)? rc=", step.output, re.M)
    assert found, step.output
    return found.group(1)


@pytest.mark.parametrize("form", [*EXPORT_FORMS, UNFILTERED])
def test_whole_environment_batch_jobs_run_srun_without_the_token(
        shown: run.Shown, exported: dict[str, steps.Step], form: str) -> None:
    step = exported[form]
    if form == "--export-file" and shown.release.export_file != "yes":
        # 23.11 has no --export-file; 22.05 clears its environment, the token
        # included, before it first authenticates, and then tries munge.
        refusal = {"no": "unrecognized option '--export-file=export.env'",
                   "munge": "Protocol authentication error"}[shown.release.export_file]
        assert refusal in step.output, step.output
        return
    lines = step.output.splitlines()
    assert re.search(r"^job=\d+ rc=0$", step.output, re.M), step.output
    assert "batch SLURM_JWT= SLURMJWT_VAR=" + ("x" if "VAR=x" in form else "") in lines, (
        step.output)
    assert "step SLURM_JWT=" in lines, step.output
    assert "srun exit 0" in lines, step.output


@pytest.mark.parametrize("form", [*EXPORT_FORMS, UNFILTERED])
def test_stored_token_only_where_documented_for_every_export_form(
        shown: run.Shown, exported: dict[str, steps.Step], form: str) -> None:
    """The cli_filter keeps the token out of what slurmctld stores (22.05
    excepted); a file given to --export-file is stored as it is, but by 26.05
    (which scrubs it there as on its default export). Nothing shows it in
    `scontrol show job -dd`."""
    rel: Release = shown.release
    if form == "--export-file" and rel.export_file != "yes":
        pytest.skip(f"sbatch {rel.slurm} submits no job with --export-file from this host")
    job = job_of(exported[form])
    stored = "\0SLURM_JWT=" in "\0" + stored_environment(shown, job)
    expected = {"--export-file": not rel.scrubs_jwt, UNFILTERED: True}.get(form,
                                                                          rel.stores_token)
    assert stored == expected, (rel.codename, form)
    code, shown_job = exec_out(shown.running.controller, ["scontrol", "show", "job", "-dd", job])
    assert code == 0 and f"JobId={job} " in shown_job, shown_job
    assert not JWT_PATTERN.search(shown_job), shown_job


def test_a_stored_token_is_the_submitters_and_slurmctld_takes_it_until_it_expires(
        shown: run.Shown, exported: dict[str, steps.Step]) -> None:
    """What a stored token is worth: the submitter's own token (the one the
    sbatch wrapper passed: the session's, or a newer one from the user's cache
    that a later login wrote; valid at most Lifespan after it was minted), and
    slurmctld accepts it."""
    step = exported[UNFILTERED]
    session = claims(step.output)
    env = stored_environment(shown, job_of(step)).split("\0")
    token = next(v.split("=", 1)[1] for v in env if v.startswith("SLURM_JWT="))
    body = token.split(".")[1]
    stored = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    assert stored["sun"] == cluster.DEMO_USER
    assert session["exp"] <= stored["exp"] <= time.time() + LIFESPAN
    assert stored["exp"] - stored["iat"] == LIFESPAN
    assert stored["exp"] > time.time()
    # Handed over in a file, never on a command line.
    cluster.put_file(shown.running.login, STORED, token.encode(), 0o600)
    code, out = exec_out(shown.running.login, ["chown", f"{cluster.DEMO_USER}:", STORED])
    assert code == 0, out
    used = ssh(shown, "stored-token", f"SLURM_JWT=$(cat {STORED}) squeue --noheader "
               f"--user demo >/dev/null && echo accepted; rm -f {STORED}")
    assert "accepted" in used.output.splitlines(), used.output


def salloc_on_controller(shown: run.Shown, conf: str) -> tuple[int, str]:
    """As demo on the controller (a host where Slurm's own authentication
    works, like a login node with Export=always: munge, or from 23.11
    auth/slurm through slurmd's sack socket), with SLURM_JWT in the
    environment: run salloc whose command reports the token and runs srun."""
    return exec_out(shown.running.controller, ["sh", "-c", f"""
        cd /home/demo && SLURM_JWT=$(cat salloc.jwt) && export SLURM_JWT
        {conf}
        salloc /bin/sh -c 'echo "shell SLURM_JWT=${{SLURM_JWT+set}}"
            srun /bin/sh -c "echo step SLURM_JWT=\\${{SLURM_JWT+set}}"; echo "srun exit $?"'
        """], user=cluster.DEMO_EXEC_USER)


def test_salloc_shell_and_its_srun_run_without_the_token(shown: run.Shown) -> None:
    made = ssh(shown, "salloc-token", "umask 077 && slurmjwt token > salloc.jwt && echo made")
    assert "made" in made.output.splitlines(), made.output
    code, out = exec_out(shown.running.controller, ["sh", "-c",
                         f"grep -v '^CliFilterPlugins=' {cluster.SLURM_CONF} > {NOFILTER} "
                         f"&& chmod 0644 {NOFILTER}"])
    assert code == 0, out
    code, out = salloc_on_controller(shown, "")
    lines = out.splitlines()
    assert code == 0, out
    assert "shell SLURM_JWT=" in lines and "step SLURM_JWT=" in lines, out
    assert "srun exit 0" in lines, out
    # The cli_filter is what does it: without it, the shell has the token and srun fails.
    code, out = salloc_on_controller(shown, f"SLURM_CONF={NOFILTER}; export SLURM_CONF")
    exec_out(shown.running.controller, ["rm", "-f", "/home/demo/salloc.jwt"])
    lines = out.splitlines()
    assert "shell SLURM_JWT=set" in lines, out
    assert "srun exit 0" not in lines, out


# -- without the Slurm side: what the README says goes wrong

BARE_PROLOG = "#!/bin/sh\nexit 0\n"


@pytest.fixture
def without_slurm_side(shown: run.Shown) -> Iterator[None]:
    """The controller's TaskProlog made to print nothing (slurmstepd runs it
    afresh for every task), restored afterwards; jobs are then submitted with
    nofilter.conf, which lacks CliFilterPlugins."""
    controller = shown.running.controller
    prolog = "/usr/lib/slurmjwt/taskprolog.sh"
    original = cluster.get_file(controller, prolog)
    cluster.put_file(controller, prolog, BARE_PROLOG.encode(), 0o755)
    try:
        yield
    finally:
        cluster.put_file(controller, prolog, original, 0o755)


@pytest.mark.parametrize("form", ["default", "--export=ALL"])
def test_without_the_slurm_side_a_job_with_the_token_cannot_run_srun(
        shown: run.Shown, exported: dict[str, steps.Step], without_slurm_side: None,
        form: str) -> None:
    """Why both halves are needed: with neither, sbatch's copy of SLURM_JWT
    reaches the batch script and srun fails there, on every release; 26.05
    leaves the token out of its default export only, and its srun then refuses
    JWT outright."""
    rel: Release = shown.release
    options = "--export=ALL" if form == "--export=ALL" else ""
    step = ssh(shown, "bare", f"""
        id=$(SLURM_CONF=$HOME/nofilter.conf sbatch --parsable --wait {options} export.sh)
        echo "job=$id rc=$?"; cat "export-$id.out" """)
    lines = step.output.splitlines()
    if form == "default" and rel.scrubs_jwt:
        assert "batch SLURM_JWT= SLURMJWT_VAR=" in lines and "srun exit 0" in lines, step.output
        return
    assert "batch SLURM_JWT=set SLURMJWT_VAR=" in lines, step.output
    assert "srun exit 0" not in lines, step.output
    if rel.srun_refuses_jwt:
        assert "srun: fatal: auth/jwt is not supported for use with srun." in lines, step.output
    else:
        assert re.search(r"Task launch for StepId=\d+\.0 failed", step.output), step.output


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


def test_slurmrestd_accounting_endpoint_takes_the_token_and_nothing_else(
        shown: run.Shown) -> None:
    """slurmdbd's endpoints (openapi/dbv0.0.38 on 22.05, openapi/slurmdbd
    later) answer with the session's token, and not without one."""
    url = (f"http://{cluster.CONTROLLER}:{cluster.RESTD_PORT}"
           f"{shown.release.restd_db_associations}")
    step = ssh(shown, "rest-db", f"slurmjwt token --header | curl -sS -H @- "
               f"-w '\\nHTTP %{{http_code}}\\n' {url}")
    assert steps.http_status(step) == 200, step.output
    assert re.search(r'"user": "demo"', step.output), step.output
    bare = ssh(shown, "rest-db-bare", f"curl -sS -o /dev/null -w 'HTTP %{{http_code}}\\n' {url}")
    assert steps.http_status(bare) == 401, bare.output


# -- accounting: slurmdbd from the login node (no munge), with the token

@pytest.fixture(scope="module")
def accounted(shown: run.Shown) -> steps.Step:
    """The four accounting commands as demo over ssh, each after `== NAME`
    with `rc=STATUS` after its output; sacct polled (0.2 s apart) until
    slurmdbd has the demo's job as COMPLETED; then sacct without the token."""
    job = shown.transcript.job_id
    body = accounting.script(cluster.DEMO_USER, job)
    return ssh(shown, "accounting", f"""
        i=0; until sacct --jobs={job} --noheader --parsable2 --format=State \\
            | grep -qx COMPLETED || [ $i -ge 150 ]; do i=$((i+1)); sleep 0.2; done
        {body}
        echo '== no token'; env -u SLURM_JWT /usr/bin/sacct --noheader; echo "rc=$?"
    """)


def accounting_part(step: steps.Step, name: str) -> str:
    found = re.search(rf"^== {name}\n(.*?)(?=^== |\Z)", step.output, re.M | re.S)
    assert found, step.output
    return found.group(1)


@pytest.mark.parametrize("name", list(accounting.COMMANDS))
def test_accounting_commands_work_with_the_token_from_a_host_without_munge(
        shown: run.Shown, accounted: steps.Step, name: str) -> None:
    part = accounting_part(accounted, name)
    assert part.rstrip().endswith("rc=0"), accounted.output
    expected = accounting.EXPECTED[name].format(user=cluster.DEMO_USER,
                                                job=shown.transcript.job_id)
    assert re.search(expected, part, re.M), accounted.output


def test_accounting_without_the_token_gets_nothing(accounted: steps.Step) -> None:
    part = accounting_part(accounted, "no token")
    assert not part.rstrip().endswith("rc=0"), accounted.output


def dbd_environment(shown: run.Shown, job: str) -> str:
    """Return the environment slurmdbd keeps with `job` (job_env), as the
    submitting user sees it with `sacct --env-vars` over ssh; polled until
    slurmdbd has it."""
    step = ssh(shown, "env-vars", f"""
        i=0; until out=$(sacct --jobs={job} --env-vars 2>&1) && [ -n "$out" ] \\
            && printf '%s\\n' "$out" | grep -q '^HOME=' || [ $i -ge 150 ]; do
            i=$((i+1)); sleep 0.2; done
        printf '%s\\n' "$out" """)
    assert "HOME=/home/demo" in step.output, step.output
    return step.output


@pytest.mark.parametrize("form", ["#SBATCH --export=ALL", UNFILTERED])
def test_slurmdbd_keeps_the_token_only_where_documented(
        shown: run.Shown, exported: dict[str, steps.Step], form: str) -> None:
    """What slurmdbd keeps of SLURM_JWT (AccountingStoreFlags=job_env) with a
    whole-environment job: what slurmctld stores, observed per release
    (Release.dbd_keeps_token); without the cli_filter, the token."""
    rel: Release = shown.release
    env = dbd_environment(shown, job_of(exported[form]))
    kept = re.search(r"^SLURM_JWT=", env, re.M) is not None
    assert kept == (True if form == UNFILTERED else rel.dbd_keeps_token), (rel.codename, form)


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
    assert ("task prolog: TaskProlog=/usr/lib/slurmjwt/taskprolog.sh unsets SLURM_JWT in every "
            "task") in out
    # What the filter achieves on this release, and nothing about an unproven one.
    side = slurmside.behaviour(rel.version)
    assert (f"cli filter: /etc/slurm/cli_filter.lua {side.filter_does} "
            f"(Slurm {rel.version[0]}.{rel.version[1]:02d})") in out


def test_doctor_passes_as_the_user(shown: run.Shown) -> None:
    step = ssh(shown, "doctor", "slurmjwt doctor")
    assert step.status == 0, step.output
    found = doctor_lines(step.output)
    assert set(found.values()) == {"OK"}, step.output
    assert "key" not in found


@pytest.mark.parametrize(("line", "check", "fix"), [
    ("CliFilterPlugins", "cli filter", "add CliFilterPlugins=cli_filter/lua"),
    ("TaskProlog", "task prolog", "set TaskProlog=/usr/lib/slurmjwt/taskprolog.sh"),
])
def test_doctor_asks_for_each_half_of_the_slurm_side_on_every_release(
        shown: run.Shown, line: str, check: str, fix: str) -> None:
    """The same doctor, with a slurm.conf lacking one of the two lines: a WARN
    with the fix, on every release."""
    code, out = exec_out(shown.running.login, ["sh", "-c",
                         f"grep -v '^{line}=' /etc/slurm/slurm.conf > /tmp/half.conf"
                         " && SLURM_CONF=/tmp/half.conf slurmjwt doctor --user demo"])
    found = doctor_lines(out)
    assert found.get(check) == "WARN", out
    assert fix in out
    assert code == 0, out  # a WARN, not a FAIL


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


# -- auth/slurm and sackd (Slurm 23.11+): the same cluster's second login node
# (tests/demo/sackd.py), with sackd and the project installed the same way.
# Here, on the cluster run.up brought up for the rest of this module: a test
# module of their own would bring up a whole second cluster per release.

SACKD_MATRIX = [c for c in MATRIX if RELEASES[c].auth_slurm]
on_sackd_releases = pytest.mark.parametrize("shown", SACKD_MATRIX, indirect=True,
                                            ids=lambda c: f"{c}-{RELEASES[c].slurm}")
# A step that prints a line every quarter second until the file
# sattach-stop.JOBID appears in /home/demo (shared by every node), for at most
# a minute.
SACKD_JOB = """#!/bin/sh
#SBATCH --output=/dev/null
srun sh -c 'i=0; while [ ! -e "sattach-stop.$SLURM_JOB_ID" ] && [ $i -lt 240 ]; do
    echo tick $i; i=$((i+1)); sleep 0.25; done'
"""
BCAST = "hello-sbcast"


@pytest.fixture(scope="module")
def sackd_node(shown: run.Shown) -> sackd.SackdNode:
    """The release's sackd login node, started once (removed with the cluster)."""
    said: list[str] = []
    return sackd.start(shown, said.append)


def on_sackd(shown: run.Shown, node: sackd.SackdNode, key: str, command: str) -> steps.Step:
    return steps.run_step(shown.keys, node.ssh_port, key, command)


@on_sackd_releases
def test_sackd_sessions_get_no_token_and_slurm_commands_use_sackd(
        shown: run.Shown, sackd_node: sackd.SackdNode) -> None:
    step = on_sackd(shown, sackd_node, "sackd-session", """
        if printenv SLURM_JWT >/dev/null; then echo token=set; else echo token=unset; fi
        env -u SLURM_JWT /usr/bin/squeue --noheader >/dev/null && echo own-squeue=ok
        squeue --noheader >/dev/null && echo squeue=ok""")
    lines = step.output.splitlines()
    assert "token=unset" in lines, step.output  # Export=auto saw sackd's socket
    assert "own-squeue=ok" in lines and "squeue=ok" in lines, step.output
    shell = steps.run_interactive(shown.keys, sackd_node.ssh_port, "sackd-interactive", (
        "printenv SLURM_JWT >/dev/null || echo \"token=un\"\"set\"\n"
        "squeue --noheader >/dev/null && echo \"squeue=o\"\"k\"\n"
        "exit\n"))
    assert {"token=unset", "squeue=ok"} <= set(shell.output.splitlines()), shell.output


@on_sackd_releases
def test_sackd_interactive_srun_and_a_batch_job_calling_srun(
        shown: run.Shown, sackd_node: sackd.SackdNode) -> None:
    step = on_sackd(shown, sackd_node, "sackd-srun", """
        srun hostname; echo "srun rc=$?"
        id=$(sbatch --parsable --wait hello.sbatch); echo "job=$id rc=$?"
        cat "hello-$id.out" """)
    lines = step.output.splitlines()
    assert "controller" in lines and "srun rc=0" in lines, step.output
    assert re.search(r"^job=\d+ rc=0$", step.output, re.M), step.output
    assert "step 0 ran on controller as demo; SLURM_JWT unset" in lines, step.output


@on_sackd_releases
def test_sackd_a_users_own_token_is_kept_from_srun_by_the_wrapper(
        shown: run.Shown, sackd_node: sackd.SackdNode) -> None:
    """A user who exports SLURM_JWT (from `slurmjwt token`) still runs srun:
    the wrapper takes the token away, as sackd works here; Slurm's own srun
    with it fails (slurmd takes no JWT)."""
    step = on_sackd(shown, sackd_node, "sackd-own-token", """
        SLURM_JWT=$(slurmjwt token); export SLURM_JWT
        srun hostname; echo "wrapped rc=$?"
        /usr/bin/srun hostname 2>&1; echo "own rc=$?" """)
    lines = step.output.splitlines()
    assert "controller" in lines and "wrapped rc=0" in lines, step.output
    assert "own rc=0" not in lines, step.output
    if shown.release.srun_refuses_jwt:
        assert "srun: fatal: auth/jwt is not supported for use with srun." in lines, step.output
    else:
        assert re.search(r"Task launch for StepId=\d+\.0 failed", step.output), step.output


@on_sackd_releases
def test_sackd_sattach_and_sbcast_with_and_without_a_users_own_token(
        shown: run.Shown, sackd_node: sackd.SackdNode) -> None:
    """While a job's step prints a line every quarter second: sbcast copies a
    file to the job's node and sattach follows the step, each once as the
    session is (no token) and once with the user's own SLURM_JWT exported;
    the step ends once both sattach have shown a line of it."""
    step = on_sackd(shown, sackd_node, "sackd-sattach", f"""
        cat > sattach.sh <<'EOF'
{SACKD_JOB}EOF
        echo {BCAST} > bcast.txt
        id=$(sbatch --parsable sattach.sh); echo "job=$id"
        n=0
        until squeue --noheader --steps --jobs="$id" --format=%i | grep -qx "$id.0"; do
            n=$((n + 1)); [ $n -lt 240 ] || break; sleep 0.25
        done
        sbcast --jobid="$id" bcast.txt /tmp/sbcast-plain-$id; echo "sbcast plain rc=$?"
        (SLURM_JWT=$(slurmjwt token); export SLURM_JWT
         sbcast --jobid="$id" bcast.txt /tmp/sbcast-token-$id; echo "sbcast token rc=$?")
        : > sattach-plain.out; : > sattach-token.out
        timeout 60 sattach "$id.0" > sattach-plain.out 2>&1 & plain=$!
        (SLURM_JWT=$(slurmjwt token); export SLURM_JWT
         exec timeout 60 sattach "$id.0" > sattach-token.out 2>&1) & token=$!
        n=0
        until {{ grep -q '^tick' sattach-plain.out || ! kill -0 $plain 2>/dev/null; }} &&
              {{ grep -q '^tick' sattach-token.out || ! kill -0 $token 2>/dev/null; }}; do
            n=$((n + 1)); [ $n -lt 240 ] || break; sleep 0.25
        done
        touch "sattach-stop.$id"
        wait $plain; echo "sattach plain rc=$?"
        wait $token; echo "sattach token rc=$?"
        rm -f "sattach-stop.$id"
        echo "plain ticks=$(grep -c '^tick' sattach-plain.out)"
        echo "token ticks=$(grep -c '^tick' sattach-token.out)"
        cat sattach-plain.out sattach-token.out | grep -v '^tick' || true""")
    lines = step.output.splitlines()
    assert "sbcast plain rc=0" in lines and "sbcast token rc=0" in lines, step.output
    for way in ("plain", "token"):
        found = re.search(rf"^{way} ticks=(\d+)$", step.output, re.M)
        assert found, step.output
        if shown.release.sattach_through_sackd:
            assert f"sattach {way} rc=0" in lines and int(found.group(1)) > 0, step.output
        else:
            assert f"sattach {way} rc=0" not in lines, step.output
    if not shown.release.sattach_through_sackd:
        assert ("sattach: fatal: auth/slurm: Could not load key file (/etc/slurm/slurm.key)"
                in lines), step.output
    job = re.search(r"^job=(\d+)$", step.output, re.M)
    assert job, step.output
    for way in ("plain", "token"):
        copied = cluster.get_file(shown.running.controller, f"/tmp/sbcast-{way}-{job.group(1)}")
        assert copied == f"{BCAST}\n".encode(), (way, copied)


@on_sackd_releases
def test_sackd_slurmjwt_token_still_serves_slurmrestd(
        shown: run.Shown, sackd_node: sackd.SackdNode) -> None:
    url = f"http://{cluster.CONTROLLER}:{cluster.RESTD_PORT}{shown.release.restd_jobs}"
    step = on_sackd(shown, sackd_node, "sackd-rest", "slurmjwt token --header | curl -sS -H @- "
                    f"-w '\\nHTTP %{{http_code}}\\n' {url}")
    assert steps.http_status(step) == 200, step.output
    assert re.search(r'"user_name": "demo"', step.output), step.output


@on_sackd_releases
def test_sackd_doctor_export_line_names_auth_slurm_and_the_sack_socket(
        shown: run.Shown, sackd_node: sackd.SackdNode) -> None:
    step = on_sackd(shown, sackd_node, "sackd-doctor", "slurmjwt doctor")
    assert step.status == 0, step.output
    assert doctor_lines(step.output).get("export") == "OK", step.output
    assert (f"export: AuthType=auth/slurm: sackd works here ({sackd.SACK_SOCKET}): SLURM_JWT "
            "is not exported, Slurm commands use sackd") in step.output, step.output


@on_sackd_releases
def test_sackd_stopped(shown: run.Shown, sackd_node: sackd.SackdNode) -> None:
    """With sackd stopped: under systemd (sackd.service's RuntimeDirectory=
    goes with it, the socket too) Export=auto sees no other way in, a new
    session gets a token and squeue works with it. Without systemd, sackd
    leaves its socket behind: Export=auto still counts it (sockets are looked
    at, never connected to), no token is exported and Slurm's commands fail
    until sackd is back: the caveat the README states."""
    sackd.stop_sackd(sackd_node)
    try:
        step = on_sackd(shown, sackd_node, "sackd-stopped", f"""
            if [ -S {sackd.SACK_SOCKET} ]; then echo socket=left; else echo socket=gone; fi
            if printenv SLURM_JWT >/dev/null; then echo token=set; else echo token=unset; fi
            squeue --noheader >/dev/null; echo "squeue rc=$?"
            slurmjwt doctor | grep 'export:'""")
    finally:
        sackd.start_sackd(sackd_node)
    lines = step.output.splitlines()
    if sackd_node.systemd:
        assert "socket=gone" in lines and "token=set" in lines, step.output
        assert "squeue rc=0" in lines, step.output
        assert "AuthType=auth/slurm but no sackd socket here" in step.output, step.output
    else:
        assert "socket=left" in lines and "token=unset" in lines, step.output
        assert "squeue rc=0" not in lines, step.output
        assert "failed to connect to any sack sockets" in step.output, step.output
        assert f"sackd works here ({sackd.SACK_SOCKET})" in step.output, step.output
    after = on_sackd(shown, sackd_node, "sackd-again", "squeue --noheader >/dev/null && "
                     "echo squeue=ok; printenv SLURM_JWT >/dev/null || echo token=unset")
    assert {"squeue=ok", "token=unset"} <= set(after.output.splitlines()), after.output


# 25.05+ clients look for /run/slurm-CLUSTER/sack.socket first (23.11 and
# 24.05 clients only at the fixed paths, where their sackd listens).
SACKD_CLUSTER_MATRIX = [c for c in SACKD_MATRIX if RELEASES[c].version >= (25, 5)]


@pytest.mark.parametrize("shown", SACKD_CLUSTER_MATRIX, indirect=True,
                         ids=lambda c: f"{c}-{RELEASES[c].slurm}")
def test_sackd_of_the_cluster_alone(shown: run.Shown, sackd_node: sackd.SackdNode) -> None:
    """sackd for the cluster alone (RuntimeDirectory=slurm-demo), no socket at
    /run/slurm: Export=auto finds it where Slurm's client does, and srun works."""
    sackd.stop_sackd(sackd_node)
    try:
        socket = sackd.start_cluster_sackd(sackd_node, "demo")
        step = on_sackd(shown, sackd_node, "sackd-cluster", f"""
            ls {sackd.SACK_SOCKET} 2>/dev/null || echo socket=none
            if printenv SLURM_JWT >/dev/null; then echo token=set; else echo token=unset; fi
            srun hostname; echo "srun rc=$?"
            slurmjwt doctor | grep 'export:'""")
        sackd.stop_cluster_sackd(sackd_node, "demo")
    finally:
        sackd.start_sackd(sackd_node)
    lines = step.output.splitlines()
    assert "socket=none" in lines and "token=unset" in lines, step.output
    assert "controller" in lines and "srun rc=0" in lines, step.output
    assert f"AuthType=auth/slurm: sackd works here ({socket})" in step.output, step.output
