#!/bin/sh
# Demo controller: sssd (users from the directory), munged, MariaDB and
# slurmdbd (demo-accounting), slurmd, slurmrestd in the background, slurmctld
# in the foreground. The JWT key was put at
# /etc/slurm/jwt_hs256.key before start.
# DEMO_RESTD_PLUGINS: slurmrestd's -s argument for this Slurm version.
set -eu
# A restarted container (tests/demo/keyring.py restarts slurmctld so) keeps
# its files but numbers its processes from 1 again: a pid file of the last
# run can name a live process of this one, and sssd then refuses to start
# ("already running"), which ends the container here (set -e).
rm -f /run/sssd.pid /run/munge/munged.pid /run/slurmd.pid /run/slurmctld.pid
sh /usr/local/sbin/demo-slurm-side

# Accounting: MariaDB, slurmdbd and the users' associations, in the
# background while the other daemons start; slurmctld waits for it (its
# cluster and users are then in the database at its first registration).
# Only where slurm.conf sends accounting to slurmdbd.
accounting=
start_accounting() {
    grep -q '^AccountingStorageType=accounting_storage/slurmdbd' /etc/slurm/slurm.conf \
        || return 0
    /usr/local/sbin/demo-accounting start &
    accounting=$!
}
wait_accounting() {
    if [ -n "$accounting" ]; then wait "$accounting"; fi
}

# Users are in the directory: slurmctld and slurmd resolve them through sssd.
sssd -D

# A fresh munge key per cluster: only this host uses munge.
install -d -o munge -g munge -m 0700 /etc/munge
install -d -o munge -g munge -m 0755 /run/munge
dd if=/dev/urandom bs=1024 count=1 status=none > /etc/munge/munge.key
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
setpriv --reuid=munge --regid=munge --clear-groups munged

# Slurm >= 23.11 refuses a key with any "other" permission bit.
chown slurm:slurm /etc/slurm/jwt_hs256.key
chmod 0600 /etc/slurm/jwt_hs256.key
install -d -o slurm -g slurm -m 0755 /var/lib/slurm /var/log/slurm

# auth/slurm (Slurm 23.11+, tests/demo/sackd.py): the cluster's slurm.key,
# put here before start where slurm.conf has AuthType=auth/slurm; slurmctld
# refuses a key others can read. munged still runs: the key-mode proof
# (tests/demo/keyproof.py) starts its slurmctld with auth/munge.
if [ -e /etc/slurm/slurm.key ]; then
    chown slurm:slurm /etc/slurm/slurm.key
    chmod 0600 /etc/slurm/slurm.key
fi
install -d -o slurm -g slurm -m 0700 /var/lib/slurm/slurmctld
install -d -o root -g root -m 0755 /var/lib/slurm/slurmd
start_accounting

# Not daemonized (-D, in the background): 23.11's slurmd under auth/slurm
# serves its sack socket (/run/slurm/sack.socket, the first one this host's
# clients try) from threads it starts before it forks to the background; the
# daemon then has a bound socket nobody answers, and sinfo, squeue, salloc
# here hang (seen on 23.11.11; 24.11 and 26.05 were not affected).
slurmd -D >> /var/log/slurm/slurmd.stderr 2>&1 &
# slurmrestd refuses root and SlurmUser; SLURM_JWT=daemon makes it pass each
# request's own token on to slurmctld. Its unshare() lock-down is refused by
# Docker's seccomp profile (no CAP_SYS_ADMIN), hence SLURMRESTD_SECURITY.
SLURM_JWT=daemon SLURMRESTD_SECURITY=disable_unshare_sysv,disable_unshare_files setpriv --reuid=nobody --regid=nogroup --clear-groups \
    slurmrestd -a rest_auth/jwt -s "${DEMO_RESTD_PLUGINS:-openapi/v0.0.38}" 0.0.0.0:6820 \
    >> /var/log/slurm/slurmrestd.log 2>&1 &
wait_accounting
exec slurmctld -D -i
