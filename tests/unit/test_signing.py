"""Keys, signers, key ids and the JWKS: HS256 and RS256 tokens as slurmctld
verifies them, every refusal of a bad key naming the file and the fix."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import pwd
import subprocess
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pam_slurmjwt.config import parse_config
from pam_slurmjwt.errors import ConfigError, KeyFileError
from pam_slurmjwt.keyfile import write_new_key
from pam_slurmjwt.policy import identity_claims
from pam_slurmjwt.signing import (
    SCONTROL_PARALLEL,
    HS256Signer,
    KeyMinter,
    RS256Signer,
    ScontrolMinter,
    check_hs256_key,
    hs256_key_id,
    jwk,
    jwks_document,
    load_signer,
    make_minter,
    new_private_key,
    private_key,
    public_keys_of,
    public_of,
    read_jwks,
    thumbprint,
)
from pam_slurmjwt.slurmconf import SlurmConf
from pam_slurmjwt.token import key_id_of, make_claims

KEY = bytes(range(0x80, 0xA0)) + b"\n"  # a trailing newline is part of the key
KID = "test-kid"
NEW_KEY = "make a new one with: slurmjwt keygen NEWFILE"
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi"}


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
         encryption: serialization.KeySerializationEncryption | None = None) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption or serialization.NoEncryption())


def _public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def _small_key() -> rsa.RSAPrivateKey:
    """A key too small to use: what the refusals are about."""
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# ----------------------------------------------------------------- HS256

def test_signed_token_has_slurm_header_and_verifies_with_the_whole_key() -> None:
    signer = HS256Signer(KEY, KID)
    token = signer.sign(make_claims("alice", 60))
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "kid": signer.kid, "typ": "JWT"}
    assert key_id_of(token) == signer.kid
    claims = jwt.decode(token, KEY, algorithms=["HS256"])
    assert claims["sun"] == "alice" and isinstance(claims["exp"], int)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, KEY.rstrip(b"\n"), algorithms=["HS256"])


def _as_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("key ownership rules are tested as root (owner must be root/SlurmUser)")


def _key_file(path: Path, data: bytes) -> Path:
    path.parent.chmod(0o755)
    write_new_key(str(path), data, None)
    return path


def test_the_hs256_key_id_names_the_file_and_reveals_nothing_of_the_key(
        tmp_path: Path) -> None:
    _as_root()
    key = os.urandom(32)
    one = _key_file(tmp_path / "one.key", key)
    kid = load_signer(str(one), "slurm").kid
    assert len(kid) == 22 and set(kid) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
    # The same file, read again (a reload, a second worker, slurmjwt mint): the same id.
    assert load_signer(str(one), "slurm").kid == kid == hs256_key_id(one.stat())
    # Nothing anyone could compute from a guess of the key: not the HMAC it
    # once was, and the same key in another file has another id.
    guess_check = base64.urlsafe_b64encode(
        hmac.new(key, b"pam-slurmjwt key id", hashlib.sha256).digest()[:16]).rstrip(b"=")
    assert kid != guess_check.decode()
    assert load_signer(str(_key_file(tmp_path / "two.key", key)), "slurm").kid != kid
    # A new key put in its place (a rotation): a new id.
    new = _key_file(tmp_path / "new.key", os.urandom(32))
    os.replace(new, one)
    assert load_signer(str(one), "slurm").kid not in (kid, guess_check.decode())


DD = "make a new one with: dd if=/dev/random of={path} bs=32 count=1 (and give slurmctld " \
     "the same file)"


@pytest.mark.parametrize(("data", "problem"), [
    (os.urandom(16), "only 16 bytes, fewer than 32"),
    (os.urandom(31), "only 31 bytes, fewer than 32"),
    (b"\0" * 32, "one byte repeated"),
    (b"\xff" * 64, "one byte repeated"),
    (b"correct horse battery staple 2026\n",
     "printable text (a password or passphrase), which can be guessed"),
    (base64.b64encode(os.urandom(32)) + b"\n",
     "printable text (a password or passphrase), which can be guessed"),
    # What `printf password | dd bs=32 conv=sync` makes: NUL padding hides no text.
    (b"password" + b"\0" * 24,
     "printable text (a password or passphrase), which can be guessed"),
    # Notepad's "Unicode": UTF-16, with or without its byte-order mark.
    ("correct horse battery".encode("utf-16-le"),
     "printable text (a password or passphrase), which can be guessed"),
    ("correct horse battery".encode("utf-16"),
     "printable text (a password or passphrase), which can be guessed"),
    ("correct horse battery".encode("utf-16-be"),
     "printable text (a password or passphrase), which can be guessed"),
    (b"\xef\xbb\xbfcorrect horse battery staple 2026\n",
     "printable text (a password or passphrase), which can be guessed"),
    (b"\0" * 31 + b"\1",
     "only 2 distinct byte values, fewer than 16, which can be guessed"),
    (bytes(range(15)) * 3,
     "only 15 distinct byte values, fewer than 16, which can be guessed"),
], ids=["16-bytes", "31-bytes", "zeros", "ff", "passphrase", "base64", "dd-conv-sync",
        "utf-16-le", "utf-16-bom", "utf-16-be", "utf-8-bom", "one-bit", "15-values"])
def test_weak_hs256_keys_are_refused_with_how_to_make_a_good_one(
        tmp_path: Path, data: bytes, problem: str) -> None:
    _as_root()
    path = _key_file(tmp_path / "jwt_hs256.key", data)
    with pytest.raises(KeyFileError) as err:
        load_signer(str(path), "slurm")
    assert str(err.value) == f'cannot use key "{path}": {problem}; {DD.format(path=path)}'


def test_random_hs256_keys_as_slurm_documents_them_are_taken(tmp_path: Path) -> None:
    _as_root()
    for size in (32, 64, 1024):  # dd if=/dev/random bs=32 count=1, and longer
        path = _key_file(tmp_path / f"k{size}", os.urandom(size))
        assert load_signer(str(path), "slurm").alg == "HS256"
    # The fewest distinct values taken, and KEY (which the tests sign with).
    check_hs256_key("/k", bytes(range(0x80, 0x90)) * 2)
    check_hs256_key("/k", KEY)


@pytest.mark.parametrize(("data", "iconv"), [
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
    (b"", "UTF-16LE"),
    (b"", "UTF-16BE"),
    ("\n".encode("utf-16-le"), "UTF-16LE"),
    ("\n".encode("utf-16-be"), "UTF-16BE"),
], ids=["le-bom", "be-bom", "le", "be", "le-newline-first", "be-newline-first"])
def test_a_pem_key_saved_as_utf_16_is_refused_not_taken_for_an_hs256_key(
        tmp_path: Path, rsa_key: rsa.RSAPrivateKey, data: bytes, iconv: str) -> None:
    # Once it had no -----BEGIN bytes, so the helper signed HS256 with it.
    _as_root()
    order = "utf-16-be" if iconv == "UTF-16BE" or data == b"\xfe\xff" else "utf-16-le"
    path = _key_file(tmp_path / "login1.pem", data + _pem(rsa_key).decode().encode(order))
    problem = (f"it is a PEM key saved as UTF-16 text (Notepad's \"Unicode\"); save it again "
               f'as ASCII/UTF-8, e.g. iconv -f {iconv} -t UTF-8 "{path}" > NEWFILE')
    with pytest.raises(KeyFileError) as err:
        load_signer(str(path), "slurm")
    assert str(err.value) == f'cannot use key "{path}": {problem}'
    with pytest.raises(KeyFileError) as err:
        public_keys_of(str(path))
    assert str(err.value) == f'cannot use "{path}": {problem}'
    # The fix it names gives back the key.
    fixed = subprocess.run(["iconv", "-f", iconv, "-t", "UTF-8", str(path)],
                           capture_output=True, check=True).stdout
    assert load_signer(str(_key_file(tmp_path / "fixed.pem", fixed)), "slurm").kid == \
        thumbprint(rsa_key.public_key())


@pytest.mark.parametrize(("prefix", "problem"), [
    (b"\xef\xbb\xbf", "it starts with a byte-order mark before its -----BEGIN line; save it "
                      "without one, e.g. sed -i '1s/^\\xEF\\xBB\\xBF//' \"{path}\""),
    (b"login1 signing key, made 2026-12-04\n",
     "it has other text before its -----BEGIN line; delete everything before that line"),
], ids=["bom", "text"])
def test_a_pem_key_after_a_byte_order_mark_or_text_names_the_file_and_the_fix(
        tmp_path: Path, rsa_key: rsa.RSAPrivateKey, prefix: bytes, problem: str) -> None:
    # Both once failed as "signer self-check failed: InvalidKeyError".
    _as_root()
    path = _key_file(tmp_path / "login1.pem", prefix + _pem(rsa_key))
    with pytest.raises(KeyFileError) as err:
        load_signer(str(path), "slurm")
    assert str(err.value) == f'cannot use key "{path}": {problem.format(path=path)}'
    # slurmjwt jwks reads its inputs the same way.
    with pytest.raises(KeyFileError) as err:
        public_keys_of(str(path))
    assert str(err.value) == f'cannot use "{path}": {problem.format(path=path)}'


# ----------------------------------------------------------------- RS256 and key ids

def test_thumbprint_is_rfc_7638s_own_example() -> None:
    # RFC 7638, section 3.1: this key's thumbprint is NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs.
    n = ("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tS"
         "oc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65Y"
         "GjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyr"
         "dkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJz"
         "KnqDKgw")
    public = public_of({"n": n, "e": "AQAB"})
    assert thumbprint(public) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    assert jwk(public)["n"] == n and jwk(public)["e"] == "AQAB"


def test_rs256_token_names_its_key_and_verifies_with_the_jwks_entry(
        rsa_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey) -> None:
    signer = RS256Signer(rsa_key)
    assert signer.kid == thumbprint(rsa_key.public_key()) and len(signer.kid) == 43
    token = signer.sign(make_claims("alice", 60))
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "kid": signer.kid, "typ": "JWT"}
    assert key_id_of(token) == signer.kid
    entry = jwks_document_of(rsa_key)["keys"][0]
    assert entry["kid"] == signer.kid
    claims = jwt.decode(token, public_of(entry), algorithms=["RS256"])
    assert claims["sun"] == "alice" and claims["exp"] - claims["iat"] == 60
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, other_key.public_key(), algorithms=["RS256"])


def jwks_document_of(key: rsa.RSAPrivateKey) -> dict[str, list[dict[str, str]]]:
    return {"keys": [jwk(key.public_key())]}


def test_identity_claims_carry_the_users_ids(rsa_key: rsa.RSAPrivateKey) -> None:
    me = pwd.getpwuid(os.getuid())
    token, exp = KeyMinter(RS256Signer(rsa_key), identity=True).sign(me, 120)
    claims = jwt.decode(token, rsa_key.public_key(), algorithms=["RS256"])
    assert (claims["sun"], claims["uid"], claims["gid"], claims["exp"]) == (
        me.pw_name, me.pw_uid, me.pw_gid, exp)
    assert claims["id"] == {"name": me.pw_name, "gecos": me.pw_gecos or me.pw_name,
                            "dir": me.pw_dir,
                            "shell": me.pw_shell,
                            "gids": [me.pw_gid, *sorted(set(os.getgrouplist(
                                me.pw_name, me.pw_gid)) - {me.pw_gid})]}
    plain, _exp = KeyMinter(HS256Signer(KEY, KID)).sign(me, 120)
    assert set(jwt.decode(plain, KEY, algorithms=["HS256"])) == {"sun", "iat", "exp"}


def test_identity_claims_never_carry_an_empty_field() -> None:
    # Slurm 26.05 refuses an identity with an empty gecos, dir or shell.
    bare = pwd.struct_passwd(("ghost", "x", 3000, 3000, "", "", ""))
    assert identity_claims(bare)["id"] == {"name": "ghost", "gecos": "ghost", "dir": "/",
                                           "shell": "/bin/sh", "gids": [3000]}


def test_identity_claims_need_the_key_backend() -> None:
    cfg = parse_config("Backend=scontrol\nIdentityClaims=yes\n", "/etc/slurm/slurmjwt.conf")
    with pytest.raises(ConfigError) as err:
        make_minter(cfg, SlurmConf("/slurm.conf"))
    assert str(err.value) == ("/etc/slurm/slurmjwt.conf: IdentityClaims=yes needs Backend=key "
                              "(scontrol token cannot add claims); set JwtKey, or "
                              "IdentityClaims=no")


# ----------------------------------------------------------------- bad keys

@pytest.mark.parametrize(("make", "problem"), [
    (lambda k: b"-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n",
     f"not a PEM private key that can be read; {NEW_KEY}"),
    (lambda k: _pem(k, serialization.BestAvailableEncryption(b"secret")),
     f"it is encrypted, and the helper cannot ask for a passphrase; {NEW_KEY}"),
    (lambda k: _pem(_small_key()),
     f"an RSA key of 1024 bits, fewer than 2048; {NEW_KEY}"),
    (lambda k: _pem(ec.generate_private_key(ec.SECP256R1())),
     f"an EC key, not RSA; Slurm verifies RS256 (RSA) keys only: {NEW_KEY}"),
    (lambda k: _public_pem(k),
     "it is a public key; JwtKey needs the private key (its public half goes into "
     "slurmctld's JWKS)"),
], ids=["malformed", "encrypted", "1024-bits", "ec", "public"])
def test_unusable_pem_keys_are_refused_naming_the_file_and_the_fix(
        rsa_key: rsa.RSAPrivateKey, make: object, problem: str) -> None:
    data = make(rsa_key)  # type: ignore[operator]
    with pytest.raises(KeyFileError) as err:
        private_key("/etc/slurm/login1.pem", data)
    assert str(err.value) == f'cannot use key "/etc/slurm/login1.pem": {problem}'
    assert "\n" not in str(err.value)


def test_load_signer_tells_rs256_from_hs256_by_the_pem(
        tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    if os.geteuid() != 0:
        pytest.skip("key ownership rules are tested as root (owner must be root/SlurmUser)")
    tmp_path.chmod(0o755)
    pem, raw = tmp_path / "login1.pem", tmp_path / "jwt_hs256.key"
    write_new_key(str(pem), _pem(rsa_key), None)
    write_new_key(str(raw), KEY, None)
    assert load_signer(str(pem), "slurm").kid == thumbprint(rsa_key.public_key())
    assert load_signer(str(pem), "slurm").alg == "RS256"
    assert (load_signer(str(raw), "slurm").alg, load_signer(str(raw), "slurm").kid) == (
        "HS256", hs256_key_id(raw.stat()))
    pem.chmod(0o640)  # the same file checks as for HS256 keys
    with pytest.raises(KeyFileError, match="mode 0640 allows group or others; run chmod 0600"):
        load_signer(str(pem), "slurm")


# ----------------------------------------------------------------- keygen

def test_new_keys_are_unencrypted_2048_bit_rsa() -> None:
    data = new_private_key()
    assert data.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    key = private_key("/new.pem", data)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048


def test_a_new_key_file_is_0600_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "login1.pem"
    write_new_key(str(path), b"first", None)
    assert (path.read_bytes(), path.stat().st_mode & 0o777) == (b"first", 0o600)
    with pytest.raises(KeyFileError) as err:
        write_new_key(str(path), b"second", None)
    assert str(err.value) == (f'will not write key "{path}": it exists, and a key is never '
                              f"overwritten; choose a new name (a rotation puts the new key "
                              f"beside the old one)")
    assert path.read_bytes() == b"first"
    link = tmp_path / "link.pem"
    link.symlink_to(tmp_path / "elsewhere.pem")  # dangling: must not be created through
    with pytest.raises(KeyFileError, match="it exists"):
        write_new_key(str(link), b"x", None)
    assert not (tmp_path / "elsewhere.pem").exists()


def test_a_new_key_goes_to_slurm_user_when_written_by_root(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown to SlurmUser needs root")
    path = tmp_path / "login1.pem"
    write_new_key(str(path), b"secret", "nobody")
    assert path.stat().st_uid == pwd.getpwnam("nobody").pw_uid


def test_a_new_key_is_refused_in_a_directory_others_can_write(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(KeyFileError) as err:
        write_new_key(str(shared / "k.pem"), b"x", None)
    assert str(err.value) == (f'cannot use key "{shared}/k.pem": its directory "{shared}" is '
                              f'writable by others; run chmod go-w "{shared}"')
    assert not (shared / "k.pem").exists()


# ----------------------------------------------------------------- JWKS

def test_jwks_holds_the_public_half_of_private_and_public_pems(
        tmp_path: Path, rsa_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey) -> None:
    (tmp_path / "a.pem").write_bytes(_pem(rsa_key))
    (tmp_path / "a.pub").write_bytes(_public_pem(rsa_key))
    (tmp_path / "b.pem").write_bytes(_pem(other_key))
    doc = jwks_document([str(tmp_path / "a.pem"), str(tmp_path / "b.pem"),
                         str(tmp_path / "a.pub")])
    assert [e["kid"] for e in doc["keys"]] == [thumbprint(rsa_key.public_key()),
                                               thumbprint(other_key.public_key())]
    for entry in doc["keys"]:
        assert list(entry) == ["kty", "kid", "alg", "use", "n", "e"]
        assert (entry["kty"], entry["alg"], entry["use"], entry["e"]) == (
            "RSA", "RS256", "sig", "AQAB")
        assert not PRIVATE_MEMBERS & set(entry)
    text = json.dumps(doc)
    numbers = rsa_key.private_numbers()
    for secret in (numbers.d, numbers.p, numbers.q):
        assert base64.urlsafe_b64encode(secret.to_bytes(256, "big")).decode()[:20] not in text
    # A JWKS given back in is merged, each kid once.
    (tmp_path / "old.json").write_text(json.dumps(jwks_document([str(tmp_path / "b.pem")])))
    merged = jwks_document([str(tmp_path / "old.json"), str(tmp_path / "a.pub")])
    assert [e["kid"] for e in merged["keys"]] == [e["kid"] for e in doc["keys"]][::-1]


@pytest.mark.parametrize(("text", "problem"), [
    ("{not json", "not JSON"),
    ('{"kids": []}', 'no "keys" list'),
    ('{"keys": [{"kty": "RSA", "alg": "RS256", "n": "AQAB", "e": "AQAB"}]}',
     "key 1 has no kid (slurmctld will not start)"),
    ('{"keys": [{"kid": "k", "kty": "EC", "alg": "ES256", "crv": "P-256"}]}',
     "key 1 (kid k) is not an RSA RS256 key (slurmctld ignores it)"),
    ('{"keys": [{"kid": "k", "kty": "RSA", "alg": "RS256", "e": "AQAB"}]}',
     "key 1 (kid k) has no valid n and e"),
], ids=["not-json", "no-keys", "no-kid", "ec", "no-n"])
def test_a_bad_jwks_is_refused_naming_the_file_and_the_fix(
        tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(text)
    with pytest.raises(KeyFileError) as err:
        read_jwks(str(path))
    assert str(err.value) == (f'cannot use JWKS "{path}": {problem}; rebuild it with: '
                              f"slurmjwt jwks KEYFILE...")


def test_a_small_key_in_a_jwks_is_refused(tmp_path: Path) -> None:
    small = _small_key()
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk(small.public_key())]}))
    with pytest.raises(KeyFileError, match="key 1: an RSA key of 1024 bits, fewer than 2048"):
        read_jwks(str(path))


def test_an_hs256_key_or_a_missing_file_has_no_public_half(tmp_path: Path) -> None:
    raw = tmp_path / "jwt_hs256.key"
    # Not random from its first byte: one in 256 random keys starts with "{"
    # and is read as a JWKS that fails otherwise.
    raw.write_bytes(b"\x80" + os.urandom(31))
    with pytest.raises(KeyFileError) as err:
        public_keys_of(str(raw))
    assert str(err.value) == (f'cannot use "{raw}": not a PEM key or a JWKS (an HS256 key has '
                              f"no public half); give the RSA keys of the login nodes")
    with pytest.raises(KeyFileError) as err:
        public_keys_of(str(tmp_path / "none.pem"))
    assert str(err.value) == f'cannot read "{tmp_path}/none.pem": No such file or directory'


@pytest.mark.parametrize("runs", [1, 2])
def test_a_scontrol_burst_waits_for_slots_in_any_event_loop(tmp_path: Path, runs: int) -> None:
    # Made outside the loop, as the helper does before asyncio.run: on
    # Python 3.9 (RHEL 9) semaphores made here failed the callers that had to
    # wait ("attached to a different loop"; runs=1), and on every Python a
    # second loop (runs=2) met semaphores bound to the first.
    token = HS256Signer(b"k" * 32, "kid").sign(make_claims("alice", 600))
    fake = tmp_path / "scontrol"
    fake.write_text(f"#!/bin/sh\necho SLURM_JWT={token}\n")
    fake.chmod(0o755)
    minter = ScontrolMinter(str(fake), "/etc/slurm/slurm.conf")
    alice = pwd.struct_passwd(("alice", "x", 1000, 1000, "", "/home/alice", "/bin/sh"))

    async def burst() -> list[tuple[str, int]]:
        return await asyncio.gather(*(minter.mint(alice, 600, root=root)
                                      for root in (False, True)
                                      for _ in range(2 * SCONTROL_PARALLEL)))

    for _ in range(runs):
        assert [t for t, _ in asyncio.run(burst())] == [token] * 4 * SCONTROL_PARALLEL
