"""The manual cannot drift: every config key, command option and PAM module
argument appears in the generated man pages, and the sample config parses."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pam_slurmjwt import cli, helper
from pam_slurmjwt.config import GROUPS, OPTIONS, parse_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("man")
    subprocess.run([sys.executable, str(REPO / "packaging/man/generate.py"), str(out)],
                   check=True)
    return {p.name: p.read_text() for p in out.iterdir()}


def roff_text(page: str) -> str:
    return page.replace("\\-", "-").replace("\\e", "\\")


def test_every_option_is_in_exactly_one_group() -> None:
    grouped = [name for _title, names in GROUPS for name in names]
    assert sorted(grouped) == sorted(opt.name for opt in OPTIONS)


def test_every_config_key_is_documented_with_its_default(pages: dict[str, str]) -> None:
    text = roff_text(pages["slurmjwt.conf.5"])
    for opt in OPTIONS:
        assert f".BI {opt.name}= " in text, opt.name
    assert "Default: 1800." in text


def test_sample_config_lists_every_key_and_parses_uncommented(pages: dict[str, str]) -> None:
    sample = pages["slurmjwt.conf.sample"]
    keys = re.findall(r"^#([A-Za-z]+)=", sample, re.M)
    assert sorted(keys) == sorted(opt.name for opt in OPTIONS)
    parse_config(sample, "/sample")  # all commented: the defaults
    uncommented = "\n".join(line[1:] for line in sample.splitlines()
                            if re.match(r"^#[A-Za-z]+=\S", line))
    cfg = parse_config(uncommented, "/sample")  # every shown default is a valid value
    assert cfg.lifespan == 1800 and cfg.warnings == ()


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    found = [s for a in parser._actions for s in a.option_strings]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _option_strings(sub)
    return found


def test_every_command_option_is_documented(pages: dict[str, str]) -> None:
    slurmjwt = roff_text(pages["slurmjwt.1"])
    for option in _option_strings(cli.build_parser()):
        assert option in slurmjwt, option
    for command in ("mint", "decode", "status", "token", "exec", "ping", "doctor", "keygen",
                    "jwks"):
        assert f".SS {command}" in slurmjwt
    helper_page = roff_text(pages["slurmjwt-helper.8"])
    for option in _option_strings(helper.build_parser()):
        assert option in helper_page, option
    refresh = roff_text(pages["slurmjwt-refresh.1"])
    for option in ("--if-needed", "--lifespan", "--print-env", "--store-stdin", "--quiet",
                   "--config", "--help"):
        assert option in refresh, option


def test_every_pam_argument_in_the_c_option_table_is_documented(pages: dict[str, str]) -> None:
    source = (REPO / "c/pam/pam_slurmjwt.c").read_text()
    table = source.split("OPTIONS[] = {", 1)[1].split("};", 1)[0]
    names = re.findall(r'\{\s*"([a-z]+)"', table)
    assert names and set(names) >= {"socket", "timeout", "wrappers", "nocache", "debug"}
    page = roff_text(pages["pam_slurmjwt.8"])
    for name in names:
        assert re.search(rf"^\.B {name}\b", page, re.M), name


def test_pages_have_exit_status_files_and_examples(pages: dict[str, str]) -> None:
    for name in ("slurmjwt.1", "slurmjwt-refresh.1", "slurmjwt-helper.8"):
        for section in (".SH EXIT STATUS", ".SH EXAMPLES"):
            assert section in pages[name], (name, section)
    for name in ("slurmjwt.1", "slurmjwt.conf.5", "slurmjwt-helper.8", "pam_slurmjwt.8"):
        assert ".SH FILES" in pages[name], name


def test_pages_render_without_warnings(pages: dict[str, str], tmp_path: Path) -> None:
    for name, text in pages.items():
        if name.endswith(".sample"):
            continue
        (tmp_path / name).write_text(text)
        out = subprocess.run(["man", "--warnings", "-l", str(tmp_path / name)],
                             capture_output=True, text=True, env={"MANWIDTH": "80",
                                                                  "PATH": "/usr/bin:/bin"})
        assert out.returncode == 0 and out.stderr == "", (name, out.stderr)


def test_readme_reference_is_the_generated_one() -> None:
    generated = subprocess.run([sys.executable, str(REPO / "packaging/man/generate.py"),
                                "--readme"], capture_output=True, text=True, check=True).stdout
    readme = (REPO / "README.md").read_text()
    section = readme.split("<!-- reference:begin -->\n", 1)[1].split("<!-- reference:end -->")[0]
    assert section == generated, "README reference is stale: regenerate it with " \
        "python3 packaging/man/generate.py --readme"


def test_readme_rotation_steps_are_the_generated_ones() -> None:
    """The steps tests/integration/test_keys.py runs (packaging/man/generate.py's
    ROTATION) are the README's, line for line."""
    generated = subprocess.run([sys.executable, str(REPO / "packaging/man/generate.py"),
                                "--readme-rotation"], capture_output=True, text=True,
                               check=True).stdout
    readme = (REPO / "README.md").read_text()
    section = readme.split("<!-- rotation:begin -->\n", 1)[1].split("<!-- rotation:end -->")[0]
    assert section == generated, "README rotation steps are stale: regenerate them with " \
        "python3 packaging/man/generate.py --readme-rotation"
    assert "slurmjwt keygen /etc/slurm/slurmjwt-2027.pem" in section


def test_readme_login_node_steps_are_what_the_demo_node_runs() -> None:
    readme = (REPO / "README.md").read_text()
    block = readme.split("<!-- login-node:begin -->\n", 1)[1].split("<!-- login-node:end -->")[0]
    documented = [line.strip() for line in block.splitlines() if line.strip()]
    script = (REPO / "packaging/docker/login-node-setup.sh").read_text()
    run = [line for line in script.splitlines()
           if line and not line.startswith("#") and line != "set -eu"]
    assert documented == run
    # The package enables the sockets and adds the PAM hook (debhelper,
    # pam-auth-update): the admin's block does neither.
    assert not any("slurmjwt-helper" in line or "pam.d" in line for line in run)
    profile = (REPO / "packaging/debian/pam-configs/slurmjwt").read_text()
    assert "\toptional\tpam_slurmjwt.so timeout=2000\n" in profile
    assert f"`session {profile.splitlines()[-1].strip().replace(chr(9), ' ')}`" in readme
