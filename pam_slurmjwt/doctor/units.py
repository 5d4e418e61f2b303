"""slurmjwt doctor: the helper and its units: the socket units systemd
starts it from, slurmjwt-userdir's socket, that it answers, root's own
socket, and the refresh timer (every user's, and the user's own)."""

from __future__ import annotations

import os
import stat
from typing import Optional

from pam_slurmjwt import protocol
from pam_slurmjwt.doctor.check import Check, advice
from pam_slurmjwt.doctor.context import Context
from pam_slurmjwt.doctor.registry import ROOT, USER, check

SOCKET_UNITS = ("slurmjwt-helper.socket", "slurmjwt-helper-root.socket")
TIMER_UNIT = "slurmjwt-refresh.timer"
USERDIR_UNIT = "slurmjwt-userdir.socket"


class UnitChecks(Context):
    """The helper, its sockets and the refresh timer."""

    @check(23, ROOT, systemd=True)
    def helper_unit(self) -> Check:
        """systemd starts the helper: its two socket units are enabled,
        listening, and on the paths the clients use."""
        assert self.cfg is not None
        fix = f"systemctl enable --now {' '.join(SOCKET_UNITS)}"
        wanted = {SOCKET_UNITS[0]: ("HelperSocket", self.cfg.helper_socket),
                  SOCKET_UNITS[1]: ("RootSocket", self.cfg.root_socket)}
        for unit in SOCKET_UNITS:
            key, path = wanted[unit]
            enabled = self.systemctl("is-enabled", unit)
            if enabled != "enabled":
                return advice("FAIL", "helper unit", f"{unit} is {enabled or 'not installed'}, "
                              f"so nothing will listen on {path} after a reboot", f"run {fix}")
            active = self.systemctl("is-active", unit)
            if active != "active":
                return advice("FAIL", "helper unit", f"{unit} is enabled but {active}", f"run "
                              f"systemctl start {unit} and see systemctl status {unit}")
            listen = self.systemctl("show", "--property=Listen", "--value", unit).split(" ")[0]
            if listen != path:
                return advice("FAIL", "helper unit", f"{unit} listens on {listen or 'nothing'} "
                              f"but clients use {key}={path}", f"make them the same (systemctl "
                              f"edit {unit}, or {key}= in slurmjwt.conf)")
        return Check("OK", "helper unit", f"{' and '.join(SOCKET_UNITS)} enabled and "
                     f"listening on {self.cfg.helper_socket} and {self.cfg.root_socket}: "
                     "systemd starts the helper on the first connection")

    @check(24, ROOT, systemd=True)
    def userdir_unit(self) -> Check:
        """slurmjwt-userdir makes the /run caches of users with no session."""
        assert self.cfg is not None
        path = protocol.userdir_socket(self.cfg.helper_socket)
        enabled = self.systemctl("is-enabled", USERDIR_UNIT)
        active = self.systemctl("is-active", USERDIR_UNIT)
        listen = self.systemctl("show", "--property=Listen", "--value", USERDIR_UNIT)
        if enabled != "enabled" or active != "active" or listen.split(" ")[0] != path:
            return advice("WARN", "user caches", f"{USERDIR_UNIT} is {enabled or 'not installed'}"
                          f" and {active or 'unknown'}, listening on {listen or 'nothing'}: "
                          "cron jobs, services and portals' per-user servers then have no "
                          "cache and ask the helper for every command", f"run systemctl "
                          f"enable --now {USERDIR_UNIT} (it must listen on {path})")
        return Check("OK", "user caches", f"{USERDIR_UNIT} listens on {path}: users with no "
                     "session get a cache in /run/slurmjwt/users")

    @check(30)
    def helper(self) -> Check:
        assert self.cfg is not None
        version = protocol.ping(self.cfg.helper_socket, self.cfg.helper_timeout)
        self.helper_ok = True
        return Check("OK", "helper", f"{self.cfg.helper_socket} answers (version {version})")

    @check(40, ROOT)
    def root_socket(self) -> Check:
        assert self.cfg is not None
        try:
            st = os.lstat(self.cfg.root_socket)
        except OSError:
            return advice("WARN", "root socket", f"no {self.cfg.root_socket}: logins share "
                          "the users' socket and its queue", "systemctl enable --now "
                          "slurmjwt-helper-root.socket (or restart the helper)")
        if not stat.S_ISSOCK(st.st_mode) or st.st_uid != 0 or stat.S_IMODE(st.st_mode) & 0o077:
            return advice("FAIL", "root socket", f"{self.cfg.root_socket} is not a socket of "
                          f"root's with mode 0600 (mode {stat.S_IMODE(st.st_mode):04o}, uid "
                          f"{st.st_uid})", "restart the helper's sockets", joint=": ")
        return Check("OK", "root socket", f"{self.cfg.root_socket}: root's, 0600")

    @check(47, ROOT, systemd=True)
    def user_timer(self) -> Check:
        """Every user's systemd starts the refresh timer (systemctl --global)."""
        enabled = self.systemctl("--global", "is-enabled", TIMER_UNIT)
        if enabled == "enabled":
            return Check("OK", "user timer", f"{TIMER_UNIT} is enabled for every user's systemd")
        return advice("WARN", "user timer", f"{TIMER_UNIT} is {enabled or 'not installed'} for "
                      "users: tokens in long sessions and tmux stay fresh only while a shell "
                      f"prompts", f"run systemctl --global enable {TIMER_UNIT}")

    @check(52, USER, systemd=True)
    def own_timer(self) -> Optional[Check]:
        """The refresh timer runs in the user's own systemd, when they have one."""
        runtime = os.environ.get("XDG_RUNTIME_DIR", "")
        if not runtime or not os.path.exists(os.path.join(runtime, "systemd", "private")):
            return None  # no user manager for this session (su, cron): nothing to ask
        active = self.systemctl("--user", "is-active", TIMER_UNIT)
        if active == "active":
            return Check("OK", "timer", f"{TIMER_UNIT} is active in your systemd")
        return advice("WARN", "timer", f"{TIMER_UNIT} is {active or 'unknown'} in your systemd: "
                      "your token stays fresh only while a shell prompts", "run systemctl --user "
                      f"enable --now {TIMER_UNIT}, or ask an admin for systemctl --global enable "
                      f"{TIMER_UNIT}")
