"""The helper's metrics (issue 21): the names and labels move with the events
that should move them, a scrape never shows a token or a user name,
MetricsListen= that does not parse leaves metrics off (and tokens on), and
the journal gets structured fields; Debug= follows a reload."""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from pam_slurmjwt import helper as helper_module
from pam_slurmjwt import metrics, supervisor
from pam_slurmjwt.config import parse_config
from pam_slurmjwt.log import Log
from pam_slurmjwt.token import fingerprint
from tests.unit.fakenss import FakeDirectory
from tests.unit.inprocess import KID, Running, exchange

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client import values  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

CALLER = "pam" if os.getuid() == 0 else "user"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def recorder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> metrics.Off:
    """A fresh On recorder counting into tmp's metrics/, as a helper's
    processes do (prometheus_client may already be imported here, so its
    value class is chosen again)."""
    keys = tmp_path / "key"
    keys.mkdir()
    monkeypatch.setenv(metrics.ENV, "")
    monkeypatch.setenv(metrics.ENV, metrics.prepare(str(keys)))
    monkeypatch.setattr(values, "ValueClass", values.get_value_class())  # type: ignore[no-untyped-call]
    monkeypatch.setattr(metrics, "_recorder", None)
    return metrics.recorder()


def scrape() -> str:
    """What a scrape shows once the workers have flushed (this process is
    the worker: the loop is idle once the test has its answers)."""
    from prometheus_client import generate_latest

    metrics.recorder().flush()
    return generate_latest(metrics.registry(KID, "HS256", 1700000000.0)).decode()


def samples(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)  # type: ignore[no-untyped-call]
            for s in family.samples}


def value(got: Samples, name: str, **labels: str) -> float:
    return got.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def helper(tmp_path: Path, recorder: metrics.Off) -> Iterator[tuple[Running, FakeDirectory]]:
    directory = FakeDirectory()
    running = Running(tmp_path, "ReadTimeout=1\nMaxRequestsPerUser=2\n", directory)
    running.server.metrics = recorder
    try:
        yield running, directory
    finally:
        running.stop()


def test_each_event_moves_its_metric_and_no_scrape_shows_a_token_or_a_name(
        helper: tuple[Running, FakeDirectory]) -> None:
    running, directory = helper
    tokens = [exchange(running.path, b"SLURMJWT/2 TOKEN demo -\n") for _ in range(3)]
    assert all(t.startswith(b"SLURMJWT/2 OK ") for t in tokens), tokens
    refusals = {b"SLURMJWT/2 FOO\n": "bad-request", b"x" * 2000: "too-long",
                b"SLURMJWT/1 PING\n": "bad-version", b"SLURMJWT/2 TOKEN nosuch -\n": "no-user",
                b"SLURMJWT/2 TOKEN root -\n": "denied", b"": "timeout"}
    for data, reason in refusals.items():
        assert exchange(running.path, data).startswith(f"SLURMJWT/2 ERR {reason} ".encode())
    directory.down = True
    assert exchange(running.path, b"SLURMJWT/2 TOKEN demo -\n").startswith(
        b"SLURMJWT/2 ERR internal")
    directory.down = False
    assert exchange(running.path, b"SLURMJWT/2 PING\n").startswith(b"SLURMJWT/2 PONG")
    text = scrape()
    got = samples(text)
    assert value(got, "slurmjwt_tokens_issued_total", alg="HS256", caller=CALLER) == 3
    for reason in [*refusals.values(), "internal"]:
        assert value(got, "slurmjwt_requests_refused_total", reason=reason) == 1, reason
    assert value(got, "slurmjwt_name_service_errors_total") == 1
    assert value(got, "slurmjwt_name_service_duration_seconds_count") == 6  # 3 + nosuch, root, down
    assert value(got, "slurmjwt_request_duration_seconds_count", kind="token") == 6
    assert value(got, "slurmjwt_request_duration_seconds_count", kind="ping") == 1
    assert value(got, "slurmjwt_request_duration_seconds_count", kind="invalid") == 4
    assert value(got, "slurmjwt_request_duration_seconds_bucket", kind="token", le="2.0") == 6
    assert value(got, "slurmjwt_key_info", kid=KID, alg="HS256") == 1
    assert value(got, "slurmjwt_key_loaded_timestamp_seconds") == 1700000000.0
    assert "process_start_time_seconds" in text
    for answer in tokens:
        token = answer.split()[-1].decode()
        assert token not in text and fingerprint(token) not in text
    for name in ("demo", "nosuch", "root"):
        assert f'"{name}"' not in text and f"={name}" not in text


def test_a_rate_limit_counts_and_throttled_audit_lines_are_counted_as_dropped(
        helper: tuple[Running, FakeDirectory], monkeypatch: pytest.MonkeyPatch) -> None:
    running, _directory = helper
    eve = 2001  # MaxRequestsPerUser=2: the third is busy
    monkeypatch.setattr(helper_module, "peer_credentials", lambda _sock: (4242, eve, eve))
    answers = [exchange(running.path, b"SLURMJWT/2 TOKEN demo -\n") for _ in range(3)]
    assert [a.split()[2] for a in answers] == [b"denied", b"denied", b"busy"]
    for _ in range(4):  # eve's 5 lines a window are written; the rest dropped
        exchange(running.path, b"garbage\n")
    got = samples(scrape())
    assert value(got, "slurmjwt_rate_limited_total") == 5
    assert value(got, "slurmjwt_requests_refused_total", reason="busy") == 5
    assert value(got, "slurmjwt_audit_lines_dropped_total") == 2


def test_a_failed_reload_is_counted(helper: tuple[Running, FakeDirectory], tmp_path: Path,
                                    recorder: metrics.Off) -> None:
    running, _directory = helper
    bad = tmp_path / "bad.conf"
    bad.write_text("Lifespan=ten\n")
    exporter = metrics.Exporter(running.key_dir, str(tmp_path / "key" / "metrics"))
    exporter.recorder = recorder
    boss = supervisor.Supervisor(running.server.state, running.server.log, str(bad),
                                 lambda *_: None, running.key_dir, exporter=exporter)
    boss.reload()
    boss.reload()
    assert value(samples(scrape()), "slurmjwt_reload_failures_total") == 2


def test_start_empties_the_directory_of_a_previous_run(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    keys = tmp_path / "key"
    (keys / "metrics").mkdir(parents=True, mode=0o755)
    (keys / "metrics" / "counter_4242.db").write_bytes(b"stale")
    monkeypatch.setenv(metrics.ENV, "")
    path = metrics.prepare(str(keys))
    assert (path, os.environ[metrics.ENV]) == (str(keys / "metrics"), str(keys / "metrics"))
    assert os.listdir(path) == []
    assert (keys / "metrics").stat().st_mode & 0o777 == 0o700


def test_a_flush_gives_the_histogram_prometheus_client_would_have(
        recorder: metrics.Off) -> None:
    """On counts in dicts and flushes into prometheus_client's own bucket
    and sum values: the same series as observe() one by one."""
    times = [0.0005, 0.001, 0.3, 1.9, 2.0, 2.2, 7.0, 11.0, 11.0]
    for seconds in times:
        recorder.answered("token", seconds)
    got = samples(scrape())
    cumulative = {"0.001": 2, "0.25": 2, "0.5": 3, "1.0": 3, "2.0": 5, "2.5": 6, "5.0": 6,
                  "10.0": 7, "+Inf": 9}
    for le, n in cumulative.items():
        assert value(got, "slurmjwt_request_duration_seconds_bucket", kind="token", le=le) == n
    assert value(got, "slurmjwt_request_duration_seconds_count", kind="token") == 9
    assert value(got, "slurmjwt_request_duration_seconds_sum", kind="token") == pytest.approx(
        sum(times))


def test_counters_of_a_replaced_worker_stay_in_the_sum(recorder: metrics.Off) -> None:
    """A reload replaces the workers: what the old ones counted stays (their
    files), so the sum never goes backwards."""
    recorder.granted("RS256", 0)
    recorder.flush()  # the supervisor flushes what it counts at once: a fork inherits none
    pid = os.fork()
    if pid == 0:  # a worker of the next generation, counting in its own file
        metrics.recorder().granted("RS256", 0)
        metrics.recorder().flush()
        os._exit(0)
    os.waitpid(pid, 0)
    assert value(samples(scrape()), "slurmjwt_tokens_issued_total", alg="RS256",
                 caller="pam") == 2


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def error(self, line: str) -> None:
        self.lines.append(line)

    def notice(self, line: str) -> None:
        self.lines.append(line)


@pytest.mark.parametrize(("address", "reason"), [
    ("localhost:9101", "'localhost' is not a numeric IPv4 address or a bracketed IPv6 one"),
    ("127.0.0.1", "not ADDRESS:PORT"),
    ("127.0.0.1:http", "port 'http' is not 0 to 65535"),
    ("127.0.0.1:70000", "port '70000' is not 0 to 65535"),
    ("::1:9101", "'::1' is not a numeric IPv4 address or a bracketed IPv6 one"),
])
def test_metrics_listen_that_does_not_parse_is_one_line_and_metrics_stay_off(
        tmp_path: Path, recorder: metrics.Off, address: str, reason: str) -> None:
    exporter = metrics.Exporter(str(tmp_path / "key"), str(tmp_path / "key" / "metrics"))
    log = Lines()
    exporter.configure(address, "/etc/slurm/slurmjwt.conf", log)
    assert log.lines == [f"/etc/slurm/slurmjwt.conf: MetricsListen={address}: {reason}; "
                         f"serving tokens without metrics"]
    assert (exporter.tcp, exporter.recorder.enabled) == (None, False)


def test_metrics_listen_binds_follows_a_reload_and_goes_off(tmp_path: Path,
                                                           recorder: metrics.Off) -> None:
    keys = tmp_path / "key"
    exporter = metrics.Exporter(str(keys), str(keys / "metrics"))
    log = Lines()
    exporter.configure("127.0.0.1:0", "c", log)
    assert exporter.tcp is not None, log.lines
    assert exporter.tcp is not None and exporter.recorder is recorder
    assert exporter.tcp.getsockname()[0] == "127.0.0.1"
    assert (keys / metrics.SOCKET_NAME).stat().st_mode & 0o777 == 0o600
    assert log.lines == ["serving metrics on 127.0.0.1:0"]
    exporter.configure("[::1]:0", "c", log)
    assert exporter.tcp is not None and exporter.tcp.family == socket.AF_INET6
    exporter.configure(None, "c", log)
    assert exporter.tcp is None and not exporter.recorder.enabled
    assert not (keys / metrics.SOCKET_NAME).exists()


# ----------------------------------------------------------------- the journal

def parse_journal(datagram: bytes) -> dict[str, str]:
    """journald's native protocol: NAME=value lines, or NAME, newline,
    64-bit little-endian length, value, newline."""
    fields, rest = {}, datagram
    while rest:
        line, _nl, after = rest.partition(b"\n")
        if b"=" in line:
            name, _eq, val = line.partition(b"=")
            fields[name.decode()], rest = val.decode(), after
        else:
            size = int.from_bytes(after[:8], "little")
            fields[line.decode()] = after[8:8 + size].decode()
            assert after[8 + size:9 + size] == b"\n"
            rest = after[9 + size:]
    return fields


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "journal.sock"))
    sock.settimeout(5)
    yield sock
    sock.close()


def entries(journal: socket.socket) -> list[dict[str, str]]:
    out = []
    journal.setblocking(False)
    try:
        while True:
            out.append(parse_journal(journal.recv(65536)))
    except BlockingIOError:
        return out
    finally:
        journal.settimeout(5)


def test_a_grant_and_a_refusal_reach_the_journal_with_their_fields(
        tmp_path: Path, journal: socket.socket) -> None:
    running = Running(tmp_path, "", FakeDirectory())
    running.server.log = Log("slurmjwt-helper", use_syslog=True, use_stderr=False,
                             journal=str(tmp_path / "journal.sock"))
    try:
        token = exchange(running.path, b"SLURMJWT/2 TOKEN demo -\n").split()[-1].decode()
        assert exchange(running.path, b"SLURMJWT/2 TOKEN nosuch -\n").startswith(
            b"SLURMJWT/2 ERR no-user")
    finally:
        running.stop()
    grant, refusal = entries(journal)
    assert grant["MESSAGE"].startswith(f"grant (user demo) uid=2000 by uid={os.getuid()} ")
    assert {k: grant[k] for k in ("USER_ID", "TOKEN_FP", "KID", "RESULT", "PRIORITY",
                                  "SYSLOG_IDENTIFIER", "SYSLOG_FACILITY")} == {
        "USER_ID": "2000", "TOKEN_FP": fingerprint(token), "KID": KID, "RESULT": "grant",
        "PRIORITY": "6", "SYSLOG_IDENTIFIER": "slurmjwt-helper", "SYSLOG_FACILITY": "10"}
    assert grant["SYSLOG_PID"] == str(os.getpid())
    assert (refusal["RESULT"], refusal["USER_ID"], refusal["PRIORITY"]) == (
        "no-user", str(os.getuid()), "5")
    assert all(token not in value for entry in (grant, refusal) for value in entry.values())


def test_a_line_with_a_newline_uses_the_binary_form(tmp_path: Path,
                                                    journal: socket.socket) -> None:
    log = Log("t", use_syslog=True, use_stderr=False, journal=str(tmp_path / "journal.sock"))
    log.warning("one", {"NOTE": "two\nlines"})
    (entry,) = entries(journal)
    assert (entry["MESSAGE"], entry["NOTE"], entry["PRIORITY"]) == ("one", "two\nlines", "4")


def test_debug_follows_the_configuration_and_a_reload(
        tmp_path: Path, journal: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    running = Running(tmp_path, "", FakeDirectory())
    running.stop()
    log = Log("t", use_syslog=True, use_stderr=False, journal=str(tmp_path / "journal.sock"))
    state = running.server.state
    boss = supervisor.Supervisor(state, log, None, lambda *_: None, running.key_dir)
    monkeypatch.setattr(boss, "spawn", lambda role: None)  # no fork: the decision only
    log.set_debug(state.cfg.debug)
    log.debug("hidden")
    assert entries(journal) == []
    on = dataclasses.replace(state, cfg=parse_config("Debug=yes\n", "/c"))
    monkeypatch.setattr(supervisor, "load_state", lambda _path: on)
    boss.reload()
    log.debug("shown")
    assert [e["MESSAGE"] for e in entries(journal) if e["PRIORITY"] == "7"] == ["shown"]
    off = dataclasses.replace(state, cfg=parse_config("Debug=no\n", "/c"))
    monkeypatch.setattr(supervisor, "load_state", lambda _path: off)
    boss.reload()
    log.debug("hidden again")
    assert [e for e in entries(journal) if e["PRIORITY"] == "7"] == []
    forced = Log("t", use_syslog=False, use_stderr=False, debug=True)
    forced.set_debug(False)
    assert forced.debug_enabled  # --debug wins over Debug=no
