"""The C front ends' wire-format parser (c/common/protocol.c), driven from Python.

The C parser runs in build/c/parse_response, built with ASan and UBSan by
`make -f mk/c.mk c-harness`. Its decisions are checked against the text of
docs/internals.md, written out below as two regular expressions, on fixed
cases and on a few thousand seeded mutations of valid lines.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "build" / "c" / "parse_response"

# docs/internals.md, response format, version 2, as an independent reference.
OK_RE = re.compile(rb"SLURMJWT/2 OK ([1-9][0-9]{0,17}) ([1-9][0-9]{0,17}) ([01]) "
                   rb"([A-Za-z0-9_-]{1,64}) ([A-Za-z0-9_.-]{1,7168})\n")
ERR_RE = re.compile(rb"SLURMJWT/2 ERR ([a-z-]{1,32}) ([\x20-\x7e]+)\n")

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3MDAwMDAwMDAsInN1biI6ImFsaWNlIn0.c2lnbmF0dXJl"


@pytest.fixture(scope="module")
def harness() -> Path:
    """Build the ASan harness and return its path."""
    if shutil.which("make") is None or shutil.which("cc") is None:
        pytest.skip("needs make and a C compiler with ASan (gcc)")
    subprocess.run(["make", "-s", "-f", "mk/c.mk", "c-harness"], cwd=ROOT, check=True)
    return HARNESS


def parse(harness: Path, data: bytes) -> str:
    """Given response bytes, return the harness's one-line verdict."""
    proc = subprocess.run([str(harness)], input=data, capture_output=True, check=True)
    return proc.stdout.decode().rstrip("\n")


def parse_many(harness: Path, inputs: list[bytes]) -> list[str]:
    """Given many responses, return one verdict each (one harness process)."""
    batch = b"".join(b"%04x" % len(x) + x for x in inputs)
    proc = subprocess.run(
        [str(harness), "--batch"], input=batch, capture_output=True, check=True, timeout=120
    )
    verdicts = proc.stdout.decode(errors="replace").split("\n")[:-1]
    assert len(verdicts) == len(inputs), proc.stderr
    return verdicts


def reference(data: bytes) -> str:
    """Given response bytes, return what docs/internals.md says they are."""
    if len(data) > 8192:
        return "BAD"
    m = OK_RE.fullmatch(data)
    if m and int(m.group(2)) <= int(m.group(1)):
        return "OK " + " ".join(g.decode() for g in m.groups())
    m = ERR_RE.fullmatch(data)
    if m:
        return "ERR " + " ".join(g.decode() for g in m.groups())
    return "BAD"


def test_ok_line_yields_exp_refresh_export_kid_and_token(harness: Path) -> None:
    line = f"SLURMJWT/2 OK 1700000000 1699999400 1 k-1_X {TOKEN}\n".encode()
    verdict = parse(harness, line).split()
    assert verdict[:6] == ["OK", "1700000000", "1699999400", "1", "k-1_X", TOKEN]


def test_fingerprint_matches_the_helpers(harness: Path) -> None:
    from pam_slurmjwt.token import fingerprint

    verdict = parse(harness, f"SLURMJWT/2 OK 1700000000 1700000000 0 - {TOKEN}\n".encode())
    assert verdict.split()[-1] == fingerprint(TOKEN)


def test_err_line_yields_code_and_message(harness: Path) -> None:
    verdict = parse(harness, b"SLURMJWT/2 ERR denied root may not have a token.\n")
    assert verdict == "ERR denied root may not have a token."


OK = b"SLURMJWT/2 OK 1700000000 1699999400 1 k "


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty response"),
        (OK + TOKEN.encode(), "response has no newline"),
        (OK + b"a\nSLURMJWT/2 OK 1 1 1 k b\n", "data after the newline"),
        (b"SLURMJWT/1 OK 1700000000 1 abc\n",
         "the helper speaks another protocol version; restart slurmjwt-helper"),
        (b"HELLO OK 1700000000 1 abc\n", "response does not start with SLURMJWT/2"),
        (b"SLURMJWT/2 PONG 0.1.0\n", "unknown status word"),
        (b"SLURMJWT/2 OK 017 1 1 k abc\n",
         "exp is not a positive decimal followed by one space"),
        (b"SLURMJWT/2 OK 1234567890123456789 1 1 k abc\n",
         "exp is not a positive decimal followed by one space"),
        (b"SLURMJWT/2 OK 1700000000 x 1 k abc\n",
         "refresh is not a positive decimal followed by one space"),
        (b"SLURMJWT/2 OK 1700000000 1700000001 1 k abc\n", "refresh is after exp"),
        (b"SLURMJWT/2 OK 1700000000 1699999400 yes k abc\n", "export flag is not 0 or 1"),
        (b"SLURMJWT/2 OK 1700000000 1699999400 1  abc\n",
         "kid is empty or longer than 64 characters"),
        (OK[:-2] + b"k" * 65 + b" abc\n", "kid is empty or longer than 64 characters"),
        (b"SLURMJWT/2 OK 1700000000 1699999400 1 k.x abc\n",
         "kid has a character outside [A-Za-z0-9_-]"),
        (OK + b"\n", "token is empty"),
        (OK + b"abc def\n", "token has a character outside [A-Za-z0-9_.-]"),
        (OK + b"abc\r\n", "token has a character outside [A-Za-z0-9_.-]"),
        (OK + b"a" * 7169 + b"\n", "token is longer than 7168 characters"),
        (b"SLURMJWT/2 ERR denied\n", "error code is not followed by one space"),
        (b"SLURMJWT/2 ERR denied \n", "error message is empty"),
        (b"SLURMJWT/2 ERR denied no \x1b[2J\n", "error message has a non-printable byte"),
        (b"SLURMJWT/2 ERR " + b"x" * 33 + b" m\n", "error code is too long"),
        (b"SLURMJWT/2 ERR denied " + b"a" * 8200 + b"\n", "response longer than 8192 bytes"),
    ],
)
def test_malformed_responses_are_refused_with_a_reason(
    harness: Path, data: bytes, reason: str
) -> None:
    assert parse(harness, data) == f"BAD {reason}"


def test_a_7168_character_token_is_the_longest_accepted(harness: Path) -> None:
    exact = OK + b"a" * 7168 + b"\n"
    assert parse(harness, exact).startswith("OK ")
    assert parse(harness, exact[:-1] + b"a\n").startswith("BAD")


def test_request_names_the_user_and_refuses_names_that_break_the_line(harness: Path) -> None:
    def request(user: str) -> str:
        proc = subprocess.run(
            [str(harness), "--request", user], capture_output=True, text=True, check=True
        )
        return proc.stdout

    assert request("alice") == "SLURMJWT/2 TOKEN alice -\n"
    for bad in ("a b", "a\tb", "x\nSLURMJWT/2 PING", "é", "u" * 237):
        assert request(bad) == "BAD\n", bad
    assert request("u" * 236) == f"SLURMJWT/2 TOKEN {'u' * 236} -\n"


def mutate(rng: random.Random, data: bytes) -> bytes:
    """Return data with one to four random edits of the kinds that break parsers."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[pos:pos] = bytes([rng.choice(b" \n\r\t\x00\x7f\xff0-9aZ.=$")])
        elif op == 2:
            del buf[pos : pos + rng.randint(1, 8)]
        elif op == 3:
            buf = buf[:pos]
        elif op == 4:
            buf[pos:pos] = buf[: rng.randint(0, 64)]
        else:
            buf[pos:pos] = b"a" * rng.choice((1, 600, 7200))
    return bytes(buf)


def test_parser_agrees_with_the_spec_on_mutated_lines(harness: Path) -> None:
    rng = random.Random(20240601)
    seeds = [
        f"SLURMJWT/2 OK 1700000000 1699999400 1 kid_A-1 {TOKEN}\n".encode(),
        b"SLURMJWT/2 OK 9 9 0 - a\n",
        b"SLURMJWT/2 ERR no-user no such user.\n",
        b"SLURMJWT/2 ERR denied root may not have a token.\n",
    ]
    inputs = seeds + [mutate(rng, rng.choice(seeds)) for _ in range(4000)]
    inputs = [x[:16384] for x in inputs]
    accepted = 0
    for data, verdict in zip(inputs, parse_many(harness, inputs)):
        kind = verdict.split(" ", 1)[0]
        want = reference(data)
        if kind == "BAD":
            assert want == "BAD", (data, verdict)
            continue
        accepted += 1
        words = verdict.split(" ")
        got = " ".join(words[:6]) if kind == "OK" else verdict
        assert got == want, (data, verdict)
    assert accepted > 100  # the mutations also produced valid lines to compare
