"""Name service lookups that tell "no such entry" from "no answer": on this
host's own files, and with glibc's error returns simulated (the real sssd
cases, stopped and hung, are in tests/integration/test_login_node.py)."""

from __future__ import annotations

import errno
import os
import pwd
from typing import Any

import pytest

from pam_slurmjwt import nss
from pam_slurmjwt.errors import NameServiceError


def test_users_and_groups_from_the_files() -> None:
    root = nss.user_by_name("root")
    assert root is not None and (root.pw_uid, root.pw_dir) == (0, "/root")
    assert nss.user_by_uid(0) == root == pwd.getpwnam("root")
    assert nss.group_id("root") == 0
    assert 0 in nss.group_ids("root", 0)


def test_no_such_entry_is_none_not_an_error() -> None:
    assert nss.user_by_name("nosuchuser4711") is None
    assert nss.user_by_uid(4_000_000_123) is None
    assert nss.group_id("nosuchgroup4711") is None


def test_the_primary_gid_is_always_in_the_groups() -> None:
    assert nss.group_ids("nosuchuser4711", 4711) == {4711}


def _failing(code: int) -> Any:
    def lookup(*_args: object) -> int:
        return code
    return lookup


@pytest.mark.parametrize("code", [errno.ECONNREFUSED, errno.ENOENT, errno.EAGAIN])
def test_an_error_number_is_a_name_service_failure(code: int) -> None:
    with pytest.raises(NameServiceError) as err:
        nss._lookup("user 'demo'", _failing(code), b"demo", nss._Passwd, nss._passwd)
    assert str(err.value) == f"cannot look up user 'demo': {os.strerror(code)}"


def test_a_small_buffer_is_grown_not_reported() -> None:
    sizes = []

    def lookup(_key: object, _entry: object, _buf: object, size: int, _result: object) -> int:
        sizes.append(size)
        return errno.ERANGE if size < 4 * nss.FIRST_BUFFER else 0

    assert nss._lookup("x", lookup, b"x", nss._Passwd, nss._passwd) is None
    assert sizes == [nss.FIRST_BUFFER, 2 * nss.FIRST_BUFFER, 4 * nss.FIRST_BUFFER]


def test_group_members_from_the_files() -> None:
    assert nss.group_members(0) is not None
    assert nss.group_members(4_000_000_123) is None
