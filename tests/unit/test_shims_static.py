"""Static checks of the profile.d shims (the fast paths and their libraries):
shellcheck in every dialect the sh shim claims, and a parse of the csh shim
by tcsh itself."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

PROFILE_D = Path(__file__).resolve().parents[2] / "profile.d"
SH_FILES = [PROFILE_D / "slurmjwt.sh", PROFILE_D / "lib" / "slurmjwt.sh"]
CSH_FILES = [PROFILE_D / "slurmjwt.csh", PROFILE_D / "lib" / "slurmjwt.csh"]


@pytest.mark.parametrize("path", SH_FILES, ids=lambda p: p.parent.name)
@pytest.mark.parametrize("dialect", ["sh", "bash", "ksh"])
def test_sh_shim_passes_shellcheck(dialect: str, path: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (Debian package shellcheck)")
    r = subprocess.run(["shellcheck", "-x", "-s", dialect, str(path)],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout


@pytest.mark.parametrize("path", SH_FILES, ids=lambda p: p.parent.name)
@pytest.mark.parametrize("shell", ["dash", "bash", "zsh", "ksh"])
def test_sh_shim_parses_in_every_shell(shell: str, path: Path) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    r = subprocess.run([shell, "-n", str(path)],
                       capture_output=True, text=True, check=False)
    # ksh -n also lints: it prefers ((x = ...)) to POSIX x=$((...)).
    errors = [ln for ln in r.stderr.splitlines() if "is slower than" not in ln]
    assert (r.returncode, errors) == (0, [])


@pytest.mark.parametrize("path", CSH_FILES, ids=lambda p: p.parent.name)
def test_csh_shim_parses_in_tcsh(path: Path) -> None:
    if shutil.which("tcsh") is None:
        pytest.skip("tcsh is not installed")
    r = subprocess.run(["tcsh", "-f", "-n", str(path)],
                       capture_output=True, text=True, check=False)
    assert (r.returncode, r.stderr) == (0, "")
