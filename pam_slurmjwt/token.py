"""Slurm JWT claims and inspection.

Claims are exactly what slurmctld accepts: integer `iat` and `exp`, `sun` =
user name, and, for Slurm 26.05's use_jwt_client_ids, the user's ids.
Signing lives in signing.py. Inspection never verifies and imports no JWT
library, so slurmjwt-refresh stays lean.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

TOKEN_RE = re.compile(r"\A[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\Z")
MAX_TOKEN_BYTES = 7168  # protocol.MAX_TOKEN: fits the 8192-byte protocol line
KID_RE = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")
USER_RE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_.@-]{0,63}\$?\Z")

Clock = Callable[[], float]


@dataclass(frozen=True)
class Claims:
    """What a token says: user, issued-at and expiry (epoch seconds), and
    optionally the user's ids (`uid`, `gid`, `id`: see policy.identity_claims)."""

    sun: str
    iat: int
    exp: int
    identity: Optional[dict[str, Any]] = None

    def as_dict(self) -> dict[str, Any]:
        ids = self.identity or {}
        return {**ids, "exp": self.exp, "iat": self.iat, "sun": self.sun}


def make_claims(user: str, lifespan: int, clock: Clock = time.time,
                identity: Optional[dict[str, Any]] = None) -> Claims:
    """Given a user name and a lifespan in seconds (and the user's ids, if
    tokens carry them), return claims issued now."""
    now = int(clock())
    return Claims(sun=user, iat=now, exp=now + int(lifespan), identity=identity)


def b64url(data: bytes) -> str:
    """Return data in base64url without padding, as JWTs and JWKs carry it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def compact_json(obj: dict[str, Any]) -> bytes:
    """Return obj as JSON with sorted keys and no whitespace (RFC 7638's form)."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode("utf-8")


def _b64json(part: str) -> Any:
    padded = part + "=" * (-len(part) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


def inspect(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Given a token, return (header, claims) WITHOUT verifying the
    signature; raise ValueError when it is not a well-formed JWT."""
    if len(token) > MAX_TOKEN_BYTES * 4 or not TOKEN_RE.match(token):
        raise ValueError("not a JWT (expected three base64url parts)")
    header_b64, claims_b64, _sig = token.split(".")
    try:
        header, claims = _b64json(header_b64), _b64json(claims_b64)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValueError("not a JWT (header or claims are not base64url JSON)") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("not a JWT (header or claims are not JSON objects)")
    return header, claims


def key_id_of(token: str) -> str:
    """Given a token, return the `kid` its header names (unverified), or "-"
    when it names none (tokens from `scontrol token`); raise ValueError when
    it is not a JWT or the kid is not a plain id."""
    header, _claims = inspect(token)
    kid = header.get("kid", "-")
    if not isinstance(kid, str) or not KID_RE.match(kid):
        raise ValueError("token header has a malformed kid")
    return kid


def slurm_claims(token: str) -> Claims:
    """Given a token, return its Slurm claims (unverified); raise ValueError
    when it lacks an integer exp or a string sun, as slurmctld would."""
    _header, claims = inspect(token)
    sun, exp, iat = claims.get("sun"), claims.get("exp"), claims.get("iat", 0)
    if not isinstance(sun, str) or not sun:
        raise ValueError("token has no user name (sun claim)")
    # bool is an int in Python; slurmctld wants a JSON integer.
    if not isinstance(exp, int) or isinstance(exp, bool):
        raise ValueError("token has no integer exp claim (slurmctld treats it as expired)")
    if not isinstance(iat, int) or isinstance(iat, bool):
        iat = 0
    return Claims(sun=sun, iat=iat, exp=exp)


def fingerprint(token: str) -> str:
    """Return a short, non-reversible tag for logs: FNV-1a 64, in hex, of the
    token's signature part, the same function pam_slurmjwt.so uses, so the
    helper's and the module's lines can be matched."""
    value = 0xCBF29CE484222325
    for byte in token.rpartition(".")[2].encode("ascii", "replace"):
        value ^= byte
        value = (value * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{value:016x}"


def is_plain_user_name(name: str) -> bool:
    """True for a name slurmctld would resolve with getpwnam alone: not all
    digits (a numeric `sun` is taken as a uid: "0" is root)."""
    return bool(USER_RE.match(name)) and not name.isdigit()
