"""The shipped systemd user units: systemd-analyze accepts them without a
single warning, and the settings that make them work and safe are there.

`systemd-analyze verify` insists that ExecStart's program exists, and
/usr/bin/slurmjwt-refresh is not installed here: the units are verified as
copies whose ExecStart path is rewritten to an executable stand-in in a
temporary directory (nothing else in the copy changes). User mode needs
XDG_RUNTIME_DIR even without a running manager: a temporary one is given.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pam_slurmjwt.config import OPTIONS

UNITS = Path(__file__).resolve().parents[2] / "packaging" / "systemd"
SERVICE = UNITS / "slurmjwt-refresh.service"
TIMER = UNITS / "slurmjwt-refresh.timer"
EXEC = "/usr/bin/slurmjwt-refresh"

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="needs systemd-analyze (package systemd)")

# Settings a per-user manager cannot apply without unprivileged user
# namespaces (or at all): the unit would fail with 226/NAMESPACE or be ignored.
NOT_FOR_USER_UNITS = (
    "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateNetwork",
    "PrivateUsers", "PrivateMounts", "PrivateIPC", "ProtectKernelTunables",
    "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock",
    "ProtectHostname", "ProtectProc", "ProcSubset", "ReadOnlyPaths", "ReadWritePaths",
    "InaccessiblePaths", "TemporaryFileSystem", "CapabilityBoundingSet",
    "AmbientCapabilities", "User", "Group", "DynamicUser", "IPAddressDeny", "RemoveIPC",
)
HARDENING = ("UMask", "NoNewPrivileges", "KeyringMode", "RestrictAddressFamilies",
             "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality",
             "MemoryDenyWriteExecute", "SystemCallArchitectures", "SystemCallFilter",
             "SystemCallErrorNumber")


def settings(path: Path) -> list[tuple[str, str, str, bool]]:
    """Given a unit file, return (section, key, value, commented) for each
    setting; commented: the line just above it is a comment."""
    out, section, prev_comment = [], "", False
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out.append((section, key, value, prev_comment))
        prev_comment = line.startswith("#")
    return out


def values(path: Path, section: str, key: str) -> list[str]:
    return [v for s, k, v, _c in settings(path) if (s, k) == (section, key)]


def seconds(span: str) -> float:
    """Parse a systemd time span with systemd's own parser."""
    out = subprocess.run(["systemd-analyze", "timespan", span], capture_output=True,
                         text=True, check=True).stdout
    micro = next(ln for ln in out.splitlines() if ln.strip().startswith("μs:"))
    return int(micro.split(":")[1]) / 1e6


def default(name: str) -> int:
    value = next(opt.default for opt in OPTIONS if opt.name == name)
    assert isinstance(value, int)
    return value


def verify(tmp: Path, *units: Path, user: bool, exec_path: str | None = None
           ) -> subprocess.CompletedProcess[str]:
    """Copy the units into tmp (ExecStart pointed at a stand-in), verify them."""
    stub = tmp / "bin" / "slurmjwt-refresh"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    copies = []
    for unit in units:
        text = unit.read_text()
        if exec_path is None:
            assert text.count(f"ExecStart={EXEC} ") <= 1
            text = text.replace(f"ExecStart={EXEC} ", f"ExecStart={stub} ")
        copy = tmp / unit.name
        copy.write_text(text)
        copies.append(str(copy))
    runtime = tmp / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_COLOR": "0"}
    argv = ["systemd-analyze", *(["--user"] if user else []), "verify", *copies]
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp,
                          timeout=60)


@pytest.mark.parametrize("user", [True, False], ids=["user-mode", "system-mode"])
def test_units_pass_systemd_analyze_verify_without_a_warning(tmp_path: Path, user: bool
                                                             ) -> None:
    out = verify(tmp_path, SERVICE, TIMER, user=user)
    assert (out.returncode, out.stderr, out.stdout) == (0, "", "")


def test_verify_reports_a_bad_setting_so_the_check_above_has_teeth(tmp_path: Path) -> None:
    broken = tmp_path / "src"
    broken.mkdir()
    bad = broken / SERVICE.name
    bad.write_text(SERVICE.read_text().replace("UMask=0077", "UMask=0077\nProtectSystm=strict")
                   .replace("RestrictRealtime=yes", "RestrictRealtime=maybe"))
    out = verify(tmp_path, bad, user=True)
    assert "Unknown key 'ProtectSystm'" in out.stderr
    assert "Failed to parse boolean value, ignoring: maybe" in out.stderr
    assert out.returncode == 0  # warnings only: hence the empty-stderr assertion


def test_verify_of_the_unmodified_unit_only_misses_the_installed_program(tmp_path: Path
                                                                         ) -> None:
    if Path(EXEC).exists():
        pytest.skip(f"{EXEC} is installed here")
    out = verify(tmp_path, SERVICE, user=True, exec_path=EXEC)
    assert out.returncode != 0
    assert out.stderr.splitlines() == [
        f"{SERVICE.name}: Command {EXEC} is not executable: No such file or directory"]


def test_service_is_a_quiet_oneshot_if_needed_refresh() -> None:
    assert values(SERVICE, "Service", "Type") == ["oneshot"]
    assert values(SERVICE, "Service", "ExecStart") == [f"{EXEC} --if-needed --quiet"]
    # Policy refusals (exit 5) are answers, not failures; root is skipped.
    assert values(SERVICE, "Service", "SuccessExitStatus") == ["5"]
    assert values(SERVICE, "Unit", "ConditionUser") == ["!root"]
    assert values(SERVICE, "Unit", "ConditionPathExists") == ["!/etc/slurm/slurmjwt.disable"]
    assert values(SERVICE, "Install", "WantedBy") == []  # started by the timer only


def test_service_hardening_is_for_user_units_and_every_line_says_why() -> None:
    found = {k for s, k, _v, _c in settings(SERVICE) if s == "Service"}
    assert set(HARDENING) <= found
    assert not found & set(NOT_FOR_USER_UNITS), found & set(NOT_FOR_USER_UNITS)
    uncommented = [k for s, k, _v, c in settings(SERVICE)
                   if s == "Service" and k in HARDENING and not c
                   and k != "SystemCallFilter"]  # the deny list follows its allow list
    assert uncommented == []
    assert values(SERVICE, "Service", "UMask") == ["0077"]
    assert values(SERVICE, "Service", "RestrictAddressFamilies") == ["AF_UNIX"]
    assert values(SERVICE, "Service", "NoNewPrivileges") == ["yes"]


def test_timer_runs_well_inside_the_refresh_margin() -> None:
    margin, lifespan = default("RefreshMargin"), default("Lifespan")
    assert (margin, lifespan) == (600, 1800)
    period = seconds(values(TIMER, "Timer", "OnUnitActiveSec")[0])
    jitter = seconds(values(TIMER, "Timer", "RandomizedDelaySec")[0])
    accuracy = seconds(values(TIMER, "Timer", "AccuracySec")[0])
    startup = seconds(values(TIMER, "Timer", "OnStartupSec")[0])
    # Two attempts fit in the margin even with the worst delay and accuracy.
    assert 2 * (period + jitter + accuracy) < margin
    assert 0 < jitter <= 60 and 0 < accuracy <= 30
    assert 0 < startup <= 120
    assert period >= 60  # and not a busy loop: the service runs each time
    assert values(TIMER, "Install", "WantedBy") == ["timers.target"]
    assert values(TIMER, "Timer", "Unit") in ([], ["slurmjwt-refresh.service"])
