"""One cache format, two writers, many readers: c/common/cache.c and
pam_slurmjwt/cache.py write the same bytes; what either writes, the other
and every shim read; torn and hostile lines are refused by both alike.

The C side runs in build/c/cachetool (ASan, UBSan), built by
`make -f mk/c.mk c-harness`.
"""

from __future__ import annotations

import base64
import os
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pam_slurmjwt.cache import (
    Cache,
    Entry,
    format_lines,
    parse_line,
    read_key_id,
    token_user,
)

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "build" / "c" / "cachetool"
TOKEN = ("eyJhbGciOiJIUzI1NiIsImtpZCI6ImstMSIsInR5cCI6IkpXVCJ9."
         "eyJleHAiOjE3MDAwMDAwMDAsInN1biI6ImFsaWNlIn0.c2lnbmF0dXJlLW9mLWFsaWNlcy10b2tlbi1udW1iZXI")
KID = "kid-A_1"
SHIMS = ROOT / "profile.d"


@pytest.fixture(scope="module")
def tool() -> Path:
    if shutil.which("make") is None or shutil.which("cc") is None:
        pytest.skip("needs make and a C compiler with ASan (gcc)")
    subprocess.run(["make", "-s", "-f", "mk/c.mk", "c-harness"], cwd=ROOT, check=True)
    return TOOL


def c(tool: Path, *args: str, stdin: str = "") -> str:
    out = subprocess.run([str(tool), *args], input=stdin, capture_output=True, text=True,
                         check=True, timeout=30)
    return out.stdout


def entry(left: int = 1800, export: bool = True, kid: str = KID) -> Entry:
    exp = int(time.time()) + left
    return Entry(exp, exp - 600, export, kid, TOKEN)


def fields(e: Entry) -> str:
    return f"{e.exp} {e.refresh} {int(e.export)} {e.kid} {e.token}\n"


def keys(tmp_path: Path, kid: str = KID) -> Path:
    directory = tmp_path / "key"
    directory.mkdir(exist_ok=True)
    (directory / "id").write_text(f"{kid}\n")
    (directory / "id.csh").write_text(f"set _slurmjwt_kid={kid}\n")
    return directory


@pytest.mark.parametrize(("now", "uptime"), [
    (8200.0, 500.7), (1_795_000_000.25, 12345.99), (1_795_000_000.999, 0.01),
    (1_795_000_000.0, 1_000_000.5),
])
def test_c_and_python_format_the_same_bytes(tool: Path, now: float, uptime: float) -> None:
    for e in (Entry(10_000, 9_400, True, KID, TOKEN), Entry(1_795_001_800, 1_795_001_200, False,
                                                            "-", TOKEN),
              Entry(1_795_000_030, 1_795_000_015, True, "x" * 64, TOKEN)):
        python = format_lines(e, now, uptime, "0c4d5e6f-1a2b-3c4d-5e6f-7a8b9c0d1e2f")[0]
        assert c(tool, "format", repr(now), repr(uptime), "0c4d5e6f-1a2b-3c4d-5e6f-7a8b9c0d1e2f",
                 stdin=fields(e)) == python


def test_what_c_writes_python_reads(tool: Path, tmp_path: Path) -> None:
    e = entry()
    assert c(tool, "store", str(tmp_path / "c"), stdin=fields(e)) == "OK\n"
    loaded, why = Cache(str(tmp_path / "c"), str(keys(tmp_path)), user="alice").load()
    assert why == "" and loaded is not None
    assert (loaded.exp, loaded.export, loaded.kid, loaded.token) == (e.exp, True, KID, TOKEN)
    assert e.refresh <= loaded.refresh <= e.refresh + 1
    csh = (tmp_path / "c" / "token.csh").read_text()
    assert csh == f"set _slurmjwt_c=({(tmp_path / 'c' / 'token').read_text().strip()})\n"


def test_what_python_writes_c_reads(tool: Path, tmp_path: Path) -> None:
    e = entry(export=False)
    Cache(str(tmp_path / "c"), str(keys(tmp_path))).store(e)
    got = c(tool, "load", str(tmp_path / "c")).split()
    assert got[0] == "OK" and got[1] == str(e.exp) and got[3:] == ["0", KID, TOKEN]
    assert e.refresh <= int(got[2]) <= e.refresh + 1


# Key id files at every boundary: both readers take exactly the good ones.
GOOD_KEY_ID_FILES = [b"k\n", b"x" * 63 + b"\n", b"x" * 64 + b"\n", b"a-b_C9\n", b"-\n", b"_\n"]
BAD_KEY_ID_FILES = [
    b"", b"\n", b"k", b"x" * 64, b"x" * 65 + b"\n", b"x" * 66 + b"\n", b"x" * 64 + b"\nx",
    b"x" * 64 + b"\n\n", b"x" * 127 + b"\n", b"x" * 200 + b"\n", b"a.b\n", b"a b\n", b"a$b\n",
    b"a\tb\n", b"a\x00b\n", b"\xc3\xa9\n", b"a\r\n", b" a\n", b"a\nb\n", b"a\n\n",
]


@pytest.mark.parametrize("data", GOOD_KEY_ID_FILES + BAD_KEY_ID_FILES,
                         ids=lambda d: repr(d)[:40])
def test_c_and_python_accept_the_same_key_ids(tool: Path, tmp_path: Path,
                                              data: bytes) -> None:
    (tmp_path / "id").write_bytes(data)
    want = data[:-1].decode() if data in GOOD_KEY_ID_FILES else None
    assert read_key_id(str(tmp_path)) == want
    assert c(tool, "keyid", str(tmp_path)) == ("NONE\n" if want is None else f"OK {want}\n")


SHELL = {"dash": ["dash", "-c"], "bash": ["bash", "--noprofile", "--norc", "-c"],
         "zsh": ["zsh", "-f", "-c"], "ksh": ["ksh", "-c"], "tcsh": ["tcsh", "-f", "-c"]}


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A 0755 directory (pytest's tmp_path is root's alone: nobody could not
    reach into it)."""
    path = Path(tempfile.mkdtemp(prefix="slurmjwt-ccache-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("shell", SHELL)
def test_what_c_writes_every_shim_exports(tool: Path, scratch: Path, shell: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"needs {shell}")
    tmp_path = scratch
    assert c(tool, "store", str(tmp_path / "c"), stdin=fields(entry())) == "OK\n"
    env = {"PATH": "/usr/bin:/bin", "SLURMJWT_CACHE_DIR": str(tmp_path / "c"),
           "SLURMJWT_KEY_DIR": str(keys(tmp_path)),
           "SLURMJWT_REFRESH": "/bin/false", "HOME": str(tmp_path)}
    if shell == "tcsh":
        script = f"source {SHIMS}/slurmjwt.csh; printenv SLURM_JWT"
    else:
        script = f". {SHIMS}/slurmjwt.sh; printf '%s\\n' \"$SLURM_JWT\""
    if os.getuid() == 0:  # the shims leave root alone: run as nobody
        shutil.chown(tmp_path / "c", "nobody")
        for name in ("token", "token.csh", ".clock"):
            shutil.chown(tmp_path / "c" / name, "nobody")
        prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    else:
        prefix = []
    out = subprocess.run([*prefix, "env", "-i", *(f"{k}={v}" for k, v in env.items()),
                          *SHELL[shell], script], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == TOKEN, out.stderr


def mutate(rng: random.Random, line: str) -> str:
    """One to three edits of the kinds that break line parsers."""
    text = list(line)
    for _ in range(rng.randint(1, 3)):
        op, at = rng.randrange(5), rng.randrange(len(text) + 1)
        if op == 0 and text:
            del text[min(at, len(text) - 1)]
        elif op == 1:
            text.insert(at, rng.choice(" \n\t-0x.$;()`'\"\\e\u00e9"))
        elif op == 2:
            text = text[:at]
        elif op == 3:
            text.insert(at, rng.choice(["end", " end", "slurmjwt1", "99999999999999", "-"]))
        else:
            text[at:at] = text[: rng.randint(0, 20)]
    return "".join(text)


def test_c_and_python_agree_on_torn_and_hostile_lines(tool: Path, tmp_path: Path) -> None:
    """Every mutated line is accepted by both parsers with the same fields,
    or refused by both: one format, one set of rules."""
    rng = random.Random(20261127)
    good = format_lines(entry(), time.time(), 1000.5, "0c4d5e6f-1a2b-3c4d-5e6f-7a8b9c0d1e2f")[0]
    lines = [good] + [mutate(rng, good) for _ in range(400)]
    directory = tmp_path / "c"
    Cache(str(directory), str(keys(tmp_path))).store(entry())
    accepted = 0
    for line in lines:
        (directory / "token").write_bytes(line.encode("utf-8"))
        try:
            py = parse_line(line)
        except ValueError:
            py = None
        got = c(tool, "load", str(directory)).split()
        if py is None:
            assert got[0] == "NONE", (line, got)
            continue
        accepted += 1
        assert got[0] == "OK", (line, got)
        assert [int(got[1]), int(got[2]), got[3] == "1", got[4], got[5]] == [
            py.exp, py.refresh, py.export, py.kid, py.token], line
    assert accepted >= 1


# ----------------------------------------------------------------- a token's sun

def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


HEADER = b64(b'{"alg":"HS256","kid":"k-1","typ":"JWT"}')
PAYLOAD = b64(b'{"sun":"alice","exp":1}')


def jwt_of(payload: bytes, header: str = HEADER) -> str:
    return f"{header}.{b64(payload)}.c2lnbmF0dXJl"


def c_sun(tool: Path, token: str) -> str | None:
    """What sjwt_peek (c/common/token.c) makes of a token: its sun, or None."""
    out = subprocess.run([str(tool), "peek"], input=token.encode("ascii") + b"\n",
                         capture_output=True, check=True, timeout=30).stdout
    if out.startswith(b"BAD "):
        return None
    assert out.startswith(b"OK ") and out.endswith(b"\n"), out
    return out[3:-1].rsplit(b" ", 2)[0].decode("utf-8", "surrogateescape")


NESTED = b"[" * 32 + b"]" * 32  # 32 levels below the payload object: token.c's bound

SUN_TOKENS = {
    "plain": (jwt_of(b'{"sun":"alice","exp":1700000000}'), "alice"),
    "escaped-value": (jwt_of(b'{"sun":"\\u0061lice","exp":1700000000}'), None),
    "duplicate-sun": (jwt_of(b'{"sun":"bob","sun":"alice","exp":1700000000}'), None),
    "duplicate-exp": (jwt_of(b'{"sun":"alice","exp":1,"exp":2}'), None),
    "padded-payload": (f"{HEADER}.{PAYLOAD}==.c2ln", None),
    "padded-header": (f"{HEADER}==.{PAYLOAD}.c2ln", None),
    "length-1-mod-4": (f"{HEADER}.{PAYLOAD}x.c2ln", None),
    "escaped-name": (jwt_of(b'{"s\\u0075n":"bob","sun":"alice","exp":1}'), None),
    "escaped-other-name": (jwt_of(b'{"\\u0078":1,"sun":"alice","exp":1}'), None),
    "escape-nested": (jwt_of(b'{"x":{"\\u0073un":"\\"bob"},"sun":"alice","exp":1}'), "alice"),
    "escape-in-other-value": (jwt_of(b'{"x":"a\\"b","sun":"alice","exp":1}'), "alice"),
    "no-exp": (jwt_of(b'{"sun":"alice"}'), None),
    "no-sun": (jwt_of(b'{"exp":1}'), None),
    "empty-sun": (jwt_of(b'{"sun":"","exp":1}'), None),
    "sun-64": (jwt_of(b'{"sun":"' + b"a" * 64 + b'","exp":1}'), "a" * 64),
    "sun-65": (jwt_of(b'{"sun":"' + b"a" * 65 + b'","exp":1}'), None),
    "sun-number": (jwt_of(b'{"sun":1,"exp":1}'), None),
    "sun-with-space": (jwt_of(b'{"sun":"al ice","exp":1}'), "al ice"),
    "sun-utf-8": (jwt_of('{"sun":"zoë","exp":1}'.encode()), "zoë"),
    "sun-not-utf-8": (jwt_of(b'{"sun":"\xffbob","exp":1}'), "\udcffbob"),
    "sun-control": (jwt_of(b'{"sun":"ali\x01ce","exp":1}'), None),
    "sun-del": (jwt_of(b'{"sun":"ali\x7fce","exp":1}'), "ali\x7fce"),
    "exp-string": (jwt_of(b'{"sun":"alice","exp":"1"}'), None),
    "exp-fraction": (jwt_of(b'{"sun":"alice","exp":1.5}'), None),
    "exp-exponent": (jwt_of(b'{"sun":"alice","exp":1E9}'), None),
    "exp-negative": (jwt_of(b'{"sun":"alice","exp":-1}'), None),
    "exp-18-digits": (jwt_of(b'{"sun":"alice","exp":999999999999999999}'), "alice"),
    "exp-19-digits": (jwt_of(b'{"sun":"alice","exp":1000000000000000000}'), None),
    "exp-leading-zero": (jwt_of(b'{"sun":"alice","exp":017}'), "alice"),
    "whitespace": (jwt_of(b' \t{ "sun" :\n"alice" ,\r"exp" : 1 } \n'), "alice"),
    "trailing-bytes": (jwt_of(b'{"sun":"alice","exp":1}x'), None),
    "two-objects": (jwt_of(b'{"sun":"alice","exp":1}{}'), None),
    "not-an-object": (jwt_of(b'["alice"]'), None),
    "lax-literal": (jwt_of(b'{"x":[tru,nul,1-2+e],"sun":"alice","exp":1}'), "alice"),
    "nan": (jwt_of(b'{"x":NaN,"sun":"alice","exp":1}'), None),
    "infinity": (jwt_of(b'{"x":-Infinity,"sun":"alice","exp":1}'), None),
    "depth-32": (jwt_of(b'{"x":' + NESTED + b',"sun":"alice","exp":1}'), "alice"),
    "depth-33": (jwt_of(b'{"x":[' + NESTED + b'],"sun":"alice","exp":1}'), None),
    "utf-16-json": (jwt_of('{"sun":"alice","exp":1}'.encode("utf-16-le")), None),
    "byte-order-mark": (jwt_of(b'\xef\xbb\xbf{"sun":"alice","exp":1}'), None),
    "header-no-kid": (jwt_of(b'{"sun":"alice","exp":1}', b64(b'{"alg":"HS256"}')), "alice"),
    "header-empty": (jwt_of(b'{"sun":"alice","exp":1}', b64(b"{}")), "alice"),
    "header-escaped-kid": (jwt_of(b'{"sun":"alice","exp":1}', b64(b'{"kid":"k\\u002d1"}')),
                           None),
    "header-kid-dot": (jwt_of(b'{"sun":"alice","exp":1}', b64(b'{"kid":"k.1"}')), None),
    "header-kid-65": (jwt_of(b'{"sun":"alice","exp":1}', b64(b'{"kid":"' + b"k" * 65 + b'"}')),
                      None),
    "header-kid-number": (jwt_of(b'{"sun":"alice","exp":1}', b64(b'{"kid":1}')), None),
    "header-two-kids": (jwt_of(b'{"sun":"alice","exp":1}', b64(b'{"kid":"a","kid":"b"}')),
                        None),
    "header-not-json": (jwt_of(b'{"sun":"alice","exp":1}', b64(b"kid")), None),
    "header-empty-part": (jwt_of(b'{"sun":"alice","exp":1}', ""), None),
    "two-parts": (f"{HEADER}.{PAYLOAD}", None),
    "four-parts": (jwt_of(b'{"sun":"alice","exp":1}') + ".x", None),
    "too-long": (jwt_of(b'{"sun":"alice","exp":1,"x":"' + b"y" * 5300 + b'"}'), None),
    "longest": (jwt_of(b'{"sun":"alice","exp":1,"x":"' + b"y" * 5240 + b'"}'), "alice"),
}


@pytest.mark.parametrize("name", SUN_TOKENS)
def test_c_and_python_read_the_same_sun_from_a_token(tool: Path, name: str) -> None:
    """Every cache reader (C: the PAM module, the wrappers; Python: the
    shims' slurmjwt-refresh) takes a token for the same user, or for none."""
    token, sun = SUN_TOKENS[name]
    assert (token_user(token), c_sun(tool, token)) == (sun, sun)


def test_c_and_python_agree_on_the_sun_of_mutated_tokens(tool: Path) -> None:
    rng = random.Random(20261204)
    payload = '{"iat":1700000000,"x":{"a":[1,"b\\"c"]},"sun":"alice","exp":1700000600}'
    accepted = 0
    for _ in range(300):
        text = mutate(rng, payload)
        token = jwt_of(text.encode("utf-8"), rng.choice([HEADER, b64(b"{}")]))
        py = token_user(token)
        assert py == c_sun(tool, token), text
        accepted += py is not None
    assert accepted >= 10
