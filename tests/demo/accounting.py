"""Accounting in the demo cluster: slurmdbd on MariaDB on the controller
(packaging/docker/accounting.sh, demo-accounting), reached from the login
node with SLURM_JWT like slurmctld. The commands a user types most, as the
matrix and the key scenario run them.
"""

from __future__ import annotations

ACCOUNT = "demo"  # the demo users' account (demo-accounting)
RESTART_SLURMDBD = "/usr/local/sbin/demo-accounting restart-slurmdbd"
# Each talks to slurmdbd (sacct, sacctmgr, sreport) or reads the associations
# slurmctld got from it (sshare); {user} and {job} are filled in.
COMMANDS = {
    "sacct": "sacct --jobs={job} --noheader --parsable2 --format=JobID,User,State",
    "sacctmgr": "sacctmgr --noheader --parsable2 show assoc user={user} "
                "format=Cluster,Account,User",
    "sreport": "sreport --noheader --parsable2 cluster utilization",
    "sshare": "sshare --noheader --parsable2 --users={user} --format=Account,User",
}
# What each prints when it worked (regular expressions, one line each);
# sreport: its exit status only (a cluster younger than the report's period
# has no rows).
EXPECTED = {
    "sacct": r"^{job}\|{user}\|COMPLETED$",
    "sacctmgr": rf"^demo\|{ACCOUNT}\|{{user}}$",
    "sreport": r"",
    "sshare": rf"^ *{ACCOUNT}\|{{user}}$",  # indented by depth in the tree
}


def script(user: str, job: str) -> str:
    """A shell script running every command, each after a line `== NAME` and
    followed by `rc=STATUS` (a failure ends no script, `sh -e` included)."""
    return "\n".join(f"echo '== {name}'; {command.format(user=user, job=job)} "
                     f"&& echo rc=0 || echo \"rc=$?\"" for name, command in COMMANDS.items())


def worked(output: str) -> dict[str, bool]:
    """Given the output of `script`, return whether each command exited 0."""
    found: dict[str, bool] = {}
    name = ""
    for line in output.splitlines():
        if line.startswith("== "):
            name = line[3:]
        elif line.startswith("rc=") and name:
            found[name] = line == "rc=0"
            name = ""
    return found
