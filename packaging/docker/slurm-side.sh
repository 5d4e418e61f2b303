#!/bin/sh
# Demo hosts, at start: set up what slurm.conf's Slurm side asks for, as
# packaging/slurm/README.md tells a site to. With cli_filter/lua, Slurm reads
# cli_filter.lua next to slurm.conf (sbatch on the login node, srun in jobs).
set -eu
conf=${SLURM_CONF:-/etc/slurm/slurm.conf}
if grep -Eqi '^[[:space:]]*CliFilterPlugins=.*cli_filter/lua' "$conf"; then
    ln -sf /usr/lib/slurmjwt/cli_filter.lua "$(dirname "$conf")/cli_filter.lua"
fi
