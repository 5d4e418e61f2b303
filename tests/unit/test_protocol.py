"""Wire protocol v2: request parsing, response formatting and parsing, the peer check."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time

import pytest

from pam_slurmjwt import protocol
from pam_slurmjwt.errors import HelperUnreachable, MintFailed, Refused


def test_request_round_trip() -> None:
    req = protocol.parse_request(protocol.format_request("alice", 600))
    assert (req.command, req.user, req.lifespan) == ("TOKEN", "alice", 600)
    req = protocol.parse_request(protocol.format_request())
    assert (req.user, req.lifespan) == ("-", None)
    assert protocol.parse_request(b"SLURMJWT/2 PING\n").command == "PING"


@pytest.mark.parametrize(("line", "code"), [
    (b"SLURMJWT/2 TOKEN alice 60", "bad-request"),           # no newline
    (b"SLURMJWT/1 TOKEN alice 60\n", "bad-version"),
    (b"HELLO\n", "bad-version"),
    (b"SLURMJWT/2 TOKEN alice\n", "bad-request"),
    (b"SLURMJWT/2 TOKEN alice 60 extra\n", "bad-request"),
    (b"SLURMJWT/2 TOKEN al ice 60\n", "bad-request"),
    (b"SLURMJWT/2 TOKEN alice -5\n", "bad-request"),
    (b"SLURMJWT/2 TOKEN alice 0\n", "bad-request"),
    (b"SLURMJWT/2 TOKEN alice 9999999999\n", "bad-request"),
    (b"SLURMJWT/2 TOKEN al\xffce 60\n", "bad-request"),
    (b"SLURMJWT/2 TOKEN a;rm 60\n", "bad-request"),
    (b"SLURMJWT/2 TOKEN " + b"a" * 300 + b" 60\n", "too-long"),
])
def test_malformed_requests_get_a_reason_code(line: bytes, code: str) -> None:
    with pytest.raises(protocol.ProtocolError) as err:
        protocol.parse_request(line)
    assert err.value.code == code


def test_ok_response_round_trip() -> None:
    line = protocol.format_ok(protocol.Grant(1700000000, 1699999400, True, "k-1_x",
                                             "aaa.bbb.ccc"))
    assert line == b"SLURMJWT/2 OK 1700000000 1699999400 1 k-1_x aaa.bbb.ccc\n"
    grant = protocol.parse_response(line)
    assert (grant.exp, grant.refresh, grant.export, grant.kid, grant.token) == (
        1700000000, 1699999400, True, "k-1_x", "aaa.bbb.ccc")


def test_an_answer_in_another_version_says_to_restart_the_helper() -> None:
    with pytest.raises(HelperUnreachable) as err:
        protocol.parse_response(b"SLURMJWT/1 OK 1700000000 1 aaa.bbb.ccc\n")
    assert str(err.value) == ("the helper speaks SLURMJWT/1, this client SLURMJWT/2; "
                              "restart slurmjwt-helper")


def test_policy_refusals_raise_refused_with_the_code() -> None:
    with pytest.raises(Refused) as err:
        protocol.parse_response(protocol.format_err("denied", "root is root"))
    assert err.value.code == "denied" and str(err.value) == "root is root"


def test_other_refusals_raise_mint_failed() -> None:
    with pytest.raises(MintFailed, match="the helper could not make a token: try later"):
        protocol.parse_response(protocol.format_err("busy", "try later"))


def test_err_sentence_is_flattened_to_one_bounded_line() -> None:
    line = protocol.format_err("internal", "two\nlines " + "x" * 5000)
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    assert len(line) <= protocol.MAX_RESPONSE


@pytest.mark.parametrize("line", [
    b"SLURMJWT/2 OK 1700000000 1699999400 1 k aaa.bbb.ccc",        # half line
    b"SLURMJWT/2 OK 17x 1699999400 1 k aaa.bbb.ccc\n",
    b"SLURMJWT/2 OK 1700000000 1800000000 1 k aaa.bbb.ccc\n",     # refresh after exp
    b"SLURMJWT/2 OK 1700000000 1699999400 2 k aaa.bbb.ccc\n",
    b"SLURMJWT/2 OK 1700000000 1699999400 1 k aa$a.bbb.ccc\n",
    b"SLURMJWT/2 OK 1700000000 1699999400 1 k.x aaa.bbb.ccc\n",   # kid with a dot
    b"SLURMJWT/2 OK 1700000000 1699999400 1 aaa.bbb.ccc\n",       # no kid
    b"SLURMJWT/2 OK 1700000000 1\n",
    b"SLURMJWT/9 OK 1700000000 1699999400 1 k a.b.c\n",
    b"garbage\n",
    b"\xff\xfe\n",
    b"SLURMJWT/2 OK 1 1 1 k " + b"a" * 9000 + b"\n",
])
def test_nonsense_answers_are_unreachable_errors(line: bytes) -> None:
    with pytest.raises(HelperUnreachable):
        protocol.parse_response(line)


def test_missing_socket_is_a_clear_error(tmp_path: object) -> None:
    with pytest.raises(HelperUnreachable) as err:
        protocol.request_token(f"{tmp_path}/none.sock", timeout=1)
    assert str(err.value) == (f"no helper socket at {tmp_path}/none.sock; is slurmjwt-helper "
                              f"running?")


def test_an_answer_from_a_socket_another_user_set_up_is_refused() -> None:
    # A helper socket someone else bound (a squatted HelperSocket path): the
    # kernel names its owner, and the client refuses whatever it says.
    if os.getuid() != 0:
        pytest.skip("needs root to listen as another uid")
    where = tempfile.mkdtemp(prefix="slurmjwt-squat-")
    os.chmod(where, 0o777)  # the squatter, uid 4242, binds here
    path = f"{where}/squat.sock"
    pid = os.fork()
    if pid == 0:  # the squatter: uid 4242 binds and answers with a grant
        try:
            os.setgid(4242)
            os.setuid(4242)
            with socket.socket(socket.AF_UNIX) as srv:
                os.umask(0)
                srv.bind(path)
                srv.listen(1)
                conn, _ = srv.accept()
                conn.recv(256)
                conn.sendall(b"SLURMJWT/2 OK 9999999999 9999999000 1 k a.b.c\n")
                conn.close()
        finally:
            os._exit(0)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(HelperUnreachable) as err:
            protocol.request_token(path, timeout=2)
        assert str(err.value) == (f"the helper socket {path} is served by uid 4242, not root "
                                  f"or the helper's user; refusing its answer (check "
                                  f"HelperSocket)")
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        shutil.rmtree(where)
