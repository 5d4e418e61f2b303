"""Claims and unverified inspection."""

from __future__ import annotations

import base64
import json

import pytest

from pam_slurmjwt.signing import HS256Signer
from pam_slurmjwt.token import (
    fingerprint,
    inspect,
    is_plain_user_name,
    key_id_of,
    make_claims,
    slurm_claims,
)

KEY = b"0123456789abcdef0123456789abcdef\n"  # a trailing newline is part of the key
KID = "test-kid"


def _part(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_claims_are_integers_with_the_requested_lifespan() -> None:
    claims = make_claims("alice", 1800, clock=lambda: 1_700_000_000.9)
    assert claims.as_dict() == {"exp": 1_700_001_800, "iat": 1_700_000_000, "sun": "alice"}


def test_slurm_claims_reads_without_verifying() -> None:
    token = HS256Signer(KEY, KID).sign(make_claims("bob", 60, clock=lambda: 1000))
    claims = slurm_claims(token)
    assert (claims.sun, claims.iat, claims.exp) == ("bob", 1000, 1060)


@pytest.mark.parametrize(("payload", "problem"), [
    ({"sun": "a", "exp": 1.5}, "no integer exp"),
    ({"sun": "a", "exp": True}, "no integer exp"),
    ({"sun": "a"}, "no integer exp"),
    ({"exp": 5}, "no user name"),
])
def test_claims_slurmctld_would_refuse_are_rejected(payload: dict[str, object],
                                                      problem: str) -> None:
    token = f"{_part({'alg': 'HS256'})}.{_part(payload)}.sig"
    with pytest.raises(ValueError, match=problem):
        slurm_claims(token)


@pytest.mark.parametrize("garbage", ["", "a.b", "a.b.c.d", "###.###.###", "e30.bm90anNvbg.x",
                                     "x" * 5000])
def test_malformed_tokens_raise_value_error(garbage: str) -> None:
    with pytest.raises(ValueError):
        inspect(garbage)


def test_fingerprint_is_short_stable_and_not_the_token() -> None:
    token = HS256Signer(KEY, KID).sign(make_claims("alice", 60))
    fp = fingerprint(token)
    assert len(fp) == 16 and fp == fingerprint(token)
    assert fp not in token
    assert fingerprint("abc") == "e71fa2190541574b"  # FNV-1a 64, same as the C module
    assert fingerprint("x.y.abc") == fingerprint("abc")  # of the signature part only


@pytest.mark.parametrize(("name", "plain"), [
    ("alice", True), ("a.b-c_d", True), ("alice@example.org", True), ("svc$", True),
    ("0", False), ("1001", False), ("-rf", False), ("a b", False), ("", False),
    ("../x", False), ("x" * 65, False),
])
def test_plain_user_names(name: str, plain: bool) -> None:
    assert is_plain_user_name(name) is plain


def test_key_id_of_a_token_without_kid_is_dash_and_a_bad_kid_is_refused() -> None:
    claims = _part({"sun": "a", "exp": 1})
    assert key_id_of(f"{_part({'alg': 'HS256'})}.{claims}.sig") == "-"
    for bad in ("a.b", "", 5, "x" * 65):
        with pytest.raises(ValueError):
            key_id_of(f"{_part({'alg': 'HS256', 'kid': bad})}.{claims}.sig")
