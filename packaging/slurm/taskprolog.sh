#!/bin/sh
# taskprolog.sh - Slurm TaskProlog that keeps SLURM_JWT out of every task.
#
# slurmd does not accept JWT, so a task that inherits SLURM_JWT (sbatch copies
# it into the job before Slurm 26.05) cannot run srun. slurmstepd reads this
# script's stdout: the line "unset SLURM_JWT" removes it from the task.
# Install: TaskProlog=/usr/lib/slurmjwt/taskprolog.sh in slurm.conf.
#
# Chaining: Slurm has one TaskProlog. Move an existing one into
# /etc/slurm/taskprolog.d/ (executable); each executable file there runs in
# name order, its output is passed on, and the first failure is returned.
# The unset comes last, so a chained script cannot put the token back.

dir=/etc/slurm/taskprolog.d
rc=0
for prolog in "$dir"/*; do
    if [ -f "$prolog" ] && [ -x "$prolog" ]; then
        "$prolog"
        status=$?
        [ "$rc" -ne 0 ] || rc=$status
    fi
done
echo "unset SLURM_JWT"
exit "$rc"
