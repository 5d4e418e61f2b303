"""Wire protocol v1: request parsing, response formatting and parsing."""

from __future__ import annotations

import pytest

from pam_slurmjwt import protocol
from pam_slurmjwt.errors import HelperUnreachable, MintFailed, Refused


def test_request_round_trip() -> None:
    req = protocol.parse_request(protocol.format_request("alice", 600))
    assert (req.command, req.user, req.lifespan) == ("TOKEN", "alice", 600)
    req = protocol.parse_request(protocol.format_request())
    assert (req.user, req.lifespan) == ("-", None)
    assert protocol.parse_request(b"SLURMJWT/1 PING\n").command == "PING"


@pytest.mark.parametrize(("line", "code"), [
    (b"SLURMJWT/1 TOKEN alice 60", "bad-request"),           # no newline
    (b"SLURMJWT/2 TOKEN alice 60\n", "bad-version"),
    (b"HELLO\n", "bad-version"),
    (b"SLURMJWT/1 TOKEN alice\n", "bad-request"),
    (b"SLURMJWT/1 TOKEN alice 60 extra\n", "bad-request"),
    (b"SLURMJWT/1 TOKEN al ice 60\n", "bad-request"),
    (b"SLURMJWT/1 TOKEN alice -5\n", "bad-request"),
    (b"SLURMJWT/1 TOKEN alice 0\n", "bad-request"),
    (b"SLURMJWT/1 TOKEN alice 9999999999\n", "bad-request"),
    (b"SLURMJWT/1 TOKEN al\xffce 60\n", "bad-request"),
    (b"SLURMJWT/1 TOKEN a;rm 60\n", "bad-request"),
    (b"SLURMJWT/1 TOKEN " + b"a" * 300 + b" 60\n", "too-long"),
])
def test_malformed_requests_get_a_reason_code(line: bytes, code: str) -> None:
    with pytest.raises(protocol.ProtocolError) as err:
        protocol.parse_request(line)
    assert err.value.code == code


def test_ok_response_round_trip() -> None:
    line = protocol.format_ok(protocol.Grant(1700000000, True, "aaa.bbb.ccc"))
    assert line == b"SLURMJWT/1 OK 1700000000 1 aaa.bbb.ccc\n"
    grant = protocol.parse_response(line)
    assert (grant.exp, grant.export, grant.token) == (1700000000, True, "aaa.bbb.ccc")


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
    b"SLURMJWT/1 OK 1700000000 1 aaa.bbb.ccc",        # half line
    b"SLURMJWT/1 OK 17x 1 aaa.bbb.ccc\n",
    b"SLURMJWT/1 OK 1700000000 2 aaa.bbb.ccc\n",
    b"SLURMJWT/1 OK 1700000000 1 aa$a.bbb.ccc\n",
    b"SLURMJWT/1 OK 1700000000 1\n",
    b"SLURMJWT/9 OK 1700000000 1 a.b.c\n",
    b"garbage\n",
    b"\xff\xfe\n",
    b"SLURMJWT/1 OK 1 1 " + b"a" * 2000 + b"\n",
])
def test_nonsense_answers_are_unreachable_errors(line: bytes) -> None:
    with pytest.raises(HelperUnreachable):
        protocol.parse_response(line)


def test_missing_socket_is_a_clear_error(tmp_path: object) -> None:
    with pytest.raises(HelperUnreachable) as err:
        protocol.request_token(f"{tmp_path}/none.sock", timeout=1)
    assert str(err.value) == (f"no helper socket at {tmp_path}/none.sock; is slurmjwt-helper "
                              f"running?")
