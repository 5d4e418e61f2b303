"""slurmjwt-tokenfile@.service and .timer: systemd-analyze verifies an
instance without a warning, the service runs `slurmjwt tokenfile --if-needed`
for the instance's account, and the timer gives a token several attempts
inside its refresh margin."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.test_units import UNITS, default, seconds, settings, values

SERVICE = UNITS / "slurmjwt-tokenfile@.service"
TIMER = UNITS / "slurmjwt-tokenfile@.timer"
EXEC = "/usr/bin/slurmjwt"

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="needs systemd-analyze (package systemd)")


def test_an_instance_passes_systemd_analyze_verify_without_a_warning(tmp_path: Path) -> None:
    stub = tmp_path / "slurmjwt"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    copies = []
    for unit in (SERVICE, TIMER):
        copy = tmp_path / unit.name.replace("@.", "@prometheus.")
        copy.write_text(unit.read_text().replace(f"ExecStart={EXEC} ", f"ExecStart={stub} "))
        copies.append(str(copy))
    out = subprocess.run(["systemd-analyze", "--man=no", "verify", *copies], capture_output=True,
                         text=True, cwd=tmp_path, timeout=60,
                         env={**os.environ, "SYSTEMD_LOG_COLOR": "0"})
    assert (out.returncode, out.stderr, out.stdout) == (0, "", "")


def test_service_keeps_the_instances_file_fresh_as_root_with_every_line_explained() -> None:
    assert values(SERVICE, "Service", "Type") == ["oneshot"]
    assert values(SERVICE, "Service", "ExecStart") == [
        f"{EXEC} tokenfile --if-needed --user %i --output /run/slurmjwt-tokens/%i"]
    assert values(SERVICE, "Service", "RuntimeDirectory") == ["slurmjwt-tokens"]
    # Root's directory, not writable by others (tokenfile refuses anything else),
    # kept between runs: the scraper reads the file after the service ended.
    assert values(SERVICE, "Service", "RuntimeDirectoryMode") == ["0755"]
    assert values(SERVICE, "Service", "RuntimeDirectoryPreserve") == ["yes"]
    assert values(SERVICE, "Service", "User") == []
    assert values(SERVICE, "Service", "CapabilityBoundingSet") == [
        "CAP_CHOWN CAP_DAC_READ_SEARCH"]
    assert values(SERVICE, "Service", "RestrictAddressFamilies") == ["AF_UNIX"]
    assert values(SERVICE, "Unit", "After") == ["slurmjwt-helper-root.socket"]
    # Every setting says why (the RuntimeDirectory lines share one comment).
    uncommented = [k for s, k, _v, c in settings(SERVICE) if s == "Service" and not c
                   and k not in ("Type", "RuntimeDirectoryMode", "RuntimeDirectoryPreserve")]
    assert uncommented == []


def test_timer_gives_a_token_many_attempts_inside_its_refresh_margin() -> None:
    margin = default("RefreshMargin")
    period = seconds(values(TIMER, "Timer", "OnUnitActiveSec")[0])
    accuracy = seconds(values(TIMER, "Timer", "AccuracySec")[0])
    assert 5 * (period + accuracy) < margin
    assert period >= 30  # not a busy loop: the service runs each time
    assert values(TIMER, "Timer", "OnActiveSec") == ["0"]  # a file at once when enabled
    assert values(TIMER, "Install", "WantedBy") == ["timers.target"]
