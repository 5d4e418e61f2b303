"""slurmjwt doctor --json: one JSON document whose checks are the text
report's, verdict for verdict and in order, with the same exit status, and
whose fix is the advice that ends each message (the schema: docs/internals.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import pam_slurmjwt.doctor as doctor_module
from pam_slurmjwt import cli, nss
from tests.unit.test_doctor_text import _fixture

FIELDS = {"check", "name", "status", "message", "fix"}


def _run(capsys: pytest.CaptureFixture[str], conf: Path, *extra: str) -> tuple[int, str]:
    code = cli.main(["-c", str(conf), "doctor", *extra])
    return code, capsys.readouterr().out


def _same_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, good: bool) -> Path:
    monkeypatch.setattr(doctor_module, "_systemctl", lambda *_: "disabled")
    monkeypatch.setattr(doctor_module, "_slurm_version", lambda *_: (24, 11))
    monkeypatch.setattr(nss, "group_id", {"root": 0}.get)
    conf, _ = _fixture(tmp_path, jwt=good, good=good)
    return conf


def _timeless(message: str) -> str:
    """The message without what the clock moves between the two runs: how
    long a lookup took, how long a token still has (a second may pass)."""
    return re.sub(r"\d+(\.\d+)? s\b", "N s", message)


@pytest.mark.parametrize("good", [False, True])
def test_json_says_what_the_text_says_check_for_check_with_the_same_exit_status(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        good: bool) -> None:
    conf = _same_host(tmp_path, monkeypatch, good)
    text_code, text = _run(capsys, conf)
    json_code, out = _run(capsys, conf, "--json")
    report = json.loads(out)
    assert (json_code, report["ok"]) == (text_code, text_code == 0)
    assert report["format"] == 1 and set(report) == {"format", "ok", "checks"}
    lines = text.splitlines()
    assert len(report["checks"]) == len(lines) > 10
    for line, check in zip(lines, report["checks"]):
        assert set(check) == FIELDS
        assert check["status"] in ("ok", "warn", "fail", "skip")
        said = f"{check['status'].upper():<5}{check['name']}: {check['message']}"
        assert _timeless(said) == _timeless(line)
        if check["status"] in ("ok", "skip"):
            assert check["fix"] is None, check
        if check["fix"] is not None:
            assert check["message"].endswith(check["fix"]) and check["fix"] != check["message"]
    assert text_code == (1 if any(c["status"] == "fail" for c in report["checks"]) else 0)


def _by_id(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["check"]: check for check in report["checks"]}


def test_json_names_each_check_by_a_stable_id_and_gives_the_fix_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    conf = _same_host(tmp_path, monkeypatch, good=False)
    code, out = _run(capsys, conf, "--json")
    checks = _by_id(json.loads(out))
    assert code == 1
    assert checks["jwt_enabled"]["name"] == "auth/jwt"
    assert checks["jwt_enabled"]["fix"] == (
        "add AuthAltTypes=auth/jwt (and AuthAltParameters=jwt_key=PATH) on every host, then "
        "restart slurmctld")
    assert checks["token_creation"]["fix"] == (
        f"add disable_token_creation to AuthAltParameters in {tmp_path}/slurm.conf and restart "
        "slurmctld (the helper never uses scontrol token; with Backend=scontrol it runs as "
        "SlurmUser, who still may)")
    # A check that stopped on an error: the error's own advice.
    assert (checks["key"]["status"], checks["key"]["fix"]) == (
        "fail", "set JwtKey in slurmjwt.conf or AuthAltParameters=jwt_key= in slurm.conf")
    assert checks["group_policy"]["fix"] == f"fix the name in {tmp_path}/slurmjwt.conf"
    # A warning without separate advice (the config's own warnings) has none.
    assert (checks["config"]["status"], checks["config"]["fix"]) == ("warn", None)
    assert checks["export"] == {
        "check": "export", "name": "export", "status": "ok", "fix": None,
        "message": "no munge socket here: JWT is the only way in, so sessions get SLURM_JWT"}


@pytest.mark.parametrize("broken", ["slurmjwt.conf", "slurm.conf"])
def test_without_its_configuration_doctor_says_so_and_stops_in_both_forms(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], broken: str) -> None:
    """The checks after these need what they read: doctor once went on and
    died on an assertion, printing a traceback (and, with --json, nothing)."""
    conf = tmp_path / "slurmjwt.conf"
    conf.write_text(f"SlurmConf={tmp_path}/missing/slurm.conf\n" if broken == "slurm.conf"
                    else "Lifespan=5\n")
    code, out = _run(capsys, tmp_path / "slurmjwt.conf", "--json")
    text_code, text = _run(capsys, tmp_path / "slurmjwt.conf")
    report = json.loads(out)
    assert (code, text_code, report["ok"]) == (1, 1, False)
    last = report["checks"][-1]
    assert (last["check"], last["status"]) == (
        "config" if broken == "slurmjwt.conf" else "slurm_conf", "fail")
    assert text.splitlines() == [
        f"{c['status'].upper():<5}{c['name']}: {c['message']}" for c in report["checks"]]
