"""The helper's metrics in the Prometheus text format (docs/internals.md,
"Metrics"), through prometheus_client, imported only when MetricsListen=
is set: the helper runs without the library, and costs nothing when off.

Every process of the helper counts in prometheus_client's multiprocess
mode: each writes its own files in a private directory (the key directory's
metrics/, SlurmUser's, 0700, wiped at start), and the one process that
serves scrapes sums them all. A worker replaced by a reload or a crash
leaves its files behind, so the sums never go backwards (rate() sees no
reset); a new process that reuses a pid carries on from that pid's file.
There are no multiprocess gauges: the key's gauges are worked out from the
State by the serving process, which every reload replaces.

Labels never carry a token or a user name: alg, caller (pam: uid 0, user:
anyone else), reason (the protocol's error codes), kind (token, ping,
invalid), kid.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from bisect import bisect_left
from typing import Any, Optional

from pam_slurmjwt.protocol import PEERCRED

# The login budget (pam_slurmjwt's timeout=, 2 s by default) and its
# neighbours are bucket bounds, so the p99 alerts on it are exact.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0)
DIR_NAME = "metrics"  # in the key directory: the counters' files
SOCKET_NAME = "metrics.sock"  # in the key directory: `slurmjwt metrics` (0600)
ENV = "PROMETHEUS_MULTIPROC_DIR"


FLUSH = 1.0  # seconds between a worker's flushes of its counts (On.flush)


class Off:
    """The recorder when metrics are off: every event costs one call."""

    enabled = False

    def flush(self) -> None:
        pass

    def granted(self, alg: str, uid: int) -> None:
        pass

    def refused(self, reason: str) -> None:
        pass

    def answered(self, kind: str, seconds: float) -> None:
        pass

    def rate_limited(self) -> None:
        pass

    def audit_dropped(self) -> None:
        pass

    def looked_up(self, seconds: float, failed: bool) -> None:
        pass

    def reload_failed(self) -> None:
        pass


class On(Off):
    """The recorder when metrics are on: prometheus_client's metrics.

    An event is counted in a plain dict, and flush() (every FLUSH seconds,
    from the worker's event loop, and when it stops) adds those counts to
    the multiprocess files: a file update takes microseconds under a lock,
    which per request would cost the helper more than the 3 % of
    throughput metrics may take. A scrape lags the events by at most
    FLUSH; a worker killed outright loses at most that much."""

    enabled = True

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        # No registry: these live in the multiprocess files, read by
        # MultiProcessCollector in the serving process.
        self.issued = Counter("slurmjwt_tokens_issued", "Tokens issued, by signing "
                              "algorithm and caller (pam: uid 0, user: anyone else).",
                              ["alg", "caller"], registry=None)
        self.refusals = Counter("slurmjwt_requests_refused", "Requests refused, by the "
                                "protocol's error code.", ["reason"], registry=None)
        self.duration = Histogram("slurmjwt_request_duration_seconds", "Time from accepting "
                                  "a connection to answering it, by request kind (token, "
                                  "ping, invalid).", ["kind"], buckets=BUCKETS, registry=None)
        self.limited = Counter("slurmjwt_rate_limited", "Requests refused busy by "
                               "MaxRequestsPerUser.", registry=None)
        self.dropped = Counter("slurmjwt_audit_lines_dropped", "Per-request log lines not "
                               "written by the per-uid throttle (each counted here "
                               "instead).", registry=None)
        self.reloads = Counter("slurmjwt_reload_failures", "Reloads refused (the previous "
                               "configuration and key stay).", registry=None)
        self.ns_errors = Counter("slurmjwt_name_service_errors", "Requests whose name "
                                 "service lookups failed or outlived LookupTimeout.",
                                 registry=None)
        self.ns_duration = Histogram("slurmjwt_name_service_duration_seconds", "Time a "
                                     "request's name service lookups took, queue included.",
                                     buckets=BUCKETS, registry=None)
        self.bounds = (*BUCKETS, float("inf"))
        # (metric, label values): events not yet in the files; for a
        # histogram, the count per bucket (as prometheus_client keeps them,
        # not cumulative) and then the sum.
        self.counts: dict[tuple[Any, tuple[str, ...]], int] = {}
        self.observed: dict[tuple[Any, tuple[str, ...]], list[float]] = {}

    def _count(self, key: tuple[Any, tuple[str, ...]]) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def _observe(self, key: tuple[Any, tuple[str, ...]], seconds: float) -> None:
        held = self.observed.get(key)
        if held is None:
            held = self.observed[key] = [0.0] * (len(self.bounds) + 1)
        held[bisect_left(self.bounds, seconds)] += 1
        held[-1] += seconds

    def granted(self, alg: str, uid: int) -> None:
        self._count((self.issued, (alg, "pam" if uid == 0 else "user")))

    def refused(self, reason: str) -> None:
        self._count((self.refusals, (reason,)))

    def answered(self, kind: str, seconds: float) -> None:
        self._observe((self.duration, (kind,)), seconds)

    def rate_limited(self) -> None:
        self._count((self.limited, ()))

    def audit_dropped(self) -> None:
        self._count((self.dropped, ()))

    def looked_up(self, seconds: float, failed: bool) -> None:
        self._observe((self.ns_duration, ()), seconds)
        if failed:
            self._count((self.ns_errors, ()))

    def reload_failed(self) -> None:
        self._count((self.reloads, ()))
        self.flush()  # the supervisor has no loop to flush it later

    def flush(self) -> None:
        """Add the events counted since the last flush to this process's
        files."""
        counts, self.counts = self.counts, {}
        observed, self.observed = self.observed, {}
        for (metric, labels), n in counts.items():
            (metric.labels(*labels) if labels else metric).inc(n)
        for (metric, labels), held in observed.items():
            child = metric.labels(*labels) if labels else metric
            # prometheus_client has no "observe n times": its own bucket
            # and sum values (tests/unit/test_metrics.py checks the result).
            for index, hits in enumerate(held[:-1]):
                if hits:
                    child._buckets[index].inc(hits)
            child._sum.inc(held[-1])


_recorder: Optional[On] = None


def recorder() -> Off:
    """The On recorder (made once per helper, before the workers fork),
    or raise ImportError when prometheus_client is missing."""
    global _recorder
    if _recorder is None:
        _recorder = On()
    return _recorder


def prepare(key_dir: str) -> str:
    """At start, as SlurmUser, before prometheus_client is imported: make
    the key directory's metrics/ (0700) empty and point the library at it.
    Return its path; raise OSError when it cannot be made."""
    path = os.path.join(key_dir, DIR_NAME)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if os.fstat(fd).st_uid != os.geteuid():
            raise OSError(1, f"owned by uid {os.fstat(fd).st_uid}")
        os.fchmod(fd, 0o700)
        for name in os.listdir(fd):
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=fd)
    finally:
        os.close(fd)
    os.environ[ENV] = path
    return path


def parse_address(text: str) -> tuple[int, str, int]:
    """Given MetricsListen's ADDRESS:PORT (`[::1]:9101` for IPv6), return
    (family, address, port); raise ValueError with the reason."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError("not ADDRESS:PORT")
    if not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError(f"port {port!r} is not 0 to 65535")
    family = socket.AF_INET
    if host.startswith("[") and host.endswith("]"):
        host, family = host[1:-1], socket.AF_INET6
    try:
        socket.inet_pton(family, host)
    except OSError:
        raise ValueError(f"{host!r} is not a numeric IPv4 address or a bracketed IPv6 "
                         f"one") from None
    return family, host, int(port)


def listen(text: str) -> socket.socket:
    """Bind MetricsListen's address; raise ValueError or OSError."""
    family, host, port = parse_address(text)
    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    return sock


def listen_local(key_dir: str) -> socket.socket:
    """Bind the key directory's metrics.sock (0600: SlurmUser's, and root's)
    for `slurmjwt metrics`; raise OSError."""
    path = os.path.join(key_dir, SOCKET_NAME)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    sock.listen(16)
    return sock


class KeyCollector:
    """slurmjwt_key_info and slurmjwt_key_loaded_timestamp_seconds, from the
    State the serving process was forked with."""

    def __init__(self, kid: str, alg: str, key_mtime: Optional[float]) -> None:
        self.kid, self.alg, self.key_mtime = kid, alg, key_mtime

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        info = GaugeMetricFamily("slurmjwt_key_info", "1 for the signing key in use.",
                                 labels=["kid", "alg"])
        info.add_metric([self.kid, self.alg], 1)
        yield info
        if self.key_mtime is not None:
            yield GaugeMetricFamily(
                "slurmjwt_key_loaded_timestamp_seconds", "Modification time of the key file "
                "in use (Backend=key), seconds since the epoch: the key's age, which a "
                "restart or reload does not reset.", value=self.key_mtime)


def registry(kid: str, alg: str, key_mtime: Optional[float]) -> Any:
    """The registry a scrape reads: every process's counters, the key's
    gauges, and the supervisor's process metrics."""
    from prometheus_client import CollectorRegistry, ProcessCollector
    from prometheus_client.multiprocess import MultiProcessCollector

    reg = CollectorRegistry()
    MultiProcessCollector(reg, path=os.environ[ENV])  # type: ignore[no-untyped-call]
    reg.register(KeyCollector(kid, alg, key_mtime))  # type: ignore[arg-type]
    supervisor = os.getppid()
    ProcessCollector(pid=lambda: supervisor, registry=reg)
    return reg


class Exporter:
    """The supervisor's side: the recorder every process of the current
    generation uses, and the sockets the metrics worker serves; configure()
    at start and at each reload that succeeds."""

    def __init__(self, key_dir: str, directory: Optional[str]) -> None:
        self.key_dir = key_dir
        self.directory = directory  # None: metrics/ could not be made
        self.recorder: Off = Off()
        self.address: Optional[str] = None
        self.tcp: Optional[socket.socket] = None
        self.local: Optional[socket.socket] = None

    def configure(self, address: Optional[str], where: str, log: Any) -> None:
        """Follow MetricsListen=`address`: keep the listener when it has not
        changed, else close it and bind the new one. Whatever goes wrong is
        one line in the log, and metrics stay off: tokens come first."""
        if address == self.address and (self.tcp is not None or address is None):
            return
        self.close()
        if address is None:
            return
        try:
            if self.directory is None:
                raise ValueError(f'cannot keep metrics in "{self.key_dir}/{DIR_NAME}"')
            rec = recorder()
            tcp = listen(address)
        except ImportError:
            log.error(f"{where}: MetricsListen={address}: prometheus_client is not installed "
                      f"(python3-prometheus-client); serving tokens without metrics")
            return
        except (ValueError, OSError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            log.error(f"{where}: MetricsListen={address}: {reason}; serving tokens without "
                      f"metrics")
            return
        try:
            self.local = listen_local(self.key_dir)
        except OSError as err:
            log.error(f'cannot serve `slurmjwt metrics` on "{self.key_dir}/{SOCKET_NAME}": '
                      f"{err.strerror}")
        self.address, self.tcp, self.recorder = address, tcp, rec
        log.notice(f"serving metrics on {address}")

    def close(self) -> None:
        for sock in (self.tcp, self.local):
            if sock is not None:
                sock.close()
        if self.local is not None:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.key_dir, SOCKET_NAME))
        self.address, self.tcp, self.local, self.recorder = None, None, None, Off()


def serve(reg: Any, tcp: Optional[socket.socket], local: Optional[socket.socket]) -> None:
    """In the metrics worker: answer HTTP GETs on MetricsListen and, for
    root and SlurmUser only (SO_PEERCRED), on metrics.sock, until killed."""
    from http.server import ThreadingHTTPServer

    from prometheus_client.exposition import MetricsHandler

    class Handler(MetricsHandler.factory(reg)):  # type: ignore[misc]
        timeout = 5  # a scraper that sends nothing holds a thread this long, at most

    handler = Handler
    allowed = {0, os.getuid()}

    class Local(ThreadingHTTPServer):
        address_family = socket.AF_UNIX
        daemon_threads = True

        def verify_request(self, request: Any, client_address: Any) -> bool:
            raw = request.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, PEERCRED.size)
            return PEERCRED.unpack(raw)[1] in allowed

    class Remote(ThreadingHTTPServer):
        daemon_threads = True

    servers: list[ThreadingHTTPServer] = []
    kinds: tuple[tuple[Optional[socket.socket], type[ThreadingHTTPServer]], ...] = (
        (tcp, Remote), (local, Local))
    for sock, cls in kinds:
        if sock is None:
            continue
        server = cls(sock.getsockname(), handler, bind_and_activate=False)
        server.socket.close()
        server.socket = sock
        servers.append(server)
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    if servers:
        servers[0].serve_forever()
