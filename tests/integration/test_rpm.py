"""The RPM for RHEL 9 as rpmbuild makes it here (make rpm): its dependencies
as EL9 names them, the scriptlets EL9's systemd macros make, the SELinux
module installed and removed, rpmlint without errors, and rpm -e never
leaving a PAM include pointing at nothing (the %postun body run against a
temporary /etc/pam.d, its stub run by the real Linux-PAM through pamtester).
authselect, semodule and systemd-update-helper do not exist on Debian: what
they would do on RHEL is not run here."""

from __future__ import annotations

import glob
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.skipif(shutil.which("rpmbuild") is None, reason="rpmbuild not installed")]
REPO = Path(__file__).resolve().parents[2]
SELINUX_PP = "/usr/share/selinux/packages/targeted/slurmjwt.pp"


@pytest.fixture(scope="module")
def rpm() -> str:
    out = subprocess.run(["make", "-s", "-C", str(REPO), "rpm"], capture_output=True,
                         text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    (path,) = glob.glob(str(REPO / "build" / "rpm" / "RPMS" / "*" / "pam-slurmjwt-*.rpm"))
    return path


def query(rpm: str, *args: str) -> str:
    return subprocess.run(["rpm", "-qp", *args, rpm], capture_output=True, text=True,
                          check=True).stdout


def test_the_rpm_has_setup_cfgs_version(rpm: str) -> None:
    version = next(line.split("=", 1)[1].strip() for line in
                   (REPO / "setup.cfg").read_text().splitlines() if line.startswith("version ="))
    assert query(rpm, "--qf", "%{VERSION}") == version


def test_dependencies_are_named_as_el9_names_them(rpm: str) -> None:
    requires = query(rpm, "--requires").splitlines()
    for name in ("python3dist(pyjwt) >= 2", "python3dist(cryptography)", "pam", "python3 >= 3.9"):
        assert name in requires, requires
    assert not any("python3-pyjwt" in r or "python3-jwt" in r for r in requires)
    # %systemd_requires: systemd before the scriptlets that call it.
    ordered = query(rpm, "--qf", "[%{REQUIREFLAGS:deptype} %{REQUIRENAME}\\n]").splitlines()
    for phase in ("post", "preun", "postun"):
        assert f"{phase} systemd" in ordered, ordered


def test_scriptlets_are_el9s_systemd_macros_and_the_selinux_module(rpm: str) -> None:
    scripts = query(rpm, "--scripts")
    helper = "/usr/lib/systemd/systemd-update-helper"
    assert (f"if [ $1 -eq 1 ] && [ -x \"{helper}\" ]; then \n    # Initial installation \n"
            f"    {helper} install-system-units slurmjwt-helper.socket "
            "slurmjwt-helper-root.socket slurmjwt-userdir.socket || : \nfi") in scripts
    assert (f"{helper} remove-system-units slurmjwt-helper.socket slurmjwt-helper-root.socket "
            "slurmjwt-helper.service slurmjwt-userdir.socket || :") in scripts
    assert f"{helper} mark-restart-system-units slurmjwt-helper.service || :" in scripts
    assert "systemd-tmpfiles --create slurmjwt.conf" in scripts
    assert f"semodule -n -s targeted -X 200 -i {SELINUX_PP} || :" in scripts
    assert "semodule -n -X 200 -r slurmjwt" in scripts
    assert SELINUX_PP in query(rpm, "-l").split()


def test_rpmlint_reports_no_errors(rpm: str) -> None:
    out = subprocess.run(["make", "-s", "-C", str(REPO), "rpmlint"], capture_output=True,
                         text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert " 0 errors," in out.stdout, out.stdout[-3000:]


def run_scriptlet(rpm: str, tag: str, pamd: Path, arg: int) -> None:
    """Run the RPM's scriptlet `tag` (PREIN, POSTUN) with $1 = arg, its
    /etc/pam.d being `pamd`."""
    body = query(rpm, "--qf", f"%{{{tag}}}").replace("/etc/pam.d", str(pamd))
    subprocess.run(["sh", "-c", body, "sh", str(arg)], check=True, timeout=30,
                   env={"PATH": "/nonexistent:/usr/bin:/bin"})  # no semodule, no systemd


@pytest.fixture
def pamd(tmp_path: Path) -> Path:
    (tmp_path / "pam.d").mkdir()
    (tmp_path / "pam.d" / "login").write_text("session include system-auth\n")
    return tmp_path / "pam.d"


@pytest.mark.parametrize("line", ["session    include      slurmjwt",
                                  "@include slurmjwt", "session substack slurmjwt"])
def test_erase_leaves_a_stub_while_a_stack_includes_slurmjwt(
        rpm: str, pamd: Path, line: str) -> None:
    (pamd / "sshd").write_text(f"session include password-auth\n{line}\n")
    run_scriptlet(rpm, "POSTUN", pamd, 0)
    stub = (pamd / "slurmjwt").read_text().splitlines()
    assert stub[0] == "# pam-slurmjwt-stub"
    assert [x for x in stub if not x.startswith("#")] == ["session optional pam_permit.so"]
    # Installed again: the stub gives way to the package's file (%pre).
    run_scriptlet(rpm, "PREIN", pamd, 1)
    assert not (pamd / "slurmjwt").exists()


def test_erase_leaves_nothing_when_no_stack_includes_slurmjwt(rpm: str, pamd: Path) -> None:
    (pamd / "sshd").write_text("session include password-auth\n# @include slurmjwt\n"
                               "session include slurmjwt-other\n")
    run_scriptlet(rpm, "POSTUN", pamd, 0)
    assert not (pamd / "slurmjwt").exists()


def test_upgrade_and_an_admins_file_are_left_alone(rpm: str, pamd: Path) -> None:
    (pamd / "sshd").write_text("@include slurmjwt\n")
    run_scriptlet(rpm, "POSTUN", pamd, 1)  # upgrade: the new package's file is there
    assert not (pamd / "slurmjwt").exists()
    (pamd / "slurmjwt").write_text("session optional pam_slurmjwt.so debug\n")
    run_scriptlet(rpm, "POSTUN", pamd, 0)  # an edited file rpm kept: never replaced
    run_scriptlet(rpm, "PREIN", pamd, 1)  # nor removed when installing
    assert (pamd / "slurmjwt").read_text() == "session optional pam_slurmjwt.so debug\n"


@pytest.fixture
def services() -> Iterator[list[Path]]:
    made: list[Path] = []
    yield made
    for path in made:
        path.unlink(missing_ok=True)


@pytest.mark.root
@pytest.mark.skipif(shutil.which("pamtester") is None, reason="needs pamtester")
def test_linux_pam_opens_sessions_through_the_stub_and_not_without_it(
        rpm: str, pamd: Path, services: list[Path]) -> None:
    (pamd / "sshd").write_text("session include slurmjwt\n")
    run_scriptlet(rpm, "POSTUN", pamd, 0)
    name = f"slurmjwt-test-{secrets.token_hex(4)}"
    stub, service = Path("/etc/pam.d") / f"{name}-stub", Path("/etc/pam.d") / name
    services.extend([stub, service])
    service.write_text(f"session include {stub.name}\n")

    def session() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["pamtester", name, "root", "open_session", "close_session"],
                              capture_output=True, text=True, timeout=30, check=False)

    missing = session()  # what rpm -e left before: an include of nothing
    assert missing.returncode != 0, missing.stdout + missing.stderr
    shutil.copyfile(pamd / "slurmjwt", stub)
    done = session()
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.root
@pytest.mark.skipif(shutil.which("pamtester") is None, reason="needs pamtester")
def test_the_authselect_line_opens_sessions_once_the_module_is_gone(services: list[Path]) -> None:
    # The README's line for an authselect profile, after rpm -e removed the
    # module (here: a module that never existed).
    name = f"slurmjwt-test-{secrets.token_hex(4)}"
    service = Path("/etc/pam.d") / name
    services.append(service)
    service.write_text("session required pam_permit.so\n"
                       f"-session optional {name}-gone.so timeout=2000\n")
    done = subprocess.run(["pamtester", name, "root", "open_session", "close_session"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
