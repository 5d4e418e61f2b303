#!/bin/sh
# Demo login node where systemd cannot be PID 1 (a release whose systemd
# needs cgroup v2, on a cgroup v1 host): the README's steps done by hand,
# sssd and slurmjwt-helper in the background, sshd in the foreground. No
# munge here. Put in place before start: /etc/slurm/jwt_hs256.key,
# /etc/ssh/ssh_host_ed25519_key, /etc/ssh/authorized_keys/<user>.
set -eu
sh /usr/local/sbin/demo-slurm-side

chown slurm:slurm /etc/slurm/jwt_hs256.key
chmod 0600 /etc/slurm/jwt_hs256.key
if [ ! -e /etc/ssh/ssh_host_ed25519_key ]; then
    ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
fi
chmod 0600 /etc/ssh/ssh_host_ed25519_key
chmod -R go-w /etc/ssh/authorized_keys
install -d -m 0755 /run/sshd
# The package put the hook into common-session (pam-auth-update).

# Users are in the directory: sshd and the helper resolve them through sssd.
sssd -D
# The sackd login node (tests/demo/sackd.py, DEMO_SACKD=1): sackd with the
# cluster's slurm.key, as SlurmUser, in /run/slurm as sackd.service's
# RuntimeDirectory=slurm makes it where systemd runs.
if [ "${DEMO_SACKD:-}" = 1 ]; then
    chown slurm:slurm /etc/slurm/slurm.key
    chmod 0600 /etc/slurm/slurm.key
    install -d -o slurm -g slurm -m 0755 /run/slurm
    setpriv --reuid=slurm --regid=slurm --clear-groups sackd -D >> /var/log/sackd.log 2>&1 &
fi
# Started as root: it binds /run/slurmjwt/helper.sock, then drops to SlurmUser.
slurmjwt-helper --stderr >> /var/log/slurmjwt-helper.log 2>&1 &
exec /usr/sbin/sshd -D -e
