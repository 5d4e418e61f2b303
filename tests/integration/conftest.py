"""Fixtures for integration tests: real daemons, real users, the installed tree.

Each fixture module under fixtures/ owns one kind of daemon or resource; this
file only gathers them and marks every test here as needing root.
"""

from __future__ import annotations

import os

import pytest

from tests.integration.fixtures.cluster import *  # noqa: F403
from tests.integration.fixtures.helperd import *  # noqa: F403
from tests.integration.fixtures.install import *  # noqa: F403
from tests.integration.fixtures.users import *  # noqa: F403


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip integration tests with a reason when not root (CI runs as root)."""
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="integration tests need root (users, daemons, setuid)")
    for item in items:
        if "integration" in item.nodeid:
            item.add_marker(skip)
