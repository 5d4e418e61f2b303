"""slurmjwt doctor: shells and the user's session: the profile.d shim and
the shells' own start-up files, the command wrappers, the cache (the user's,
and root's fallback directory) and the user's PATH."""

from __future__ import annotations

import os
import stat
import time

from pam_slurmjwt import wrappers
from pam_slurmjwt.cache import FALLBACK_BASE, Cache
from pam_slurmjwt.doctor.check import Check, advice
from pam_slurmjwt.doctor.context import Context
from pam_slurmjwt.doctor.registry import ROOT, USER, check


class ShellChecks(Context):
    """What a login shell gets: the shim, the wrappers, the cache."""

    @check(43, ROOT)
    def profile_d(self) -> Check:
        if os.path.isfile(self.profile):
            return Check("OK", "profile.d", f"{self.profile} installed")
        return advice("WARN", "profile.d", f"{self.profile} missing: shells will not refresh "
                      "their token", "run make install")

    @check(44, ROOT)
    def shells(self) -> Check:
        """zsh's login file must read the shim (it reads no profile.d); the
        rc files of non-login interactive shells may (the admin's choice)."""
        line = f". {self.profile}"

        def reads(path: str) -> bool:
            try:
                with open(path) as fh:
                    return self.profile in fh.read(1 << 20)
            except OSError:
                return False

        zprofile = self.shell_rcs.get("zprofile", "")
        if zprofile and os.path.isdir(os.path.dirname(zprofile)) and not reads(zprofile):
            return advice("WARN", "shells", f"{zprofile} does not read the shim: zsh login "
                          f"shells get no token refresh", f"add the line "
                          f"'[ -r {self.profile} ] && {line}' to it")
        hooked = [name for name in ("bashrc", "zshrc")
                  if name in self.shell_rcs and reads(self.shell_rcs[name])]
        rest = [self.shell_rcs[n] for n in ("bashrc", "zshrc")
                if n in self.shell_rcs and n not in hooked]
        note = (f"the prompt hook also runs in non-login interactive shells "
                f"({', '.join(hooked)})" if hooked else "non-login interactive shells "
                "(IDE terminals) rely on the wrappers")
        if rest:
            note += f"; to add the prompt hook to {', '.join(rest)}: {line} there"
        return Check("OK", "shells", note)

    @check(45, ROOT)
    def wrappers(self) -> Check:
        assert self.cfg is not None
        if not os.access(self.wrap_program, os.X_OK):
            return advice("FAIL", "wrappers", f"{self.wrap_program} is missing",
                          "run make install (or install the package)", joint=": ")
        missing, extra = wrappers.differences(self.wrapper_dir, self.wrap_program,
                                              self.cfg.slurm_bin_dir)
        if missing or extra:
            what = "; ".join(x for x in (
                f"no wrapper for {' '.join(missing)}" if missing else "",
                f"wrappers of removed commands: {' '.join(extra)}" if extra else "") if x)
            return advice("WARN", "wrappers", f"{self.wrapper_dir} and {self.cfg.slurm_bin_dir} "
                          f"differ ({what})", "run slurmjwt wrappers --update")
        count = len(wrappers.current(self.wrapper_dir, self.wrap_program))
        if count == 0:
            return advice("WARN", "wrappers", f"no Slurm command in {self.cfg.slurm_bin_dir}",
                          "set SlurmBinDir in slurmjwt.conf, then slurmjwt wrappers --update",
                          joint=": ")
        return Check("OK", "wrappers", f"{count} Slurm commands in {self.wrapper_dir} fetch "
                     "their own live token")

    @check(46, ROOT)
    def fallback(self) -> Check:
        """Sessions without XDG_RUNTIME_DIR cache in FALLBACK_BASE: root's,
        0711, and best on a small tmpfs of its own."""
        try:
            st = os.lstat(FALLBACK_BASE)
        except OSError:
            return Check("OK", "fallback", f"no {FALLBACK_BASE}: every session has "
                         "XDG_RUNTIME_DIR, or the tmpfiles.d entry is not installed")
        if st.st_uid != 0 or stat.S_IMODE(st.st_mode) != 0o711:
            return advice("FAIL", "fallback", f"{FALLBACK_BASE} has mode "
                          f"{stat.S_IMODE(st.st_mode):04o}, uid {st.st_uid}", f"run chown root: "
                          f"{FALLBACK_BASE} && chmod 0711 {FALLBACK_BASE}")
        users = len(os.listdir(FALLBACK_BASE))
        if users and st.st_dev == os.stat(os.path.dirname(os.path.dirname(FALLBACK_BASE))
                                          ).st_dev:
            fix = ("systemctl enable --now run-slurmjwt-users.mount" if
                   os.path.isdir("/run/systemd/system") else
                   f"mount -t tmpfs -o mode=0711,size=4m,nr_inodes=16384,nosuid,nodev,noexec "
                   f"tmpfs {FALLBACK_BASE} (or an fstab line)")
            return advice("WARN", "fallback", f"{users} users' caches are on the shared /run "
                          f"tmpfs, which any of them could fill; give them a small tmpfs of "
                          f"their own", f"{fix}", joint=": ")
        return Check("OK", "fallback", f"{FALLBACK_BASE}: root's, 0711")

    @check(50, USER)
    def cache(self) -> Check:
        assert self.cfg is not None
        cache = Cache.for_user(self.cfg.helper_socket)
        entry, why = cache.load()
        if entry is None:
            return advice("WARN", "cache", f"{cache.path}: {why}", "run slurmjwt-refresh")
        return Check("OK", "cache", f"{cache.path}: token valid for "
                     f"{entry.exp - int(time.time())} s")

    @check(51, USER)
    def path(self) -> Check:
        """The wrappers should come first on this user's PATH."""
        first = next((d for d in os.environ.get("PATH", "").split(":")
                      if os.path.isfile(os.path.join(d, "squeue"))), None)
        if first == self.wrapper_dir:
            return Check("OK", "path", f"squeue on your PATH is the wrapper "
                         f"({self.wrapper_dir}): every Slurm command gets a live token")
        return advice("WARN", "path", f"squeue on your PATH is {first or 'missing'}, not the "
                      f"wrapper in {self.wrapper_dir}: Slurm commands started from here keep "
                      f"the token they inherit", f"log in again, or run PATH={self.wrapper_dir}:"
                      "$PATH")
