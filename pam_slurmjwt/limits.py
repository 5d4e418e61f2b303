"""What one uid may cost the helper: connection slots, a request rate, and
log lines. Root (sshd's PAM module, one request per login) has a pool of its
own and is never rate-limited or throttled; every other uid is bounded, so a
flood costs the flooder, not the login burst or the audit log.

Pure bookkeeping with an injectable clock: the helper's event loop is the
only caller, so nothing here locks.
"""

from __future__ import annotations

import time
from typing import Callable

Clock = Callable[[], float]

LOG_WINDOW = 10.0  # seconds over which one uid's lines are counted
LOG_BURST = 5  # lines of one uid logged per window; the rest are counted
MAX_TRACKED = 4096  # uids remembered at once; beyond, old state is dropped


class Slots:
    """Connections held at once: at most `total` for non-root callers
    together and `per_uid` for each of them; root has its own `total`."""

    def __init__(self, total: int, per_uid: int) -> None:
        self.total = total
        self.per_uid = per_uid
        self.active = 0  # connections of non-root callers
        self.held: dict[int, int] = {}

    def admit(self, uid: int) -> bool:
        """Take a slot for uid; return False when none is free."""
        held = self.held.get(uid, 0)
        if uid == 0:
            if held >= self.total:
                return False
        elif self.active >= self.total or held >= self.per_uid:
            return False
        else:
            self.active += 1
        self.held[uid] = held + 1
        return True

    def release(self, uid: int) -> None:
        if uid != 0:
            self.active -= 1
        left = self.held[uid] - 1
        if left:
            self.held[uid] = left
        else:
            del self.held[uid]


class Rate:
    """Requests admitted per uid: a bucket of `per_minute` requests, refilled
    at that many per minute, so a burst (a user's hundred refreshes at once)
    passes and a sustained flood is held to a few per second."""

    def __init__(self, per_minute: int, clock: Clock = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.refill = per_minute / 60.0
        self.clock = clock
        self.buckets: dict[int, tuple[float, float]] = {}  # uid -> (level, when)

    def allow(self, uid: int) -> bool:
        """Spend one request of uid's bucket; return False when it is empty."""
        if uid == 0:
            return True
        now = self.clock()
        level, when = self.buckets.get(uid, (self.capacity, now))
        level = min(self.capacity, level + (now - when) * self.refill)
        if level < 1.0:
            self.buckets[uid] = (level, now)
            return False
        if len(self.buckets) >= MAX_TRACKED and uid not in self.buckets:
            # Forgetting buckets that time has filled again gives back nothing
            # it would not; the others are kept.
            self.buckets = {u: (lvl, t) for u, (lvl, t) in self.buckets.items()
                            if lvl + (now - t) * self.refill < self.capacity}
        self.buckets[uid] = (level - 1.0, now)
        return True

    def wait(self, uid: int) -> int:
        """Whole seconds until uid may make its next request."""
        level, _when = self.buckets.get(uid, (self.capacity, 0.0))
        return max(1, int((1.0 - level) / self.refill + 0.999))


class _Window:
    """One uid's lines in the current window."""

    __slots__ = ("held", "start", "written")

    def __init__(self, start: float) -> None:
        self.start = start
        self.written = 0
        self.held: dict[str, int] = {}  # kind -> lines not written


class Audit:
    """One uid's log lines: the first LOG_BURST of each LOG_WINDOW are
    written, the rest are counted by kind and summed up in one line when the
    window is over (at the uid's next line, or at flush()). `write` is the
    logger's method for the line's priority."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.windows: dict[int, _Window] = {}
        self.summaries: list[str] = []  # lines flush() must still hand out

    def line(self, uid: int, kind: str, write: Callable[[str], None], text: str) -> bool:
        """Write text, or count it; return whether it was written."""
        if uid == 0:
            write(text)
            return True
        now = self.clock()
        window = self.windows.get(uid)
        if window is None or now - window.start >= LOG_WINDOW:
            if window is not None:
                self._summarise(uid, window, now)
            elif len(self.windows) >= MAX_TRACKED:
                self._close_all(now)
            window = self.windows[uid] = _Window(now)
        if window.written < LOG_BURST:
            window.written += 1
            write(text)
            return True
        window.held[kind] = window.held.get(kind, 0) + 1
        return False

    def _summarise(self, uid: int, window: _Window, now: float) -> None:
        if window.held:
            detail = " ".join(f"{kind}={n}" for kind, n in sorted(window.held.items()))
            seconds = max(now - window.start, LOG_WINDOW)
            self.summaries.append(f"uid={uid}: {sum(window.held.values())} more requests "
                                  f"not logged in {seconds:.0f} s ({detail})")

    def _close_all(self, now: float) -> None:
        for uid, window in self.windows.items():
            self._summarise(uid, window, now)
        self.windows.clear()

    def flush(self) -> list[str]:
        """Close every window that is over; return the summary lines to
        write (the caller writes them: it knows the priority)."""
        now = self.clock()
        for uid, window in list(self.windows.items()):
            if now - window.start >= LOG_WINDOW:
                self._summarise(uid, window, now)
                del self.windows[uid]
        lines, self.summaries = self.summaries, []
        return lines
