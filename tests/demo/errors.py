"""The demo's one exception, and the type of the progress printer every step takes."""

from __future__ import annotations

from collections.abc import Callable

# Each step reports progress through one of these (print, or a test's list.append).
Say = Callable[[str], None]


class DemoError(RuntimeError):
    """Raised when a demo step cannot be done; the message says what failed and why."""
