#!/bin/sh
# The README's "Install on a login node" steps as commands, for a Debian
# login node with systemd on which the package is installed and the
# cluster's key copied to /etc/slurm/jwt_hs256.key. The demo's login node
# runs this at first boot; tests/unit/test_manual.py keeps it identical to
# the README's block.
set -eu
chown slurm: /etc/slurm/jwt_hs256.key
chmod 0600 /etc/slurm/jwt_hs256.key
systemctl --global enable slurmjwt-refresh.timer
