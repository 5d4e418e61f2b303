"""packaging/slurm/cli_filter.lua, run in Lua 5.1 with lua-posix as Slurm's
cli_filter/lua runs it: the token leaves sbatch and salloc only once the
process has loaded auth_jwt.so (which then has read it), never srun's.

A library copied under the name auth_jwt.so stands in for Slurm's plugin; the
compatibility matrix (tests/integration/test_matrix.py) proves the same in
real sbatch and salloc of every release.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "packaging" / "slurm" / "cli_filter.lua"
LIBLUA = Path("/usr/lib/x86_64-linux-gnu/liblua5.1.so.0")
LUA_MODULES = Path("/usr/lib/x86_64-linux-gnu/lua/5.1")
STAND_IN = Path("/usr/lib/x86_64-linux-gnu/libdl.so.2")  # any small library
TOKEN = "header.claims.signature"

# Runs each argument in turn: "lua:CHUNK" in one Lua state, "load:PATH" dlopens
# PATH the way Slurm loads a plugin.
DRIVER = r"""
import ctypes, sys
# RTLD_GLOBAL, as Slurm loads it: lua-posix's C modules need liblua's symbols.
lua = ctypes.CDLL("liblua5.1.so.0", mode=ctypes.RTLD_GLOBAL)
lua.luaL_newstate.restype = ctypes.c_void_p
lua.lua_tolstring.restype = ctypes.c_char_p
state = ctypes.c_void_p(lua.luaL_newstate())
lua.luaL_openlibs(state)
for step in sys.argv[1:]:
    kind, _, arg = step.partition(":")
    if kind == "load":
        ctypes.CDLL(arg)
        continue
    rc = lua.luaL_loadstring(state, arg.encode()) or lua.lua_pcall(state, 0, 0, 0)
    if rc:
        sys.exit(lua.lua_tolstring(state, -1, None).decode())
"""
SETUP = "slurm = {SUCCESS = 0, ERROR = -1}\ndofile(%r)\n" \
        "assert(slurm_cli_setup_defaults({}, true) == slurm.SUCCESS)\n"
PRE = ("assert(slurm_cli_pre_submit({type = %r}, 0) == slurm.SUCCESS)\n"
       "io.stdout:write('pre=', tostring(os.getenv('SLURM_JWT')), ' ')\n")
POST = ("assert(slurm_cli_post_submit(0, 1, 0) == slurm.SUCCESS)\n"
        "io.stdout:write('post=', tostring(os.getenv('SLURM_JWT')), '\\n')\n")


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    if not LIBLUA.exists() or not any((LUA_MODULES / name).exists()
                                      for name in ("posix.so", "posix")):
        pytest.skip("needs liblua5.1 and lua-posix (Debian: lua-posix)")
    path = tmp_path / "slurm" / "auth_jwt.so"
    path.parent.mkdir()
    shutil.copy2(STAND_IN, path)
    return path


def run_filter(command: str, plugin: Path, loaded: str) -> str:
    """Run the filter as `command` would, with the stand-in auth_jwt.so loaded
    before pre_submit (`loaded` = "start", 23.11+), between pre_submit and
    post_submit ("request", 22.05: on the first request) or not at all
    ("never"); return what it left of SLURM_JWT."""
    steps = [f"lua:{SETUP % str(SCRIPT)}"]
    if loaded == "start":
        steps.append(f"load:{plugin}")
    steps.append(f"lua:{PRE % command}")
    if loaded == "request":
        steps.append(f"load:{plugin}")
    steps.append(f"lua:{POST}")
    done = subprocess.run(["/usr/bin/python3", "-I", "-c", DRIVER, *steps],
                          capture_output=True, text=True, timeout=30, check=False,
                          env={"PATH": "/usr/bin:/bin", "SLURM_JWT": TOKEN})
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(("command", "loaded", "left"), [
    # 23.11+: the plugin has read the token before any filter runs.
    ("sbatch", "start", "pre=nil post=nil\n"),
    ("salloc", "start", "pre=nil post=nil\n"),
    ("srun", "start", f"pre={TOKEN} post={TOKEN}\n"),
    # 22.05: sbatch has not loaded it when it submits, so the token stays.
    ("sbatch", "never", f"pre={TOKEN} post={TOKEN}\n"),
    # 22.05: salloc loads it for its allocation, then drops it before its command.
    ("salloc", "request", f"pre={TOKEN} post=nil\n"),
])
def test_token_leaves_sbatch_and_salloc_only_after_their_jwt_plugin_read_it(
        plugin: Path, command: str, loaded: str, left: str) -> None:
    assert run_filter(command, plugin, loaded) == left


def test_a_host_without_lua_posix_runs_the_filter_without_it(plugin: Path) -> None:
    chunk = ("package.preload['posix.stdlib'] = function() error('no lua-posix') end\n"
             + SETUP % str(SCRIPT) + PRE % "sbatch" + POST)
    done = subprocess.run(["/usr/bin/python3", "-I", "-c", DRIVER, f"load:{plugin}",
                           f"lua:{chunk}"], capture_output=True, text=True, timeout=30,
                          check=False, env={"PATH": "/usr/bin:/bin", "SLURM_JWT": TOKEN})
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"pre={TOKEN} post={TOKEN}\n"
