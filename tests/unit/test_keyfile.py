"""Signing key checks, munged style: each refusal names the file and the fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pam_slurmjwt.errors import KeyFileError
from pam_slurmjwt.keyfile import load_key

ME = "root"


def _key(tmp_path: Path, mode: int = 0o600, data: bytes = b"k" * 32 + b"\n") -> Path:
    tmp_path.chmod(0o755)
    path = tmp_path / "jwt_hs256.key"
    path.write_bytes(data)
    path.chmod(mode)
    return path


@pytest.fixture(autouse=True)
def _as_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("key ownership rules are tested as root (owner must be root/SlurmUser)")


def test_good_key_is_returned_byte_for_byte(tmp_path: Path) -> None:
    path = _key(tmp_path)
    assert load_key(str(path), "slurm") == b"k" * 32 + b"\n"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_group_or_other_bits_are_refused(tmp_path: Path, mode: int) -> None:
    path = _key(tmp_path, mode)
    with pytest.raises(KeyFileError) as err:
        load_key(str(path), "slurm")
    assert str(err.value) == (f'cannot use key "{path}": mode {mode:04o} allows group or '
                              f'others; run chmod 0600 "{path}"')


def test_symlink_is_refused(tmp_path: Path) -> None:
    real = _key(tmp_path)
    link = tmp_path / "link.key"
    link.symlink_to(real)
    with pytest.raises(KeyFileError, match=r"it is a symlink; point JwtKey at the real file"):
        load_key(str(link), "slurm")


def test_key_owned_by_a_user_is_refused(tmp_path: Path) -> None:
    path = _key(tmp_path)
    os.chown(path, 65534, 65534)
    with pytest.raises(KeyFileError) as err:
        load_key(str(path), "slurm")
    assert str(err.value) == (f'cannot use key "{path}": owned by nobody, not root or '
                              f'SlurmUser slurm; run chown slurm: "{path}"')


def test_missing_key_says_where_to_configure_it(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=r"no such file; set JwtKey in slurmjwt\.conf"):
        load_key(str(tmp_path / "none.key"), "slurm")


def test_world_writable_directory_is_refused(tmp_path: Path) -> None:
    path = _key(tmp_path)
    tmp_path.chmod(0o777)
    with pytest.raises(KeyFileError, match=r"its directory .* is writable by others"):
        load_key(str(path), "slurm")


def test_short_key_is_refused(tmp_path: Path) -> None:
    path = _key(tmp_path, data=b"short")
    with pytest.raises(KeyFileError, match="only 5 bytes"):
        load_key(str(path), "slurm")


def test_directory_as_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_key(str(tmp_path / "d"), "slurm")
