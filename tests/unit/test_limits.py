"""What one uid may cost the helper: connection slots, request rate, log lines."""

from __future__ import annotations

import pytest

from pam_slurmjwt.limits import LOG_BURST, LOG_WINDOW, Audit, Rate, Slots


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_slots_bound_each_uid_and_all_users_and_root_has_its_own_pool() -> None:
    slots = Slots(total=3, per_uid=2)
    assert slots.admit(1001) and slots.admit(1001) and not slots.admit(1001)
    assert slots.admit(1002) and not slots.admit(1003)  # 3 users' slots in use
    assert all(slots.admit(0) for _ in range(3)) and not slots.admit(0)
    slots.release(1001)
    assert slots.admit(1003)
    for uid in (1001, 1002, 1003, 0, 0, 0):
        slots.release(uid)
    assert (slots.active, slots.held) == (0, {})


def test_rate_lets_a_burst_through_then_holds_a_flood_to_the_refill() -> None:
    clock = Clock()
    rate = Rate(per_minute=60, clock=clock)
    assert all(rate.allow(1001) for _ in range(60))
    assert not rate.allow(1001)
    assert rate.wait(1001) == 1
    assert rate.allow(1002)  # another uid has its own bucket
    clock.now += 1.0  # one request per second comes back
    assert rate.allow(1001) and not rate.allow(1001)
    clock.now += 3600
    assert sum(rate.allow(1001) for _ in range(100)) == 60  # never more than a burst


def test_rate_never_limits_root() -> None:
    rate = Rate(per_minute=1, clock=Clock())
    assert all(rate.allow(0) for _ in range(1000))


def test_rate_forgets_full_buckets_when_tracking_too_many_uids(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pam_slurmjwt.limits.MAX_TRACKED", 4)
    clock = Clock()
    rate = Rate(per_minute=2, clock=clock)
    for uid in range(1000, 1004):
        assert rate.allow(uid)
    clock.now += 3600  # all refilled: forgetting them costs nothing
    assert rate.allow(2000)
    assert len(rate.buckets) <= 4


def test_audit_writes_a_burst_per_window_then_sums_up_the_rest() -> None:
    clock = Clock()
    audit = Audit(clock=clock)
    written: list[str] = []
    for i in range(2000):
        audit.line(1001, "grant" if i % 2 else "timeout", written.append, f"line {i}")
    assert written == [f"line {i}" for i in range(LOG_BURST)]
    assert audit.flush() == []  # the window is not over yet
    clock.now += LOG_WINDOW
    summary = audit.flush()
    # Lines 0, 2, 4 (timeout) and 1, 3 (grant) were written.
    assert LOG_BURST == 5
    assert summary == ["uid=1001: 1995 more requests not logged in 10 s "
                       "(grant=998 timeout=997)"]
    # A new window writes again.
    audit.line(1001, "grant", written.append, "after")
    assert written[-1] == "after"


def test_audit_summary_comes_with_the_uids_next_line_too() -> None:
    clock = Clock()
    audit = Audit(clock=clock)
    written: list[str] = []
    for _ in range(LOG_BURST + 3):
        audit.line(7, "busy", written.append, "x")
    clock.now += LOG_WINDOW + 5
    audit.line(7, "busy", written.append, "y")
    assert audit.flush() == ["uid=7: 3 more requests not logged in 15 s (busy=3)"]


def test_audit_never_throttles_root() -> None:
    audit = Audit(clock=Clock())
    written: list[str] = []
    for i in range(100):
        audit.line(0, "grant", written.append, str(i))
    assert len(written) == 100 and audit.flush() == []


def test_audit_of_many_uids_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pam_slurmjwt.limits.MAX_TRACKED", 10)
    audit = Audit(clock=Clock())
    for uid in range(1000, 1100):
        for _ in range(LOG_BURST + 1):
            audit.line(uid, "grant", lambda _line: None, "x")
    assert len(audit.windows) <= 10
    assert all(line.endswith("(grant=1)") for line in audit.flush())
