"""The directory of Slurm command wrappers (docs/internals.md, "The Slurm
command wrappers"): which commands the installed Slurm has, and one link
per command to slurmjwt-wrap.

A Slurm command is an executable in SlurmBinDir whose ELF dynamic section
needs libslurm (`libslurm.so.*` or Slurm's private `libslurmfull.so`): that
is what authenticates, whatever the release calls its commands. The list is
made from the installed Slurm, never typed by hand.
"""

from __future__ import annotations

import os
import stat
import struct

# Where `make install` puts things: this package lives in LIBDIR/pam_slurmjwt.
LIBDIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WRAPPER_DIR = os.path.join(LIBDIR, "bin")
WRAP_PROGRAM = os.path.join(LIBDIR, "slurmjwt-wrap")
MAX_ELF_READ = 64 << 20  # a client command is a few MB; refuse to read more
DT_NEEDED = 1
SHT_DYNAMIC = 6


def needed_libraries(path: str) -> list[str]:
    """Given a file, return the DT_NEEDED names of its ELF dynamic section
    ([] for anything that is not a dynamically linked ELF file)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
            if len(head) < 52 or head[:4] != b"\x7fELF" or head[4] not in (1, 2):
                return []
            wide, order = head[4] == 2, "<" if head[5] == 1 else ">"
            if wide:
                shoff, = struct.unpack_from(order + "Q", head, 0x28)
                shentsize, shnum = struct.unpack_from(order + "HH", head, 0x3A)
            else:
                shoff, = struct.unpack_from(order + "I", head, 0x20)
                shentsize, shnum = struct.unpack_from(order + "HH", head, 0x2E)
            if not shoff or shnum > 4096 or shentsize < (64 if wide else 40):
                return []
            fh.seek(shoff)
            table = fh.read(shentsize * shnum)
            sections = [_section(table, i * shentsize, wide, order) for i in range(shnum)]
            for kind, offset, size, link in sections:
                if kind != SHT_DYNAMIC or link >= len(sections):
                    continue
                _, str_off, str_size, _ = sections[link]
                if size > MAX_ELF_READ or str_size > MAX_ELF_READ:
                    return []
                fh.seek(offset)
                dynamic = fh.read(size)
                fh.seek(str_off)
                strings = fh.read(str_size)
                return _needed(dynamic, strings, wide, order)
    except (OSError, struct.error):
        return []
    return []


def _section(table: bytes, at: int, wide: bool, order: str) -> tuple[int, int, int, int]:
    """(sh_type, sh_offset, sh_size, sh_link) of one section header."""
    if wide:
        kind, = struct.unpack_from(order + "I", table, at + 4)
        offset, size = struct.unpack_from(order + "QQ", table, at + 24)
        link, = struct.unpack_from(order + "I", table, at + 40)
    else:
        kind, = struct.unpack_from(order + "I", table, at + 4)
        offset, size, link = struct.unpack_from(order + "III", table, at + 16)
    return kind, offset, size, link


def _needed(dynamic: bytes, strings: bytes, wide: bool, order: str) -> list[str]:
    entry = struct.Struct(order + ("qQ" if wide else "iI"))
    names = []
    for at in range(0, len(dynamic) - entry.size + 1, entry.size):
        tag, value = entry.unpack_from(dynamic, at)
        if tag == 0:
            break
        if tag == DT_NEEDED and value < len(strings):
            names.append(strings[value:strings.find(b"\0", value)].decode("ascii", "replace"))
    return names


def is_slurm_library(name: str) -> bool:
    return name.startswith("libslurm.so") or name.startswith("libslurmfull")


def slurm_commands(bin_dir: str) -> list[str]:
    """Given SlurmBinDir, return the sorted names of the Slurm commands in it."""
    try:
        names = sorted(os.listdir(bin_dir))
    except OSError:
        return []
    found = []
    for name in names:
        path = os.path.join(bin_dir, name)
        try:
            st = os.stat(path)
        except OSError:
            continue
        if (stat.S_ISREG(st.st_mode) and st.st_mode & 0o111 and name.isascii()
                and all(ch.isalnum() or ch in "._-" for ch in name)
                and any(is_slurm_library(lib) for lib in needed_libraries(path))):
            found.append(name)
    return found


def current(wrapper_dir: str, program: str) -> list[str]:
    """Return the sorted names in wrapper_dir that are links to program."""
    try:
        names = os.listdir(wrapper_dir)
    except OSError:
        return []
    return sorted(n for n in names
                  if os.path.islink(os.path.join(wrapper_dir, n))
                  and os.readlink(os.path.join(wrapper_dir, n)) == program)


def differences(wrapper_dir: str, program: str, bin_dir: str) -> tuple[list[str], list[str]]:
    """Return (missing, extra): Slurm commands without a wrapper, and
    wrappers of commands that are no longer installed."""
    want, have = set(slurm_commands(bin_dir)), set(current(wrapper_dir, program))
    return sorted(want - have), sorted(have - want)


def update(wrapper_dir: str, program: str, bin_dir: str) -> tuple[list[str], list[str]]:
    """Make wrapper_dir hold one link to program per Slurm command in
    bin_dir and nothing else of ours (other files are left alone); return
    (added, removed). Each link is made aside and renamed into place."""
    missing, extra = differences(wrapper_dir, program, bin_dir)
    for name in missing:
        tmp = os.path.join(wrapper_dir, f".{name}.{os.getpid()}")
        os.symlink(program, tmp)
        os.rename(tmp, os.path.join(wrapper_dir, name))
    for name in extra:
        os.unlink(os.path.join(wrapper_dir, name))
    return missing, extra
