"""Claims, HS256 signing and unverified inspection."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from pam_slurmjwt.token import (
    HS256Signer,
    fingerprint,
    hs256_key_id,
    inspect,
    is_plain_user_name,
    key_id_of,
    make_claims,
    slurm_claims,
)

KEY = b"0123456789abcdef0123456789abcdef\n"  # a trailing newline is part of the key


def _part(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_claims_are_integers_with_the_requested_lifespan() -> None:
    claims = make_claims("alice", 1800, clock=lambda: 1_700_000_000.9)
    assert claims.as_dict() == {"exp": 1_700_001_800, "iat": 1_700_000_000, "sun": "alice"}


def test_signed_token_has_slurm_header_and_verifies_with_the_whole_key() -> None:
    signer = HS256Signer(KEY)
    token = signer.sign(make_claims("alice", 60))
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "kid": signer.kid, "typ": "JWT"}
    assert key_id_of(token) == signer.kid
    claims = jwt.decode(token, KEY, algorithms=["HS256"])
    assert claims["sun"] == "alice" and isinstance(claims["exp"], int)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, KEY.rstrip(b"\n"), algorithms=["HS256"])


def test_slurm_claims_reads_without_verifying() -> None:
    token = HS256Signer(KEY).sign(make_claims("bob", 60, clock=lambda: 1000))
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
    token = HS256Signer(KEY).sign(make_claims("alice", 60))
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


def test_hs256_key_id_names_the_key_and_hides_it() -> None:
    kid = hs256_key_id(KEY)
    assert len(kid) == 22 and kid == hs256_key_id(KEY)
    assert set(kid) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
    # The whole key, byte for byte, as slurmctld reads it: a newline less is another key.
    assert hs256_key_id(KEY.rstrip(b"\n")) != kid
    assert base64.urlsafe_b64encode(KEY).decode()[:8] not in kid


def test_key_id_of_a_token_without_kid_is_dash_and_a_bad_kid_is_refused() -> None:
    claims = _part({"sun": "a", "exp": 1})
    assert key_id_of(f"{_part({'alg': 'HS256'})}.{claims}.sig") == "-"
    for bad in ("a.b", "", 5, "x" * 65):
        with pytest.raises(ValueError):
            key_id_of(f"{_part({'alg': 'HS256', 'kid': bad})}.{claims}.sig")
