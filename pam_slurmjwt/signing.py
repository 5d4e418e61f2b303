"""How tokens are made: keys, signers, the JWKS, and the minters behind
the helper's Backend= setting.

A key file holds raw bytes (HS256: the key slurmctld shares) or a PEM RSA
private key (RS256: slurmctld holds only its public half, in a JWKS).
Every key has an id (docs/internals.md, "Key id"): for RSA the RFC 7638
thumbprint, which is the `kid` of its tokens and of its JWKS entry; for
HS256 a hash of the key file's identity, never of the key.
KeyMinter signs with either kind; ScontrolMinter asks slurmctld through
`scontrol token`. The key is read only here, and in the helper only after
it dropped to SlurmUser. Nothing here prints or logs a key.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import pwd
from typing import TYPE_CHECKING, Any, Optional, Protocol

from pam_slurmjwt.config import Config
from pam_slurmjwt.errors import ConfigError, KeyFileError, MintFailed
from pam_slurmjwt.keyfile import MAX_KEY_BYTES, load_key_file
from pam_slurmjwt.policy import identity_claims
from pam_slurmjwt.slurmconf import SlurmConf
from pam_slurmjwt.token import Claims, b64url, compact_json, make_claims, slurm_claims

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

# PyJWT and cryptography are imported where they are used: the manual
# generator and the HS256-only paths load this module without paying for them.

SCONTROL_TIMEOUT = 10.0
SCONTROL_PARALLEL = 4
MIN_RSA_BITS = 2048
# What `slurmjwt keygen` makes: see README, "Benchmarks" for why not 3072.
KEYGEN_BITS = 2048
PEM_BEGIN = b"-----BEGIN "
NEW_KEY = "make a new one with: slurmjwt keygen NEWFILE"
HS256_MIN_BYTES = 32
# Printable text (a password, a passphrase, base64 of something): whatever
# its length, a key a person could type is a key an attacker can guess.
TEXT_BYTES = frozenset(range(0x20, 0x7F)) | {0x09, 0x0A, 0x0D}
# Byte-order marks (UTF-8, UTF-16 LE, UTF-16 BE): an editor's "Unicode" text
# is still text. Removed, with NUL bytes (UTF-16's other half of ASCII,
# `dd conv=sync`'s padding), before the printable-text rule.
BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")
# 32 bytes from /dev/random hold about 30 distinct values; a key with fewer
# than 16 is mostly one pattern or padding (b"\0" * 31 + b"\1"). The chance
# that 32 random bytes hold fewer than 16 distinct values is 3.2e-17 (the sum
# over k < 16 of C(256, k) k! S(32, k) / 256^32, S a Stirling number of the
# second kind); that all 32 fall in TEXT_BYTES or NUL is (99/256)^32 = 6.3e-14.
# Longer random keys are less likely still to be refused.
HS256_MIN_DISTINCT = 16
PEM_BEGIN_UTF16 = (PEM_BEGIN.decode("ascii").encode("utf-16-le"),
                   PEM_BEGIN.decode("ascii").encode("utf-16-be"))


# ----------------------------------------------------------------- signers

class Signer(Protocol):
    """Turns claims into a signed token; `kid` names its key and `alg` its
    algorithm ("HS256" or "RS256")."""

    kid: str
    alg: str

    def sign(self, claims: Claims) -> str: ...


def hs256_key_id(st: os.stat_result) -> str:
    """Given the fstat of an HS256 key file, return its id (docs/internals.md,
    "Key id"): the first 16 bytes of SHA-256 over the file's device, inode,
    size, mtime and ctime, base64url. Never a function of the key: a world-
    readable id computed from the key lets anyone test guesses of it."""
    text = (f"pam-slurmjwt hs256 key file {st.st_dev} {st.st_ino} {st.st_size} "
            f"{st.st_mtime_ns} {st.st_ctime_ns}")
    return b64url(hashlib.sha256(text.encode("ascii")).digest()[:16])


def check_hs256_key(path: str, key: bytes) -> None:
    """Raise KeyFileError naming the file and the fix when an HS256 key is
    obviously weak: short, one byte repeated, printable text once NUL bytes
    and a byte-order mark are removed, or fewer than HS256_MIN_DISTINCT
    distinct byte values."""
    make = f"make a new one with: dd if=/dev/random of={path} bs=32 count=1"
    text = key.replace(b"\0", b"")
    for bom in BOMS:
        text = text.removeprefix(bom)
    problem = None
    if len(key) < HS256_MIN_BYTES:
        problem = f"only {len(key)} bytes, fewer than {HS256_MIN_BYTES}"
    elif len(set(key)) == 1:
        problem = "one byte repeated"
    elif set(text) <= TEXT_BYTES:
        problem = "printable text (a password or passphrase), which can be guessed"
    elif len(set(key)) < HS256_MIN_DISTINCT:
        problem = (f"only {len(set(key))} distinct byte values, fewer than "
                   f"{HS256_MIN_DISTINCT}, which can be guessed")
    if problem:
        raise KeyFileError(f'cannot use key "{path}": {problem}; {make} (and give slurmctld '
                           f"the same file)")


class HS256Signer:
    """Signs with the raw bytes of the key file, as slurmctld verifies; the
    header names the key (`kid`), which slurmctld ignores for HS256.

    Signing is HMAC-SHA256 over two base64url segments, done here with the
    standard library because the helper signs at login-burst rate and
    PyJWT's general-purpose encode costs several times more per token. So
    that this can never drift from the standard, every signer is checked
    once, when it is made (start-up, SIGHUP), against PyJWT's verifier.
    """

    alg = "HS256"

    def __init__(self, key: bytes, kid: str) -> None:
        self._key = key
        self.kid = kid
        self._header = {"alg": "HS256", "kid": self.kid, "typ": "JWT"}
        self._header_b64 = b64url(compact_json(self._header))
        _self_check(self, key, self._header)

    def sign(self, claims: Claims) -> str:
        signing_input = f"{self._header_b64}.{b64url(compact_json(claims.as_dict()))}"
        mac = hmac.new(self._key, signing_input.encode("ascii"), hashlib.sha256).digest()
        return f"{signing_input}.{b64url(mac)}"


class RS256Signer:
    """Signs RS256 with an RSA private key, through PyJWT and cryptography.
    The header's `kid` is the RFC 7638 thumbprint of the public key: it
    picks this key's entry in slurmctld's JWKS (the entry jwk() makes).

    Checked once, when made: a token it signs must verify with the key
    rebuilt from that JWKS entry (n, e), as slurmctld rebuilds it."""

    alg = "RS256"

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        import jwt

        self._key = key
        self._encode = jwt.encode
        self.kid = thumbprint(key.public_key())
        self._headers = {"kid": self.kid}
        _self_check(self, public_of(jwk(key.public_key())),
                    {"alg": "RS256", "kid": self.kid, "typ": "JWT"})

    def sign(self, claims: Claims) -> str:
        # PyJWT 2.6 annotates the key as str; it takes cryptography's keys.
        return self._encode(claims.as_dict(), self._key, algorithm="RS256",  # type: ignore[arg-type]
                            headers=self._headers)


def _self_check(signer: Signer, verifier: Any, header: dict[str, str]) -> None:
    """Raise MintFailed unless PyJWT, given `verifier`, reads back exactly the
    claims and header `signer` wrote."""
    import jwt

    claims = Claims(sun="slurmjwt-self-check", iat=1, exp=2**31,
                    identity={"uid": 1, "gid": 1, "id": {"gids": [1]}})
    token = signer.sign(claims)
    try:
        decoded = jwt.decode(token, verifier, algorithms=[signer.alg],
                             options={"verify_exp": False})
        found = jwt.get_unverified_header(token)
    except jwt.PyJWTError as err:
        raise MintFailed(f"signer self-check failed: {type(err).__name__}") from None
    if decoded != claims.as_dict() or found != header:
        raise MintFailed("signer self-check failed: PyJWT reads other claims")


# ----------------------------------------------------------------- keys

def load_signer(path: str, slurm_user: str) -> Signer:
    """Given the key path and SlurmUser's name, return the signer for it: RS256
    for a PEM RSA private key, HS256 for anything else (raw bytes, as
    slurmctld reads jwt_key=); raise KeyFileError naming the file and the
    fix when it is unsafe or not a usable key."""
    data, st = load_key_file(path, slurm_user)
    return signer_of(path, data, st)


def signer_of(path: str, data: bytes, st: os.stat_result) -> Signer:
    """Given a key file's path, bytes and fstat, return its signer; raise
    KeyFileError naming the file and the fix when it is not a usable key."""
    if data.lstrip().startswith(PEM_BEGIN):
        return signer_of_pem(path, data)
    _no_pem_inside(f'cannot use key "{path}"', path, data)
    check_hs256_key(path, data)
    return HS256Signer(data, hs256_key_id(st))


def _no_pem_inside(where: str, path: str, data: bytes) -> None:
    """Raise KeyFileError when a PEM block is saved as UTF-16 or follows other
    bytes: such a file is neither a PEM key (it must start with -----BEGIN)
    nor an HS256 key (PyJWT refuses PEM-looking HMAC keys, and slurmctld
    would take the whole file, text and all)."""
    for begin in PEM_BEGIN_UTF16:
        at = data.find(begin)
        if at < 0:
            continue
        # Each pattern holds the other one byte along: where the text's
        # ASCII bytes sit (even offsets, or odd) tells its byte order.
        encoding = "UTF-16LE" if (at + begin.index(b"-")) % 2 == 0 else "UTF-16BE"
        if data.startswith(BOMS[1:]):
            encoding = "UTF-16"  # iconv reads the byte order from the mark and drops it
        raise KeyFileError(f"{where}: it is a PEM key saved as UTF-16 text (Notepad's "
                           f'"Unicode"); save it again as ASCII/UTF-8, e.g. iconv -f '
                           f'{encoding} -t UTF-8 "{path}" > NEWFILE')
    if PEM_BEGIN not in data or data.lstrip().startswith(PEM_BEGIN):
        return
    if data.startswith(b"\xef\xbb\xbf"):
        raise KeyFileError(f"{where}: it starts with a byte-order mark before its -----BEGIN "
                           f"line; save it without one, e.g. sed -i '1s/^\\xEF\\xBB\\xBF//' "
                           f'"{path}"')
    raise KeyFileError(f"{where}: it has other text before its -----BEGIN line; delete "
                       f"everything before that line")


def signer_of_pem(path: str, data: bytes) -> RS256Signer:
    """Given a PEM file's path and bytes, return its RS256 signer; raise
    KeyFileError as private_key() does."""
    return RS256Signer(private_key(path, data))


def private_key(path: str, data: bytes) -> rsa.RSAPrivateKey:
    """Given a PEM file's path and bytes, return its RSA private key; raise
    KeyFileError for an encrypted, malformed, public, non-RSA or small key."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    where = f'cannot use key "{path}"'
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography: "Password was not given but private key is encrypted"
        raise KeyFileError(f"{where}: it is encrypted, and the helper cannot ask for a "
                           f"passphrase; {NEW_KEY}") from None
    except (ValueError, UnsupportedAlgorithm):
        if _is_public(data):
            raise KeyFileError(f"{where}: it is a public key; JwtKey needs the private key "
                               f"(its public half goes into slurmctld's JWKS)") from None
        raise KeyFileError(f"{where}: not a PEM private key that can be read; "
                           f"{NEW_KEY}") from None
    checked: rsa.RSAPrivateKey = _rsa_only(where, key)
    return checked


def _is_public(data: bytes) -> bool:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        return False
    return True


def _rsa_only(where: str, key: Any) -> Any:
    """Return key if it is an RSA key of at least MIN_RSA_BITS; raise KeyFileError."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    if not isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        raise KeyFileError(f"{where}: {_kind(key)}, not RSA; Slurm verifies RS256 (RSA) keys "
                           f"only: {NEW_KEY}")
    if key.key_size < MIN_RSA_BITS:
        raise KeyFileError(f"{where}: an RSA key of {key.key_size} bits, fewer than "
                           f"{MIN_RSA_BITS}; {NEW_KEY}")
    return key


def _kind(key: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519

    for kinds, name in (((ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey), "an EC key"),
                        ((ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey),
                         "an Ed25519 key"),
                        ((ed448.Ed448PrivateKey, ed448.Ed448PublicKey), "an Ed448 key"),
                        ((dsa.DSAPrivateKey, dsa.DSAPublicKey), "a DSA key")):
        if isinstance(key, kinds):
            return name
    return "another kind of key"


def new_private_key(bits: int = KEYGEN_BITS) -> bytes:
    """Return a new RSA private key as unencrypted PKCS#8 PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


# ----------------------------------------------------------------- JWKS

def _int_b64(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def thumbprint(public: rsa.RSAPublicKey) -> str:
    """Given an RSA public key, return its RFC 7638 thumbprint: SHA-256 of
    the JSON of its required members (e, kty, n; sorted, no whitespace),
    base64url; 43 characters."""
    numbers = public.public_numbers()
    members = {"e": _int_b64(numbers.e), "kty": "RSA", "n": _int_b64(numbers.n)}
    return b64url(hashlib.sha256(compact_json(members)).digest())


def jwk(public: rsa.RSAPublicKey) -> dict[str, str]:
    """Given an RSA public key, return its JWKS entry as slurmctld wants it:
    kty, kid (the thumbprint), alg RS256, use sig, n, e. Public parts only."""
    numbers = public.public_numbers()
    return {"kty": "RSA", "kid": thumbprint(public), "alg": "RS256", "use": "sig",
            "n": _int_b64(numbers.n), "e": _int_b64(numbers.e)}


def _read_input(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_KEY_BYTES + 1)
    except OSError as err:
        raise KeyFileError(f'cannot read "{path}": {err.strerror}') from None
    if len(data) > MAX_KEY_BYTES:
        raise KeyFileError(f'cannot use "{path}": larger than {MAX_KEY_BYTES} bytes; '
                           f"give a PEM key or a JWKS file")
    return data


def public_keys_of(path: str) -> list[dict[str, str]]:
    """Given a PEM key (private or public) or a JWKS file, return its JWKS
    entries; raise KeyFileError naming the file and the fix when it holds
    no usable RSA key."""
    data = _read_input(path)
    if data.lstrip().startswith(b"{"):
        return read_jwks(path, data)
    where = f'cannot use "{path}"'
    _no_pem_inside(where, path, data)
    if not data.lstrip().startswith(PEM_BEGIN):
        raise KeyFileError(f"{where}: not a PEM key or a JWKS (an HS256 key has no public "
                           f"half); give the RSA keys of the login nodes")
    if _is_public(data):
        from cryptography.hazmat.primitives import serialization

        return [jwk(_rsa_only(where, serialization.load_pem_public_key(data)))]
    return [jwk(private_key(path, data).public_key())]


def read_jwks(path: str, data: bytes | None = None) -> list[dict[str, str]]:
    """Given a JWKS file (and its bytes, if read), return its RSA entries as
    slurmctld would load them; raise KeyFileError naming the file and the
    fix for anything slurmctld would refuse or we cannot vouch for."""
    if data is None:
        data = _read_input(path)
    fix = "rebuild it with: slurmjwt jwks KEYFILE..."
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise KeyFileError(f'cannot use JWKS "{path}": not JSON; {fix}') from None
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list):
        raise KeyFileError(f'cannot use JWKS "{path}": no "keys" list; {fix}')
    entries = []
    for number, entry in enumerate(keys, start=1):
        what = f'cannot use JWKS "{path}": key {number}'
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            raise KeyFileError(f"{what} has no kid (slurmctld will not start); {fix}")
        if entry.get("kty") != "RSA" or entry.get("alg") != "RS256":
            raise KeyFileError(f"{what} (kid {entry['kid']}) is not an RSA RS256 key "
                               f"(slurmctld ignores it); {fix}")
        try:
            public = public_of(entry)
        except (KeyError, TypeError, ValueError):
            raise KeyFileError(f"{what} (kid {entry['kid']}) has no valid n and e; "
                               f"{fix}") from None
        _rsa_only(what, public)
        entries.append({**jwk(public), "kid": entry["kid"]})
    return entries


def public_of(entry: dict[str, Any]) -> rsa.RSAPublicKey:
    """Given a JWKS entry, return the RSA public key its n and e make, as
    slurmctld makes it; raise KeyError or ValueError when they are not there."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.RSAPublicNumbers(_b64int(entry["e"]), _b64int(entry["n"])).public_key()


def _b64int(text: Any) -> int:
    if not isinstance(text, str) or not text:
        raise ValueError("not a base64url number")
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


def jwks_document(paths: list[str]) -> dict[str, list[dict[str, str]]]:
    """Given PEM keys and JWKS files, return the JWKS holding all their public
    keys, each once, in the order given; raise KeyFileError when two
    different keys claim one kid (naming both files) or an entry's kid is
    not its key's thumbprint. No kid read from a file is trusted: a stray
    file must not put its key under another login node's id."""
    seen: dict[str, tuple[str, dict[str, str]]] = {}
    for path in paths:
        for entry in public_keys_of(path):
            kid = entry["kid"]
            first = seen.setdefault(kid, (path, entry))
            if (first[1]["n"], first[1]["e"]) != (entry["n"], entry["e"]):
                raise KeyFileError(f'cannot use "{path}": it holds another key under kid {kid} '
                                   f'than "{first[0]}" does; remove the one that is not '
                                   f"that login node's key")
    for path, entry in seen.values():
        own = thumbprint(public_of(entry))
        if entry["kid"] != own:
            raise KeyFileError(f'cannot use "{path}": its key under kid {entry["kid"]} has the '
                               f"thumbprint {own} (RFC 7638), which slurmjwt uses as its kid; "
                               f"rebuild it with: slurmjwt jwks KEYFILE...")
    return {"keys": [entry for _path, entry in seen.values()]}


# ----------------------------------------------------------------- minters

class Minter(Protocol):
    """Makes a token for a user; returns (token, exp) or raises MintFailed.
    `kid` names the key its tokens are signed with (docs/internals.md)."""

    kid: str

    async def mint(self, entry: pwd.struct_passwd, lifespan: int,
                   root: bool = False) -> tuple[str, int]: ...


class KeyMinter:
    """Signs locally with the key file (Backend=key). Signing takes
    microseconds (HS256) or a fraction of a millisecond (RS256, 2048 bits),
    so the server calls sign_claims() inline, without a task, once its lookup
    thread has made the claims. With IdentityClaims the token carries the
    user's ids from this host's NSS."""

    def __init__(self, signer: Signer, identity: bool = False) -> None:
        self.signer = signer
        self.kid = signer.kid
        self.identity = identity

    def claims_for(self, entry: pwd.struct_passwd, lifespan: int) -> Claims:
        """Return the claims of a token for entry, issued now. With
        IdentityClaims this looks groups up (NSS): the helper calls it in its
        lookup thread, never in its event loop."""
        ids = identity_claims(entry) if self.identity else None
        return make_claims(entry.pw_name, lifespan, identity=ids)

    def sign_claims(self, claims: Claims) -> tuple[str, int]:
        """Return (token, exp): no lookup, CPU only."""
        return self.signer.sign(claims), claims.exp

    def sign(self, entry: pwd.struct_passwd, lifespan: int) -> tuple[str, int]:
        return self.sign_claims(self.claims_for(entry, lifespan))

    async def mint(self, entry: pwd.struct_passwd, lifespan: int,
                   root: bool = False) -> tuple[str, int]:
        return self.sign(entry, lifespan)


class ScontrolMinter:
    """Asks slurmctld through `scontrol token` (Backend=scontrol), for sites
    that keep the key on the controller only. Runs as SlurmUser. Its key is
    slurmctld's, unknown here: its tokens carry no kid, and its id is "-"."""

    kid = "-"

    def __init__(self, scontrol: str, slurm_conf: str) -> None:
        self.scontrol = scontrol
        self.env = {k: v for k, v in os.environ.items() if k != "SLURM_JWT"}
        self.env["SLURM_CONF"] = slurm_conf
        # Root (logins) has slots of its own: users' requests cannot fill them.
        # Made in the loop that waits on them (gate()): on Python 3.9 a
        # Semaphore made outside it belongs to another loop, and a burst that
        # has to wait fails with "attached to a different loop".
        self.gates: dict[bool, asyncio.Semaphore] = {}
        self.gates_loop: Optional[asyncio.AbstractEventLoop] = None

    def gate(self, root: bool) -> asyncio.Semaphore:
        """Return the running loop's semaphore for root's or users' slots."""
        loop = asyncio.get_running_loop()
        if self.gates_loop is not loop:
            self.gates = {}
            self.gates_loop = loop
        if root not in self.gates:
            self.gates[root] = asyncio.Semaphore(SCONTROL_PARALLEL)
        return self.gates[root]

    async def mint(self, entry: pwd.struct_passwd, lifespan: int,
                   root: bool = False) -> tuple[str, int]:
        async with self.gate(root):
            proc = await asyncio.create_subprocess_exec(
                self.scontrol, "token", f"username={entry.pw_name}", f"lifespan={lifespan}",
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=self.env)
            try:
                out, err = await asyncio.wait_for(proc.communicate(), SCONTROL_TIMEOUT)
            except asyncio.TimeoutError:
                raise MintFailed("scontrol token timed out") from None
            finally:
                # Timed out, or the caller hung up (the task is cancelled):
                # free the slot at once, so a burst does not queue behind it.
                if proc.returncode is None:
                    proc.kill()
                    await asyncio.shield(proc.wait())
        text = out.decode("ascii", "replace").strip()
        if proc.returncode != 0 or not text.startswith("SLURM_JWT="):
            reason = err.decode("utf-8", "replace").strip().splitlines()
            raise MintFailed(f"scontrol token failed: {reason[-1] if reason else 'no output'}")
        token = text[len("SLURM_JWT="):]
        return token, exp_of(token)


def exp_of(token: str) -> int:
    """Given a token a backend returned, return its exp; raise MintFailed."""
    try:
        return slurm_claims(token).exp
    except ValueError as err:
        raise MintFailed(f"the backend returned an unusable token: {err}") from None


def make_minter(cfg: Config, slurm: SlurmConf) -> tuple[Minter, str]:
    """Return the minter the configuration asks for and the backend's name
    ("key" or "scontrol"); raise ConfigError (KeyFileError) when the key is
    missing, unsafe or unusable."""
    key_path = cfg.jwt_key or slurm.jwt_key_path()
    backend = cfg.backend
    if backend == "auto":
        backend = "key" if key_present(key_path) else "scontrol"
    if backend == "key":
        return KeyMinter(load_signer(key_path, slurm.slurm_user), cfg.identity_claims), backend
    if cfg.identity_claims:
        raise ConfigError(f"{cfg.path or 'configuration'}: IdentityClaims=yes needs Backend=key "
                          f"(scontrol token cannot add claims); set JwtKey, or IdentityClaims=no")
    return ScontrolMinter(cfg.scontrol, cfg.slurm_conf_path()), backend


def key_present(path: str) -> bool:
    """Backend=auto: a key we cannot even stat (EACCES) is still a key that
    is there; falling back to scontrol would hide the misconfiguration."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return True
