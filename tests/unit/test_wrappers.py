"""The wrapper directory: Slurm commands found by the libraries they need
(ELF DT_NEEDED), one link each, and nothing else of ours."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest

from pam_slurmjwt import wrappers


def elf64(needed: list[str], shnum: int | None = None) -> bytes:
    """A minimal little-endian ELF64 with a .dynamic section naming `needed`
    and its .dynstr (section headers: null, dynstr, dynamic)."""
    strings = b"\0" + b"".join(n.encode() + b"\0" for n in needed)
    offsets, at = [], 1
    for name in needed:
        offsets.append(at)
        at += len(name) + 1
    dynamic = b"".join(struct.pack("<qQ", 1, off) for off in offsets) + struct.pack("<qQ", 0, 0)
    head_size, sh_size = 64, 64
    str_off = head_size
    dyn_off = str_off + len(strings)
    sh_off = dyn_off + len(dynamic)
    header = bytearray(64)
    header[:4] = b"\x7fELF"
    header[4], header[5] = 2, 1  # 64-bit, little-endian
    struct.pack_into("<Q", header, 0x28, sh_off)
    struct.pack_into("<HH", header, 0x3A, sh_size, 3 if shnum is None else shnum)

    def section(kind: int, offset: int, size: int, link: int) -> bytes:
        sh = bytearray(64)
        struct.pack_into("<I", sh, 4, kind)
        struct.pack_into("<QQ", sh, 24, offset, size)
        struct.pack_into("<I", sh, 40, link)
        return bytes(sh)

    return (bytes(header) + strings + dynamic + section(0, 0, 0, 0)
            + section(3, str_off, len(strings), 0) + section(6, dyn_off, len(dynamic), 1))


def test_needed_libraries_of_a_real_slurm_command_name_libslurm() -> None:
    squeue = shutil.which("squeue", path="/usr/bin")
    if squeue is None:
        pytest.skip("needs Slurm's squeue")
    assert any(wrappers.is_slurm_library(n) for n in wrappers.needed_libraries(squeue))
    assert not any(wrappers.is_slurm_library(n) for n in wrappers.needed_libraries("/bin/ls"))


def test_needed_libraries_reads_a_crafted_elf_and_refuses_nonsense(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.write_bytes(elf64(["libslurmfull.so", "libc.so.6"]))
    assert wrappers.needed_libraries(str(good)) == ["libslurmfull.so", "libc.so.6"]
    for name, data in (("script", b"#!/bin/sh\necho hi\n"), ("empty", b""),
                       ("truncated", elf64(["libslurm.so.40"])[:70]),
                       ("huge-shnum", elf64(["libslurm.so.40"], shnum=60000)),
                       ("bad-class", b"\x7fELF\x07" + b"\0" * 60)):
        bad = tmp_path / name
        bad.write_bytes(data)
        assert wrappers.needed_libraries(str(bad)) == [], name
    assert wrappers.needed_libraries(str(tmp_path / "absent")) == []


def _bin(tmp_path: Path) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, libs in (("squeue", ["libslurmfull.so"]), ("sbatch", ["libslurm.so.40"]),
                       ("ls", ["libc.so.6"]), ("seff", None)):
        path = bindir / name
        path.write_bytes(elf64(libs) if libs is not None else b"#!/usr/bin/perl\n")
        path.chmod(0o755)
    (bindir / "notexec").write_bytes(elf64(["libslurm.so.40"]))
    return bindir


def test_slurm_commands_are_the_executables_that_need_libslurm(tmp_path: Path) -> None:
    assert wrappers.slurm_commands(str(_bin(tmp_path))) == ["sbatch", "squeue"]


def test_update_links_each_command_once_and_removes_only_its_own_stale_links(
        tmp_path: Path) -> None:
    bindir, out = _bin(tmp_path), tmp_path / "wrappers"
    out.mkdir()
    program = str(tmp_path / "slurmjwt-wrap")
    (out / "README").write_text("a site's file: left alone\n")
    os.symlink("/elsewhere", out / "sinfo")  # not ours: left alone
    os.symlink(program, out / "sdiag")  # ours, but sdiag is gone: removed
    assert wrappers.update(str(out), program, str(bindir)) == (["sbatch", "squeue"], ["sdiag"])
    assert sorted(p.name for p in out.iterdir()) == ["README", "sbatch", "sinfo", "squeue"]
    assert os.readlink(out / "squeue") == program
    assert wrappers.differences(str(out), program, str(bindir)) == ([], [])
    assert wrappers.update(str(out), program, str(bindir)) == ([], [])  # idempotent
    (bindir / "sbatch").unlink()
    assert wrappers.differences(str(out), program, str(bindir)) == ([], ["sbatch"])
